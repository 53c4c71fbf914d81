"""The iptables Table against the real kernel, legacy and nft, inside a netns of our own.

Every binary runs under `ip netns exec <ns>`, so the root namespace's rules are never touched.
Run with `-s` to see the measured figures (lines written and seconds for one-rule changes).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from typing import Iterator

import pytest

from felix.dataplane.iptables.backend import commands_for, detect_backend
from tests.fv.harness.netns import NetnsRunner
from felix.dataplane.iptables.table import Table
from felix.dataplane.stats import DataplaneStats

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="needs root and iproute2 for network namespaces"),
    pytest.mark.timeout(300),
]

BACKENDS = ["legacy", "nft"]
COMMENT_RE = re.compile(r'-m comment --comment "?cali:[A-Za-z0-9_-]{16}"? ?')
LOCK_PATH = "/run/xtables.lock"


@pytest.fixture
def netns() -> Iterator[str]:
    ns = f"h5-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def make(ns: str, backend: str, table: str = "filter") -> tuple[Table, DataplaneStats]:
    stats = DataplaneStats()
    return Table(4, table, NetnsRunner(ns), commands_for(backend, 4), stats), stats


def iptables(ns: str, backend: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, f"iptables-{backend}", "-w", "5", *args],
                   check=True, capture_output=True)


def kernel_rules(ns: str, backend: str, chain: str, table: str = "filter") -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, f"iptables-{backend}-save", "-t", table],
                         check=True, capture_output=True, text=True).stdout
    return [COMMENT_RE.sub("", line[len(f"-A {chain} "):]).strip()
            for line in out.splitlines() if line.startswith(f"-A {chain} ")]


def chains(ns: str, backend: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, f"iptables-{backend}-save", "-t", "filter"],
                         check=True, capture_output=True, text=True).stdout
    return {line[1:].split()[0] for line in out.splitlines() if line.startswith(":")}


def marks(n: int, tag: int = 0) -> list[str]:
    return [f"-s 10.{tag}.{i // 256}.{i % 256}/32 -j MARK --set-xmark 0x{i + 1:x}/0xffffffff"
            for i in range(n)]


A_RULES = ["-p tcp -m tcp --dport 80 -j ACCEPT", "-j DROP"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_program_read_back_and_minimal_delta(netns: str, backend: str) -> None:
    iptables(netns, backend, "-A", "INPUT", "-j", "ACCEPT")  # someone else's rule
    t, stats = make(netns, backend)
    t.set_chain("cali-a", A_RULES)
    t.set_chain("cali-b", ["-j cali-a"])
    t.set_hook("INPUT", ["-j cali-b"])
    res = t.apply()
    assert res.ok, res
    assert kernel_rules(netns, backend, "cali-a") == A_RULES
    assert kernel_rules(netns, backend, "INPUT") == ["-j cali-b", "-j ACCEPT"]
    assert stats.iptables_restore_calls == 1

    # A restarted felix recognises everything from the hashes: no writes.
    t2, stats2 = make(netns, backend)
    t2.set_chain("cali-a", A_RULES)
    t2.set_chain("cali-b", ["-j cali-a"])
    t2.set_hook("INPUT", ["-j cali-b"])
    res = t2.apply()
    assert res.ok and res.lines_written == 0 and stats2.iptables_restore_calls == 0

    rules = marks(1000)
    t2.set_chain("cali-big", rules)
    assert t2.apply().ok
    rules[500] = "-j RETURN"
    t2.set_chain("cali-big", rules)
    res = t2.apply()
    assert res.ok and res.lines_written <= 3
    assert kernel_rules(netns, backend, "cali-big") == rules
    t2.invalidate()
    assert t2.apply().lines_written == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_drift_repair(netns: str, backend: str) -> None:
    iptables(netns, backend, "-A", "INPUT", "-j", "ACCEPT")
    t, _ = make(netns, backend)
    t.set_chain("cali-x", marks(20))
    t.set_hook("INPUT", ["-j cali-x", "-p udp -j cali-x"])
    assert t.apply().ok
    iptables(netns, backend, "-F", "cali-x")
    iptables(netns, backend, "-D", "INPUT", "1")
    t.invalidate()
    res = t.apply()
    assert res.ok and res.lines_written == 21
    assert kernel_rules(netns, backend, "cali-x") == marks(20)
    assert kernel_rules(netns, backend, "INPUT") == ["-j cali-x", "-p udp -j cali-x",
                                                     "-j ACCEPT"]
    # A deleted rule in the middle comes back with one line.
    iptables(netns, backend, "-D", "cali-x", "7")
    t.invalidate()
    res = t.apply()
    assert res.ok and res.lines_written == 1
    assert kernel_rules(netns, backend, "cali-x") == marks(20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_chain_isolated_and_cleanup(netns: str, backend: str) -> None:
    iptables(netns, backend, "-N", "KUBE-X")
    t, _ = make(netns, backend)
    t.set_chain("cali-stale", ["-j DROP"])
    assert t.apply().ok
    t2, _ = make(netns, backend)  # restart: cali-stale is no longer wanted
    for i in range(8):
        t2.set_chain(f"cali-c{i}", [f"-j MARK --set-mark {i}"])
    t2.set_chain("cali-c5", ["-j NO-SUCH-TARGET"])  # the kernel rejects this one
    res = t2.apply()
    assert not res.ok and res.failed_chains == {"cali-c5"}
    assert chains(netns, backend) >= {f"cali-c{i}" for i in range(8) if i != 5}
    assert {"cali-stale", "KUBE-X"} <= chains(netns, backend)  # no cleanup yet
    t2.set_chain("cali-c5", ["-j ACCEPT"])
    t2.allow_cleanup()
    res = t2.apply()
    assert res.ok, res
    have = chains(netns, backend)
    assert "cali-stale" not in have and "KUBE-X" in have and "cali-c5" in have


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_detects_the_backend_in_use(netns: str, backend: str) -> None:
    t, _ = make(netns, backend)
    t.set_chain("cali-a", ["-j ACCEPT"])
    assert t.apply().ok
    assert detect_backend(NetnsRunner(netns), "auto") == backend


def test_held_xtables_lock_delays_but_does_not_fail_legacy(netns: str) -> None:
    t, stats = make(netns, "legacy")
    t.set_chain("cali-a", ["-j ACCEPT"])
    assert t.apply().ok
    t.set_chain("cali-a", ["-j DROP"])
    # The lock file is shared with the root namespace: this blocks every legacy iptables on
    # the host for 2 s, once.
    holder = subprocess.Popen(["ip", "netns", "exec", netns, "flock", LOCK_PATH, "sh", "-c",
                               "echo locked; sleep 2"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        res = t.apply()
        elapsed = time.monotonic() - start
    finally:
        holder.wait(timeout=10)
    assert res.ok, res
    assert elapsed >= 1.0, elapsed
    assert stats.iptables_restore_errors == 0
    assert kernel_rules(netns, "legacy", "cali-a") == ["-j DROP"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_figures_one_rule_change(netns: str, backend: str) -> None:
    t, _ = make(netns, backend)
    big = marks(1000)
    t.set_chain("cali-big", big)
    assert t.apply().ok
    big[500] = "-j RETURN"
    t.set_chain("cali-big", big)
    start = time.monotonic()
    res = t.apply()
    chain_s = time.monotonic() - start
    assert res.ok and res.lines_written <= 3
    chain_lines = res.lines_written

    table = {f"cali-t{i}": marks(1000, tag=i + 1) for i in range(9)}
    for name, rules in table.items():
        t.set_chain(name, rules)
    start = time.monotonic()
    res = t.apply()
    full_s = time.monotonic() - start
    assert res.ok
    table["cali-t4"][123] = "-j ACCEPT"
    t.set_chain("cali-t4", table["cali-t4"])
    start = time.monotonic()
    res = t.apply()
    table_s = time.monotonic() - start
    assert res.ok and res.lines_written <= 3
    table_lines = res.lines_written
    assert kernel_rules(netns, backend, "cali-t4") == table["cali-t4"]
    t.invalidate()
    start = time.monotonic()
    res = t.apply()
    refresh_s = time.monotonic() - start
    assert res.ok and res.lines_written == 0
    print(f"\nFIGURES {backend}: 1-rule change in 1,000-rule chain: {chain_lines} lines, "
          f"{chain_s:.3f}s; in 10,000-rule table: {table_lines} "
          f"lines, {table_s:.3f}s; loading 9,000 rules: {full_s:.3f}s; "
          f"refresh (save+parse+plan) of 10,000 rules with no writes: {refresh_s:.3f}s")
