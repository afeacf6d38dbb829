"""The run filter language, parsed into a small tree (never into SQL text).

    metrics.auc > 0.9 and params.max_depth = '8'
    (tags.team = "risk" or tags.team ILIKE 'ml%') and attributes.status != 'FAILED'
    metrics."val auc" >= 0.8 and params.model IN ('rf', 'xgb')

Operators: ``= != < <= > >= LIKE ILIKE IN NOT IN``; ``and``/``or`` (and binds tighter);
parentheses; keys bare or quoted with double quotes or backticks; strings in single or
double quotes; numbers. A syntax error says what was expected and at which column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.core.errors import InvalidArgumentError

__all__ = [
    "And",
    "Comparison",
    "Field",
    "Node",
    "Number",
    "Or",
    "parse_filter",
    "parse_order_by",
]

PREFIXES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
ATTRIBUTES = ("run_id", "name", "status", "start_time", "end_time", "user", "experiment")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN")


class Number(float):
    """A number from a filter, remembering how it was written (params compare as text)."""

    text: str

    def __new__(cls, text: str) -> Number:
        obj = super().__new__(cls, float(text))
        obj.text = text
        return obj


@dataclass(frozen=True, slots=True)
class Field:
    """``metrics.auc``: which kind of value, and its key."""

    kind: str  # metrics | params | tags | attributes
    key: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.key}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value`` (``value`` is a tuple for IN)."""

    field: Field
    op: str
    value: float | str | tuple[float | str, ...]


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


Node = Comparison | And | Or

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))(?![\w.])
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<word>[A-Za-z_][\w\-/:]*)
  | (?P<dot>\.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    col: int  # 1-based


def _tokenize(text: str, what: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InvalidArgumentError(
                f"{what}: unexpected character {text[pos]!r} at column {pos + 1}."
            )
        kind = m.lastgroup or ""
        if kind != "space":
            tokens.append(_Tok(kind, m.group(), pos + 1))
        pos = m.end()
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    if token[0] == "`":
        return body
    return re.sub(r"\\(.)", r"\1", body)


MAX_NESTING = 32  # deeper parentheses are refused, not a recursion error
MAX_FIELDS = 32  # distinct keys one search may join (filter and order together)


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.tokens = _tokenize(text, what)
        self.i = 0
        self.depth = 0

    def _peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _word(self, *words: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "word" and tok.text.upper() in words

    def _fail(self, expected: str, after: str | None = None) -> InvalidArgumentError:
        tok = self._peek()
        where = f"at column {tok.col}" if tok else f"at column {len(self.text) + 1} (the end)"
        got = f", found {tok.text!r}" if tok else ""
        context = f" after {after!r}" if after else ""
        return InvalidArgumentError(f"{self.what}: expected {expected}{context} {where}{got}.")

    def parse(self) -> Node:
        node = self._or()
        if self._peek() is not None:
            raise self._fail("'and', 'or' or the end")
        return node

    def _or(self) -> Node:
        items = [self._and()]
        while self._word("OR"):
            self.i += 1
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _and(self) -> Node:
        items = [self._primary()]
        while self._word("AND"):
            self.i += 1
            items.append(self._primary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def _primary(self) -> Node:
        tok = self._peek()
        if tok is not None and tok.kind == "lparen":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise InvalidArgumentError(
                    f"{self.what}: parentheses nest deeper than {MAX_NESTING} levels."
                )
            self.i += 1
            node = self._or()
            self.depth -= 1
            tok = self._peek()
            if tok is None or tok.kind != "rparen":
                raise self._fail("')'")
            self.i += 1
            return node
        return self._comparison()

    def field(self) -> Field:
        tok = self._peek()
        if tok is None or tok.kind != "word":
            raise self._fail("a field like metrics.auc, params.depth or attributes.status")
        prefix = PREFIXES.get(tok.text.lower())
        if prefix is None:
            if tok.text.lower() in ATTRIBUTES:  # a bare attribute: status = 'FINISHED'
                self.i += 1
                return Field("attributes", tok.text.lower())
            raise InvalidArgumentError(
                f"{self.what}: unknown field {tok.text!r} at column {tok.col}; fields start with "
                "metrics., params., tags. or attributes."
            )
        self.i += 1
        dot = self._peek()
        if dot is None or dot.kind != "dot":
            raise self._fail("'.' and a key", after=tok.text)
        self.i += 1
        key_tok = self._peek()
        if key_tok is None or key_tok.kind not in ("word", "string", "number"):
            raise self._fail("a key", after=f"{tok.text}.")
        self.i += 1
        key = _unquote(key_tok.text) if key_tok.kind == "string" else key_tok.text
        # bare keys may contain dots: metrics.val.auc
        while (d := self._peek()) is not None and d.kind == "dot":
            nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
            if nxt is None or nxt.kind not in ("word", "number"):
                break
            key += "." + nxt.text
            self.i += 2
        if prefix == "attributes":
            key = key.lower()
            if key == "id":
                key = "run_id"
            if key not in ATTRIBUTES:
                raise InvalidArgumentError(
                    f"{self.what}: unknown attribute {key!r} at column {key_tok.col}; "
                    f"known: {', '.join(ATTRIBUTES)}."
                )
        return Field(prefix, key)

    def _value(self, after: str) -> float | str:
        tok = self._peek()
        if tok is None or tok.kind not in ("number", "string"):
            raise self._fail("a number or a quoted string", after=after)
        self.i += 1
        if tok.kind == "number":
            return Number(tok.text)
        if tok.text.startswith("`"):
            raise InvalidArgumentError(
                f"{self.what}: backticks quote keys, not values (column {tok.col}); "
                "use 'single' or \"double\" quotes."
            )
        return _unquote(tok.text)

    def _comparison(self) -> Comparison:
        start = self.i
        fld = self.field()
        shown = " ".join(t.text for t in self.tokens[start : self.i]).replace(" . ", ".")
        tok = self._peek()
        if tok is not None and tok.kind == "op":
            op = "!=" if tok.text == "<>" else tok.text
            self.i += 1
            return Comparison(fld, op, self._value(f"{shown} {op}"))
        if self._word("LIKE", "ILIKE"):
            op = tok.text.upper()  # type: ignore[union-attr]
            self.i += 1
            value = self._value(f"{shown} {op}")
            if not isinstance(value, str):
                raise InvalidArgumentError(f"{self.what}: {op} takes a quoted pattern like 'rf%'.")
            return Comparison(fld, op, value)
        negate = False
        if self._word("NOT"):
            self.i += 1
            negate = True
            if not self._word("IN"):
                raise self._fail("IN", after=f"{shown} NOT")
        if self._word("IN"):
            self.i += 1
            op = "NOT IN" if negate else "IN"
            paren = self._peek()
            if paren is None or paren.kind != "lparen":
                raise self._fail("'(' and a list of values", after=f"{shown} {op}")
            self.i += 1
            values = [self._value(f"{shown} {op} (")]
            while (c := self._peek()) is not None and c.kind == "comma":
                self.i += 1
                values.append(self._value(f"{shown} {op} (..."))
            close = self._peek()
            if close is None or close.kind != "rparen":
                raise self._fail("',' or ')'")
            self.i += 1
            return Comparison(fld, op, tuple(values))
        raise self._fail("a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN)", after=shown)


def parse_filter(text: str | None) -> Node | None:
    """Parse a filter; None or blank means no filter.

    >>> parse_filter("metrics.auc > 0.9")
    Comparison(field=Field(kind='metrics', key='auc'), op='>', value=0.9)
    """
    if text is None or not text.strip():
        return None
    return _Parser(text, "filter").parse()


def parse_order_by(items: list[str] | tuple[str, ...] | str | None) -> list[tuple[Field, bool]]:
    """Parse ``["metrics.auc desc", "params.depth"]`` into ``(field, descending)`` pairs."""
    if items is None:
        return []
    if isinstance(items, str):
        items = [items]
    out: list[tuple[Field, bool]] = []
    for item in items:
        parser = _Parser(item, "order_by")
        fld = parser.field()
        descending = False
        if parser._word("DESC", "ASC"):
            descending = parser.tokens[parser.i].text.upper() == "DESC"
            parser.i += 1
        if parser._peek() is not None:
            raise parser._fail("'asc', 'desc' or the end")
        out.append((fld, descending))
    return out
