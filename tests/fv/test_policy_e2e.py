"""The whole agent against the real kernel, both iptables backends: profiles with tags enforce
who may talk (TCP, UDP, ICMP, IPv4 and IPv6), a policy change converges, an endpoint delete
removes its route and chains, a restart with correct kernel state writes nothing and drops no
packet, and drift is repaired."""

from __future__ import annotations

import re
import shlex
import signal
import time

import pytest

from tests.fv.conftest import FelixEnv
from tests.fv.harness.probes import Check, ContinuousProber, wait_for, wait_until
from tests.fv.harness.workload import Workload

BACKENDS = ["legacy", "nft"]


def setup_three(env: FelixEnv, backend: str) -> tuple[Workload, Workload, Workload]:
    a = env.workload("wa", "10.65.0.2", "fd00:65::2")
    b = env.workload("wb", "10.65.0.3", "fd00:65::3")
    c = env.workload("wc", "10.65.0.4", "fd00:65::4")
    ds = env.ds
    ds.profile("web", inbound=[{"src_tag": "web"}], outbound=[{}], tags=["web"])
    ds.profile("db", inbound=[{"src_tag": "web", "protocol": "tcp", "dst_ports": [8080]}],
               outbound=[{}], tags=["db"])
    ds.endpoint(env.hostname, "wa", a.endpoint(profile_ids=("web",)))
    ds.endpoint(env.hostname, "wb", b.endpoint(profile_ids=("web",)))
    ds.endpoint(env.hostname, "wc", c.endpoint(profile_ids=("db",)))
    env.start_felix(config={"IptablesBackend": backend})
    return a, b, c


def base_matrix(a: Workload, b: Workload, c: Workload) -> dict[Check, bool]:
    m: dict[Check, bool] = {}
    for ip_of in (lambda w: w.ip, lambda w: w.ip6):
        m[Check(a, "tcp", ip_of(b), 8080)] = True
        m[Check(a, "udp", ip_of(b), 5353)] = True
        m[Check(a, "icmp", ip_of(b))] = True
        m[Check(b, "tcp", ip_of(a), 8081)] = True
        m[Check(a, "tcp", ip_of(c), 8080)] = True
        m[Check(a, "tcp", ip_of(c), 8081)] = False
        m[Check(a, "udp", ip_of(c), 5353)] = False
        m[Check(a, "icmp", ip_of(c))] = False
        m[Check(c, "tcp", ip_of(a), 8080)] = False
        m[Check(c, "icmp", ip_of(b))] = False
    return m


def iptables_save(env: FelixEnv, backend: str, v6: bool = False) -> str:
    tool = f"ip6tables-{backend}-save" if v6 else f"iptables-{backend}-save"
    return env.host.exec(tool).stdout


def routes(env: FelixEnv) -> str:
    return env.host.exec("ip", "route", "show", "proto", "80").stdout


def felix_counter(env: FelixEnv, name: str) -> int:
    """Read a counter from felix's SIGUSR1 summary (the last one logged)."""
    before = env.felix.output().count("Diagnostics: iptables-restore calls")
    env.felix.send_signal(signal.SIGUSR1)
    wait_until(lambda: env.felix.output().count("Diagnostics: iptables-restore calls") > before,
               10, what="SIGUSR1 summary")
    line = [l for l in env.felix.output().splitlines() if "Diagnostics: iptables-restore calls" in l][-1]
    m = re.search(name, line)
    assert m, line
    return int(m.group(1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_profiles_with_tags_enforced_and_policy_change_converges(env: FelixEnv, backend: str) -> None:
    a, b, c = setup_three(env, backend)
    wait_for(base_matrix(a, b, c), timeout=30)
    # A rule change in db: UDP from web now allowed too.
    env.ds.profile("db", inbound=[{"src_tag": "web", "protocol": "tcp", "dst_ports": [8080]},
                                  {"src_tag": "web", "protocol": "udp"}], outbound=[{}])
    m = base_matrix(a, b, c)
    m[Check(a, "udp", c.ip, 5353)] = True
    m[Check(a, "udp", c.ip6, 5353)] = True  # type: ignore[arg-type]
    wait_for(m, timeout=15)
    # Delete c: its route and chains go.
    assert c.ip in routes(env)
    assert "cali-tw-caliwc" in iptables_save(env, backend)
    env.ds.delete_endpoint(env.hostname, "wc")
    wait_until(lambda: c.ip not in routes(env), 15, what="route removal")
    wait_until(lambda: "caliwc" not in iptables_save(env, backend), 15, what="chain removal")
    wait_for({Check(a, "tcp", c.ip, 8080): False, Check(a, "tcp", b.ip, 8080): True}, timeout=10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_restart_with_correct_state_writes_nothing_and_drops_nothing(env: FelixEnv, backend: str) -> None:
    a, b, c = setup_three(env, backend)
    matrix = base_matrix(a, b, c)
    wait_for(matrix, timeout=30)
    allowed = [ch for ch, ok in matrix.items() if ok]
    with ContinuousProber(allowed, interval=0.05) as prober:
        env.felix.stop()
        time.sleep(1)
        env.start_felix(config={"IptablesBackend": backend})
        assert env.felix.wait_for_log("Dataplane loop starting", 30)
        time.sleep(4)  # past the first apply and the cleanup delay (2 s)
    assert prober.attempts > 20
    assert prober.failures == [], prober.failures[:10]
    assert felix_counter(env, r"iptables-restore calls \d+ \(errors \d+\), lines (\d+)") == 0
    assert felix_counter(env, r"ipset calls \d+ \(errors \d+\), lines (\d+)") == 0
    wait_for(matrix, timeout=5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drift_is_repaired(env: FelixEnv, backend: str) -> None:
    a, b, c = setup_three(env, backend)
    matrix = base_matrix(a, b, c)
    wait_for(matrix, timeout=30)
    h = env.host
    save = f"iptables-{backend}"
    # Our chains flushed, a hook jump deleted, a route deleted, an ipset member deleted.
    h.exec(save, "-F", "cali-tw-caliwc")
    fwd = [l for l in iptables_save(env, backend).splitlines() if l.startswith("-A FORWARD") and "cali" in l]
    assert fwd, iptables_save(env, backend)
    h.exec(save, *shlex.split(fwd[0].replace("-A FORWARD", "-D FORWARD", 1)))
    h.exec("ip", "route", "del", f"{b.ip}/32")
    sets = [s for s in h.exec("ipset", "list", "-n").stdout.split() if s.startswith("cali4")]
    tag_sets = [s for s in sets if a.ip in h.exec("ipset", "list", s).stdout]
    assert tag_sets, sets
    h.exec("ipset", "del", tag_sets[0], a.ip)
    # IptablesRefreshInterval is 10 s in the harness config.
    wait_for(matrix, timeout=25)
    assert f"{b.ip} dev" in routes(env)
    assert a.ip in h.exec("ipset", "list", tag_sets[0]).stdout


def test_one_invalid_profile_does_not_block_others(env: FelixEnv) -> None:
    a, b, c = setup_three(env, "nft")
    wait_for(base_matrix(a, b, c), timeout=30)
    # db becomes invalid (unknown rule key): c's traffic fails closed; web is unaffected.
    env.ds.profile("db", inbound=[{"src_tag": "web", "bogus": 1}], outbound=[{}])
    wait_for({Check(a, "tcp", c.ip, 8080): False, Check(a, "tcp", b.ip, 8080): True,
              Check(b, "icmp", a.ip): True}, timeout=15)
