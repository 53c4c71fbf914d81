"""Which tag and selector ipsets exist and who is in them, cluster-wide, incrementally.

A set exists (per family) while some active policy/profile references it in a rule of that
family. Its members are the addresses of every matching endpoint in the cluster, reference
counted because two endpoints may share an address. Changes are collected per touched member,
with whether it was in the set as last emitted (its state when first touched since then), and
turned into IpsetSet/IpsetDelta/IpsetRemoved, so a burst of changes costs messages proportional
to the net change. No mirror of the emitted members is kept: at 233k members it was the
biggest single structure of the calculation (12 MB).
"""

from __future__ import annotations

from typing import Final, Hashable, Literal, Mapping, Sequence

from felix.calc.labelindex import LabelIndex
from felix.messages import IpsetDelta, IpsetRemoved, IpsetSet, Message
from felix.model.selector import Selector
from felix.rules.matches import SetRef, set_name

EndpointId = Hashable
FamilyRef = tuple[int, SetRef]
SET_TYPE: Final[Literal["hash:net"]] = "hash:net"  # nets may be wider than one address


class IpsetCalculator:
    def __init__(self, ip_versions: Sequence[int]) -> None:
        self._versions = tuple(ip_versions)
        self._index = LabelIndex(self._on_match, self._on_unmatch)
        self._refs: dict[FamilyRef, int] = {}
        self._owner_refs: dict[Hashable, frozenset[FamilyRef]] = {}
        self._selectors: dict[str, Selector] = {}  # uid -> selector, for active selector sets
        # Each active ref mapped to itself: every membership entry (_ep_sets) shares that one
        # tuple instead of holding its own copy (6 MB at 233k memberships).
        self._active: dict[SetRef, SetRef] = {}

        self._ep_ips: dict[EndpointId, dict[int, tuple[str, ...]]] = {}
        self._ep_profiles: dict[EndpointId, tuple[str, ...]] = {}
        self._profile_eps: dict[str, set[EndpointId]] = {}
        self._profile_tags: dict[str, tuple[str, ...]] = {}
        self._ep_tags: dict[EndpointId, frozenset[str]] = {}
        self._tag_eps: dict[str, set[EndpointId]] = {}

        # Which active sets each endpoint is counted in. Not kept the other way round: a
        # set's endpoints are its selector's matches in _index, or its tag's _tag_eps.
        self._ep_sets: dict[EndpointId, set[SetRef]] = {}
        self._counts: dict[SetRef, dict[int, dict[str, int]]] = {}

        # Touched members → "was in the set as emitted"; None: (re)send the whole set.
        self._dirty: dict[FamilyRef, dict[str, bool] | None] = {}
        self._emitted: set[FamilyRef] = set()
        self._fixed: dict[tuple[int, str], frozenset[str]] = {}
        self._fixed_emitted: dict[tuple[int, str], frozenset[str]] = {}

    # --- endpoints and profiles ---------------------------------------------------------

    def update_endpoint(self, ep: EndpointId, labels: Mapping[str, str],
                        profile_ids: tuple[str, ...], ips: dict[int, tuple[str, ...]]) -> None:
        old_ips = self._ep_ips.get(ep)
        if old_ips is not None and old_ips != ips:
            for ref in self._ep_sets.get(ep, ()):
                self._count(ref, old_ips, -1)
                self._count(ref, ips, +1)
        self._ep_ips[ep] = ips
        old_profiles = self._ep_profiles.get(ep, ())
        if old_profiles != profile_ids:
            for p in old_profiles:
                _discard(self._profile_eps, p, ep)
            for p in profile_ids:
                self._profile_eps.setdefault(p, set()).add(ep)
            self._ep_profiles[ep] = profile_ids
        self._index.update_item(ep, labels, profile_ids)
        self._refresh_tags(ep)

    def remove_endpoint(self, ep: EndpointId) -> None:
        if ep not in self._ep_ips:
            return
        self._index.remove_item(ep)
        for ref in list(self._ep_sets.get(ep, ())):
            self._leave(ref, ep)
        for p in self._ep_profiles.pop(ep, ()):
            _discard(self._profile_eps, p, ep)
        for tag in self._ep_tags.pop(ep, frozenset()):
            _discard(self._tag_eps, tag, ep)
        self._ep_sets.pop(ep, None)
        del self._ep_ips[ep]

    def update_profile_labels(self, profile_id: str, labels: Mapping[str, str] | None) -> None:
        self._index.update_parent_labels(profile_id, labels)

    def update_profile_tags(self, profile_id: str, tags: tuple[str, ...] | None) -> None:
        if tags:
            self._profile_tags[profile_id] = tags
        else:
            self._profile_tags.pop(profile_id, None)
        for ep in list(self._profile_eps.get(profile_id, ())):
            self._refresh_tags(ep)

    def _refresh_tags(self, ep: EndpointId) -> None:
        new = frozenset(t for p in self._ep_profiles.get(ep, ())
                        for t in self._profile_tags.get(p, ()))
        old = self._ep_tags.get(ep, frozenset())
        if new == old:
            return
        self._ep_tags[ep] = new
        for tag in old - new:
            _discard(self._tag_eps, tag, ep)
            self._leave(("tag", tag), ep)
        for tag in new - old:
            self._tag_eps.setdefault(tag, set()).add(ep)
            if ("tag", tag) in self._active:
                self._join(("tag", tag), ep)

    # --- references ---------------------------------------------------------------------

    def set_owner_refs(self, owner: Hashable, refs: frozenset[FamilyRef],
                       selectors: Mapping[str, Selector]) -> None:
        """The sets ``owner`` (an active policy or profile) references now; ``selectors``
        maps the uid of each referenced selector to the selector."""
        old = self._owner_refs.get(owner, frozenset())
        if old == refs:
            return
        if refs:
            self._owner_refs[owner] = refs
        else:
            self._owner_refs.pop(owner, None)
        for fref in refs - old:
            self._refs[fref] = self._refs.get(fref, 0) + 1
            if self._refs[fref] == 1:
                if fref in self._emitted:
                    # Dropped and taken back before a flush: the touched members still say
                    # what differs from the emitted set.
                    self._dirty.setdefault(fref, {})
                else:
                    self._dirty[fref] = None
                v, ref = fref
                if ref not in self._active:
                    self._activate(ref, selectors)
        for fref in old - refs:
            self._refs[fref] -= 1
            if self._refs[fref] == 0:
                del self._refs[fref]
                if fref in self._emitted:
                    self._dirty.setdefault(fref, {})
                else:
                    self._dirty[fref] = None
                v, ref = fref
                if not any((w, ref) in self._refs for w in self._versions):
                    self._deactivate(ref)

    def _activate(self, ref: SetRef, selectors: Mapping[str, Selector]) -> None:
        self._active[ref] = ref
        self._counts[ref] = {v: {} for v in self._versions}
        kind, value = ref
        if kind == "tag":
            for ep in self._tag_eps.get(value, ()):
                self._join(ref, ep)
        else:
            self._selectors[value] = selectors[value]
            self._index.update_selector(value, selectors[value])

    def _deactivate(self, ref: SetRef) -> None:
        kind, value = ref
        if kind == "selector":
            self._index.remove_selector(value)  # unmatches, so leaves, every member
            del self._selectors[value]
        else:
            for ep in self._tag_eps.get(value, ()):
                self._leave(ref, ep)
        self._active.pop(ref, None)
        self._counts.pop(ref, None)

    # --- membership ---------------------------------------------------------------------

    def _on_match(self, uid: Hashable, ep: Hashable) -> None:
        ref: SetRef = ("selector", str(uid))
        if ref in self._active:
            self._join(ref, ep)

    def _on_unmatch(self, uid: Hashable, ep: Hashable) -> None:
        self._leave(("selector", str(uid)), ep)

    def _join(self, ref: SetRef, ep: EndpointId) -> None:
        ref = self._active[ref]
        sets = self._ep_sets.setdefault(ep, set())
        if ref in sets:
            return
        sets.add(ref)
        self._count(ref, self._ep_ips[ep], +1)

    def _leave(self, ref: SetRef, ep: EndpointId) -> None:
        sets = self._ep_sets.get(ep)
        if sets is None or ref not in sets:
            return
        sets.discard(ref)
        self._count(ref, self._ep_ips[ep], -1)

    def _count(self, ref: SetRef, ips: dict[int, tuple[str, ...]], delta: int) -> None:
        counts = self._counts[ref]
        for v in self._versions:
            per = counts[v]
            for ip in ips.get(v, ()):
                n = per.get(ip, 0) + delta
                if n:
                    per[ip] = n
                else:
                    del per[ip]
                if n == 0 or (n == 1 and delta > 0):
                    touched = self._dirty.setdefault((v, ref), {})
                    if touched is not None:
                        touched.setdefault(ip, n == 0)  # n == 0: it was there until now

    # --- fixed sets (pools, hosts) ------------------------------------------------------

    def set_fixed(self, ip_version: int, name: str, members: frozenset[str]) -> None:
        self._fixed[(ip_version, name)] = members

    # --- queries and output -------------------------------------------------------------

    def members(self, ip_version: int, ref: SetRef) -> frozenset[str]:
        counts = self._counts.get(ref)
        return frozenset(counts[ip_version]) if counts else frozenset()

    @property
    def active_refs(self) -> frozenset[SetRef]:
        return frozenset(self._active)

    def take_messages(self) -> tuple[list[Message], list[Message]]:
        """(creations and member deltas, removals)."""
        ups: list[Message] = []
        downs: list[Message] = []
        for fref in sorted(self._dirty, key=repr):
            touched = self._dirty[fref]
            v, ref = fref
            name = set_name(v, ref)
            if fref in self._refs:
                current = self._counts[ref][v]
                if touched is None or fref not in self._emitted:
                    self._emitted.add(fref)
                    ups.append(IpsetSet(v, name, SET_TYPE, frozenset(current)))
                    continue
                added = frozenset(ip for ip, was in touched.items()
                                  if not was and ip in current)
                removed = frozenset(ip for ip, was in touched.items()
                                    if was and ip not in current)
                if added or removed:
                    ups.append(IpsetDelta(v, name, added, removed))
            elif fref in self._emitted:
                self._emitted.discard(fref)
                downs.append(IpsetRemoved(v, name))
        self._dirty.clear()
        for (v, name), members in sorted(self._fixed.items()):
            old = self._fixed_emitted.get((v, name))
            if old is None:
                ups.append(IpsetSet(v, name, SET_TYPE, members))
            elif old != members:
                ups.append(IpsetDelta(v, name, members - old, old - members))
            self._fixed_emitted[(v, name)] = members
        self._fixed.clear()
        return ups, downs


def _discard(index: dict[str, set[EndpointId]], key: str, value: EndpointId) -> None:
    s = index.get(key)
    if s is not None:
        s.discard(value)
        if not s:
            del index[key]
