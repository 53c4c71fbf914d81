"""Within one apply the IP families' commands run concurrently (and still in step order):
the real Table and IpsetManager over the stateful fakes, behind a runner that yields to the
hub in the middle of every command, as gevent's subprocess does while the child runs."""

from __future__ import annotations

import time
from typing import Sequence

import gevent  # type: ignore[import-untyped]

from felix.dataplane.ipsets import IpsetManager
from felix.dataplane.iptables.backend import commands_for
from felix.dataplane.iptables.table import Table
from felix.dataplane.loop import Dataplane, run_concurrently
from felix.dataplane.netlink import LinkInfo
from felix.dataplane.interfaces import InterfaceEvent
from felix.dataplane.routes import RouteManager
from felix.dataplane.runner import CommandResult
from felix.dataplane.stats import DataplaneStats
from felix.messages import (ChainSet, InSync, IpsetRemoved, IpsetSet, RoutesSet)
from tests.unit.fake_ipset import FakeIpset
from tests.unit.fake_iptables import FakeIptables
from tests.unit.test_dataplane_loop import Clock, FakeNetlink, Journal, MemSysctl


class YieldingRunner:
    """Logs start/end of each write, yielding to the hub while the 'child' runs."""

    def __init__(self, inner: FakeIpset | FakeIptables, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal

    def run(self, argv: Sequence[str], input: str | None = None,
            timeout: float | None = None) -> CommandResult:
        writes = "restore" in argv[0] or argv[1:2] == ["restore"]
        if argv[0] == "ipset":
            tag = "ipset" + ("6" if "cali6" in (input or "") else "4")
        else:
            tag = argv[0].split("-")[0] + ":" + (input or "").split("\n", 1)[0].lstrip("*")
        if writes:
            self.journal.entries.append(f"start {tag}")
        gevent.sleep(0.001)
        res = self.inner.run(argv, input, timeout)
        if writes:
            self.journal.entries.append(f"end {tag}")
        return res


class ExplodingTable(Table):
    explode = False

    def apply(self):  # type: ignore[no-untyped-def]
        if self.explode:
            raise RuntimeError("driver bug")
        return super().apply()


class DualRig:
    def __init__(self) -> None:
        self.clock = Clock()
        self.journal = Journal()
        self.stats = DataplaneStats()
        self.iptables = FakeIptables()
        self.ipset = FakeIpset()
        self.netlink = FakeNetlink(self.journal)
        ipt = YieldingRunner(self.iptables, self.journal)
        self.tables = {(v, t): ExplodingTable(v, t, ipt, commands_for("legacy", v), self.stats,
                                              clock=self.clock, sleep=lambda s: None)
                       for v in (4, 6) for t in ("filter", "nat")}
        ips = YieldingRunner(self.ipset, self.journal)
        self.ipsets = {v: IpsetManager(v, ips, self.stats) for v in (4, 6)}
        self.routes = RouteManager(self.netlink, MemSysctl(), self.stats, clock=self.clock,
                                   grace_period=0)
        self.dp = Dataplane(tables=self.tables, ipsets=self.ipsets, routes=self.routes,
                            stats=self.stats, on_endpoint_status=lambda k, s, t: None,
                            clock=self.clock, cleanup_delay=30, refresh_interval=0)

    def chain(self, v: int, name: str, table: str = "filter") -> list[str] | None:
        return self.iptables.table("legacy", v, table).chains.get(name)


def _both(v4: str, v6: str) -> list:  # type: ignore[type-arg]
    return [ChainSet(4, "filter", v4, ("-j ACCEPT",)), ChainSet(6, "filter", v6, ("-j ACCEPT",))]


def test_families_restore_concurrently_in_step_order() -> None:
    r = DualRig()
    r.netlink.links["cali1"] = LinkInfo("cali1", 5, True, True)
    r.dp.on_interface_event(InterfaceEvent("cali1", 5, True, True))
    r.dp.on_messages([InSync(), IpsetSet(4, "cali4-old", "hash:ip", frozenset({"10.0.0.9"})),
                      IpsetSet(6, "cali6-old", "hash:ip", frozenset({"fd00::9"}))])
    assert r.dp.run_once().ok
    r.journal.entries.clear()
    restores = r.iptables.restore_count
    r.dp.on_messages([
        IpsetSet(4, "cali4-a", "hash:ip", frozenset({"10.0.0.1"})),
        IpsetSet(6, "cali6-a", "hash:ip", frozenset({"fd00::1"})),
        IpsetRemoved(4, "cali4-old"), IpsetRemoved(6, "cali6-old"),
        RoutesSet(4, "cali1", frozenset({"10.65.0.2"})),
        *_both("cali-a", "cali-a6"), ChainSet(4, "nat", "cali-n", ("-j RETURN",))])
    report = r.dp.run_once()
    assert report.ok and report.applied
    # Both families' restores happened in this one apply, and overlapped in time.
    assert r.iptables.restore_count == restores + 3
    assert r.journal.entries == [
        "start ipset4", "start ipset6", "end ipset4", "end ipset6",
        "route:10.65.0.2/32",
        # filter before nat within IPv4; IPv6 alongside.
        "start iptables:filter", "start ip6tables:filter", "end iptables:filter",
        "start iptables:nat", "end ip6tables:filter", "end iptables:nat",
        "start ipset4", "start ipset6", "end ipset4", "end ipset6"]
    assert r.chain(4, "cali-a") and r.chain(6, "cali-a6") and r.chain(4, "cali-n", "nat")
    assert r.ipset.members("cali4-a") == {"10.0.0.1"} and "cali6-old" not in r.ipset.sets


def test_failing_family_does_not_block_the_other() -> None:
    r = DualRig()
    r.dp.on_messages([InSync()])
    r.dp.run_once()
    r.iptables.fail_chains = {"cali-bad6"}
    r.dp.on_messages(_both("cali-good4", "cali-bad6"))
    report = r.dp.run_once()
    assert not report.ok and "6, 'filter')" in report.error and "4, 'filter')" not in report.error
    assert r.chain(4, "cali-good4") is not None and r.chain(6, "cali-bad6") is None

    # A driver that raises (a bug) is contained the same way.
    r.iptables.fail_chains.clear()
    r.tables[(6, "filter")].explode = True  # type: ignore[attr-defined]
    r.dp.on_messages(_both("cali-good4b", "cali-bad6"))
    report = r.dp.run_once()
    assert not report.ok and "driver bug" in report.error
    assert r.chain(4, "cali-good4b") is not None

    r.tables[(6, "filter")].explode = False  # type: ignore[attr-defined]
    r.dp.on_messages(_both("cali-good4c", "cali-bad6"))
    assert r.dp.run_once().ok and r.chain(6, "cali-bad6") is not None


def test_run_concurrently_overlaps_and_keeps_order() -> None:
    def slow(x: int) -> int:
        gevent.sleep(0.2)
        return x

    def boom() -> int:
        raise ValueError("nope")

    start = time.monotonic()
    outs = run_concurrently([lambda: slow(1), boom, lambda: slow(3)])
    assert time.monotonic() - start < 0.35  # 0.4 s if run one after the other
    assert [o.value for o in outs] == [1, None, 3]
    assert isinstance(outs[1].error, ValueError) and outs[0].error is None
    assert run_concurrently([]) == []


def test_idle_loop_sleeps_after_a_failed_driver_went_clean() -> None:
    """A backoff whose driver has nothing left to do (the failed set was removed) must not
    leave a deadline in the past: the loop would spin instead of sleeping."""
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        return time.monotonic()

    stats = DataplaneStats()
    fake = FakeIpset()
    fake.poison = {"cali4-bad"}
    routes = RouteManager(FakeNetlink(Journal()), MemSysctl(), stats)
    dp = Dataplane(tables={}, ipsets={4: IpsetManager(4, fake, stats)}, routes=routes,
                   stats=stats, on_endpoint_status=lambda *a: None, refresh_interval=0,
                   clock=clock)
    g = gevent.spawn(dp.run)
    try:
        dp.on_messages([InSync(), IpsetSet(4, "cali4-bad", "hash:ip", frozenset({"10.0.0.1"}))])
        gevent.sleep(0.05)
        assert stats.apply_failures >= 1
        dp.on_messages([IpsetRemoved(4, "cali4-bad")])
        gevent.sleep(0.4)  # past the backoff's retry time
        calls[0] = 0
        gevent.sleep(0.5)
        assert calls[0] < 20, f"{calls[0]} loop iterations while idle"
    finally:
        dp.stop()
        g.join(timeout=2)
    assert g.dead


def test_killing_the_caller_stops_the_concurrent_calls() -> None:
    finished: list[int] = []

    def slow(x: int) -> int:
        gevent.sleep(0.3)
        finished.append(x)
        return x

    caller = gevent.spawn(run_concurrently, [lambda: slow(1), lambda: slow(2)])
    gevent.sleep(0.05)
    caller.kill()
    gevent.sleep(0.4)
    assert finished == []
