"""Table tests for the selector grammar, evaluation semantics and canonical text."""

from __future__ import annotations

import re

import pytest

from felix.model.selector import MAX_DEPTH, MAX_LENGTH, Selector, SelectorError, parse_selector

# (selector text, canonical text)
CANONICAL = [
    ("", "all()"),
    ("   \t\n", "all()"),
    ("all()", "all()"),
    ("all( )", "all()"),
    ("a=='b'", 'a == "b"'),
    ('a == "b"', 'a == "b"'),
    ("  a   !=   'b'  ", 'a != "b"'),
    ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
    ('a == "it\'s"', 'a == "it\'s"'),
    ("a == ''", 'a == ""'),
    ('has(a)', "has(a)"),
    ('has( k8s.io/app-name_1 )', "has(k8s.io/app-name_1)"),
    ('a in {"y","x","y"}', 'a in {"x", "y"}'),
    ('a in {"x"}', 'a == "x"'),
    ('a not in {"x"}', 'a != "x"'),
    ('a in {}', "a in {}"),
    ('a not in { }', "a not in {}"),
    ('!(a == "x")', 'a != "x"'),
    ('!(a != "x")', 'a == "x"'),
    ('!(a in {"x","y"})', 'a not in {"x", "y"}'),
    ('!a not in {"x","y"}', 'a in {"x", "y"}'),
    ('!!has(a)', "has(a)"),
    ('!has(a)', "!has(a)"),
    ('!all()', "!all()"),
    ('((a == "x"))', 'a == "x"'),
    ('(a == "1" && b == "2") && c == "3"', 'a == "1" && b == "2" && c == "3"'),
    ('a == "1" && (b == "2" && c == "3")', 'a == "1" && b == "2" && c == "3"'),
    ('a == "1" || (b == "2" || c == "3")', 'a == "1" || b == "2" || c == "3"'),
    ('a == "1" || b == "2" && c == "3"', 'a == "1" || b == "2" && c == "3"'),
    ('a == "1" || (b == "2" && c == "3")', 'a == "1" || b == "2" && c == "3"'),
    ('(a == "1" || b == "2") && c == "3"', '(a == "1" || b == "2") && c == "3"'),
    ('!(has(a) && has(b))', "!(has(a) && has(b))"),
    ('!(has(a) || has(b))', "!(has(a) || has(b))"),
    ('has(b)&&has(a)', "has(b) && has(a)"),  # operands are never reordered
    # Words with a meaning elsewhere are ordinary label names where a label is expected.
    ('in == "x"', 'in == "x"'),
    ('not in {"x", "y"}', 'not in {"x", "y"}'),
    ('has == "x"', 'has == "x"'),
    ('all in {"a", "b"}', 'all in {"a", "b"}'),
    ('has(has)', "has(has)"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical(text: str, canonical: str) -> None:
    sel = parse_selector(text)
    assert sel.canonical == canonical
    assert str(sel) == canonical
    again = parse_selector(canonical)
    assert again == sel and hash(again) == hash(sel) and again.uid == sel.uid


def test_uid_shape_and_distinctness() -> None:
    uids = {parse_selector(text).uid for text, _ in CANONICAL}
    canonicals = {canonical for _, canonical in CANONICAL}
    assert len(uids) == len(canonicals)
    for uid in uids:
        assert re.fullmatch(r"[a-z0-9]{16}", uid)


def test_equality_is_by_canonical_text() -> None:
    a = parse_selector("a=='x'&&has(b)")
    b = parse_selector('(a == "x") && (has(b))')
    c = parse_selector('has(b) && a == "x"')
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert isinstance(a, Selector)


REJECT = [
    "a",
    "a ==",
    "a == b",
    'a = "b"',
    'a === "b"',
    'a == "b',
    "a == 'b\"",
    '"a" == "b"',
    '== "b"',
    '(a == "b"',
    'a == "b")',
    '()',
    'a == "b" &&',
    '&& a == "b"',
    'a == "b" & b == "c"',
    'a == "b" | b == "c"',
    'a == "b" b == "c"',
    "has()",
    "has(a",
    'has("a")',
    "has(a b)",
    "all(a)",
    "all(",
    "a in",
    'a in "x"',
    'a in {"x",}',
    'a in {"x" "y"}',
    'a in {x}',
    'a in {"x"',
    'a not {"x"}',
    'a not == "x"',
    "a == \"x\u0000\"",
    'a == "line\nbreak"',
    'a#b == "c"',
    'a == "b" ; rm -rf',
    'a:b == "c"',
    "!",
    '! && a == "b"',
    'a == "b" ||| b == "c"',
]


@pytest.mark.parametrize("text", REJECT)
def test_rejects(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_error_message_has_position() -> None:
    with pytest.raises(SelectorError, match="position 5"):
        parse_selector("a == b")
    with pytest.raises(SelectorError, match="position 9"):
        parse_selector('a == "b" ^')


def test_rejects_non_string() -> None:
    with pytest.raises(SelectorError):
        parse_selector(42)  # type: ignore[arg-type, unused-ignore]


def test_length_limit() -> None:
    ok = "a" * (MAX_LENGTH - 7) + ' == "x"'
    assert len(ok) == MAX_LENGTH
    parse_selector(ok)
    with pytest.raises(SelectorError, match="longer"):
        parse_selector(ok + " ")


def test_depth_limit() -> None:
    parse_selector("(" * MAX_DEPTH + "all()" + ")" * MAX_DEPTH)
    parse_selector("!" * MAX_DEPTH + "has(a)")
    with pytest.raises(SelectorError, match="deeper"):
        parse_selector("(" * (MAX_DEPTH + 1) + "all()" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(SelectorError, match="deeper"):
        parse_selector("!" * 4000 + "has(a)")
    # Long flat chains are not nesting: they must not hit the recursion limit.
    flat = " && ".join(f"has(l{i})" for i in range(300))
    assert len(parse_selector(flat).label_names()) == 300


# (selector, labels, expected)
EVALUATE = [
    ("", {}, True),
    ("all()", {"a": "b"}, True),
    ("!all()", {"a": "b"}, False),
    ('a == "x"', {"a": "x"}, True),
    ('a == "x"', {"a": "y"}, False),
    ('a == "x"', {}, False),
    ('a == ""', {"a": ""}, True),
    ('a == ""', {}, False),
    ('a != "x"', {"a": "x"}, False),
    ('a != "x"', {"a": "y"}, True),
    ('a != "x"', {}, True),  # absent counts as "not x"
    ('a in {"x", "y"}', {"a": "y"}, True),
    ('a in {"x", "y"}', {"a": "z"}, False),
    ('a in {"x", "y"}', {}, False),
    ('a in {}', {"a": ""}, False),
    ('a not in {"x", "y"}', {"a": "y"}, False),
    ('a not in {"x", "y"}', {"a": "z"}, True),
    ('a not in {"x", "y"}', {}, True),  # absent counts as "not in"
    ('a not in {}', {}, True),
    ("has(a)", {"a": ""}, True),
    ("has(a)", {"b": "a"}, False),
    ("!has(a)", {}, True),
    ('!a == "x"', {"a": "y"}, True),  # ! applies to the comparison
    ('!a == "x"', {}, True),
    # && binds tighter than ||
    ('a == "1" || b == "1" && c == "1"', {"a": "1"}, True),
    ('(a == "1" || b == "1") && c == "1"', {"a": "1"}, False),
    ('a == "1" && b == "1" || c == "1"', {"c": "1"}, True),
    ('a == "1" && (b == "1" || c == "1")', {"c": "1"}, False),
    ('!(a == "1" || b == "1")', {"b": "1"}, False),
    ('!a == "1" || b == "1"', {"a": "1"}, False),
    ('!a == "1" || b == "1"', {"a": "1", "b": "1"}, True),
    ("role == 'web' && env in {'prod', 'staging'} && !has(quarantine)",
     {"role": "web", "env": "prod"}, True),
    ("role == 'web' && env in {'prod', 'staging'} && !has(quarantine)",
     {"role": "web", "env": "prod", "quarantine": "true"}, False),
    ('k8s.io/app == "a-b_c.d"', {"k8s.io/app": "a-b_c.d"}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), EVALUATE)
def test_evaluate(text: str, labels: dict[str, str], expected: bool) -> None:
    sel = parse_selector(text)
    assert sel.evaluate(labels) is expected
    # The canonical form selects exactly the same.
    assert parse_selector(sel.canonical).evaluate(labels) is expected


@pytest.mark.parametrize(("text", "names"), [
    ("", set()),
    ("!all()", set()),
    ('a == "x" && (has(b) || c not in {"1", "2"})', {"a", "b", "c"}),
    ('!(a in {})', {"a"}),
    ('a == "1" || a != "2"', {"a"}),
])
def test_label_names(text: str, names: set[str]) -> None:
    assert parse_selector(text).label_names() == frozenset(names)


def test_parse_is_cached() -> None:
    assert parse_selector('zz == "cached"') is parse_selector('zz == "cached"')


@pytest.mark.parametrize(("text", "required"), [
    ("", None),
    ('a != "x"', None),
    ("!has(a)", None),
    ('a == "1" || b == "1"', None),
    ('a == "x"', ("a", {"x"})),
    ('a in {"x", "y"}', ("a", {"x", "y"})),
    ("has(a)", ("a", None)),
    ('has(a) && b in {"1", "2"} && c == "z"', ("c", {"z"})),
    ('(a == "1" || b == "2") && has(c)', ("c", None)),
    ('!(a != "x")', ("a", {"x"})),
])
def test_required_label(text: str, required: tuple[str, set[str] | None] | None) -> None:
    got = parse_selector(text).required_label()
    if required is None:
        assert got is None
    else:
        assert got is not None
        assert got[0] == required[0]
        assert got[1] == (frozenset(required[1]) if required[1] is not None else None)
