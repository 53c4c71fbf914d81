"""Parse `<save> -t <table>` output into the little we need to know about the kernel.

For our chains we keep the hash of each rule (None for a rule without our comment: foreign),
for kernel chains the same per position (foreign rules are None, but their positions matter
for rule indexes), and for every rule its jump target so that we never delete a chain that is
still referenced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from felix.dataplane.iptables.hashing import CommentFormat, rule_target


@dataclass
class KernelChain:
    hashes: list[str | None] = field(default_factory=list)
    targets: list[str | None] = field(default_factory=list)

    def refs(self, chain_prefix: str) -> set[str]:
        return {t for t in self.targets if t is not None and t.startswith(chain_prefix)}


class ParseError(ValueError):
    pass


def parse_save(output: str, table: str, comments: CommentFormat) -> dict[str, KernelChain]:
    """Chains of `table` in save output; missing table → no chains (nothing programmed yet)."""
    chains: dict[str, KernelChain] = {}
    in_table = False
    for line in output.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            in_table = line[1:].strip() == table
            continue
        if not in_table:
            continue
        if line == "COMMIT":
            in_table = False
        elif line.startswith(":"):
            name = line[1:].split(None, 1)[0]
            chains.setdefault(name, KernelChain())
        elif line.startswith("-A "):
            parts = line.split(None, 2)
            if len(parts) < 2:
                raise ParseError(f"bad rule line: {line!r}")
            chain = chains.setdefault(parts[1], KernelChain())
            rest = parts[2] if len(parts) > 2 else ""
            chain.hashes.append(comments.find_hash(rest))
            chain.targets.append(rule_target(rest))
        else:
            raise ParseError(f"unexpected save line: {line!r}")
    return chains
