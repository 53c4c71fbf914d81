"""Incremental index from selectors to the items (endpoints) they match.

An item's effective labels are its parents' (profiles') labels, in parent order with the first
parent defining a label winning, overridden by the item's own labels.

Cost model. A selector's truth for an item depends only on the labels it mentions
(``Selector.label_names``), so when an item's effective labels change in the keys K, only the
selectors mentioning a key in K are re-evaluated (``_sels_by_label``). A selector mentioning no
label is constant; it is evaluated once when the item appears. A new item is treated as a
change from "no labels": the selectors mentioning its labels are evaluated, and every other
selector matches it iff it matches the empty label set (``a != "x"``, ``!has(a)``, ``all()``).
A new selector that does not match the empty label set can only match items carrying one of
its labels, so only those items (``_items_by_label``) are evaluated.

Most selectors also carry a necessary condition on one label (``app == "x" && ...``:
``Selector.required_label``). Such "guarded" selectors are indexed by that label's value
instead: an item is checked against a guarded selector only when it satisfies the guard (or is
currently matched by it), so loading and label changes cost about the number of selectors an
item could match, not the number that mention its labels.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

from felix.model.frozen import FrozenDict
from felix.model.selector import Selector

MatchCallback = Callable[[Hashable, Hashable], None]
K = TypeVar("K")


class LabelIndex:
    """Maintains, for every selector, the set of items whose effective labels it matches, and
    reports each (selector id, item id) transition into and out of match exactly once.

    Callbacks run synchronously, in the middle of an update: they must not call back into
    the index (record the event and act on it afterwards)."""

    def __init__(self, on_match: MatchCallback, on_unmatch: MatchCallback) -> None:
        self._on_match = on_match
        self._on_unmatch = on_unmatch

        self._selectors: dict[Hashable, Selector] = {}
        # Unguarded selectors by the labels they mention; guarded ones by (label, value), with
        # value None for "any value" (a has() guard).
        self._sels_by_label: dict[str, set[Hashable]] = {}
        self._sels_by_guard: dict[tuple[str, str | None], set[Hashable]] = {}
        # Selectors true for the empty label set, hence for any item not carrying their labels.
        self._sels_matching_empty: set[Hashable] = set()

        self._item_labels: dict[Hashable, Mapping[str, str]] = {}  # the item's own labels
        self._item_parents: dict[Hashable, tuple[str, ...]] = {}
        self._effective: dict[Hashable, dict[str, str]] = {}
        self._items_by_label: dict[str, set[Hashable]] = {}  # by effective label name
        self._items_by_value: dict[tuple[str, str], set[Hashable]] = {}  # effective labels
        self._parent_labels: dict[str, dict[str, str]] = {}
        self._items_by_parent: dict[str, set[Hashable]] = {}

        self._members: dict[Hashable, set[Hashable]] = {}  # sel_id -> matching item ids
        self._matched_by: dict[Hashable, set[Hashable]] = {}  # item_id -> matching sel ids

    # --- selectors ----------------------------------------------------------------------

    def update_selector(self, sel_id: Hashable, selector: Selector) -> None:
        old = self._selectors.get(sel_id)
        if old == selector:
            return
        if old is not None:
            self._unindex_selector(sel_id, old)
        self._selectors[sel_id] = selector
        candidates: Iterable[Hashable]
        guard = selector.required_label()
        if guard is not None:
            name, values = guard
            if values is None:
                self._sels_by_guard.setdefault((name, None), set()).add(sel_id)
                candidates = self._items_by_label.get(name, ())
            else:
                for v in values:
                    self._sels_by_guard.setdefault((name, v), set()).add(sel_id)
                candidates = set().union(*(self._items_by_value.get((name, v), ())
                                           for v in values))
        else:
            names = selector.label_names()
            for name in names:
                self._sels_by_label.setdefault(name, set()).add(sel_id)
            if selector.evaluate({}):
                self._sels_matching_empty.add(sel_id)
                candidates = self._effective
            else:
                candidates = set().union(*(self._items_by_label.get(n, ()) for n in names))
        now = {item for item in candidates if selector.evaluate(self._effective[item])}
        members = self._members.setdefault(sel_id, set())
        for item in [i for i in members if i not in now]:
            self._unmatch(sel_id, item)
        for item in now:
            if item not in members:
                self._match(sel_id, item)

    def remove_selector(self, sel_id: Hashable) -> None:
        old = self._selectors.pop(sel_id, None)
        if old is None:
            return
        self._unindex_selector(sel_id, old)
        for item in list(self._members.get(sel_id, ())):
            self._unmatch(sel_id, item)
        del self._members[sel_id]

    def _unindex_selector(self, sel_id: Hashable, selector: Selector) -> None:
        guard = selector.required_label()
        if guard is None:
            for name in selector.label_names():
                _discard(self._sels_by_label, name, sel_id)
            self._sels_matching_empty.discard(sel_id)
        else:
            name, values = guard
            for v in (None,) if values is None else values:
                _discard(self._sels_by_guard, (name, v), sel_id)

    # --- items and parents --------------------------------------------------------------

    def update_item(self, item_id: Hashable, labels: Mapping[str, str],
                    parent_ids: Sequence[str] = ()) -> None:
        parents = tuple(parent_ids)
        old_parents = self._item_parents.get(item_id, ())
        if old_parents != parents:
            for p in old_parents:
                _discard(self._items_by_parent, p, item_id)
            for p in parents:
                self._items_by_parent.setdefault(p, set()).add(item_id)
        self._item_parents[item_id] = parents
        # The model's labels are immutable: share them (both indexes hold every endpoint).
        self._item_labels[item_id] = labels if isinstance(labels, FrozenDict) else dict(labels)
        self._refresh(item_id)

    def remove_item(self, item_id: Hashable) -> None:
        if item_id not in self._effective:
            return
        for p in self._item_parents.pop(item_id):
            _discard(self._items_by_parent, p, item_id)
        del self._item_labels[item_id]
        for name, value in self._effective.pop(item_id).items():
            _discard(self._items_by_label, name, item_id)
            _discard(self._items_by_value, (name, value), item_id)
        for sel_id in list(self._matched_by.get(item_id, ())):
            self._unmatch(sel_id, item_id)
        self._matched_by.pop(item_id, None)

    def update_parent_labels(self, parent_id: str, labels: Mapping[str, str] | None) -> None:
        """``None`` means the parent is gone (its items keep naming it, and get its labels
        back if it reappears)."""
        if labels is None:
            if self._parent_labels.pop(parent_id, None) is None:
                return
        else:
            new = dict(labels)
            if self._parent_labels.get(parent_id) == new:
                return
            self._parent_labels[parent_id] = new
        for item_id in list(self._items_by_parent.get(parent_id, ())):
            self._refresh(item_id)

    # --- queries ------------------------------------------------------------------------

    def matches(self, sel_id: Hashable) -> frozenset[Hashable]:
        return frozenset(self._members.get(sel_id, ()))

    def effective_labels(self, item_id: Hashable) -> Mapping[str, str]:
        """Read-only view of the item's effective labels; KeyError for an unknown item."""
        return MappingProxyType(self._effective[item_id])

    # --- internals ----------------------------------------------------------------------

    def _compute_effective(self, item_id: Hashable) -> dict[str, str]:
        merged: dict[str, str] = {}
        # Reversed so that earlier parents, then the item's own labels, overwrite later ones.
        for p in reversed(self._item_parents[item_id]):
            merged.update(self._parent_labels.get(p, ()))
        merged.update(self._item_labels[item_id])
        return merged

    def _refresh(self, item_id: Hashable) -> None:
        new = self._compute_effective(item_id)
        old = self._effective.get(item_id)
        self._effective[item_id] = new
        is_new = old is None
        if old is None:
            old = {}
            self._matched_by[item_id] = set()
        changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        for name in changed:
            if name in old:
                _discard(self._items_by_value, (name, old[name]), item_id)
            if name in new:
                self._items_by_value.setdefault((name, new[name]), set()).add(item_id)
            if name not in new:
                _discard(self._items_by_label, name, item_id)
            elif name not in old:
                self._items_by_label.setdefault(name, set()).add(item_id)
        # Only selectors mentioning a changed label can change their verdict: the unguarded
        # ones by index; guarded ones only if the guard now holds or they matched before.
        candidates: set[Hashable] = set()
        for name in changed:
            candidates.update(self._sels_by_label.get(name, ()))
        matched = self._matched_by[item_id]
        for name, value in new.items():
            for key in ((name, value), (name, None)):
                for sel_id in self._sels_by_guard.get(key, ()):
                    if not changed.isdisjoint(self._selectors[sel_id].label_names()):
                        candidates.add(sel_id)
        for sel_id in matched:
            if not changed.isdisjoint(self._selectors[sel_id].label_names()):
                candidates.add(sel_id)
        if is_new:
            # Every other selector sees only absent labels: it matches iff it matches the
            # empty label set (this is also where label-free selectors are decided).
            for sel_id in self._sels_matching_empty:
                if sel_id not in candidates:
                    self._match(sel_id, item_id)
        for sel_id in candidates:
            now = self._selectors[sel_id].evaluate(new)
            if now != (sel_id in matched):
                if now:
                    self._match(sel_id, item_id)
                else:
                    self._unmatch(sel_id, item_id)

    def _match(self, sel_id: Hashable, item_id: Hashable) -> None:
        self._members[sel_id].add(item_id)
        self._matched_by[item_id].add(sel_id)
        self._on_match(sel_id, item_id)

    def _unmatch(self, sel_id: Hashable, item_id: Hashable) -> None:
        self._members[sel_id].discard(item_id)
        self._matched_by[item_id].discard(sel_id)
        self._on_unmatch(sel_id, item_id)


def _discard(index: dict[K, set[Hashable]], key: K, value: Hashable) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]
