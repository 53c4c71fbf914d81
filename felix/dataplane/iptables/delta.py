"""Minimal restore lines turning one chain's kernel rules into the desired ones.

Indexes in `-R/-D/-I <chain> <n>` are 1-based and refer to the chain as it is at that line of
the restore transaction, so edits are emitted from the end of the chain towards its start:
an edit never shifts the indexes of the edits still to come.
"""

from __future__ import annotations

import difflib
from typing import Sequence

from felix.dataplane.iptables.hashing import CommentFormat, HashedRule

# Above this many mismatched rules on each side we skip difflib's quadratic worst case and
# treat the differing middle as one block.
_DIFF_LIMIT = 4000

_Opcode = tuple[str, int, int, int, int]


def _opcodes(actual: Sequence[str | None], desired: Sequence[str]) -> list[_Opcode]:
    n_a, n_d = len(actual), len(desired)
    pre = 0
    while pre < n_a and pre < n_d and actual[pre] == desired[pre]:
        pre += 1
    suf = 0
    while (suf < n_a - pre and suf < n_d - pre and
           actual[n_a - 1 - suf] == desired[n_d - 1 - suf]):
        suf += 1
    a_mid, d_mid = actual[pre:n_a - suf], desired[pre:n_d - suf]
    if not a_mid and not d_mid:
        return []
    if len(a_mid) > _DIFF_LIMIT or len(d_mid) > _DIFF_LIMIT or not a_mid or not d_mid:
        return [("replace", pre, n_a - suf, pre, n_d - suf)]
    matcher = difflib.SequenceMatcher(None, a_mid, d_mid, autojunk=False)
    return [(tag, i1 + pre, i2 + pre, j1 + pre, j2 + pre)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def chain_lines(chain: str, actual: Sequence[str | None] | None,
                desired: Sequence[HashedRule], comments: CommentFormat) -> list[str]:
    """Lines for one of our chains; `actual` None means the chain does not exist yet (the
    caller declares it). A chain holding a foreign rule is rewritten from scratch."""
    def rewrite(flush: bool) -> list[str]:
        return ([f"-F {chain}"] if flush else []) + [
            f"-A {chain} {comments.render(r)}" for r in desired]

    if actual is None:
        return rewrite(False)
    want = [r.hash for r in desired]
    if list(actual) == want:
        return []
    if any(h is None for h in actual):
        return rewrite(True)
    rewrite_len = len(desired) + 1
    lines: list[str] = []
    cur_len = len(actual)
    for _tag, i1, i2, j1, j2 in reversed(_opcodes(actual, want)):
        common = min(i2 - i1, j2 - j1)
        for k in range(common):
            lines.append(f"-R {chain} {i1 + k + 1} {comments.render(desired[j1 + k])}")
        for _ in range(i2 - i1 - common):
            lines.append(f"-D {chain} {i1 + common + 1}")
            cur_len -= 1
        for t, j in enumerate(range(j1 + common, j2)):
            pos = i1 + common + 1 + t
            verb = f"-A {chain}" if pos == cur_len + 1 else f"-I {chain} {pos}"
            lines.append(f"{verb} {comments.render(desired[j])}")
            cur_len += 1
        if len(lines) >= rewrite_len:
            return rewrite(True)
    return lines


def hook_lines(chain: str, actual: Sequence[str | None] | None,
               desired: Sequence[HashedRule], comments: CommentFormat) -> list[str]:
    """Lines that put our hook rules at the top of a kernel chain, in order, and remove any
    other rule of ours from it; foreign rules (hash None) are never touched."""
    cur: list[str | None] = list(actual or [])
    lines: list[str] = []
    want = [r.hash for r in desired]
    for i, rule in enumerate(desired):
        if i < len(cur) and cur[i] == rule.hash:
            continue
        if i < len(cur) and cur[i] is not None and cur[i] not in want[i + 1:]:
            lines.append(f"-R {chain} {i + 1} {comments.render(rule)}")
            cur[i] = rule.hash
        else:
            lines.append(f"-I {chain} {i + 1} {comments.render(rule)}")
            cur.insert(i, rule.hash)
    for j in range(len(cur) - 1, len(desired) - 1, -1):
        if cur[j] is not None:
            lines.append(f"-D {chain} {j + 1}")
    return lines
