"""RouteManager against the stateful fake kernel in fake_netlink."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from felix.dataplane.conntrack import ConntrackFlusher
from felix.dataplane.routes import FELIX_ROUTE_PROTO, RouteManager
from felix.dataplane.runner import CommandResult
from felix.dataplane.stats import DataplaneStats
from felix.messages import RoutesRemoved, RoutesSet
from tests.unit.fake_netlink import FakeNetlink, FakeSysctl

P = FELIX_ROUTE_PROTO


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeConntrack:
    """A conntrack table: flows as (src, dst); ``conntrack -D -s/-d`` deletes matches."""

    def __init__(self) -> None:
        self.flows: set[tuple[str, str]] = set()

    def run(self, argv, input=None, timeout=None):  # noqa: A002 - CommandRunner signature
        assert argv[:2] == ["conntrack", "-D"]
        direction, ip = argv[-2], argv[-1]
        col = 0 if direction == "-s" else 1
        gone = {f for f in self.flows if f[col] == ip}
        self.flows -= gone
        return CommandResult(0 if gone else 1, "", f"{len(gone)} flow entries have been deleted.")


class Env:
    def __init__(self, grace: float = 10) -> None:
        self.kernel = FakeNetlink()
        self.sysctl = FakeSysctl(self.kernel)
        self.stats = DataplaneStats()
        self.clock = Clock()
        self.ct = FakeConntrack()
        self.mgr = RouteManager(self.kernel, self.sysctl, self.stats,
                                conntrack=ConntrackFlusher(self.ct), grace_period=grace,
                                clock=self.clock)

    def link(self, name: str, **kw: bool) -> None:
        self.kernel.add_link(name, **kw)
        self.mgr.on_interface_event(self.kernel.event(name))

    def unlink(self, name: str) -> None:
        self.kernel.del_link(name)
        self.mgr.on_interface_event(self.kernel.event(name))


def test_routes_appear_when_interface_appears() -> None:
    env = Env()
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32", "10.0.0.2"})))
    r = env.mgr.apply()
    assert r.ok and r.programmed_ifaces == frozenset()
    assert env.kernel.routes == {}
    assert env.mgr.interface_state("cali1") == "missing"

    env.link("cali1")
    assert env.mgr.dirty
    r = env.mgr.apply()
    assert r.ok and r.programmed_ifaces == {"cali1"}
    assert env.kernel.routes_of(4, P) == {"10.0.0.1/32": "cali1", "10.0.0.2/32": "cali1"}
    assert env.sysctl.values["net/ipv4/conf/cali1/proxy_arp"] == "1"
    assert env.sysctl.values["net/ipv4/neigh/cali1/proxy_delay"] == "0"
    assert env.sysctl.values["net/ipv4/conf/cali1/route_localnet"] == "1"
    assert env.sysctl.values["net/ipv4/conf/cali1/rp_filter"] == "1"
    assert env.sysctl.values["net/ipv4/ip_forward"] == "1"
    assert env.mgr.interface_state("cali1") == "up"
    assert env.stats.route_ops == 2
    assert not env.mgr.dirty


def test_ipv6_routes_sysctls_and_gateway_proxy_neighbour() -> None:
    env = Env()
    env.link("cali1")
    env.mgr.on_routes(RoutesSet(6, "cali1", frozenset({"fd00::1/128"}), mac="ee:ee:ee:ee:ee:ee"))
    assert env.mgr.apply().programmed_ifaces == {"cali1"}
    idx = env.kernel.links["cali1"].ifindex
    assert env.kernel.routes_of(6, P) == {"fd00::1/128": "cali1"}
    assert (6, idx, "fe80::1") in env.kernel.proxy_neighbours
    assert env.kernel.neighbours[(6, idx, "fd00::1")] == "ee:ee:ee:ee:ee:ee"
    assert env.sysctl.values["net/ipv6/conf/cali1/proxy_ndp"] == "1"
    assert env.sysctl.values["net/ipv6/conf/cali1/forwarding"] == "1"
    assert env.sysctl.values["net/ipv6/conf/all/forwarding"] == "1"
    assert "net/ipv4/conf/cali1/proxy_arp" not in env.sysctl.values


def test_static_neighbour_for_mac_and_mac_change() -> None:
    env = Env()
    env.link("cali1")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"}), mac="ee:ee:ee:00:00:01"))
    env.mgr.apply()
    idx = env.kernel.links["cali1"].ifindex
    assert env.kernel.neighbours == {(4, idx, "10.0.0.1"): "ee:ee:ee:00:00:01"}
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"}), mac="ee:ee:ee:00:00:02"))
    env.mgr.apply()
    assert env.kernel.neighbours == {(4, idx, "10.0.0.1"): "ee:ee:ee:00:00:02"}


def test_reapplied_when_interface_recreated_with_new_ifindex() -> None:
    env = Env()
    env.link("cali1")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"}), mac="ee:ee:ee:ee:ee:01"))
    env.mgr.apply()
    env.kernel.del_link("cali1")  # the kernel drops routes, neighbours and sysctl dirs
    env.sysctl.values.clear()
    env.kernel.add_link("cali1")  # recreated before the monitor reported the deletion
    env.mgr.on_interface_event(env.kernel.event("cali1"))
    r = env.mgr.apply()
    assert r.ok and r.programmed_ifaces == {"cali1"}
    new_idx = env.kernel.links["cali1"].ifindex
    assert env.kernel.routes == {(4, "10.0.0.1/32"): (new_idx, P)}
    assert env.kernel.neighbours == {(4, new_idx, "10.0.0.1"): "ee:ee:ee:ee:ee:01"}
    assert env.sysctl.values["net/ipv4/conf/cali1/proxy_arp"] == "1"


def test_stale_ifindex_discovered_by_enodev() -> None:
    """The monitor lags: the manager learns of the recreation from the failing add."""
    env = Env()
    env.link("cali1")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    env.mgr.apply()
    env.kernel.del_link("cali1")
    env.kernel.add_link("cali1")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32", "10.0.0.2/32"})))
    r = env.mgr.apply()
    assert "cali1" not in r.failed_ifaces
    assert env.mgr.dirty
    r = env.mgr.apply()
    assert r.ok and r.programmed_ifaces == {"cali1"}
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1", "10.0.0.2/32": "cali1"}


def test_link_deleted_then_routes_wait() -> None:
    env = Env()
    env.link("cali1")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    env.mgr.apply()
    env.unlink("cali1")
    assert env.mgr.interface_state("cali1") == "missing"
    r = env.mgr.apply()
    assert r.ok and r.programmed_ifaces == frozenset()
    assert env.kernel.calls.get("delete", 0) == 0  # nothing to delete: the kernel did it


def test_removal_deletes_routes_and_flushes_conntrack() -> None:
    env = Env()
    env.link("cali1")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32", "10.0.0.2/32"})))
    env.mgr.apply()
    env.ct.flows = {("10.0.0.1", "8.8.8.8"), ("1.2.3.4", "10.0.0.2"), ("1.2.3.4", "10.0.0.9")}
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.2/32"})))
    env.mgr.apply()
    assert env.kernel.routes_of(4) == {"10.0.0.2/32": "cali1"}
    assert env.ct.flows == {("1.2.3.4", "10.0.0.2"), ("1.2.3.4", "10.0.0.9")}
    env.mgr.on_routes(RoutesRemoved(4, "cali1"))
    r = env.mgr.apply()
    assert r.ok and env.kernel.routes == {}
    assert env.ct.flows == {("1.2.3.4", "10.0.0.9")}
    assert r.programmed_ifaces == frozenset()


def test_address_moves_between_interfaces() -> None:
    env = Env()
    env.link("cali1")
    env.link("cali2")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    env.mgr.apply()
    env.mgr.on_routes(RoutesRemoved(4, "cali1"))
    env.mgr.on_routes(RoutesSet(4, "cali2", frozenset({"10.0.0.1/32"})))
    r = env.mgr.apply()
    assert r.ok and r.programmed_ifaces == {"cali2"}
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali2"}


def test_foreign_proto_routes_never_deleted() -> None:
    env = Env(grace=0)
    env.link("cali1")
    idx = env.kernel.links["cali1"].ifindex
    env.kernel.routes[(4, "10.9.0.1/32")] = (idx, 3)  # proto boot, e.g. from a CNI plugin
    env.kernel.routes[(4, "10.9.0.2/32")] = (idx, 12)  # proto bird
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    env.mgr.allow_cleanup()
    env.mgr.apply()
    env.clock.t += 100
    env.mgr.invalidate()
    env.mgr.apply()
    env.mgr.on_routes(RoutesRemoved(4, "cali1"))
    env.mgr.apply()
    assert env.kernel.routes_of(4) == {"10.9.0.1/32": "cali1", "10.9.0.2/32": "cali1"}


def test_grace_period_cleanup_only_after_allow_cleanup() -> None:
    env = Env(grace=10)
    env.link("cali1")
    env.link("cali2")
    i1, i2 = env.kernel.links["cali1"].ifindex, env.kernel.links["cali2"].ifindex
    # Left over from a previous run: one on a claimed interface, one on an unclaimed one.
    env.kernel.routes[(4, "10.0.0.5/32")] = (i1, P)
    env.kernel.routes[(4, "10.0.0.6/32")] = (i2, P)
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    env.mgr.apply()
    env.clock.t += 60
    assert not env.mgr.dirty
    env.mgr.apply()
    assert set(env.kernel.routes_of(4)) == {"10.0.0.1/32", "10.0.0.5/32", "10.0.0.6/32"}

    env.mgr.allow_cleanup()
    env.mgr.apply()  # unclaimed for 60 s already: removed now
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1"}

    # A route that turns up unclaimed later (e.g. CNI just added it) gets the full grace.
    env.kernel.routes[(4, "10.0.0.7/32")] = (i2, P)
    env.mgr.invalidate()
    env.mgr.apply()
    assert "10.0.0.7/32" in env.kernel.routes_of(4)
    env.clock.t += 5
    assert not env.mgr.dirty
    env.mgr.on_routes(RoutesSet(4, "cali2", frozenset({"10.0.0.7/32"})))  # claimed in time
    env.mgr.apply()
    env.clock.t += 20
    env.mgr.apply()
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1", "10.0.0.7/32": "cali2"}

    env.kernel.routes[(4, "10.0.0.8/32")] = (i2, P)
    env.mgr.invalidate()
    env.mgr.apply()
    env.clock.t += 9
    assert not env.mgr.dirty
    env.clock.t += 1.5
    assert env.mgr.dirty  # the grace deadline makes it due by itself
    env.mgr.apply()
    assert "10.0.0.8/32" not in env.kernel.routes_of(4)


def test_refresh_repairs_deleted_route_without_rewriting_the_rest() -> None:
    env = Env()
    env.link("cali1")
    dests = frozenset(f"10.0.1.{i}/32" for i in range(50))
    env.mgr.on_routes(RoutesSet(4, "cali1", dests))
    env.mgr.apply()
    del env.kernel.routes[(4, "10.0.1.7/32")]
    env.mgr.apply()
    assert "10.0.1.7/32" not in env.kernel.routes_of(4)  # not noticed without a refresh
    replaces = env.kernel.calls["replace"]
    env.mgr.invalidate()
    assert env.mgr.dirty
    r = env.mgr.apply()
    assert r.ok and set(env.kernel.routes_of(4)) == set(dests)
    assert env.kernel.calls["replace"] == replaces + 1


def test_failing_add_marks_interface_failed_and_retries() -> None:
    env = Env()
    env.link("cali1")
    env.link("cali2")
    env.kernel.fail_replace_on[env.kernel.links["cali1"].ifindex] = errno.ENOMEM
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    env.mgr.on_routes(RoutesSet(4, "cali2", frozenset({"10.0.0.2/32"})))
    r = env.mgr.apply()
    assert not r.ok and r.error
    assert r.failed_ifaces == {"cali1"} and r.programmed_ifaces == {"cali2"}
    assert env.stats.route_errors == 1
    assert not env.mgr.dirty  # retry is delayed...
    env.clock.t += 1.0
    assert env.mgr.dirty  # ...but comes by itself
    r = env.mgr.apply()
    assert r.failed_ifaces == {"cali1"}
    env.kernel.fail_replace_on.clear()
    env.clock.t += 1.0
    r = env.mgr.apply()
    assert r.ok and r.failed_ifaces == frozenset()
    assert r.programmed_ifaces == {"cali1", "cali2"}
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1", "10.0.0.2/32": "cali2"}


def test_sysctl_failure_fails_interface() -> None:
    env = Env()
    env.link("cali1")
    env.sysctl.fail_keys["rp_filter"] = errno.EACCES
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    r = env.mgr.apply()
    assert r.failed_ifaces == {"cali1"} and not r.ok
    env.sysctl.fail_keys.clear()
    env.clock.t += 2
    r = env.mgr.apply()
    assert r.ok and r.programmed_ifaces == {"cali1"}


def test_read_failure_reported_not_raised() -> None:
    env = Env()
    env.kernel.fail_ops["list"] = errno.EBUSY
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    r = env.mgr.apply()
    assert not r.ok and "reading routes" in r.error
    del env.kernel.fail_ops["list"]
    env.clock.t += 2
    assert env.mgr.dirty
    assert env.mgr.apply().ok


def test_admin_down_interface_waits_then_programs_on_up() -> None:
    env = Env()
    env.link("cali1", admin_up=False)
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    r = env.mgr.apply()
    assert r.ok and r.failed_ifaces == frozenset() and r.programmed_ifaces == frozenset()
    assert env.mgr.interface_state("cali1") == "down"
    env.kernel.set_admin("cali1", True)
    env.mgr.on_interface_event(env.kernel.event("cali1"))
    r = env.mgr.apply()
    assert r.programmed_ifaces == {"cali1"} and env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1"}
    # Down again (the kernel flushes routes and neighbours), then up: all restored.
    env.kernel.set_admin("cali1", False)
    env.mgr.on_interface_event(env.kernel.event("cali1"))
    env.mgr.apply()
    env.kernel.set_admin("cali1", True)
    env.mgr.on_interface_event(env.kernel.event("cali1"))
    env.mgr.apply()
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1"}


def test_conflicting_claims_route_to_one_interface() -> None:
    env = Env()
    env.link("cali1")
    env.link("cali2")
    env.mgr.on_routes(RoutesSet(4, "cali2", frozenset({"10.0.0.1/32"})))
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32"})))
    assert env.mgr.apply().ok
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1"}
    env.mgr.on_routes(RoutesRemoved(4, "cali1"))
    env.mgr.apply()
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali2"}


def test_invalid_and_wrong_family_dests_ignored() -> None:
    env = Env()
    env.link("cali1")
    env.mgr.on_routes(RoutesSet(4, "cali1", frozenset({"10.0.0.1/32", "fd00::1", "bogus"})))
    assert env.mgr.apply().ok
    assert env.kernel.routes_of(4) == {"10.0.0.1/32": "cali1"}
    assert env.kernel.routes_of(6) == {}


# --- model-based: any sequence of messages and link events converges ---------------------

IFACES = ["cali1", "cali2", "cali3"]
ADDRS = [f"10.0.0.{i}/32" for i in range(1, 6)]

_actions = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(IFACES),
              st.frozensets(st.sampled_from(ADDRS), max_size=3)),
    st.tuples(st.just("remove"), st.sampled_from(IFACES), st.just(frozenset())),
    st.tuples(st.just("link"), st.sampled_from(IFACES), st.just(frozenset())),
    st.tuples(st.just("unlink"), st.sampled_from(IFACES), st.just(frozenset())),
    st.tuples(st.just("recreate"), st.sampled_from(IFACES), st.just(frozenset())),
    st.tuples(st.just("apply"), st.just(""), st.just(frozenset())),
    st.tuples(st.just("drift"), st.sampled_from(ADDRS), st.just(frozenset())),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_actions, max_size=25))
def test_converges_to_desired_state(actions: list[tuple[str, str, frozenset[str]]]) -> None:
    env = Env(grace=0)
    desired: dict[str, frozenset[str]] = {}
    for op, name, addrs in actions:
        if op == "set":
            desired[name] = addrs
            env.mgr.on_routes(RoutesSet(4, name, addrs))
        elif op == "remove":
            desired.pop(name, None)
            env.mgr.on_routes(RoutesRemoved(4, name))
        elif op == "link" and name not in env.kernel.links:
            env.link(name)
        elif op == "unlink" and name in env.kernel.links:
            env.unlink(name)
        elif op == "recreate" and name in env.kernel.links:
            env.kernel.del_link(name)
            env.kernel.add_link(name)
            env.mgr.on_interface_event(env.kernel.event(name))
        elif op == "apply":
            env.mgr.apply()
        elif op == "drift":  # someone deletes one of our routes
            env.kernel.routes.pop((4, name), None)
    env.mgr.allow_cleanup()
    env.mgr.invalidate()
    env.mgr.apply()
    env.mgr.apply()  # stale view entries from displaced routes are dropped by now
    expected: dict[str, str] = {}
    for name in sorted(desired):
        if name in env.kernel.links:
            for a in desired[name]:
                expected.setdefault(a, name)
    assert env.kernel.routes_of(4, P) == expected
    r = env.mgr.apply()
    assert r.ok
    assert r.programmed_ifaces == {n for n in desired if n in env.kernel.links}


@pytest.mark.parametrize("name", ["cali.1", "eth0.100"])
def test_dotted_interface_names_go_into_the_path_verbatim(name: str) -> None:
    from felix.dataplane.sysctl import interface_sysctls, key_from_dotted
    keys = [k for k, _ in interface_sysctls(4, name)]
    assert f"net/ipv4/conf/{name}/rp_filter" in keys
    dotted = "net.ipv4.conf." + name.replace(".", "/") + ".rp_filter"
    assert key_from_dotted(dotted) == f"net/ipv4/conf/{name}/rp_filter"
