"""Programming reports of the dataplane loop: every endpoint change is reported once it is in
the kernel (even when its status stays "up"), and every apply is handed to the apply hook.
Runs the real drivers over the stateful fakes of test_dataplane_loop."""

from __future__ import annotations

from felix.dataplane.loop import ApplyReport
from felix.messages import Table as Table_
from felix.messages import ChainSet, EndpointRemoved, EndpointSet, InSync, RoutesSet
from tests.unit.test_dataplane_loop import Rig

KEY = ("wep", "k8s", "pod-1", "eth0")
TW1: tuple[int, Table_, str] = (4, "filter", "cali-tw-1")
PRO_A: tuple[int, Table_, str] = (4, "filter", "cali-pri-a")
PRO_B: tuple[int, Table_, str] = (4, "filter", "cali-pri-b")


def up_endpoint(r: Rig) -> None:
    r.link("cali1", 7)
    r.dp.on_messages([
        ChainSet(4, "filter", "cali-tw-1", ("-j cali-pri-a",)),
        ChainSet(4, "filter", "cali-pri-a", ("-j ACCEPT",)),
        RoutesSet(4, "cali1", frozenset({"10.65.0.2"})),
        EndpointSet(KEY, "cali1", True, frozenset({TW1, PRO_A})),
        InSync()])
    r.dp.run_once()
    assert r.statuses == [(KEY, "up", r.clock.t)]


def test_second_change_to_an_up_endpoint_is_reported_once_programmed() -> None:
    r = Rig()
    up_endpoint(r)
    r.clock.t += 1
    r.dp.on_messages([ChainSet(4, "filter", "cali-pri-c", ("-j ACCEPT",)),
                      ChainSet(4, "filter", "cali-tw-1", ("-j cali-pri-c",)),
                      EndpointSet(KEY, "cali1", True, frozenset({TW1, (4, "filter", "cali-pri-c")}))])
    r.dp.on_endpoints_changed([KEY])
    r.dp.run_once()
    assert r.statuses[-1] == (KEY, "up", r.clock.t) and len(r.statuses) == 2
    # Profile c → b: new chains, a new EndpointSet; status stays "up" but is reported again,
    # only after the new chains are in the kernel.
    r.iptables.fail_chains = {"cali-pri-b"}
    r.clock.t += 1
    r.dp.on_messages([
        ChainSet(4, "filter", "cali-pri-b", ("-j ACCEPT",)),
        ChainSet(4, "filter", "cali-tw-1", ("-j cali-pri-b",)),
        EndpointSet(KEY, "cali1", True, frozenset({TW1, PRO_B}))])
    r.dp.on_endpoints_changed([KEY])
    r.dp.run_once()
    assert r.statuses[-1] == (KEY, "error", None)
    r.iptables.fail_chains.clear()
    r.clock.t += 1
    r.dp.on_messages([ChainSet(4, "filter", "cali-pri-b", ("-j ACCEPT",))])
    r.dp.run_once()
    assert r.statuses[-1] == (KEY, "up", r.clock.t)
    n = len(r.statuses)
    r.dp.run_once()
    assert len(r.statuses) == n  # reported once per change, not per apply


def test_change_with_no_kernel_effect_is_reported_at_once() -> None:
    r = Rig()
    up_endpoint(r)
    r.clock.t += 1
    r.dp.on_endpoints_changed([KEY])  # e.g. a label nobody selects on
    r.dp.run_once()
    assert r.statuses[-1] == (KEY, "up", r.clock.t)
    assert len(r.statuses) == 2


def test_change_is_not_reported_before_its_chains_are_written() -> None:
    r = Rig()
    up_endpoint(r)
    r.clock.t += 1
    # Same chain names, new content (e.g. a MAC change): the EndpointSet is unchanged, so
    # only the pipeline's on_endpoints_changed says this endpoint changed.
    r.dp.on_messages([ChainSet(4, "filter", "cali-tw-1", ("-j DROP",))])
    r.dp.on_endpoints_changed([KEY])
    r.dp._drain()  # recorded, not applied yet: nothing to report
    r.dp._update_statuses()
    assert len(r.statuses) == 1
    r.dp.run_once()
    assert r.statuses[-1] == (KEY, "up", r.clock.t)
    assert r.chain("cali-tw-1") is not None and "DROP" in " ".join(r.chain("cali-tw-1") or [])


def test_changed_notice_for_removed_or_unknown_endpoint_is_ignored() -> None:
    r = Rig()
    up_endpoint(r)
    r.dp.on_messages([EndpointRemoved(KEY)])
    r.dp.on_endpoints_changed([KEY, ("wep", "k8s", "other", "eth0")])
    r.dp.run_once()
    assert len(r.statuses) == 1


def test_every_apply_is_reported_to_the_apply_hook() -> None:
    r = Rig()
    reports: list[ApplyReport] = []
    r.dp._on_apply = reports.append
    up_endpoint(r)
    assert len(reports) == 1 and reports[0].applied and reports[0].ok
    assert reports[0].iptables_lines > 0 and reports[0].route_ops > 0
    r.dp.run_once()  # nothing dirty: no apply, no report
    assert len(reports) == 1
    r.iptables.fail_chains = {"cali-tw-1"}
    r.dp.on_messages([ChainSet(4, "filter", "cali-tw-1", ("-j DROP",))])
    r.dp.run_once()
    assert len(reports) == 2 and not reports[1].ok and "cali-tw-1" in reports[1].error
