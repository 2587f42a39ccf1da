"""Parses textual IR (as printed by mlpc.printer) back into a Graph; errors name line and column."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from mlpc.errors import ParseError, ShapeError
from mlpc.ir import ROLES, Graph, Input, Op, Output, Value
from mlpc.ops import registry
from mlpc.types import DType, TensorType

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|//[^\n]*)
  | (?P<nl>\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<func>@[A-Za-z0-9_.]+)
  | (?P<number>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<word>-?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<arrow>->)
  | (?P<punct>[(){}\[\],:=])
""", re.VERBOSE)

MAX_TEXT = 256 * 1024 * 1024
MAX_NESTING = 32  # attribute lists inside lists
MAX_DIGITS = 30  # integer literals (dimensions, integer attributes)


@dataclass
class Token:
    kind: str
    text: str
    line: int
    col: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_TEXT:
        raise ParseError(f"IR text of {len(text)} characters exceeds the {MAX_TEXT} limit", 1, 1)
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind = m.lastgroup or ""
        if kind == "nl":
            line += 1
            line_start = m.end()
        elif kind != "ws":
            tokens.append(Token(kind, m.group(), line, m.start() - line_start + 1))
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.values: dict[str, Value] = {}

    # --- token helpers ---
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        t = tok or self.tok
        return ParseError(message, t.line, t.col)

    def next(self) -> Token:
        t = self.tok
        if t.kind != "eof":
            self.i += 1
        return t

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in ("punct", "arrow", "word"):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> Token:
        if not self.accept(text):
            shown = self.tok.text or "end of input"
            raise self.error(f"expected '{text}', found '{shown}'")
        return self.tokens[self.i - 1]

    def expect_kind(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            shown = self.tok.text or "end of input"
            raise self.error(f"expected {what}, found '{shown}'")
        return self.next()

    # --- grammar ---
    def parse_type(self) -> TensorType:
        t = self.expect_kind("word", "a type such as f32[2,3]")
        try:
            dtype = DType(t.text)
        except ValueError:
            raise self.error(f"unknown dtype '{t.text}'", t) from None
        self.expect("[")
        dims: list[int] = []
        while not self.accept("]"):
            if dims:
                self.expect(",")
            d = self.expect_kind("number", "a dimension")
            if not d.text.isdigit():
                raise self.error(f"dimension must be a non-negative integer, found '{d.text}'", d)
            if len(d.text) > MAX_DIGITS:
                raise self.error(f"dimension {d.text[:20]}... is too large", d)
            dims.append(int(d.text))
            if len(dims) > 16:
                raise self.error("more than 16 dimensions", d)
        return TensorType(dtype, tuple(dims))

    def string(self, t: Token) -> str:
        """The value of a string token (JSON escapes); bad escapes are parse errors."""
        try:
            s = json.loads(t.text)
            s.encode("utf-8")
        except (ValueError, UnicodeEncodeError) as e:
            raise self.error(f"bad string literal {t.text[:40]}: {e}", t) from None
        return s

    def parse_attr_value(self, depth: int = 0) -> Any:
        t = self.tok
        if self.accept("["):
            if depth >= MAX_NESTING:
                raise self.error(f"attribute lists nested more than {MAX_NESTING} deep", t)
            items: list[Any] = []
            while not self.accept("]"):
                if items:
                    self.expect(",")
                items.append(self.parse_attr_value(depth + 1))
            return tuple(items)
        self.next()
        if t.kind == "number":
            if any(c in t.text for c in ".eE"):
                value = float(t.text)
                if math.isinf(value):
                    raise self.error(f"number {t.text[:40]} is out of range (write inf for infinity)", t)
                return value
            if len(t.text.lstrip("-")) > MAX_DIGITS:
                raise self.error(f"integer {t.text[:20]}... is too large", t)
            return int(t.text)
        if t.kind == "string":
            return self.string(t)
        if t.kind == "word":
            consts = {"true": True, "false": False, "none": None, "inf": float("inf"),
                      "-inf": float("-inf"), "nan": float("nan")}
            if t.text in consts:
                return consts[t.text]
        raise self.error(f"expected an attribute value, found '{t.text or 'end of input'}'", t)

    def parse_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if not self.accept("{"):
            return attrs
        while not self.accept("}"):
            if attrs:
                self.expect(",")
            key = self.expect_kind("word", "an attribute name")
            self.expect("=")
            if key.text in attrs:
                raise self.error(f"attribute '{key.text}' given twice", key)
            attrs[key.text] = self.parse_attr_value()
        return attrs

    def use(self) -> Value:
        t = self.expect_kind("value", "a %value")
        name = t.text[1:]
        if name not in self.values:
            raise self.error(f"use of undefined value %{name}", t)
        return self.values[name]

    def define(self, tok: Token, value: Value) -> None:
        name = tok.text[1:]
        if name in self.values:
            raise self.error(f"value %{name} is defined twice", tok)
        self.values[name] = value

    def parse_signature(self) -> tuple[str, list[Input], list[tuple[str, TensorType]]]:
        self.expect("func")
        fname = self.expect_kind("func", "a function name like @step").text[1:]
        self.expect("(")
        inputs: list[Input] = []
        while not self.accept(")"):
            if inputs:
                self.expect(",")
            role = "data"
            if self.tok.kind == "word" and self.tok.text in ROLES:
                role = self.next().text
            vt = self.expect_kind("value", "an argument %name")
            self.expect(":")
            v = Value(self.parse_type(), vt.text[1:])
            self.define(vt, v)
            inputs.append(Input(vt.text[1:], v, role))
        self.expect("->")
        self.expect("(")
        outs: list[tuple[str, TensorType]] = []
        while not self.accept(")"):
            if outs:
                self.expect(",")
            nt = self.next()
            if nt.kind == "word":
                name = nt.text
            elif nt.kind == "string":
                name = self.string(nt)
            else:
                raise self.error(f"expected an output name, found '{nt.text or 'end of input'}'", nt)
            self.expect(":")
            outs.append((name, self.parse_type()))
        return fname, inputs, outs

    def parse_op(self) -> Op:
        first = self.tok
        defs: list[tuple[Token, TensorType]] = []
        while True:
            vt = self.expect_kind("value", "a result %name or 'return'")
            self.expect(":")
            defs.append((vt, self.parse_type()))
            if not self.accept(","):
                break
        self.expect("=")
        name_tok = self.expect_kind("word", "an op name")
        try:
            opdef = registry.get(name_tok.text)
        except KeyError:
            raise self.error(f"unknown op '{name_tok.text}'", name_tok) from None
        operands: list[Value] = []
        # an op with no operands (e.g. `full` with default attributes) is followed directly by the next
        # op's `%result:`; newlines are not tokens, so tell them apart by the colon
        if self.tok.kind == "value" and self.tokens[self.i + 1].text != ":":
            operands.append(self.use())
            while self.accept(","):
                operands.append(self.use())
        attrs = self.parse_attrs()
        loc = ""
        if self.accept("loc"):
            self.expect("(")
            loc = self.string(self.expect_kind("string", "a location string"))
            self.expect(")")
        try:
            full = registry.normalize_attrs(opdef, attrs)
            inferred = opdef.infer([v.type for v in operands], full)
        except (ShapeError, KeyError, TypeError, ValueError) as e:
            raise self.error(f"{name_tok.text}: {e}", name_tok) from None
        declared = [t for _, t in defs]
        if inferred != declared:
            raise self.error(f"{name_tok.text} declares result types {[str(t) for t in declared]} "
                             f"but its operands give {[str(t) for t in inferred]}", first)
        results = [Value(t) for t in declared]
        op = Op(name_tok.text, operands, results, full, loc)
        for (vt, _), r in zip(defs, results):
            r.producer = op
            self.define(vt, r)
        return op

    def parse_graph(self) -> Graph:
        fname, inputs, out_sig = self.parse_signature()
        self.expect("{")
        ops: list[Op] = []
        while not (self.tok.kind == "word" and self.tok.text == "return"):
            if self.tok.kind == "eof":
                raise self.error("missing 'return' before end of input")
            ops.append(self.parse_op())
        ret = self.expect("return")
        rets: list[Value] = []
        if self.tok.kind == "value":
            rets.append(self.use())
            while self.accept(","):
                rets.append(self.use())
        self.expect("}")
        if self.tok.kind != "eof":
            raise self.error(f"unexpected '{self.tok.text}' after the function")
        if len(rets) != len(out_sig):
            raise self.error(f"return has {len(rets)} values but the signature declares {len(out_sig)}", ret)
        outputs = []
        for (name, t), v in zip(out_sig, rets):
            if v.type != t:
                raise self.error(f"output {name} is declared {t} but returns a {v.type}", ret)
            outputs.append(Output(name, v))
        return Graph(fname, inputs, ops, outputs)


def parse(text: str) -> Graph:
    """Parse one `func @name(...) -> (...) { ... }` into a Graph."""
    if not isinstance(text, str):
        raise TypeError(f"parse takes str, got {type(text).__name__}")
    return _Parser(text).parse_graph()
