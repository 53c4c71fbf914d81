"""Dispatch chains: interface name → that endpoint's chain, as a tree keyed by name prefix.

A node holding more than LEAF_MAX names splits them by the next character; a group of one
name gets a direct rule, a bigger group its own child node (``-o cali1+ -g cali-dt-cali1``).
Every rule is a goto, so the endpoint chain's RETURN goes straight back to the chain that
jumped to the root. The shape of a node depends only on the names under it, so adding or
removing one endpoint changes only the nodes on its path.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from felix.rules import names

LEAF_MAX = 16
Chains = dict[str, tuple[str, ...]]


def render_dispatch(root: str, ifnames: Iterable[str], outgoing: bool,
                    target: Callable[[str], str], default: list[str]) -> Chains:
    """All chains of one dispatch tree. ``outgoing`` matches with ``-o`` (else ``-i``);
    ``target(ifname)`` names the endpoint chain; ``default`` ends every node (packets of an
    interface under that prefix that matches no endpoint)."""
    flag = "-o" if outgoing else "-i"
    chains: Chains = {}

    def node(chain: str, prefix: str, group: list[str]) -> None:
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
                    node(child, child_prefix, sub)
        chains[chain] = tuple(rules + default)

    node(root, "", sorted(set(ifnames)))
    return chains
