"""Parse `<save> -t <table>` output into the little we need to know about the kernel.

For our chains we keep the hash of each rule (None for a rule without our comment: foreign),
for kernel chains the same per position (foreign rules are None, but their positions matter
for rule indexes), and for every rule its jump target so that we never delete a chain that is
still referenced.

This runs on every periodic refresh over the whole table (190k rules at scale), so the common
rule is scanned inline with `str.find`: save output is canonical (single spaces, `-j`/`-g`,
our comment quoted). A rule that is not (tabs, quoted foreign strings, long options, several
comments) goes to the regexes, which define the semantics (`CommentFormat.find_hash`,
`rule_target`); a property test holds the two paths equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from felix.dataplane.iptables.hashing import HASH_LEN, CommentFormat, rule_target

_HASH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass
class KernelChain:
    hashes: list[str | None] = field(default_factory=list)
    targets: list[str | None] = field(default_factory=list)

    def refs(self, chain_prefix: str) -> set[str]:
        return {t for t in self.targets if t is not None and t.startswith(chain_prefix)}


class ParseError(ValueError):
    pass


def scan_rule(rest: str, comments: CommentFormat) -> tuple[str | None, str | None]:
    """(hash, target) of one saved rule spec: the regex definition, used as the fallback."""
    return comments.find_hash(rest), rule_target(rest)


def parse_save(output: str, table: str, comments: CommentFormat) -> dict[str, KernelChain]:
    """Chains of `table` in save output; missing table → no chains (nothing programmed yet)."""
    chains: dict[str, KernelChain] = {}
    marker = f'--comment "{comments.prefix}:'
    hash_at = len(marker)
    hash_chars = _HASH_CHARS.issuperset
    in_table = False
    current_name = ""
    current: KernelChain | None = None
    for line in output.splitlines():
        if not line or line[0] == "#":
            continue
        if line[0] == "*":
            in_table = line[1:].strip() == table
            continue
        if not in_table:
            continue
        if line.startswith("-A "):
            parts = line.split(None, 2)
            if len(parts) < 2:
                raise ParseError(f"bad rule line: {line!r}")
            name = parts[1]
            # Save output groups a chain's rules: skip the dict lookup while it goes on.
            if current is None or name != current_name:
                current = chains.setdefault(name, KernelChain())
                current_name = name
            rest = parts[2] if len(parts) > 2 else ""
            h: str | None = None
            target: str | None = None
            slow = ("\t" in rest or "  " in rest or "--jump" in rest or "--goto" in rest
                    or rest.count("--comment") > 1)
            if not slow:
                quotes = rest.count('"')
                if quotes == 2:  # our comment and nothing else quoted, or slow
                    i = rest.find(marker)
                    end = i + hash_at + HASH_LEN
                    h = rest[i + hash_at:end]
                    slow = (i < 0 or rest[end:end + 1] != '"'
                            or rest[end + 1:end + 2] not in ("", " ") or not hash_chars(h))
                else:
                    slow = quotes != 0 or "--comment" in rest
            if not slow:
                p = max(rest.rfind(" -j "), rest.rfind(" -g "))
                if p >= 0:
                    q = rest.find(" ", p + 4)
                    target = rest[p + 4:] if q < 0 else rest[p + 4:q]
                    slow = (not target or rest[p - 3:p] in (" -j", " -g")
                            or (p == 2 and rest[:2] in ("-j", "-g")))
                else:
                    slow = rest[:3] in ("-j ", "-g ")
            if slow:
                h, target = scan_rule(rest, comments)
            current.hashes.append(h)
            current.targets.append(target)
        elif line == "COMMIT":
            in_table = False
        elif line[0] == ":":
            name = line[1:].split(None, 1)[0]
            chains.setdefault(name, KernelChain())
        else:
            raise ParseError(f"unexpected save line: {line!r}")
    return chains
