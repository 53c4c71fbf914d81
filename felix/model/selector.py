"""Calico v1 label selectors: parsing, canonical text and evaluation.

Equal selectors must share one ipset, so every selector is reduced to a canonical text (and a
short uid derived from it) on parse. The canonical form only applies rewrites that are exact
boolean identities, so two selectors with the same canonical text always select the same set:

- spacing is normalised and strings use double quotes (single quotes only when the value holds
  a double quote: there are no escapes, so a value can never hold both);
- set members are sorted and deduplicated, a one-member set becomes ``==`` / ``!=``;
- ``!(a == "x")`` becomes ``a != "x"`` (both are true when ``a`` is absent), likewise for ``!=``,
  ``in`` and ``not in``; a double negation disappears;
- nested ``&&`` inside ``&&`` (and ``||`` inside ``||``) is flattened, which removes exactly the
  parentheses that do not change meaning. Operands are never reordered.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping

MAX_LENGTH = 4096
MAX_DEPTH = 100
UID_LENGTH = 16

_LABEL_RE = re.compile(r"[a-zA-Z0-9_./-]+")
# Control characters would reach logs and rule comments verbatim; labels never need them.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE = " \t\r\n"
_OPERATORS = ("==", "!=", "&&", "||", "!", "(", ")", "{", "}", ",")


class SelectorError(ValueError):
    """The text is not a valid selector; the message says what and where."""


# --- AST ----------------------------------------------------------------------------------
# Nodes are built only through the _mk_* constructors below, which apply the canonical
# rewrites, so printing a node and parsing the text gives back an equal node.

class _Node:
    __slots__ = ()

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def names(self) -> frozenset[str]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _All(_Node):
    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return True

    def text(self) -> str:
        return "all()"

    def names(self) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True, slots=True)
class _Has(_Node):
    label: str

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.label in labels

    def text(self) -> str:
        return f"has({self.label})"

    def names(self) -> frozenset[str]:
        return frozenset((self.label,))


@dataclass(frozen=True, slots=True)
class _Eq(_Node):
    label: str
    value: str
    negated: bool  # "!=": also true when the label is absent

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return (labels.get(self.label) == self.value) != self.negated

    def text(self) -> str:
        return f"{self.label} {'!=' if self.negated else '=='} {_quote(self.value)}"

    def names(self) -> frozenset[str]:
        return frozenset((self.label,))


@dataclass(frozen=True, slots=True)
class _In(_Node):
    label: str
    values: frozenset[str]
    negated: bool  # "not in": also true when the label is absent

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return (labels.get(self.label) in self.values) != self.negated

    def text(self) -> str:
        members = ", ".join(_quote(v) for v in sorted(self.values))
        return f"{self.label} {'not in' if self.negated else 'in'} {{{members}}}"

    def names(self) -> frozenset[str]:
        return frozenset((self.label,))


@dataclass(frozen=True, slots=True)
class _Not(_Node):
    operand: _Node

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.evaluate(labels)

    def text(self) -> str:
        inner = self.operand.text()
        if isinstance(self.operand, (_And, _Or)):
            return f"!({inner})"
        return f"!{inner}"

    def names(self) -> frozenset[str]:
        return self.operand.names()


@dataclass(frozen=True, slots=True)
class _And(_Node):
    operands: tuple[_Node, ...]  # at least two, none of them an _And

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        for op in self.operands:
            if not op.evaluate(labels):
                return False
        return True

    def text(self) -> str:
        return " && ".join(f"({op.text()})" if isinstance(op, _Or) else op.text()
                           for op in self.operands)

    def names(self) -> frozenset[str]:
        return frozenset().union(*(op.names() for op in self.operands))


@dataclass(frozen=True, slots=True)
class _Or(_Node):
    operands: tuple[_Node, ...]  # at least two, none of them an _Or

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        for op in self.operands:
            if op.evaluate(labels):
                return True
        return False

    def text(self) -> str:
        return " || ".join(op.text() for op in self.operands)

    def names(self) -> frozenset[str]:
        return frozenset().union(*(op.names() for op in self.operands))


def _quote(value: str) -> str:
    return f"'{value}'" if '"' in value else f'"{value}"'


def _mk_in(label: str, values: frozenset[str], negated: bool) -> _Node:
    if len(values) == 1:
        (value,) = values
        return _Eq(label, value, negated)
    return _In(label, values, negated)


def _mk_not(operand: _Node) -> _Node:
    if isinstance(operand, _Not):
        return operand.operand
    if isinstance(operand, _Eq):
        return _Eq(operand.label, operand.value, not operand.negated)
    if isinstance(operand, _In):
        return _In(operand.label, operand.values, not operand.negated)
    return _Not(operand)


def _mk_and(operands: list[_Node]) -> _Node:
    flat: list[_Node] = []
    for op in operands:
        flat.extend(op.operands if isinstance(op, _And) else (op,))
    return flat[0] if len(flat) == 1 else _And(tuple(flat))


def _mk_or(operands: list[_Node]) -> _Node:
    flat: list[_Node] = []
    for op in operands:
        flat.extend(op.operands if isinstance(op, _Or) else (op,))
    return flat[0] if len(flat) == 1 else _Or(tuple(flat))


# --- tokenizer and parser -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "label", "string", "op", "eof"
    value: str
    pos: int


def _describe(tok: _Token) -> str:
    if tok.kind == "eof":
        return "end of input"
    if tok.kind == "string":
        return f"string {_quote(tok.value)}"
    return repr(tok.value)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                raise SelectorError(f"unterminated string starting at position {i}")
            value = text[i + 1:end]
            bad = _CONTROL_RE.search(value)
            if bad:
                raise SelectorError(
                    f"control character in string at position {i + 1 + bad.start()}")
            tokens.append(_Token("string", value, i))
            i = end + 1
            continue
        m = _LABEL_RE.match(text, i)
        if m:
            tokens.append(_Token("label", m.group(), i))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(_Token("op", op, i))
                i += len(op)
                break
        else:
            raise SelectorError(f"unexpected character {c!r} at position {i}")
    tokens.append(_Token("eof", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._i = 0
        self._depth = 0

    def parse(self) -> _Node:
        if self._peek().kind == "eof":
            return _All()
        node = self._or()
        tok = self._peek()
        if tok.kind != "eof":
            raise SelectorError(f"unexpected {_describe(tok)} at position {tok.pos}")
        return node

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._i + ahead, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        tok = self._peek()
        self._i += 1
        return tok

    def _is_op(self, value: str) -> bool:
        tok = self._peek()
        return tok.kind == "op" and tok.value == value

    def _expect(self, kind: str, value: str | None = None, what: str | None = None) -> _Token:
        tok = self._next()
        if tok.kind != kind or (value is not None and tok.value != value):
            wanted = what or (repr(value) if value is not None else kind)
            raise SelectorError(
                f"expected {wanted} at position {tok.pos}, found {_describe(tok)}")
        return tok

    def _enter(self, pos: int) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise SelectorError(f"nesting deeper than {MAX_DEPTH} at position {pos}")

    def _or(self) -> _Node:
        operands = [self._and()]
        while self._is_op("||"):
            self._next()
            operands.append(self._and())
        return _mk_or(operands)

    def _and(self) -> _Node:
        operands = [self._unary()]
        while self._is_op("&&"):
            self._next()
            operands.append(self._unary())
        return _mk_and(operands)

    def _unary(self) -> _Node:
        tok = self._peek()
        if tok.kind == "op" and tok.value in ("!", "("):
            self._next()
            self._enter(tok.pos)
            if tok.value == "!":
                node = _mk_not(self._unary())
            else:
                node = self._or()
                self._expect("op", ")")
            self._depth -= 1
            return node
        return self._primary()

    def _primary(self) -> _Node:
        tok = self._expect("label", what="a label, has(), all(), '!' or '('")
        after = self._peek()
        if tok.value in ("has", "all") and after.kind == "op" and after.value == "(":
            self._next()
            if tok.value == "all":
                self._expect("op", ")")
                return _All()
            label = self._expect("label", what="a label name").value
            self._expect("op", ")")
            return _Has(label)
        op = self._next()
        if op.kind == "op" and op.value in ("==", "!="):
            value = self._expect("string", what="a quoted string").value
            return _Eq(tok.value, value, op.value == "!=")
        if op.kind == "label" and op.value == "in":
            return _mk_in(tok.value, self._set(), False)
        if op.kind == "label" and op.value == "not":
            self._expect("label", "in")
            return _mk_in(tok.value, self._set(), True)
        raise SelectorError(f"expected '==', '!=', 'in' or 'not in' after label {tok.value!r} "
                            f"at position {op.pos}, found {_describe(op)}")

    def _set(self) -> frozenset[str]:
        self._expect("op", "{")
        values: set[str] = set()
        if self._is_op("}"):
            self._next()
            return frozenset()
        while True:
            values.add(self._expect("string", what="a quoted string").value)
            sep = self._next()
            if sep.kind == "op" and sep.value == "}":
                return frozenset(values)
            if not (sep.kind == "op" and sep.value == ","):
                raise SelectorError(f"expected ',' or '}}' at position {sep.pos}, "
                                    f"found {_describe(sep)}")


# --- public API ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    """A parsed selector. Equal (and hashed) by canonical text only."""

    canonical: str
    uid: str
    _root: _Node = field(compare=False, repr=False)
    _names: frozenset[str] = field(compare=False, repr=False)

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self._root.evaluate(labels)

    def label_names(self) -> frozenset[str]:
        """Every label the expression mentions: its value can depend on no other label."""
        return self._names

    def required_label(self) -> tuple[str, frozenset[str] | None] | None:
        """A necessary condition for a match, for indexing: ``(label, values)`` means only
        labels where ``label`` is present with a value in ``values`` (any value when
        ``values`` is None) can match. None when there is no such single-label condition."""
        return _required(self._root)

    def __str__(self) -> str:
        return self.canonical


def _required(node: _Node) -> tuple[str, frozenset[str] | None] | None:
    if isinstance(node, _Eq) and not node.negated:
        return node.label, frozenset((node.value,))
    if isinstance(node, _In) and not node.negated:
        return node.label, node.values
    if isinstance(node, _Has):
        return node.label, None
    if isinstance(node, _And):
        # Prefer the most selective kind of conjunct: one value, then a set, then presence.
        found = [r for r in map(_required, node.operands) if r is not None]
        if found:
            return min(found, key=lambda r: len(r[1]) if r[1] is not None else 1 << 30)
    return None


def _uid(canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:UID_LENGTH]


@lru_cache(maxsize=4096)
def parse_selector(text: str) -> Selector:
    """Parse selector text; raises SelectorError (a ValueError) with the position on error."""
    if not isinstance(text, str):
        raise SelectorError(f"selector must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise SelectorError(f"selector longer than {MAX_LENGTH} characters")
    root = _Parser(text).parse()
    canonical = root.text()
    return Selector(canonical, _uid(canonical), root, root.names())
