"""Example tests for LabelIndex: inheritance, transitions, and the cost model."""

from __future__ import annotations

import dataclasses
from typing import Hashable, Mapping

import pytest

from felix.calc.labelindex import LabelIndex
from felix.model.selector import Selector, parse_selector


class Recorder:
    """Replays the callback stream into a set of (selector, item) pairs, refusing events that
    are not transitions (a match of a matched pair or an unmatch of an unmatched one)."""

    def __init__(self) -> None:
        self.pairs: set[tuple[Hashable, Hashable]] = set()
        self.events: list[tuple[str, Hashable, Hashable]] = []

    def on_match(self, sel_id: Hashable, item_id: Hashable) -> None:
        assert (sel_id, item_id) not in self.pairs, f"duplicate match {sel_id} {item_id}"
        self.pairs.add((sel_id, item_id))
        self.events.append(("+", sel_id, item_id))

    def on_unmatch(self, sel_id: Hashable, item_id: Hashable) -> None:
        assert (sel_id, item_id) in self.pairs, f"unmatch of unmatched {sel_id} {item_id}"
        self.pairs.remove((sel_id, item_id))
        self.events.append(("-", sel_id, item_id))

    def take(self) -> list[tuple[str, Hashable, Hashable]]:
        events, self.events = sorted(self.events, key=repr), []
        return events


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def idx(rec: Recorder) -> LabelIndex:
    return LabelIndex(rec.on_match, rec.on_unmatch)


def sel(text: str) -> Selector:
    return parse_selector(text)


def test_item_then_selector_and_back(idx: LabelIndex, rec: Recorder) -> None:
    idx.update_item("e1", {"role": "web"})
    idx.update_item("e2", {"role": "db"})
    idx.update_selector("s", sel('role == "web"'))
    assert idx.matches("s") == {"e1"}
    assert rec.take() == [("+", "s", "e1")]
    idx.update_item("e2", {"role": "web"})
    assert rec.take() == [("+", "s", "e2")]
    idx.update_item("e1", {"role": "db"})
    assert rec.take() == [("-", "s", "e1")]
    assert idx.matches("s") == {"e2"}
    idx.update_item("e2", {"role": "web", "other": "x"})  # no transition, no event
    assert rec.take() == []


def test_negations_match_absent_labels(idx: LabelIndex, rec: Recorder) -> None:
    idx.update_selector("ne", sel('role != "web"'))
    idx.update_selector("notin", sel('role not in {"web", "db"}'))
    idx.update_selector("nothas", sel("!has(role)"))
    idx.update_selector("all", sel(""))
    idx.update_selector("none", sel("!all()"))
    idx.update_item("bare", {})
    assert rec.take() == [("+", s, "bare") for s in ("all", "ne", "nothas", "notin")]
    idx.update_item("web", {"role": "web"})
    assert rec.take() == [("+", "all", "web")]  # no match-then-unmatch flicker
    idx.update_item("bare", {"role": "db"})
    assert rec.take() == [("-", "nothas", "bare"), ("-", "notin", "bare")]
    assert idx.matches("ne") == {"bare"}
    assert idx.matches("none") == frozenset()


def test_parent_labels_inherited_in_order_own_labels_win(idx: LabelIndex, rec: Recorder) -> None:
    idx.update_parent_labels("p1", {"env": "prod", "tier": "front"})
    idx.update_parent_labels("p2", {"env": "dev", "team": "a"})
    idx.update_item("e", {"tier": "back"}, ["p1", "p2"])
    assert dict(idx.effective_labels("e")) == {"env": "prod", "tier": "back", "team": "a"}
    idx.update_selector("prod", sel('env == "prod"'))
    idx.update_selector("dev", sel('env == "dev"'))
    idx.update_selector("back", sel('tier == "back"'))
    assert rec.take() == [("+", "back", "e"), ("+", "prod", "e")]
    # The first parent loses its env label: the second parent's shows through.
    idx.update_parent_labels("p1", {"tier": "front"})
    assert rec.take() == [("+", "dev", "e"), ("-", "prod", "e")]
    # A parent going away takes its labels with it; coming back restores them.
    idx.update_parent_labels("p2", None)
    assert rec.take() == [("-", "dev", "e")]
    assert dict(idx.effective_labels("e")) == {"tier": "back"}
    idx.update_parent_labels("p2", {"env": "dev"})
    assert rec.take() == [("+", "dev", "e")]
    # Changing the item's parent list.
    idx.update_item("e", {"tier": "back"}, ["p1"])
    assert rec.take() == [("-", "dev", "e")]
    idx.update_parent_labels("p2", {"env": "prod"})  # no longer e's parent
    assert rec.take() == []


def test_parent_known_only_after_item(idx: LabelIndex, rec: Recorder) -> None:
    idx.update_selector("s", sel('env == "prod"'))
    idx.update_item("e", {}, ["p"])
    assert rec.take() == []
    idx.update_parent_labels("p", {"env": "prod"})
    assert rec.take() == [("+", "s", "e")]


def test_remove_selector_and_item_unmatch_everything(idx: LabelIndex, rec: Recorder) -> None:
    idx.update_selector("a", sel("has(x)"))
    idx.update_selector("b", sel('x == "1" || y == "1"'))
    idx.update_item("e1", {"x": "1"})
    idx.update_item("e2", {"y": "1"})
    rec.take()
    idx.remove_selector("b")
    assert rec.take() == [("-", "b", "e1"), ("-", "b", "e2")]
    assert idx.matches("b") == frozenset()
    idx.remove_item("e1")
    assert rec.take() == [("-", "a", "e1")]
    with pytest.raises(KeyError):
        idx.effective_labels("e1")
    # Removing what is not there is a no-op.
    idx.remove_item("e1")
    idx.remove_selector("b")
    assert rec.take() == []
    # A removed item comes back as new.
    idx.update_item("e1", {"x": "2"})
    assert rec.take() == [("+", "a", "e1")]


def test_replacing_a_selector_reports_only_the_difference(idx: LabelIndex, rec: Recorder) -> None:
    for i in range(4):
        idx.update_item(f"e{i}", {"n": str(i)})
    idx.update_selector("s", sel('n in {"0", "1", "2"}'))
    rec.take()
    idx.update_selector("s", sel('n in {"1", "2", "3"}'))
    assert rec.take() == [("+", "s", "e3"), ("-", "s", "e0")]
    idx.update_selector("s", sel("n in {'3', '2', '1'}"))  # equal selector: nothing
    assert rec.take() == []
    idx.update_selector("s", sel('n != "9"'))  # now matching the empty label set
    assert rec.take() == [("+", "s", "e0")]
    idx.update_item("bare", {})
    assert rec.take() == [("+", "s", "bare")]


class CountingSelector(Selector):
    evaluations = 0

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        CountingSelector.evaluations += 1
        return super().evaluate(labels)


def counting(text: str) -> Selector:
    s = parse_selector(text)
    return CountingSelector(**{f.name: getattr(s, f.name) for f in dataclasses.fields(s)})


def test_label_change_evaluates_only_selectors_mentioning_it(idx: LabelIndex) -> None:
    for i in range(200):
        idx.update_selector(f"s{i}", counting(f'app{i} == "x" || other != "y"'))
    idx.update_selector("role", counting('role == "web"'))
    idx.update_selector("const", counting("!all()"))
    for i in range(50):
        idx.update_item(f"e{i}", {"role": "db", "unrelated": "0"}, ["p"])
    idx.update_parent_labels("p", {"unrelated": "0"})
    CountingSelector.evaluations = 0
    idx.update_item("e0", {"role": "web", "unrelated": "1"})
    assert CountingSelector.evaluations == 1
    assert idx.matches("role") == {"e0"}
    # A parent change re-evaluates only that parent's items, and only affected selectors.
    idx.update_item("loner", {}, ["q"])
    CountingSelector.evaluations = 0
    idx.update_parent_labels("q", {"role": "web", "zzz": "1"})
    assert CountingSelector.evaluations == 1
    assert idx.matches("role") == {"e0", "loner"}
    CountingSelector.evaluations = 0
    idx.update_parent_labels("p", {"unrelated": "2"})
    assert CountingSelector.evaluations == 0


def test_new_selector_not_matching_empty_labels_skips_unlabelled_items(idx: LabelIndex) -> None:
    for i in range(100):
        idx.update_item(f"e{i}", {"n": str(i)})
    idx.update_item("tagged", {"special": "1"})
    CountingSelector.evaluations = 0
    idx.update_selector("s", counting("has(special)"))
    assert CountingSelector.evaluations <= 2  # at most the empty label set, then "tagged"
    assert idx.matches("s") == {"tagged"}


def test_effective_labels_is_read_only(idx: LabelIndex) -> None:
    idx.update_item("e", {"a": "1"})
    view = idx.effective_labels("e")
    with pytest.raises(TypeError):
        view["a"] = "2"  # type: ignore[index]
    own = {"b": "1"}
    idx.update_item("f", own)
    own["b"] = "2"  # the index keeps its own copy
    assert idx.effective_labels("f") == {"b": "1"}


def test_guarded_selectors_are_checked_only_where_the_guard_holds(idx: LabelIndex) -> None:
    for i in range(100):
        idx.update_selector(f"s{i}", counting(f'app == "a{i}" && env != "dev"'))
    for i in range(100):
        idx.update_item(f"e{i}", {"app": f"a{i}", "env": "prod"})
    assert all(idx.matches(f"s{i}") == {f"e{i}"} for i in range(100))
    CountingSelector.evaluations = 0
    idx.update_item("e5", {"app": "a5", "env": "dev"})  # only s5 mentions env AND holds app
    assert CountingSelector.evaluations == 1
    assert idx.matches("s5") == frozenset()
    CountingSelector.evaluations = 0
    idx.update_item("e6", {"app": "a7", "env": "prod"})  # leaves s6, joins s7
    assert CountingSelector.evaluations == 2
    assert idx.matches("s6") == frozenset() and idx.matches("s7") == {"e6", "e7"}
    CountingSelector.evaluations = 0
    idx.update_item("new", {"app": "a9", "env": "prod"})
    assert CountingSelector.evaluations == 1
    assert idx.matches("s9") == {"e9", "new"}
