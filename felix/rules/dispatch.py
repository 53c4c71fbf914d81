"""Dispatch chains: interface name → that endpoint's chain, as a tree keyed by name prefix.

A node holding more than LEAF_MAX names splits them by the next character; a group of one
name gets a direct rule, a bigger group its own child node (``-o cali1+ -g cali-dt-cali1``).
Every rule is a goto, so the endpoint chain's RETURN goes straight back to the chain that
jumped to the root. The shape of a node depends only on the names under it, so adding or
removing one endpoint changes only the nodes on its path.
"""

from __future__ import annotations

import operator
import os
from typing import Callable, Hashable, Iterable

from felix.rules import names

LEAF_MAX = 16
Chains = dict[str, tuple[str, ...]]


# Subtrees already rendered, keyed by everything their chains depend on. Every endpoint
# add/remove re-renders the whole tree (bench B3: 44% of felix's CPU under churn at 1,000
# endpoints); with this, only the nodes on the changed name's path are formatted again.
_subtrees: dict[Hashable, Chains] = {}
_SUBTREES_MAX = 8192


def render_dispatch(root: str, ifnames: Iterable[str], outgoing: bool,
                    target: Callable[[str], str], default: list[str],
                    target_key: Hashable = None) -> Chains:
    """All chains of one dispatch tree. ``outgoing`` matches with ``-o`` (else ``-i``);
    ``target(ifname)`` names the endpoint chain; ``default`` ends every node (packets of an
    interface under that prefix that matches no endpoint). ``target_key``, when given,
    identifies ``target`` (same key, same names) and lets unchanged subtrees be reused."""
    flag = "-o" if outgoing else "-i"
    chains: Chains = {}
    if len(_subtrees) > _SUBTREES_MAX:
        _subtrees.clear()

    def node(chain: str, prefix: str, group: list[str], out: Chains) -> None:
        """Adds the chains of the subtree at `chain` (its own and its descendants') to out."""
        if target_key is None:
            render(chain, prefix, group, out)
            return
        key = (root, flag, target_key, tuple(default), chain, tuple(group))
        sub = _subtrees.get(key)
        if sub is None:
            sub = {}
            render(chain, prefix, group, sub)
            _subtrees[key] = sub
        out.update(sub)

    def render(chain: str, prefix: str, group: list[str], chains: Chains) -> None:
        rules: list[str] = []
        if len(group) <= LEAF_MAX:
            rules = [f"{flag} {n} -g {target(n)}" for n in group]
        else:
            # Split after the names' common prefix: no node has a single child.
            pos = len(os.path.commonprefix(group))
            by_char: dict[str, list[str]] = {}
            for n in group:
                if len(n) == pos:
                    rules.append(f"{flag} {n} -g {target(n)}")
                else:
                    by_char.setdefault(n[pos], []).append(n)
            for ch in sorted(by_char):
                sub = by_char[ch]
                if len(sub) == 1:
                    rules.append(f"{flag} {sub[0]} -g {target(sub[0])}")
                else:
                    child_prefix = group[0][:pos] + ch
                    child = names.dispatch_node(root, child_prefix)
                    rules.append(f"{flag} {child_prefix}+ -g {child}")
                    node(child, child_prefix, sub, chains)
        chains[chain] = tuple(rules + default)

    group = list(ifnames)
    # Callers usually pass names already sorted and unique: checking is linear, sorting not.
    if not all(map(operator.lt, group, group[1:])):
        group = sorted(set(group))
    node(root, "", group, chains)
    return chains
