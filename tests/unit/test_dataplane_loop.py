"""The dataplane loop driving the real Table, IpsetManager and RouteManager over stateful
fakes (fake iptables, fake ipset, and a small fake netlink here), with a fake clock."""

from __future__ import annotations

import errno
import threading
import time
from typing import Sequence

import gevent  # type: ignore[import-untyped]
import pytest

from felix.dataplane.interfaces import InterfaceEvent
from felix.dataplane.ipsets import IpsetManager
from felix.dataplane.iptables.backend import commands_for
from felix.dataplane.iptables.table import Table
from felix.dataplane.loop import BACKOFF_CAP, BACKOFF_START, Dataplane
from felix.dataplane.netlink import KernelRoute, LinkInfo, NetlinkOpError
from felix.dataplane.routes import RouteManager
from felix.dataplane.runner import CommandResult
from felix.dataplane.stats import DataplaneStats
from felix.dataplane.sysctl import SysctlWriter
from felix.messages import Table as Table_
from felix.messages import (ChainRemoved, ChainSet, EndpointRemoved, EndpointSet, HookSet,
                            InSync, IpsetDelta, IpsetRemoved, IpsetSet, RoutesRemoved, RoutesSet)
from tests.unit.fake_ipset import FakeIpset
from tests.unit.fake_iptables import FakeIptables


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Journal:
    """The order in which the kernel saw writes, across all drivers."""

    def __init__(self) -> None:
        self.entries: list[str] = []


class JournalRunner:
    def __init__(self, inner: FakeIpset | FakeIptables, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal

    def run(self, argv: Sequence[str], input: str | None = None,
            timeout: float | None = None) -> CommandResult:
        res = self.inner.run(argv, input, timeout)
        if "restore" in argv[0] or argv[1:2] == ["restore"]:
            head = argv[0] if argv[0] != "ipset" else "ipset"
            table = (input or "").split("\n", 1)[0].lstrip("*") if head != "ipset" else ""
            verbs = sorted({line.split(" ", 1)[0] for line in (input or "").splitlines()
                            if line}) if head == "ipset" else []
            self.journal.entries.append(f"{head}:{table}{','.join(verbs)}")
        return res


class FakeNetlink:
    """Routes and links of one pretend namespace."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.links: dict[str, LinkInfo] = {}
        self.routes: dict[tuple[int, str], tuple[int, int]] = {}  # (v, dst) → (ifindex, proto)
        self.fail_ifaces: set[int] = set()

    def list_routes(self, ip_version: int, proto: int) -> list[KernelRoute]:
        return [KernelRoute(dst, idx, p) for (v, dst), (idx, p) in self.routes.items()
                if v == ip_version and p == proto]

    def replace_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> None:
        if ifindex in self.fail_ifaces:
            raise NetlinkOpError(errno.EPERM, "test switch")
        if not any(li.ifindex == ifindex for li in self.links.values()):
            raise NetlinkOpError(errno.ENODEV)
        self.routes[(ip_version, dst)] = (ifindex, proto)
        self.journal.entries.append(f"route:{dst}")

    def delete_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> bool:
        return self.routes.pop((ip_version, dst), None) is not None

    def link(self, ifname: str) -> LinkInfo | None:
        return self.links.get(ifname)

    def set_neighbour(self, ip_version: int, ifindex: int, ip: str, mac: str) -> None:
        pass

    def set_proxy_neighbour(self, ip_version: int, ifindex: int, ip: str) -> None:
        pass

    def close(self) -> None:
        pass


class MemSysctl(SysctlWriter):
    def __init__(self) -> None:
        super().__init__("/nonexistent")
        self.values: dict[str, str] = {}

    def write(self, key: str, value: str) -> None:
        self.values[key] = value


class Rig:
    def __init__(self, cleanup_delay: float = 30, refresh_interval: float = 0) -> None:
        self.clock = Clock()
        self.journal = Journal()
        self.stats = DataplaneStats()
        self.iptables = FakeIptables()
        self.ipset = FakeIpset()
        self.netlink = FakeNetlink(self.journal)
        ipt_runner = JournalRunner(self.iptables, self.journal)
        self.tables = {(4, t): Table(4, t, ipt_runner, commands_for("legacy", 4), self.stats,
                                     clock=self.clock, sleep=lambda s: None)
                       for t in ("nat", "filter")}
        self.ipsets = IpsetManager(4, JournalRunner(self.ipset, self.journal), self.stats)
        self.routes = RouteManager(self.netlink, MemSysctl(), self.stats, clock=self.clock,
                                   grace_period=0)
        self.statuses: list[tuple[object, str, float | None]] = []
        self.dp = Dataplane(tables=self.tables, ipsets={4: self.ipsets}, routes=self.routes,
                            stats=self.stats,
                            on_endpoint_status=lambda k, s, t: self.statuses.append((k, s, t)),
                            clock=self.clock, cleanup_delay=cleanup_delay,
                            refresh_interval=refresh_interval)

    def link(self, name: str, index: int, up: bool = True, present: bool = True) -> None:
        if present:
            self.netlink.links[name] = LinkInfo(name, index, True, up)
        else:
            self.netlink.links.pop(name, None)
        self.dp.on_interface_event(InterfaceEvent(name, index, present, up))

    def chain(self, name: str, table: str = "filter") -> list[str] | None:
        chains = self.iptables.table("legacy", 4, table).chains
        return chains.get(name)


def test_nothing_applied_before_in_sync() -> None:
    r = Rig()
    r.dp.on_messages([IpsetSet(4, "cali4-a", "hash:ip", frozenset({"10.0.0.1"})),
                      ChainSet(4, "filter", "cali-x", ("-j ACCEPT",))])
    report = r.dp.run_once()
    assert not report.applied and r.journal.entries == [] and r.ipset.calls == []
    assert r.iptables.restore_count == 0 and not r.dp.in_sync
    r.dp.on_messages([InSync()])
    report = r.dp.run_once()
    assert report.applied and report.ok and r.dp.in_sync
    assert r.ipset.members("cali4-a") == {"10.0.0.1"} and r.chain("cali-x") is not None
    assert report.ipset_lines == 2 and report.iptables_lines > 0
    assert r.stats.applies == 1 and r.dp.last_apply_ok


def test_burst_of_100_messages_is_one_apply() -> None:
    r = Rig()
    r.dp.on_messages([InSync(), IpsetSet(4, "cali4-a", "hash:ip", frozenset())])
    r.dp.run_once()
    r.journal.entries.clear()
    msgs: list = []
    for i in range(50):
        msgs.append(IpsetDelta(4, "cali4-a", frozenset({f"10.0.1.{i}"}), frozenset()))
        msgs.append(ChainSet(4, "filter", f"cali-c{i % 5}", (f"-s 10.0.1.{i} -j ACCEPT",)))
    for m in msgs:
        r.dp.on_messages([m])
    report = r.dp.run_once()
    assert report.ok and r.stats.applies == 2
    assert r.journal.entries == ["ipset:add", "iptables-legacy-restore:filter"]
    assert len(r.ipset.members("cali4-a")) == 50
    [rule] = r.chain("cali-c4") or []
    assert rule.endswith("-s 10.0.1.49 -j ACCEPT")
    assert r.dp.run_once().applied is False  # nothing left to do


def test_apply_order_ipsets_routes_iptables_deletions() -> None:
    r = Rig()
    r.link("cali1", 5)
    r.dp.on_messages([
        IpsetSet(4, "cali4-old", "hash:ip", frozenset({"10.0.0.9"})),
        ChainSet(4, "filter", "cali-old", ("-j ACCEPT",)), InSync()])
    r.dp.run_once()
    r.journal.entries.clear()
    r.dp.on_messages([
        IpsetRemoved(4, "cali4-old"), ChainRemoved(4, "filter", "cali-old"),
        ChainSet(4, "nat", "cali-nat", ("-j RETURN",)),
        ChainSet(4, "filter", "cali-new", ("-j ACCEPT",)),
        RoutesSet(4, "cali1", frozenset({"10.65.0.2"})),
        IpsetSet(4, "cali4-new", "hash:net", frozenset({"10.1.0.0/16"})),
    ])
    assert r.dp.run_once().ok
    assert r.journal.entries == [
        "ipset:add,create", "route:10.65.0.2/32", "iptables-legacy-restore:filter",
        "iptables-legacy-restore:nat", "ipset:destroy"]
    assert "cali4-old" not in r.ipset.sets and r.chain("cali-old") is None


def test_failure_backs_off_without_blocking_others_then_recovers() -> None:
    r = Rig()
    r.dp.on_messages([InSync(), ChainSet(4, "filter", "cali-a", ("-j ACCEPT",))])
    r.dp.run_once()
    r.iptables.fail_chains = {"cali-bad"}
    r.dp.on_messages([ChainSet(4, "filter", "cali-bad", ("-j DROP",))])
    report = r.dp.run_once()
    assert not report.ok and "cali-bad" in report.error
    assert not r.dp.last_apply_ok and "cali-bad" in r.dp.last_error
    assert r.stats.apply_failures == 1
    calls = r.iptables.restore_count

    # Within the backoff window the table is left alone, but ipsets still apply.
    r.clock.t += BACKOFF_START / 2
    r.dp.on_messages([IpsetSet(4, "cali4-a", "hash:ip", frozenset({"10.0.0.1"}))])
    report = r.dp.run_once()
    assert report.ok and r.iptables.restore_count == calls
    assert r.ipset.members("cali4-a") == {"10.0.0.1"}

    # Retry when due: fails again and the delay doubles.
    r.clock.t += BACKOFF_START
    assert not r.dp.run_once().ok and r.iptables.restore_count > calls
    calls = r.iptables.restore_count
    r.clock.t += BACKOFF_START * 1.5
    assert not r.dp.run_once().applied and r.iptables.restore_count == calls
    r.clock.t += BACKOFF_START
    assert not r.dp.run_once().ok

    # Many failures: capped.
    for _ in range(12):
        r.clock.t += BACKOFF_CAP
        r.dp.run_once()
    r.clock.t += BACKOFF_CAP - 1
    calls = r.iptables.restore_count
    assert not r.dp.run_once().applied and r.iptables.restore_count == calls

    r.iptables.fail_chains.clear()
    r.clock.t += 1
    report = r.dp.run_once()
    assert report.ok and report.applied and r.chain("cali-bad") is not None
    assert r.dp.last_apply_ok and r.dp.last_error == ""


def test_new_input_retries_failed_driver_at_once() -> None:
    r = Rig()
    r.iptables.fail_chains = {"cali-bad"}
    r.dp.on_messages([InSync(), ChainSet(4, "filter", "cali-bad", ("-j DROP",))])
    assert not r.dp.run_once().ok
    r.iptables.fail_chains.clear()
    r.dp.on_messages([ChainSet(4, "filter", "cali-bad", ("-j ACCEPT",))])
    assert r.dp.run_once().ok and r.chain("cali-bad") is not None


def test_endpoint_status_transitions_and_programmed_at() -> None:
    r = Rig()
    key = ("wep", "k8s", "pod-1", "eth0")
    chain: tuple[int, Table_, str] = (4, "filter", "cali-tw-1")
    r.dp.on_messages([
        ChainSet(4, "filter", "cali-tw-1", ("-j ACCEPT",)),
        RoutesSet(4, "cali1", frozenset({"10.65.0.2"})),
        EndpointSet(key, "cali1", True, frozenset({chain})),
        InSync()])
    r.dp.run_once()
    assert r.statuses == [(key, "down", None)]  # no interface yet

    r.clock.t += 1
    r.link("cali1", 7)
    r.dp.run_once()
    assert r.statuses[-1] == (key, "up", r.clock.t)
    assert r.netlink.routes[(4, "10.65.0.2/32")][0] == 7

    r.link("cali1", 7, up=False)
    r.dp.run_once()
    assert r.statuses[-1] == (key, "down", None)
    r.clock.t += 1
    r.link("cali1", 7, up=True)
    r.dp.run_once()
    assert r.statuses[-1] == (key, "up", r.clock.t)
    n = len(r.statuses)
    r.dp.run_once()
    assert len(r.statuses) == n  # only changes are reported

    r.iptables.fail_chains = {"cali-tw-1"}
    r.dp.on_messages([ChainSet(4, "filter", "cali-tw-1", ("-j DROP",))])
    r.dp.run_once()
    assert r.statuses[-1] == (key, "error", None)
    r.iptables.fail_chains.clear()
    r.clock.t += 1
    r.dp.on_messages([ChainSet(4, "filter", "cali-tw-1", ("-j RETURN",))])
    r.dp.run_once()
    assert r.statuses[-1] == (key, "up", r.clock.t)

    r.netlink.fail_ifaces = {7}
    r.dp.on_messages([RoutesSet(4, "cali1", frozenset({"10.65.0.2", "10.65.0.3"}))])
    r.dp.run_once()
    assert r.statuses[-1] == (key, "error", None)
    r.netlink.fail_ifaces.clear()
    r.clock.t += 5
    r.dp.run_once()
    assert r.statuses[-1][1] == "up"

    r.dp.on_messages([EndpointSet(key, "cali1", False, frozenset({chain}))])
    r.dp.run_once()
    assert r.statuses[-1] == (key, "down", None)
    n = len(r.statuses)
    r.dp.on_messages([EndpointRemoved(key), RoutesRemoved(4, "cali1")])
    r.dp.run_once()
    assert len(r.statuses) == n


def test_endpoint_not_up_until_its_chain_is_programmed() -> None:
    r = Rig()
    key = "hep-1"
    r.link("eth1", 3)
    chain: tuple[int, Table_, str] = (4, "filter", "cali-th-eth1")
    r.dp.on_messages([InSync(), EndpointSet(key, "eth1", True, frozenset({chain}))])
    r.dp.run_once()
    assert r.statuses == []  # its chain has not even been set
    r.dp.on_messages([ChainSet(4, "filter", "cali-th-eth1", ("-j ACCEPT",))])
    r.dp.run_once()
    assert r.statuses == [(key, "up", r.clock.t)]


def test_cleanup_waits_for_delay_after_in_sync() -> None:
    r = Rig(cleanup_delay=30)
    r.ipset.run(["ipset", "create", "cali4-stale", "hash:ip"])
    r.link("cali9", 9)
    r.netlink.routes[(4, "10.65.9.9/32")] = (9, 80)  # a route of ours nobody claims
    r.dp.on_messages([InSync()])
    r.dp.run_once()
    r.clock.t += 29
    r.dp.run_once()
    assert "cali4-stale" in r.ipset.sets and (4, "10.65.9.9/32") in r.netlink.routes
    r.clock.t += 2
    assert r.dp.run_once().ok
    assert "cali4-stale" not in r.ipset.sets and (4, "10.65.9.9/32") not in r.netlink.routes


def test_refresh_repairs_drift() -> None:
    r = Rig(refresh_interval=60, cleanup_delay=1000)
    r.dp.on_messages([InSync(), IpsetSet(4, "cali4-a", "hash:ip", frozenset({"10.0.0.1"})),
                      ChainSet(4, "filter", "cali-a", ("-j ACCEPT",))])
    r.dp.run_once()
    r.ipset.sets["cali4-a"].members.clear()
    r.iptables.external("-F cali-a")
    r.clock.t += 30
    assert not r.dp.run_once().applied
    assert r.ipset.members("cali4-a") == set()
    r.clock.t += 40  # past 60 s ± 10 %
    assert r.dp.run_once().ok
    assert r.ipset.members("cali4-a") == {"10.0.0.1"}
    [rule] = r.chain("cali-a") or []
    assert rule.endswith("-j ACCEPT")


def test_hooks_and_unknown_tables() -> None:
    r = Rig()
    r.dp.on_messages([InSync(), ChainSet(4, "filter", "cali-INPUT", ("-j ACCEPT",)),
                      HookSet(4, "filter", "INPUT", ("-j cali-INPUT",)),
                      ChainSet(6, "filter", "cali-v6", ("-j ACCEPT",)),
                      IpsetSet(6, "cali6-a", "hash:ip", frozenset())])
    assert r.dp.run_once().ok
    assert len(r.chain("INPUT") or []) == 1


# ---- the loop greenlet ------------------------------------------------------------------

def _live_rig(min_apply_interval: float = 0.05) -> tuple[Dataplane, FakeIpset, DataplaneStats]:
    stats = DataplaneStats()
    fake = FakeIpset()
    ipt = FakeIptables()
    tables = {(4, "filter"): Table(4, "filter", ipt, commands_for("legacy", 4), stats)}
    routes = RouteManager(FakeNetlink(Journal()), MemSysctl(), stats)
    dp = Dataplane(tables=tables, ipsets={4: IpsetManager(4, fake, stats)}, routes=routes,
                   stats=stats, on_endpoint_status=lambda *a: None, refresh_interval=0,
                   min_apply_interval=min_apply_interval)
    return dp, fake, stats


def _wait_for(cond, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        gevent.sleep(0.01)


def test_run_greenlet_applies_throttles_and_stops() -> None:
    dp, fake, stats = _live_rig(min_apply_interval=0.2)
    g = gevent.spawn(dp.run)
    try:
        dp.on_messages([InSync(), IpsetSet(4, "cali4-a", "hash:ip", frozenset())])
        _wait_for(lambda: "cali4-a" in fake.sets)
        applies = stats.applies
        for i in range(20):  # a trickle faster than the throttle: coalesced
            dp.on_messages([IpsetDelta(4, "cali4-a", frozenset({f"10.0.0.{i}"}), frozenset())])
            gevent.sleep(0.01)
        _wait_for(lambda: len(fake.members("cali4-a")) == 20)
        assert stats.applies - applies <= 3
        beat = dp.last_heartbeat
        gevent.sleep(0.05)
        dp.on_messages([])
        _wait_for(lambda: dp.last_heartbeat > beat)
    finally:
        dp.stop()
        g.join(timeout=2)
    assert g.dead


def test_messages_from_a_native_thread_wake_the_loop() -> None:
    dp, fake, _ = _live_rig()
    g = gevent.spawn(dp.run)
    try:
        gevent.sleep(0.05)
        t = threading.Thread(target=dp.on_messages, args=(
            [InSync(), IpsetSet(4, "cali4-t", "hash:ip", frozenset({"10.0.0.1"}))],))
        start = time.monotonic()
        t.start()
        t.join()
        _wait_for(lambda: "cali4-t" in fake.sets)
        assert time.monotonic() - start < 0.5  # woken, not found by the 1 s heartbeat
    finally:
        dp.stop()
        g.join(timeout=2)


@pytest.mark.parametrize("bad", ["raise"])
def test_driver_exception_does_not_kill_loop(bad: str) -> None:
    r = Rig()

    def boom() -> None:
        raise RuntimeError("driver bug")

    r.ipsets.apply_updates = boom  # type: ignore[method-assign,assignment]
    r.dp.on_messages([InSync(), IpsetSet(4, "cali4-a", "hash:ip", frozenset()),
                      ChainSet(4, "filter", "cali-a", ("-j ACCEPT",))])
    report = r.dp.run_once()
    assert not report.ok and "driver bug" in report.error and r.chain("cali-a") is not None
