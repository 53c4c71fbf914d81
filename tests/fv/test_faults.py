"""Fault injection against the real agent: etcd outages and wipes, a cleared watch window,
kernel tampering, SIGKILL, a held xtables lock and an iptables-restore that rejects one chain.

Every scenario runs a ContinuousProber over established allowed pairs (a new connection per
probe, so conntrack cannot hide an outage) and re-checks the whole matrix, denies included,
afterwards: a fault may delay a change, but must never open a hole or cut a healthy flow."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

from felix.model import keys
from tests.fv.conftest import FelixEnv
from tests.fv.harness.probes import Check, ContinuousProber, wait_for, wait_until

REFRESH = 10  # IptablesRefreshInterval set explicitly by every test here
CLEANUP_DELAY = 2


class Trio:
    """Workloads a and b in profile "web" (talk freely), c in "db" (web may reach tcp/8080
    only). The matrix covers TCP, UDP and ICMP, IPv4 and IPv6, allows and denies."""

    def __init__(self, env: FelixEnv) -> None:
        self.env = env
        self.a = env.workload("wa", "10.65.0.2", "fd00:65::2")
        self.b = env.workload("wb", "10.65.0.3", "fd00:65::3")
        self.c = env.workload("wc", "10.65.0.4", "fd00:65::4")
        self.extra: dict[Check, bool] = {}

    def write(self) -> None:
        ds, h = self.env.ds, self.env.hostname
        ds.ready()
        ds.profile("web", inbound=[{"src_tag": "web"}], outbound=[{}], tags=["web"])
        ds.profile("db", inbound=[{"src_tag": "web", "protocol": "tcp", "dst_ports": [8080]}],
                   outbound=[{}], tags=["db"])
        ds.endpoint(h, "wa", self.a.endpoint(profile_ids=("web",)))
        ds.endpoint(h, "wb", self.b.endpoint(profile_ids=("web",)))
        ds.endpoint(h, "wc", self.c.endpoint(profile_ids=("db",)))

    def allowed(self) -> list[Check]:
        """Pairs the prober may expect to stay open through every fault."""
        a, b, c = self.a, self.b, self.c
        return [Check(a, "tcp", b.ip, 8080), Check(b, "udp", a.ip, 5353),
                Check(a, "icmp", b.ip), Check(b, "tcp", c.ip, 8080),
                Check(a, "tcp", b.ip6, 8081)]  # type: ignore[arg-type]

    def matrix(self) -> dict[Check, bool]:
        a, b, c = self.a, self.b, self.c
        m = {ch: True for ch in self.allowed()}
        m.update({
            Check(a, "tcp", c.ip, 8081): False,
            Check(a, "udp", c.ip, 5353): False,
            Check(a, "icmp", c.ip): False,
            Check(c, "tcp", a.ip, 8080): False,
            Check(c, "icmp", b.ip6): False,  # type: ignore[arg-type]
            Check(a, "tcp", c.ip6, 8080): True,  # type: ignore[arg-type]
        })
        m.update(self.extra)
        return m

    def open_udp_to_c(self) -> None:
        """A real change: web may now also reach db on UDP."""
        self.env.ds.profile("db", inbound=[
            {"src_tag": "web", "protocol": "tcp", "dst_ports": [8080]},
            {"src_tag": "web", "protocol": "udp"}], outbound=[{}])
        self.extra[Check(self.a, "udp", self.c.ip, 5353)] = True


def start(env: FelixEnv, backend: str = "nft", **config: object) -> Trio:
    t = Trio(env)
    t.write()
    cfg: dict[str, object] = {"IptablesBackend": backend, "IptablesRefreshInterval": REFRESH,
                              "StartupCleanupDelay": CLEANUP_DELAY}
    cfg.update(config)
    env.start_felix(config=cfg)
    wait_for(t.matrix(), timeout=30)
    return t


def assert_no_failures(prober: ContinuousProber, min_attempts: int = 20) -> None:
    assert prober.attempts >= min_attempts, prober.attempts
    assert prober.failures == [], prober.failures[:10]


def save(env: FelixEnv, backend: str, v6: bool = False) -> str:
    return env.host.exec(f"ip6tables-{backend}-save" if v6 else f"iptables-{backend}-save").stdout


def ipset_dump(env: FelixEnv) -> str:
    return env.host.exec("ipset", "list").stdout


def routes(env: FelixEnv) -> str:
    return (env.host.exec("ip", "route", "show", "proto", "80").stdout
            + env.host.exec("ip", "-6", "route", "show", "proto", "80").stdout)


def status_of(env: FelixEnv, workload: str) -> str | None:
    key = keys.WorkloadEndpointKey(env.hostname, "k8s", workload, "eth0")
    raw = env.ds.get(key.status_path)
    return None if raw is None else str(json.loads(raw).get("status"))


# ---- etcd ----------------------------------------------------------------------------------

def test_etcd_stopped_and_restarted(env: FelixEnv) -> None:
    t = start(env)
    with ContinuousProber(t.allowed()) as prober:
        env.etcd.stop()
        time.sleep(10)
        assert env.felix.running, env.felix.tail(40)
        env.etcd.start()
        t.open_udp_to_c()
        took = wait_for(t.matrix(), timeout=30)
    assert_no_failures(prober, 50)
    assert env.felix.running
    print(f"change after etcd restart converged in {took:.1f}s")


def test_etcd_wiped_and_repopulated_then_watch_window_cleared(env: FelixEnv) -> None:
    t = start(env)
    with ContinuousProber(t.allowed()) as prober:
        env.etcd.wipe()
        env.ds = type(env.ds)(env.etcd.client())
        t.write()
        t.open_udp_to_c()
        took_wipe = wait_for(t.matrix(), timeout=40)
        # More than etcd's 1,000-event window of writes felix has no interest in, outside
        # /calico/v1 and inside it where the model ignores them; then one real change. Felix
        # is paused meanwhile so that its watch really falls out of the window.
        env.felix.send_signal(signal.SIGSTOP)
        for i in range(700):
            env.ds.set(f"/calico/felix-test-noise/k{i % 50}", str(i))
        for i in range(500):
            env.ds.set(f"/calico/v1/host/otherhost/unknownthing/k{i % 20}", str(i))
        env.ds.profile("web", inbound=[{"src_tag": "web"}, {"src_tag": "db", "protocol": "icmp"}],
                       outbound=[{}], tags=["web"])
        t.extra[Check(t.c, "icmp", t.a.ip)] = True
        env.felix.send_signal(signal.SIGCONT)
        took_window = wait_for(t.matrix(), timeout=30)
    assert_no_failures(prober, 50)
    assert env.felix.running
    out = env.felix.output()
    assert "cluster ID changed" in out or "Resyncing" in out  # the wipe was noticed as such
    assert "Watch fell behind etcd's event history" in out  # the window really was cleared
    print(f"after wipe: {took_wipe:.1f}s; after cleared window: {took_window:.1f}s")


# ---- kernel tampering ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["nft"])
def test_tampering_repaired_within_refresh_interval(env: FelixEnv, backend: str) -> None:
    t = start(env, backend)
    h = env.host
    ipt = f"iptables-{backend}"
    sets = [s for s in h.exec("ipset", "list", "-n").stdout.split() if s.startswith("cali4")]
    tag_sets = [s for s in sets if t.a.ip in h.exec("ipset", "list", s).stdout]
    assert tag_sets, sets
    fwd = [l for l in save(env, backend).splitlines()
           if l.startswith("-A FORWARD") and "cali" in l]
    assert fwd
    # Keep the prober to pairs the tampering does not break; the matrix is checked after.
    with ContinuousProber([Check(t.a, "tcp", t.b.ip6, 8081)]) as prober:  # type: ignore[arg-type]
        tampered_at = time.monotonic()
        h.exec(ipt, "-F", "cali-tw-caliwc")                       # our chain flushed
        h.exec(ipt, *shlex.split(fwd[0].replace("-A FORWARD", "-D FORWARD", 1)))  # hook jump
        h.exec("ip", "route", "del", f"{t.b.ip}/32")              # a route
        h.exec("ipset", "del", tag_sets[0], t.a.ip)               # an ipset member
        wait_for(t.matrix(), timeout=REFRESH + 8)
        took = time.monotonic() - tampered_at
    assert took <= REFRESH + 5, took
    assert f"{t.b.ip} dev" in routes(env)
    assert t.a.ip in h.exec("ipset", "list", tag_sets[0]).stdout
    print(f"tampering repaired in {took:.1f}s (refresh {REFRESH}s)")
    # The deny half of the flushed chain must be back too (an empty chain would RETURN).
    assert_no_failures(prober, 10)


# ---- felix SIGKILL -------------------------------------------------------------------------

def test_sigkill_restart_drops_nothing_and_sweeps_endpoint_deleted_meanwhile(env: FelixEnv) -> None:
    t = start(env)
    old_c_ip, old_c_ip6 = t.c.ip, str(t.c.ip6)
    assert old_c_ip in routes(env) and "caliwc" in save(env, "nft")
    with ContinuousProber([Check(t.a, "tcp", t.b.ip, 8080), Check(t.b, "udp", t.a.ip, 5353),
                           Check(t.a, "icmp", t.b.ip),
                           Check(t.b, "tcp", t.a.ip6, 8081)]) as prober:  # type: ignore[arg-type]
        env.felix.kill()
        env.ds.delete_endpoint(env.hostname, "wc")
        time.sleep(3)
        restarted = time.monotonic()
        env.start_felix(config={"IptablesBackend": "nft", "IptablesRefreshInterval": REFRESH,
                                "StartupCleanupDelay": CLEANUP_DELAY})
        assert env.felix.wait_for_log("Dataplane loop starting", 30)

        def swept() -> bool:
            return ("caliwc" not in save(env, "nft") and "caliwc" not in save(env, "nft", True)
                    and old_c_ip not in ipset_dump(env) and old_c_ip6 not in ipset_dump(env)
                    and old_c_ip not in routes(env) and "caliwc" not in routes(env))
        wait_until(swept, 20, what="the deleted endpoint to be swept")
        took = time.monotonic() - restarted
        time.sleep(1)
    assert_no_failures(prober, 20)
    t.c.delete_interface()  # as the orchestrator would; nothing of felix's may depend on it
    m = {ch: ok for ch, ok in t.matrix().items() if ch.src is not t.c and t.c.ip not in ch.dst
         and (t.c.ip6 or "-") not in ch.dst}
    m[Check(t.a, "tcp", t.c.ip, 8080)] = False
    wait_for(m, timeout=10)
    print(f"swept {took:.1f}s after restart (cleanup delay {CLEANUP_DELAY}s)")


# ---- xtables lock --------------------------------------------------------------------------

def test_change_converges_while_another_process_holds_the_xtables_lock(env: FelixEnv) -> None:
    t = start(env, "legacy", IptablesLockTimeoutSecs=10)
    with ContinuousProber(t.allowed()) as prober:
        # /run is the host's even inside our netns: keep the hold short (it delays others).
        holder = subprocess.Popen(["flock", "/run/xtables.lock", "sleep", "3"])
        try:
            time.sleep(0.2)
            t.open_udp_to_c()
            took = wait_for(t.matrix(), timeout=20)
        finally:
            holder.wait(10)
    assert_no_failures(prober, 10)
    print(f"change under a held xtables lock converged in {took:.1f}s")


# ---- one chain rejected by iptables-restore -------------------------------------------------

_WRAPPER = """#!/bin/sh
# Test double on felix's PATH: the real restore, except that it rejects any input that
# programs chain {chain} while {flag} exists (as a kernel/extension failure would).
input=$(cat)
if [ -e {flag} ] && printf '%s\\n' "$input" | grep -qE '^(:{chain} |-A {chain} )'; then
    echo "{real}: line 2 failed" >&2
    exit 1
fi
printf '%s\\n' "$input" | exec {real} "$@"
"""


@pytest.fixture
def failing_restore() -> Iterator[tuple[str, str]]:
    """A PATH directory whose iptables-nft-restore/ip6tables-nft-restore reject chain
    cali-tw-caliwc while the returned flag file exists."""
    d = tempfile.mkdtemp(prefix="fvwrap-")
    flag = os.path.join(d, "fail")
    for tool in ("iptables-nft-restore", "ip6tables-nft-restore"):
        real = shutil.which(tool)
        assert real
        path = os.path.join(d, tool)
        with open(path, "w") as f:
            f.write(_WRAPPER.format(chain="cali-tw-caliwc", flag=flag, real=real))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    open(flag, "w").close()
    try:
        yield d, flag
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_restore_failing_for_one_chain_isolates_that_endpoint(
        env: FelixEnv, failing_restore: tuple[str, str]) -> None:
    wrap_dir, flag = failing_restore
    t = Trio(env)
    ds, h = env.ds, env.hostname
    ds.ready()
    ds.profile("web", inbound=[{"src_tag": "web"}], outbound=[{}], tags=["web"])
    ds.profile("db", inbound=[{"src_tag": "web", "protocol": "tcp", "dst_ports": [8080]}],
               outbound=[{}], tags=["db"])
    ds.endpoint(h, "wa", t.a.endpoint(profile_ids=("web",)))
    ds.endpoint(h, "wb", t.b.endpoint(profile_ids=("web",)))
    env.start_felix(config={"IptablesBackend": "nft", "IptablesRefreshInterval": REFRESH,
                            "EndpointReportingEnabled": "true",
                            "EndpointReportingDelaySecs": 0},
                    env={"PATH": wrap_dir + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin")})
    a, b, c = t.a, t.b, t.c
    web = {Check(a, "tcp", b.ip, 8080): True, Check(b, "icmp", a.ip6): True}  # type: ignore[arg-type]
    wait_for(web, timeout=30)
    with ContinuousProber(list(web)) as prober:
        # c arrives while its chain cannot be programmed; a change for a/b comes with it.
        ds.endpoint(h, "wc", c.endpoint(profile_ids=("db",)))
        ds.profile("web", inbound=[{"src_tag": "web"}, {"src_tag": "db"}], outbound=[{}],
                   tags=["web"])
        cut_off = {Check(a, "tcp", c.ip, 8080): False, Check(c, "tcp", a.ip, 8080): False,
                   Check(c, "icmp", b.ip): False, Check(a, "icmp", c.ip6): False}  # type: ignore[arg-type]
        wait_for({**web, **cut_off}, timeout=20)
        wait_until(lambda: status_of(env, "wc") == "error", 20, what="wc status error")
        assert status_of(env, "wa") == "up" and status_of(env, "wb") == "up"
        # A newer endpoint still gets programmed (the dispatch chains are not held back by
        # the rejected chain), and c stays cut off meanwhile.
        d = env.workload("wd", "10.65.0.6")
        ds.endpoint(h, "wd", d.endpoint(profile_ids=("web",)))
        wait_for({**web, **cut_off, Check(a, "tcp", d.ip, 8080): True,
                  Check(d, "udp", b.ip, 5353): True}, timeout=20)
        wait_until(lambda: status_of(env, "wd") == "up", 15, what="wd status up")
        assert status_of(env, "wc") == "error"
        assert env.felix.running
        # The kernel recovers: felix's retry programs it.
        os.unlink(flag)
        took = wait_for({**web, Check(a, "tcp", c.ip, 8080): True,
                         Check(c, "tcp", a.ip, 8080): True,
                         Check(a, "tcp", c.ip, 8081): False}, timeout=30)
        wait_until(lambda: status_of(env, "wc") == "up", 15, what="wc status up")
    assert_no_failures(prober, 20)
    print(f"recovered {took:.1f}s after the restore stopped failing")
