"""The dispatch-tree subtree cache must never change the output: random sequences of
interface-name sets rendered with the cache equal a fresh uncached render of each set."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.rules import dispatch, names

NAMES = [f"cali{a}{b}{c}" for a in "ab" for b in "0123456789" for c in "xyz"]


def _target(n: str) -> str:
    return "cali-tw-" + n


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sets(st.sampled_from(NAMES), max_size=len(NAMES)), min_size=1, max_size=6))
def test_cached_render_equals_uncached(sets: list[set[str]]) -> None:
    for ifnames in sets:
        cached = dispatch.render_dispatch(names.TO_WL_DISPATCH, ifnames, True, _target, ["-j DROP"],
                                          target_key="t")
        plain = dispatch.render_dispatch(names.TO_WL_DISPATCH, ifnames, True, _target, ["-j DROP"])
        assert cached == plain


def test_subtrees_not_shared_across_roots_flags_or_defaults() -> None:
    ifnames = NAMES[:40]
    a = dispatch.render_dispatch(names.TO_WL_DISPATCH, ifnames, True, _target, ["-j DROP"], target_key="t")
    b = dispatch.render_dispatch(names.FROM_WL_DISPATCH, ifnames, False, _target, ["-j DROP"], target_key="t")
    c = dispatch.render_dispatch(names.TO_WL_DISPATCH, ifnames, True, _target, ["-j RETURN"], target_key="t")
    assert all(r.startswith("-o") for body in a.values() for r in body[:-1])
    assert all(r.startswith("-i") for body in b.values() for r in body[:-1])
    assert {body[-1] for body in c.values()} == {"-j RETURN"}
    assert len(a) > 1  # a real tree, so subtrees were cached and reused
