"""IpsetCalculator against a strict fake of the dataplane's sets: after every flush the fake
holds exactly the members of every referenced set, deltas only add absent and remove present
members, and changes that cancel out before a flush cost no message."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.calc.ipsets import FamilyRef, IpsetCalculator
from felix.messages import IpsetDelta, IpsetRemoved, IpsetSet, Message
from felix.model.selector import Selector, parse_selector
from felix.rules.matches import SetRef, set_name

SELECTORS = {s.uid: s for s in (parse_selector('app == "a"'), parse_selector("has(app)"),
                                parse_selector('team == "t1"'))}
REFS: list[SetRef] = [("tag", "t1"), ("tag", "t2")]
REFS += [("selector", u) for u in SELECTORS]
OWNERS = ["p1", "p2"]


class FakeSets:
    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {}

    def apply(self, msgs: list[Message]) -> None:
        for m in msgs:
            if isinstance(m, IpsetSet):
                self.sets[m.name] = set(m.members)
            elif isinstance(m, IpsetDelta):
                members = self.sets[m.name]
                assert m.added and not m.added & members or not m.added
                assert m.removed <= members and (m.added or m.removed)
                members |= m.added
                members -= m.removed
            elif isinstance(m, IpsetRemoved):
                del self.sets[m.name]


def flush(calc: IpsetCalculator, fake: FakeSets) -> list[Message]:
    ups, downs = calc.take_messages()
    fake.apply(ups + downs)
    return ups + downs


def expected(calc: IpsetCalculator, owner_refs: dict[str, frozenset[FamilyRef]]
             ) -> dict[str, set[str]]:
    refs = set().union(*owner_refs.values()) if owner_refs else set()
    return {set_name(v, ref): set(calc.members(v, ref)) for v, ref in refs}


def selectors_of(refs: frozenset[FamilyRef]) -> dict[str, Selector]:
    return {ref[1]: SELECTORS[ref[1]] for _, ref in refs if ref[0] == "selector"}


ops = st.one_of(
    st.tuples(st.just("ep"), st.integers(0, 5), st.sampled_from([{}, {"app": "a"}, {"app": "b"}]),
              st.lists(st.sampled_from(["pa", "pb"]), max_size=2, unique=True).map(tuple),
              st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), max_size=2,
                       unique=True).map(tuple)),
    st.tuples(st.just("rm"), st.integers(0, 5)),
    st.tuples(st.just("tags"), st.sampled_from(["pa", "pb"]),
              st.sampled_from([None, ("t1",), ("t1", "t2")])),
    st.tuples(st.just("labels"), st.sampled_from(["pa", "pb"]),
              st.sampled_from([None, {"team": "t1"}, {"app": "a"}])),
    st.tuples(st.just("refs"), st.sampled_from(OWNERS),
              st.frozensets(st.tuples(st.sampled_from([4, 6]), st.sampled_from(REFS)),
                            max_size=3)),
    st.just(("flush",)))


@settings(max_examples=200, deadline=None)
@given(st.lists(ops, max_size=40))
def test_fake_sets_follow_the_model(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    calc = IpsetCalculator((4, 6))
    fake = FakeSets()
    owner_refs: dict[str, frozenset[FamilyRef]] = {}
    for step in steps + [("flush",)]:
        kind = step[0]
        if kind == "ep":
            _, i, labels, profiles, ips = step
            calc.update_endpoint(f"ep{i}", labels, profiles,
                                 {4: ips, 6: tuple(f"fd00::{ip[-1]}" for ip in ips)})
        elif kind == "rm":
            calc.remove_endpoint(f"ep{step[1]}")
        elif kind == "tags":
            calc.update_profile_tags(step[1], step[2])
        elif kind == "labels":
            calc.update_profile_labels(step[1], step[2])
        elif kind == "refs":
            _, owner, refs = step
            calc.set_owner_refs(owner, refs, selectors_of(refs))
            owner_refs[owner] = refs
        else:
            flush(calc, fake)
            assert fake.sets == expected(calc, owner_refs)


def test_a_set_dropped_and_taken_back_before_a_flush_costs_nothing_unless_it_changed() -> None:
    calc = IpsetCalculator((4,))
    fake = FakeSets()
    refs: frozenset[FamilyRef] = frozenset({(4, ("tag", "t1"))})
    calc.update_profile_tags("pa", ("t1",))
    calc.update_endpoint("e1", {}, ("pa",), {4: ("10.0.0.1",)})
    calc.update_endpoint("e2", {}, ("pa",), {4: ("10.0.0.2",)})
    calc.set_owner_refs("p1", refs, {})
    assert [type(m) for m in flush(calc, fake)] == [IpsetSet]
    calc.set_owner_refs("p1", frozenset(), {})
    calc.set_owner_refs("p1", refs, {})
    assert flush(calc, fake) == []
    calc.set_owner_refs("p1", frozenset(), {})
    calc.remove_endpoint("e1")
    calc.update_endpoint("e3", {}, ("pa",), {4: ("10.0.0.3",)})
    calc.set_owner_refs("p1", refs, {})
    name = set_name(4, ("tag", "t1"))
    assert flush(calc, fake) == [IpsetDelta(4, name, frozenset({"10.0.0.3"}),
                                            frozenset({"10.0.0.1"}))]
    assert fake.sets == {name: {"10.0.0.2", "10.0.0.3"}}
    calc.set_owner_refs("p1", frozenset(), {})
    assert flush(calc, fake) == [IpsetRemoved(4, name)] and fake.sets == {}
