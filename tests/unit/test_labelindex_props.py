"""Property test: random update sequences against LabelIndex agree with brute force after
every step, and the callback stream is exactly the sequence of net transitions."""

from __future__ import annotations

from typing import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.calc.labelindex import LabelIndex
from felix.model.selector import parse_selector
from tests.unit.test_labelindex import Recorder
from tests.unit.test_selector_props import LABEL_NAMES, VALUES, expressions

SEL_IDS = ["s0", "s1", "s2", "s3"]
ITEM_IDS = ["e0", "e1", "e2", "e3", "e4"]
PARENT_IDS = ["p0", "p1", "p2"]

labels = st.dictionaries(st.sampled_from(LABEL_NAMES[:4]), st.sampled_from(VALUES[:3]),
                         max_size=3)
# Parents share few label names, so that parent order often decides an effective label.
parent_labels = st.dictionaries(st.sampled_from(LABEL_NAMES[:2]), st.sampled_from(VALUES[:3]),
                                min_size=1, max_size=2)
ops = st.one_of(
    st.tuples(st.just("sel"), st.sampled_from(SEL_IDS), expressions.map(lambda g: g[1])),
    st.tuples(st.just("delsel"), st.sampled_from(SEL_IDS)),
    st.tuples(st.just("item"), st.sampled_from(ITEM_IDS), labels,
              st.lists(st.sampled_from(PARENT_IDS), max_size=3)),
    st.tuples(st.just("delitem"), st.sampled_from(ITEM_IDS)),
    st.tuples(st.just("parent"), st.sampled_from(PARENT_IDS), st.none() | parent_labels),
    st.tuples(st.just("parent"), st.sampled_from(PARENT_IDS), parent_labels),
)


class Model:
    """The obvious, slow implementation."""

    def __init__(self) -> None:
        self.selectors: dict[str, str] = {}
        self.items: dict[str, tuple[dict[str, str], list[str]]] = {}
        self.parents: dict[str, dict[str, str]] = {}

    def effective(self, item_id: str) -> dict[str, str]:
        own, parent_ids = self.items[item_id]
        result: dict[str, str] = {}
        for name in set(own) | {k for p in parent_ids for k in self.parents.get(p, {})}:
            if name in own:
                result[name] = own[name]
            else:
                result[name] = next(self.parents[p][name] for p in parent_ids
                                    if name in self.parents.get(p, {}))
        return result

    def pairs(self) -> set[tuple[Hashable, Hashable]]:
        return {(s, i) for s, text in self.selectors.items() for i in self.items
                if parse_selector(text).evaluate(self.effective(i))}


@settings(max_examples=200, deadline=None)
@given(st.lists(ops, min_size=10, max_size=50))
def test_random_updates_match_brute_force(steps: list[tuple[object, ...]]) -> None:
    rec = Recorder()
    idx = LabelIndex(rec.on_match, rec.on_unmatch)
    model = Model()
    before: set[tuple[Hashable, Hashable]] = set()
    for step in steps:
        kind = step[0]
        if kind == "sel":
            _, sid, text = step
            model.selectors[str(sid)] = str(text)
            idx.update_selector(sid, parse_selector(str(text)))
        elif kind == "delsel":
            model.selectors.pop(str(step[1]), None)
            idx.remove_selector(step[1])
        elif kind == "item":
            _, iid, lab, parents = step
            model.items[str(iid)] = (dict(lab), list(parents))  # type: ignore[call-overload]
            idx.update_item(iid, lab, parents)  # type: ignore[arg-type]
        elif kind == "delitem":
            model.items.pop(str(step[1]), None)
            idx.remove_item(step[1])
        else:
            _, pid, lab = step
            if lab is None:
                model.parents.pop(str(pid), None)
            else:
                model.parents[str(pid)] = dict(lab)  # type: ignore[call-overload]
            idx.update_parent_labels(str(pid), lab)  # type: ignore[arg-type]

        expected = model.pairs()
        # Each event of this step is a net transition: nothing flickers, nothing repeats.
        events = rec.take()
        assert {(s, i) for _, s, i in events} == expected ^ before
        assert len(events) == len(expected ^ before)
        assert rec.pairs == expected
        for sid in SEL_IDS:
            assert idx.matches(sid) == {i for s, i in expected if s == sid}
        for iid in model.items:
            assert dict(idx.effective_labels(iid)) == model.effective(iid)
        before = expected
