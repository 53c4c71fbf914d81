"""Desired chains grouped by owner, diffed against what was emitted.

Owners (a policy, a profile, an interface, the dispatch trees, ...) replace their whole set of
chains at once; flush() emits ChainSet for chains whose rules changed and ChainRemoved for
chains no owner wants any more, ordered so that a chain is set before any chain in the same
batch that jumps to it, and removed after every removed chain that jumped to it.
"""

from __future__ import annotations

import re
import sys
from typing import Hashable, Iterable, Mapping

from felix.messages import ChainRemoved, ChainSet, Table

ChainKey = tuple[int, Table, str]  # (ip_version, table, name)


_JUMP = re.compile(r"\s-[jg][ \t]+(\S+)")


def jump_targets(rules: Iterable[str]) -> set[str]:
    # One regex pass over the joined chain: splitting every rule into tokens was the
    # biggest cost of ordering a flush's chains.
    return set(_JUMP.findall(" " + "\n".join(rules)))


def _topo(keys: list[ChainKey], contents: Mapping[ChainKey, tuple[str, ...]]) -> list[ChainKey]:
    """``keys`` ordered so that jump targets (within ``keys``) come first."""
    batch = set(keys)
    order: list[ChainKey] = []
    state: dict[ChainKey, int] = {}  # 1 visiting, 2 done
    for root in sorted(keys):
        if root in state:
            continue
        stack: list[tuple[ChainKey, list[ChainKey]]] = []
        state[root] = 1
        stack.append((root, _deps(root, contents, batch)))
        while stack:
            key, deps = stack[-1]
            if deps:
                dep = deps.pop()
                if dep not in state:
                    state[dep] = 1
                    stack.append((dep, _deps(dep, contents, batch)))
            else:
                stack.pop()
                state[key] = 2
                order.append(key)
    return order


def _deps(key: ChainKey, contents: Mapping[ChainKey, tuple[str, ...]],
          batch: set[ChainKey]) -> list[ChainKey]:
    v, table, _ = key
    deps = [(v, table, t) for t in jump_targets(contents.get(key, ()))]
    return sorted(d for d in deps if d in batch and d != key)


class ChainStore:
    def __init__(self) -> None:
        self._desired: dict[ChainKey, tuple[str, ...]] = {}
        self._keys: dict[ChainKey, ChainKey] = {}  # each desired key to itself, see canonical()
        self._owner_of: dict[ChainKey, Hashable] = {}
        self._owned: dict[Hashable, set[ChainKey]] = {}
        self._emitted: dict[ChainKey, tuple[str, ...]] = {}
        self._changed: set[ChainKey] = set()

    def set_owner(self, owner: Hashable, chains: Mapping[ChainKey, tuple[str, ...]]) -> None:
        old = self._owned.get(owner, set())
        for key in old - chains.keys():
            if self._owner_of.get(key) == owner:
                del self._owner_of[key]
                del self._desired[key]
                del self._keys[key]
                self._changed.add(key)
        for key, rules in chains.items():
            current = self._desired.get(key)
            # Owners hand back their whole chain set each time (the dispatch trees on every
            # endpoint add/remove): only chains whose rules changed may cost anything in flush.
            if current is rules and self._owner_of.get(key) == owner:
                continue
            if current is None or current != rules:
                # Many chains repeat the same rule texts (endpoint chains, both families):
                # keep one copy of each string.
                rules = tuple(sys.intern(r) for r in rules)
                self._changed.add(key)
            else:
                rules = current
            self._desired[key] = rules
            self._keys.setdefault(key, key)
            self._owner_of[key] = owner
        if chains:
            self._owned[owner] = set(chains)
        else:
            self._owned.pop(owner, None)

    def owned(self, owner: Hashable) -> frozenset[ChainKey]:
        return frozenset(self._owned.get(owner, ()))

    def canonical(self, key: ChainKey) -> ChainKey:
        """The stored tuple equal to ``key`` (``key`` itself if the chain is not desired): the
        chain sets of 1,000 endpoints share their keys instead of holding 100k copies."""
        return self._keys.get(key, key)

    def desired(self) -> Mapping[ChainKey, tuple[str, ...]]:
        return self._desired

    def flush(self) -> tuple[list[ChainSet], list[ChainRemoved]]:
        to_set = [k for k in self._changed
                  if k in self._desired and self._emitted.get(k) is not self._desired[k]
                  and self._emitted.get(k) != self._desired[k]]
        to_remove = [k for k in self._changed if k not in self._desired and k in self._emitted]
        sets = [ChainSet(v, t, n, self._desired[(v, t, n)])
                for v, t, n in _topo(to_set, self._desired)]
        removes = [ChainRemoved(v, t, n)
                   for v, t, n in reversed(_topo(to_remove, self._emitted))]
        for k in to_set:
            self._emitted[k] = self._desired[k]
        for k in to_remove:
            del self._emitted[k]
        self._changed.clear()
        return sets, removes
