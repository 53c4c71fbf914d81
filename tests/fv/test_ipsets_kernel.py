"""IpsetManager against the real ``ipset`` in a throwaway network namespace of our own."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from typing import Iterator

import pytest

from felix.dataplane.ipsets import IpsetManager
from tests.fv.harness.netns import NetnsRunner
from felix.dataplane.stats import DataplaneStats
from felix.messages import IpsetDelta, IpsetRemoved, IpsetSet

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ipset") is None or shutil.which("ip") is None,
    reason="needs root, ip and ipset")


@pytest.fixture
def ns() -> Iterator[NetnsRunner]:
    name = f"h7-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield NetnsRunner(name)
    finally:
        # Sets vanish with the namespace; nothing of ours outlives the test.
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def kernel_sets(r: NetnsRunner) -> dict[str, tuple[str, set[str]]]:
    """name → (create line options, members), from the kernel."""
    out: dict[str, tuple[str, set[str]]] = {}
    for line in r.check("ipset", "list", "-o", "save").splitlines():
        parts = line.split()
        if parts and parts[0] == "create":
            out[parts[1]] = (" ".join(parts[2:]), set())
        elif parts and parts[0] == "add":
            out[parts[1]][1].add(parts[2])
    return out


def members(r: NetnsRunner, name: str) -> set[str]:
    return kernel_sets(r)[name][1]


def test_create_delta_and_family(ns: NetnsRunner) -> None:
    stats = DataplaneStats()
    v4 = IpsetManager(4, ns, stats, max_size=1000)
    v6 = IpsetManager(6, ns, stats, max_size=1000)
    v4.on_message(IpsetSet(4, "cali4-a", "hash:ip", frozenset({"10.0.0.1", "10.0.0.2/32"})))
    v4.on_message(IpsetSet(4, "cali4-n", "hash:net", frozenset({"10.1.0.0/16", "0.0.0.0/0"})))
    v6.on_message(IpsetSet(6, "cali6-a", "hash:net",
                           frozenset({"2001:db8::/64", "2001:DB8:1::1"})))
    assert v4.apply_updates().ok and v6.apply_updates().ok
    sets = kernel_sets(ns)
    assert sets["cali4-a"][1] == {"10.0.0.1", "10.0.0.2"}
    assert "family inet " in sets["cali4-a"][0] and "maxelem 1000" in sets["cali4-a"][0]
    assert sets["cali4-n"][1] == {"10.1.0.0/16", "0.0.0.0/1", "128.0.0.0/1"}
    assert sets["cali6-a"][1] == {"2001:db8::/64", "2001:db8:1::1"}
    assert "family inet6" in sets["cali6-a"][0]
    assert stats.ipsets_total == 3

    v4.on_message(IpsetDelta(4, "cali4-a", frozenset({"10.0.0.3"}), frozenset({"10.0.0.1"})))
    res = v4.apply_updates()
    assert res.ok and res.lines_written == 2
    assert members(ns, "cali4-a") == {"10.0.0.2", "10.0.0.3"}
    # Refresh finds nothing to do: our spelling matches the kernel's.
    v4.invalidate()
    v6.invalidate()
    assert v4.apply_updates().lines_written == 0 and v6.apply_updates().lines_written == 0


def test_rewrite_of_referenced_set_swaps(ns: NetnsRunner) -> None:
    ns.check("ipset", "create", "cali4-a", "hash:ip", "family", "inet", "maxelem", "50")
    ns.check("ipset", "add", "cali4-a", "10.0.0.1")
    ns.check("iptables", "-A", "INPUT", "-m", "set", "--match-set", "cali4-a", "src",
             "-j", "ACCEPT")
    m = IpsetManager(4, ns, DataplaneStats(), max_size=1000)
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", frozenset({"10.0.0.2", "10.0.0.3"})))
    res = m.apply_updates()
    assert res.ok, res.error
    sets = kernel_sets(ns)
    assert sets["cali4-a"][1] == {"10.0.0.2", "10.0.0.3"}
    assert "maxelem 1000" in sets["cali4-a"][0]
    assert [n for n in sets if n.startswith("cali4t")] == []
    assert "References: 1" in ns.check("ipset", "list", "-t", "cali4-a")

    # A referenced set cannot be destroyed: the deletion waits until the rule is gone.
    m.on_message(IpsetRemoved(4, "cali4-a"))
    assert m.apply_updates().ok
    res = m.apply_deletions()
    assert not res.ok and res.failed_sets == {"cali4-a"} and "cali4-a" in kernel_sets(ns)
    ns.check("iptables", "-D", "INPUT", "1")
    assert m.apply_deletions().ok and "cali4-a" not in kernel_sets(ns)


def test_refresh_repairs_drift_and_cleanup(ns: NetnsRunner) -> None:
    ns.check("ipset", "create", "cali4-stale", "hash:ip")
    ns.check("ipset", "create", "notours", "hash:ip")
    m = IpsetManager(4, ns, DataplaneStats(), max_size=1000)
    want = {f"10.0.{i // 250}.{i % 250}" for i in range(500)}
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", frozenset(want)))
    assert m.apply_updates().ok
    ns.check("ipset", "del", "cali4-a", "10.0.0.7")
    ns.check("ipset", "add", "cali4-a", "192.168.9.9")
    m.invalidate()
    res = m.apply_updates()
    assert res.ok and res.lines_written == 2
    assert members(ns, "cali4-a") == want

    ns.check("ipset", "flush", "cali4-a")  # large drift: rebuilt and swapped in
    m.invalidate()
    res = m.apply_updates()
    assert res.ok and res.lines_written == len(want) + 4
    assert members(ns, "cali4-a") == want

    assert m.apply_deletions().ok and "cali4-stale" in kernel_sets(ns)
    m.allow_cleanup()
    assert m.apply_deletions().ok
    assert set(kernel_sets(ns)) == {"cali4-a", "notours"}


def test_maxelem_exceeded_leaves_old_contents(ns: NetnsRunner) -> None:
    m = IpsetManager(4, ns, DataplaneStats(), max_size=5)
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", frozenset({"10.0.0.1", "10.0.0.2"})))
    assert m.apply_updates().ok
    m.on_message(IpsetDelta(4, "cali4-a", frozenset(f"10.0.1.{i}" for i in range(5)),
                            frozenset()))
    res = m.apply_updates()
    assert not res.ok and res.failed_sets == {"cali4-a"} and "cali4-a" in res.error
    assert members(ns, "cali4-a") == {"10.0.0.1", "10.0.0.2"}


def test_kernel_refusal_is_isolated_to_its_set(ns: NetnsRunner) -> None:
    # A type change needs destroy+create, which the kernel refuses while a rule uses the set.
    ns.check("ipset", "create", "cali4-c", "hash:net", "maxelem", "1000")
    ns.check("ipset", "add", "cali4-c", "10.9.0.0/16")
    ns.check("iptables", "-A", "INPUT", "-m", "set", "--match-set", "cali4-c", "src",
             "-j", "ACCEPT")
    m = IpsetManager(4, ns, DataplaneStats(), max_size=1000)
    m.on_message(IpsetSet(4, "cali4-b", "hash:ip", frozenset({"10.0.0.1"})))
    m.on_message(IpsetSet(4, "cali4-c", "hash:ip", frozenset({"10.0.0.2"})))
    m.on_message(IpsetSet(4, "cali4-d", "hash:ip", frozenset({"10.0.0.3"})))
    res = m.apply_updates()
    assert not res.ok and res.failed_sets == {"cali4-c"} and "cali4-c" in res.error
    sets = kernel_sets(ns)
    assert sets["cali4-b"][1] == {"10.0.0.1"} and sets["cali4-d"][1] == {"10.0.0.3"}
    assert sets["cali4-c"][1] == {"10.9.0.0/16"}
    ns.check("iptables", "-D", "INPUT", "1")
    assert m.apply_updates().ok and members(ns, "cali4-c") == {"10.0.0.2"}


def test_figures_100k_load_and_one_member_change(ns: NetnsRunner,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    stats = DataplaneStats()
    m = IpsetManager(4, ns, stats)
    big = frozenset(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(100_000))
    t0 = time.perf_counter()
    m.on_message(IpsetSet(4, "cali4-big", "hash:ip", big))
    t1 = time.perf_counter()
    res = m.apply_updates()
    t2 = time.perf_counter()
    assert res.ok and res.lines_written == 100_001
    m.on_message(IpsetDelta(4, "cali4-big", frozenset({"11.0.0.1"}), frozenset()))
    t3 = time.perf_counter()
    one = m.apply_updates()
    t4 = time.perf_counter()
    assert one.ok and one.lines_written == 1
    m.invalidate()
    t5 = time.perf_counter()
    ref = m.apply_updates()
    t6 = time.perf_counter()
    assert ref.ok and ref.lines_written == 0
    assert len(members(ns, "cali4-big")) == 100_001
    with capsys.disabled():
        print(f"\n[ipset figures] 100k load: record {t1 - t0:.3f}s + apply {t2 - t1:.3f}s, "
              f"{res.lines_written} lines; one-member change: {(t4 - t3) * 1000:.1f} ms, "
              f"{one.lines_written} line; refresh of 100k (no drift): {t6 - t5:.3f}s, "
              f"{ref.lines_written} lines")
