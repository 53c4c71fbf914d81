"""IpsetManager against the stateful fake ipset: assert kernel state and restore batches."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felix.dataplane.ipsets import IpsetManager, canonical_members
from felix.dataplane.stats import DataplaneStats
from felix.messages import IpsetDelta, IpsetRemoved, IpsetSet
from tests.unit.fake_ipset import FakeIpset, FakeSet


def ips(*last: int) -> frozenset[str]:
    return frozenset(f"10.0.0.{n}" for n in last)


def mk(max_size: int = 1000, v: int = 4) -> tuple[IpsetManager, FakeIpset, DataplaneStats]:
    fake = FakeIpset()
    stats = DataplaneStats()
    return IpsetManager(v, fake, stats, max_size=max_size), fake, stats


def test_new_sets_one_restore() -> None:
    m, fake, stats = mk()
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(1, 2)))
    m.on_message(IpsetSet(4, "cali4-b", "hash:net", frozenset({"10.1.0.0/16", "10.2.0.5/32"})))
    assert m.dirty
    res = m.apply_updates()
    assert res.ok and res.failed_sets == frozenset()
    assert len(fake.restores()) == 1
    assert fake.members("cali4-a") == set(ips(1, 2))
    assert fake.members("cali4-b") == {"10.1.0.0/16", "10.2.0.5"}
    assert fake.sets["cali4-a"].maxelem == 1000 and fake.sets["cali4-a"].family == "inet"
    assert stats.ipsets_total == 2 and stats.ipset_lines_executed == res.lines_written == 6
    assert not m.dirty
    fake.clear_calls()
    assert m.apply_updates().lines_written == 0 and fake.calls == []


def test_delta_is_a_small_restore() -> None:
    m, fake, _ = mk()
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(*range(1, 200))))
    m.apply_updates()
    fake.clear_calls()
    m.on_message(IpsetDelta(4, "cali4-a", added=ips(250), removed=ips(1)))
    m.on_message(IpsetDelta(4, "cali4-a", added=ips(251), removed=frozenset()))
    res = m.apply_updates()
    assert res.ok and res.lines_written == 3
    assert [argv for argv, _ in fake.calls] == [["ipset", "restore", "-exist"]]
    assert fake.members("cali4-a") == set(ips(*range(2, 200), 250, 251))


def test_ipv6_family_and_spelling() -> None:
    m, fake, _ = mk(v=6)
    m.on_message(IpsetSet(6, "cali6-a", "hash:net",
                          frozenset({"2001:DB8:0:0::1/128", "2001:db8::/32", "::/0"})))
    assert m.apply_updates().ok
    assert fake.sets["cali6-a"].family == "inet6"
    assert fake.members("cali6-a") == {"2001:db8::1", "2001:db8::/32", "::/1", "8000::/1"}
    m.invalidate()
    fake.clear_calls()
    assert m.apply_updates().lines_written == 0  # read-back compares equal


def test_first_sight_of_differing_set_is_swapped_in() -> None:
    m, fake, _ = mk()
    fake.sets["cali4-a"] = FakeSet("hash:ip", "inet", 1000, set(ips(1, 2, 3)))
    fake.references["cali4-a"] = 1
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(2, 3, 4)))
    assert m.apply_updates().ok
    [text] = fake.restores()
    temp = m.temp_name("cali4-a")
    assert temp.startswith("cali4t") and len(temp) <= 31
    assert f"swap {temp} cali4-a" in text and f"destroy {temp}" in text
    assert fake.members("cali4-a") == set(ips(2, 3, 4))
    assert temp not in fake.sets


def test_first_sight_of_equal_set_writes_nothing() -> None:
    m, fake, _ = mk()
    fake.sets["cali4-a"] = FakeSet("hash:ip", "inet", 1000, set(ips(1, 2)))
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(1, 2)))
    res = m.apply_updates()
    assert res.ok and res.lines_written == 0 and fake.restores() == []


def test_maxelem_change_swaps_type_change_recreates() -> None:
    m, fake, _ = mk()
    fake.sets["cali4-a"] = FakeSet("hash:ip", "inet", 50, set(ips(1)))
    fake.sets["cali4-b"] = FakeSet("hash:ip", "inet", 1000, set(ips(1)))
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(1)))
    m.on_message(IpsetSet(4, "cali4-b", "hash:net", frozenset({"10.0.0.0/8"})))
    assert m.apply_updates().ok
    assert fake.sets["cali4-a"].maxelem == 1000 and fake.members("cali4-a") == {"10.0.0.1"}
    assert fake.sets["cali4-b"].set_type == "hash:net"
    assert fake.members("cali4-b") == {"10.0.0.0/8"}
    assert "swap" in fake.restores()[0]


def test_maxelem_exceeded_names_set_and_leaves_old_contents() -> None:
    m, fake, stats = mk(max_size=3)
    m.on_message(IpsetSet(4, "cali4-big", "hash:ip", ips(1, 2)))
    m.on_message(IpsetSet(4, "cali4-ok", "hash:ip", ips(1)))
    assert m.apply_updates().ok
    m.on_message(IpsetDelta(4, "cali4-big", added=ips(3, 4), removed=frozenset()))
    m.on_message(IpsetDelta(4, "cali4-ok", added=ips(2), removed=frozenset()))
    res = m.apply_updates()
    assert not res.ok and res.failed_sets == frozenset({"cali4-big"})
    assert "cali4-big" in res.error and "maxelem 3" in res.error
    assert fake.members("cali4-big") == set(ips(1, 2))
    assert fake.members("cali4-ok") == set(ips(1, 2))
    assert m.dirty  # still wanted: the loop retries
    m.on_message(IpsetDelta(4, "cali4-big", added=frozenset(), removed=ips(4)))
    assert m.apply_updates().ok and fake.members("cali4-big") == set(ips(1, 2, 3))


def test_refresh_repairs_small_drift_in_place() -> None:
    m, fake, _ = mk()
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(*range(1, 101))))
    m.apply_updates()
    fake.sets["cali4-a"].members -= {"10.0.0.5"}
    fake.sets["cali4-a"].members |= {"10.9.9.9"}
    fake.clear_calls()
    m.invalidate()
    assert m.dirty
    res = m.apply_updates()
    assert res.ok and res.lines_written == 2
    assert [a[1] for a, _ in fake.calls] == ["save", "restore"]
    assert "swap" not in fake.restores()[0]
    assert fake.members("cali4-a") == set(ips(*range(1, 101)))


def test_refresh_rewrites_large_drift_with_swap_and_recreates_missing_set() -> None:
    m, fake, _ = mk()
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(*range(1, 201))))
    m.on_message(IpsetSet(4, "cali4-b", "hash:ip", ips(1)))
    m.apply_updates()
    fake.sets["cali4-a"].members.clear()
    del fake.sets["cali4-b"]
    m.invalidate()
    assert m.apply_updates().ok
    assert "swap" in fake.restores()[-1]
    assert fake.members("cali4-a") == set(ips(*range(1, 201)))
    assert fake.members("cali4-b") == {"10.0.0.1"}


def test_deletions_wait_for_apply_deletions_and_references() -> None:
    m, fake, _ = mk()
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(1)))
    m.apply_updates()
    fake.references["cali4-a"] = 1
    m.on_message(IpsetRemoved(4, "cali4-a"))
    assert m.apply_updates().ok and "cali4-a" in fake.sets
    res = m.apply_deletions()
    assert not res.ok and res.failed_sets == {"cali4-a"} and "in use" in res.error
    assert m.dirty
    fake.references["cali4-a"] = 0  # iptables stopped referencing it
    assert m.apply_deletions().ok and "cali4-a" not in fake.sets and not m.dirty


def test_removed_then_set_again_is_not_destroyed() -> None:
    m, fake, _ = mk()
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(1)))
    m.apply_updates()
    m.on_message(IpsetRemoved(4, "cali4-a"))
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(2)))
    m.apply_updates()
    m.apply_deletions()
    assert fake.members("cali4-a") == {"10.0.0.2"}


def test_cleanup_only_after_allow_cleanup_and_only_ours() -> None:
    m, fake, stats = mk()
    for name in ("cali4-stale", "cali4tdeadbeef", "cali6-other-family", "foo", "calico-x"):
        fake.sets[name] = FakeSet("hash:ip", "inet6" if "6" in name else "inet", 10)
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(1)))
    m.apply_updates()
    m.apply_deletions()
    assert "cali4-stale" in fake.sets and "cali4tdeadbeef" in fake.sets
    m.allow_cleanup()
    assert m.dirty
    assert m.apply_updates().ok and m.apply_deletions().ok
    assert set(fake.sets) == {"cali4-a", "cali6-other-family", "foo", "calico-x"}
    assert stats.ipsets_total == 1 and not m.dirty


def test_failed_restore_is_isolated_set_by_set() -> None:
    m, fake, stats = mk()
    fake.poison = {"cali4-bad"}
    for name in ("cali4-a", "cali4-bad", "cali4-z"):
        m.on_message(IpsetSet(4, name, "hash:ip", ips(1, 2)))
    res = m.apply_updates()
    assert not res.ok and res.failed_sets == frozenset({"cali4-bad"})
    assert "cali4-bad" in res.error and "poisoned" in res.error
    assert fake.members("cali4-a") == fake.members("cali4-z") == set(ips(1, 2))
    assert stats.ipset_errors >= 2
    fake.poison.clear()
    assert m.dirty
    res = m.apply_updates()
    assert res.ok and fake.members("cali4-bad") == set(ips(1, 2))


def test_read_failure_reports_all_pending() -> None:
    m, fake, _ = mk()
    fake.fail_all = True
    m.on_message(IpsetSet(4, "cali4-a", "hash:ip", ips(1)))
    res = m.apply_updates()
    assert not res.ok and res.failed_sets == {"cali4-a"} and "ipset save failed" in res.error
    fake.fail_all = False
    assert m.apply_updates().ok and fake.members("cali4-a") == {"10.0.0.1"}


def test_names_not_ours_are_ignored() -> None:
    m, fake, _ = mk()
    m.on_message(IpsetSet(4, "foo", "hash:ip", ips(1)))
    m.on_message(IpsetSet(4, "cali6-a", "hash:ip", ips(1)))
    m.on_message(IpsetSet(4, "cali4-" + "x" * 30, "hash:ip", ips(1)))
    assert not m.dirty


@pytest.mark.parametrize("member,set_type,v,want", [
    ("10.0.0.1/32", "hash:ip", 4, ["10.0.0.1"]),
    ("10.0.0.0/24", "hash:ip", 4, []),
    ("10.0.0.7/24", "hash:net", 4, ["10.0.0.0/24"]),
    ("0.0.0.0/0", "hash:net", 4, ["0.0.0.0/1", "128.0.0.0/1"]),
    ("2001:db8::1", "hash:ip", 4, []),
    ("bogus", "hash:ip", 4, []),
    ("2001:DB8::0:1", "hash:ip", 6, ["2001:db8::1"]),
])
def test_canonical_members(member: str, set_type: str, v: int, want: list[str]) -> None:
    assert canonical_members(member, set_type, v) == want


_member = st.integers(1, 40).map(lambda n: f"10.0.{n // 20}.{n}")
_name = st.sampled_from(["cali4-a", "cali4-b", "cali4-c"])
_msg = st.one_of(
    st.builds(lambda n, ms: IpsetSet(4, n, "hash:ip", frozenset(ms)), _name,
              st.sets(_member, max_size=30)),
    st.builds(lambda n, a, r: IpsetDelta(4, n, frozenset(a), frozenset(r - a)), _name,
              st.sets(_member, max_size=5), st.sets(_member, max_size=5)),
    st.builds(lambda n: IpsetRemoved(4, n), _name),
)
_step = st.one_of(
    st.lists(_msg, min_size=1, max_size=6).map(lambda ms: ("msgs", ms)),
    st.tuples(st.just("drift"), _name, st.sets(_member, max_size=8)),
    st.just(("invalidate",)),
    st.just(("cleanup",)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_step, max_size=12))
def test_kernel_converges_to_desired(steps: list[tuple]) -> None:
    m, fake, stats = mk(max_size=100)
    want: dict[str, set[str]] = {}
    cleaned = False
    for step in steps:
        if step[0] == "msgs":
            for msg in step[1]:
                if isinstance(msg, IpsetDelta) and msg.name not in want:
                    continue  # the calculation never sends a delta for an unknown set
                m.on_message(msg)
                if isinstance(msg, IpsetSet):
                    want[msg.name] = set(msg.members)
                elif isinstance(msg, IpsetDelta):
                    want[msg.name] = (want[msg.name] - msg.removed) | msg.added
                else:
                    want.pop(msg.name, None)
        elif step[0] == "drift":
            s = fake.sets.get(step[1])
            if s is not None:
                s.members ^= step[2]
            m.invalidate()
        elif step[0] == "invalidate":
            m.invalidate()
        else:
            m.allow_cleanup()
            cleaned = True
        assert m.apply_updates().ok
        assert m.apply_deletions().ok
        assert not m.dirty
        for name, members in want.items():
            assert fake.members(name) == members
        ours = {n for n in fake.sets if n.startswith("cali4")}
        assert set(want) <= ours
        if cleaned:
            assert ours == set(want)
        assert stats.ipsets_total == len(ours)
