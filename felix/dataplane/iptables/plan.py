"""Changes to one table, and which of them can go into one restore without leaving a rule
that jumps to a chain that does not exist (or deleting a chain something still jumps to)."""

from __future__ import annotations

import graphlib
from dataclasses import dataclass
from typing import Mapping, Sequence

from felix.dataplane.iptables.readback import KernelChain


@dataclass(frozen=True)
class Change:
    name: str
    kind: str  # "write" (our chain or a kernel chain's hooks) | "delete" (our chain)
    lines: tuple[str, ...]
    new: bool = False  # our chain, absent from the kernel: needs a `:name` declaration
    refs_after: frozenset[str] = frozenset()  # our chains this chain jumps to once written


def restore_script(table: str, changes: Sequence[Change],
                   kernel: Mapping[str, KernelChain]) -> list[str]:
    """Declarations first (so every jump target exists), then rule edits, then flushes and
    deletions of unwanted chains (so their references are gone before `-X`)."""
    body: list[str] = [f":{c.name} - [0:0]" for c in changes if c.new]
    for c in changes:
        if c.kind == "write":
            body.extend(c.lines)
    deletes = [c for c in changes if c.kind == "delete"]
    for c in deletes:
        if kernel[c.name].hashes:
            body.append(f"-F {c.name}")
    body.extend(f"-X {c.name}" for c in deletes)
    return body


def split_valid(changes: Sequence[Change], kernel: Mapping[str, KernelChain],
                chain_prefix: str) -> tuple[list[Change], list[Change]]:
    """(accepted, held back): a write is held back if a chain it jumps to would not exist
    after the restore; a delete if some chain would still jump to it."""
    writes = {c.name: c for c in changes if c.kind == "write"}
    deletes = {c.name: c for c in changes if c.kind == "delete"}
    while True:
        refs_after: set[str] = set()
        for name, kc in kernel.items():
            if name in writes:
                refs_after |= writes[name].refs_after
            elif name not in deletes:
                refs_after |= kc.refs(chain_prefix)
        for name, w in writes.items():
            if name not in kernel:
                refs_after |= w.refs_after
        kept_deletes = {n: c for n, c in deletes.items() if n not in refs_after}
        exists_after = (set(kernel) - set(kept_deletes)) | set(writes)
        kept_writes = {n: c for n, c in writes.items() if c.refs_after <= exists_after}
        if len(kept_deletes) == len(deletes) and len(kept_writes) == len(writes):
            break
        writes, deletes = kept_writes, kept_deletes
    accepted = [c for c in changes if c.name in writes or c.name in deletes]
    accepted_names = {c.name for c in accepted}
    return accepted, [c for c in changes if c.name not in accepted_names]


def dependency_order(changes: Sequence[Change], kernel: Mapping[str, KernelChain],
                     chain_prefix: str) -> list[Change]:
    """Chains before the changes that need them: new chains before their referrers, and a
    deletion after every change that drops a reference to it. Bisection splits this list in
    halves and programs the first half first, so a half rarely waits for the other."""
    by_name = {c.name: c for c in changes}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for c in sorted(changes, key=lambda c: c.name):
        deps: list[str] = []
        if c.kind == "write":
            deps = [r for r in c.refs_after if r in by_name and by_name[r].kind == "write"]
        sorter.add(c.name, *deps)
        if c.kind == "delete":
            referrers = [n for n, kc in kernel.items()
                         if n in by_name and n != c.name and c.name in kc.refs(chain_prefix)]
            sorter.add(c.name, *referrers)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError:
        order = sorted(by_name)
    return [by_name[n] for n in order if n in by_name]
