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
import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

HASH_LEN = 16


@dataclass(frozen=True, slots=True)  # ~190k of these at 1,000 endpoints: no per-object dict
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


@functools.lru_cache(maxsize=1 << 16)
def _rule_parts(raw: str) -> tuple[str, bytes, str | None]:
    """(normalised text, content digest, target) of a rule spec. Cached: the same rule texts
    recur across thousands of endpoint chains and on every re-render, and this was ~18% of
    felix's CPU in a 1,000-endpoint cold start (bench B1)."""
    text = " ".join(raw.split())
    if text == raw:
        text = raw  # share the caller's (interned) string instead of keeping an equal copy
    return text, _content_digest(text), rule_target(text)


def hash_rules(chain: str, rules: Sequence[str]) -> tuple[HashedRule, ...]:
    out = []
    prev = b""
    head = chain.encode() + b"\0"
    for raw in rules:
        text, content, target = _rule_parts(raw)
        h = hashlib.sha224(head + prev + b"\0" + content).digest()
        out.append(HashedRule(base64.urlsafe_b64encode(h).decode()[:HASH_LEN], text, target))
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
