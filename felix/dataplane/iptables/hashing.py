"""Rule hashes: the comment that lets us recognise our own rules on read-back.

The hash of rule i depends on the chain name, the previous rule's content hash and rule i's
text. Tying it to the neighbour makes moves and reorders visible (the same rule after a
different predecessor gets a different hash) while keeping a one-rule edit local: replacing
rule i changes the hashes of rules i and i+1 only, so the delta stays a couple of lines even
in a 10,000-rule chain (a fully chained hash would force rewriting every later rule).
Equal hash sequences imply equal rule sequences (up to hash collisions), which is all the
read-back needs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

HASH_LEN = 16


@dataclass(frozen=True)
class HashedRule:
    hash: str
    text: str  # the rule spec without chain, action or comment: "-p tcp --dport 80 -j ACCEPT"
    target: str | None  # -j/-g target, for reference tracking


_TARGET_RE = re.compile(r"(?:^|\s)-(?:j|g|-jump|-goto)\s+([^\s\"]+)")


def rule_target(rule: str) -> str | None:
    """Last -j/-g target of a rule spec (the jump that matters for chain references)."""
    found = _TARGET_RE.findall(rule)
    return found[-1] if found else None


def _content_digest(text: str) -> bytes:
    return hashlib.sha224(text.encode()).digest()


def hash_rules(chain: str, rules: Sequence[str]) -> tuple[HashedRule, ...]:
    out = []
    prev = b""
    for text in rules:
        text = " ".join(text.split())
        content = _content_digest(text)
        h = hashlib.sha224(chain.encode() + b"\0" + prev + b"\0" + content).digest()
        out.append(HashedRule(base64.urlsafe_b64encode(h).decode()[:HASH_LEN], text,
                              rule_target(text)))
        prev = content
    return tuple(out)


class CommentFormat:
    """Renders and recognises the `-m comment --comment "<prefix>:<hash>"` marker."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._re = re.compile(r"--comment\s+\"?" + re.escape(prefix) +
                              r":([A-Za-z0-9_-]{%d})\"?(?:\s|$)" % HASH_LEN)

    def render(self, rule: HashedRule) -> str:
        return f'-m comment --comment "{self.prefix}:{rule.hash}" {rule.text}'.rstrip()

    def find_hash(self, saved_rule: str) -> str | None:
        m = self._re.search(saved_rule)
        return m.group(1) if m else None
