"""Property tests: random selector ASTs → text (random spacing, quoting, redundant
parentheses) → parse. The canonical text must be a fixed point, and evaluation must agree with
a direct evaluation of the generated AST."""

from __future__ import annotations

from typing import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.model.selector import parse_selector

# A tiny independent AST: tuples, evaluated by `reference` below.
Ast = tuple[object, ...]
Labels = Mapping[str, str]

# Includes words the grammar uses elsewhere, and every label-name character.
LABEL_NAMES = ["a", "b", "in", "not", "has", "all", "k8s.io/app-name_1"]
VALUES = ["", "x", "y", "a b", "it's", 'say "hi"', "{}", "&& ||"]
SETTINGS = settings(max_examples=200, deadline=None)


def reference(ast: Ast, labels: Labels) -> bool:
    kind = ast[0]
    if kind == "all":
        return True
    if kind == "has":
        return ast[1] in labels
    if kind == "eq":
        return labels.get(str(ast[1])) == ast[2]
    if kind == "ne":
        return labels.get(str(ast[1])) != ast[2]
    if kind == "in":
        return labels.get(str(ast[1])) in ast[2]  # type: ignore[operator]
    if kind == "notin":
        return labels.get(str(ast[1])) not in ast[2]  # type: ignore[operator]
    if kind == "not":
        return not reference(ast[1], labels)  # type: ignore[arg-type]
    if kind == "and":
        return reference(ast[1], labels) and reference(ast[2], labels)  # type: ignore[arg-type]
    assert kind == "or"
    return reference(ast[1], labels) or reference(ast[2], labels)  # type: ignore[arg-type]


# A generated expression: (ast, text, precedence of the text's top level: 3 = atom/parens,
# 2 = &&, 1 = ||), so parents add the parentheses the grammar needs, and sometimes extra ones.
Gen = tuple[Ast, str, int]
spaces = st.sampled_from(["", " ", "  ", "\t", "\n "])


@st.composite
def quoted(draw: st.DrawFn, value: str) -> str:
    quotes = [q for q in "\"'" if q not in value]
    q = draw(st.sampled_from(quotes))
    return f"{q}{value}{q}"


@st.composite
def atoms(draw: st.DrawFn) -> Gen:
    kind = draw(st.sampled_from(["all", "has", "eq", "ne", "in", "notin"]))

    def s() -> str:
        return draw(spaces)

    label = draw(st.sampled_from(LABEL_NAMES))
    if kind == "all":
        return ("all",), f"all({s()})", 3
    if kind == "has":
        return ("has", label), f"has({s()}{label}{s()})", 3
    if kind in ("eq", "ne"):
        value = draw(st.sampled_from(VALUES))
        op = "==" if kind == "eq" else "!="
        return (kind, label, value), f"{label}{s()}{op}{s()}{draw(quoted(value))}", 3
    members = draw(st.lists(st.sampled_from(VALUES), max_size=4))
    body = f",{s()}".join([draw(quoted(m)) for m in members])
    op = "in" if kind == "in" else f"not{draw(st.sampled_from([' ', '  ', chr(9)]))}in"
    return (kind, label, frozenset(members)), f"{label} {op}{s()}{{{s()}{body}{s()}}}", 3


def wrap(draw: st.DrawFn, gen: Gen, need: int) -> str:
    _, text, prec = gen
    if prec < need or draw(st.integers(0, 5)) == 0:
        return f"({draw(spaces)}{text}{draw(spaces)})"
    return text


@st.composite
def negation(draw: st.DrawFn, inner: st.SearchStrategy[Gen]) -> Gen:
    g = draw(inner)
    return ("not", g[0]), f"!{draw(spaces)}{wrap(draw, g, 3)}", 3


@st.composite
def binary(draw: st.DrawFn, inner: st.SearchStrategy[Gen]) -> Gen:
    left, right = draw(inner), draw(inner)
    if draw(st.booleans()):
        return (("and", left[0], right[0]),
                f"{wrap(draw, left, 2)}{draw(spaces)}&&{draw(spaces)}{wrap(draw, right, 3)}", 2)
    return (("or", left[0], right[0]),
            f"{wrap(draw, left, 1)}{draw(spaces)}||{draw(spaces)}{wrap(draw, right, 2)}", 1)


expressions: st.SearchStrategy[Gen] = st.recursive(
    atoms(), lambda inner: st.one_of(negation(inner), binary(inner)), max_leaves=12)
label_maps = st.dictionaries(st.sampled_from(LABEL_NAMES), st.sampled_from(VALUES), max_size=5)


def names_of(ast: Ast) -> set[str]:
    if ast[0] == "all":
        return set()
    if ast[0] in ("not", "and", "or"):
        return set().union(*(names_of(a) for a in ast[1:]))  # type: ignore[arg-type]
    return {str(ast[1])}


@SETTINGS
@given(expressions, st.lists(label_maps, min_size=1, max_size=8))
def test_parse_agrees_with_generated_ast(gen: Gen, label_list: list[dict[str, str]]) -> None:
    ast, text, _ = gen
    sel = parse_selector(text)
    again = parse_selector(sel.canonical)
    assert again.canonical == sel.canonical
    assert again.uid == sel.uid
    assert again == sel and hash(again) == hash(sel)
    assert sel.label_names() == frozenset(names_of(ast))
    for labels in label_list:
        expected = reference(ast, labels)
        assert sel.evaluate(labels) is expected, (text, sel.canonical, labels)
        assert again.evaluate(labels) is expected


@SETTINGS
@given(expressions, expressions)
def test_outer_parentheses_and_double_negation_do_not_change_canonical(a: Gen, b: Gen) -> None:
    base = parse_selector(f"({a[1]}) && ({b[1]})")
    assert parse_selector(f"((({a[1]}) && ({b[1]})))") == base
    assert parse_selector(f"!!(({a[1]}) && ({b[1]}))") == base


@SETTINGS
@given(expressions, label_maps)
def test_selectors_not_matching_empty_labels_need_a_mentioned_label(gen: Gen,
                                                                     labels: dict[str, str]) -> None:
    # The label index relies on this: truth depends only on the mentioned labels.
    sel = parse_selector(gen[1])
    mentioned = {k: v for k, v in labels.items() if k in sel.label_names()}
    assert sel.evaluate(labels) == sel.evaluate(mentioned)
    if not mentioned:
        assert sel.evaluate(labels) == sel.evaluate({})




@SETTINGS
@given(expressions, st.lists(label_maps, min_size=1, max_size=8))
def test_required_label_is_necessary(gen: Gen, label_list: list[dict[str, str]]) -> None:
    sel = parse_selector(gen[1])
    required = sel.required_label()
    if required is None:
        return
    name, values = required
    assert name in sel.label_names()
    assert not sel.evaluate({})
    for labels in label_list:
        if sel.evaluate(labels):
            assert name in labels and (values is None or labels[name] in values)
