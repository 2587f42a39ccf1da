"""Fuzzing the textual IR parser: damaged and random text only ever raises ParseError (or parses to a valid graph)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpc
from mlpc import nn, optim
from mlpc.errors import ParseError, VerifyError
from mlpc.ir import structurally_equal
from mlpc.parser import parse
from mlpc.printer import print_graph
from mlpc.verifier import verify

from .fuzzing import count, examples
from .irgen import graphs
from .mutate import bounded, mutated


def _training_ir() -> str:
    model = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 3))
    return mlpc.compile(model, nn.CrossEntropyLoss(), optim.Adam(), batch_size=4).ir("simplified")


SEEDS = [_training_ir().encode()]


def check_text(text: str) -> None:
    """The parser's contract on any input text."""
    with bounded(max_seconds=30.0):
        try:
            g = parse(text)
        except ParseError as e:
            assert e.line >= 1 and e.column >= 1
            return
    try:
        verify(g)
    except VerifyError:
        return
    again = parse(print_graph(g))
    assert structurally_equal(g, again)


@given(st.data())
@examples(150)
def test_damaged_ir_text_raises_parse_error(data: st.DataObject) -> None:
    count("damaged IR text")
    seed = data.draw(st.one_of(st.sampled_from(SEEDS), graphs(max_ops=8).map(lambda g: print_graph(g).encode())))
    blob = data.draw(mutated(seed))
    check_text(blob.decode("utf-8", errors=data.draw(st.sampled_from(["replace", "ignore", "surrogateescape"]))))


TOKENS = list("%@{}[](),:=->\"\\ \n\t.eE+-0123456789fi_axyz") + [
    "func ", "return ", "f32", "i32", "loc", "param ", "full", "add ", "matmul ", "sum ", "%x", "%0", "@f", "->"]


@given(st.lists(st.sampled_from(TOKENS), max_size=120).map("".join))
@examples(150)
def test_token_soup_raises_parse_error(text: str) -> None:
    count("IR token soup")
    check_text(text)


HOSTILE = {
    "deeply nested attribute lists": "func @f() -> (o: f32[]) {\n  %0: f32[] = full {value = " + "[" * 20000,
    "4301-digit dimension": "func @f(%x: f32[" + "9" * 4301 + "]) -> () {\n  return\n}\n",
    "4301-digit integer attribute": "func @f() -> (o: f32[]) {\n  %0: f32[] = full {value = " + "1" * 4301 + "}\n",
    "huge float attribute": "func @f() -> (o: f32[]) {\n  %0: f32[] = full {value = 1e999999}\n  return %0\n}\n",
    "bad string escape in loc": 'func @f(%x: f32[]) -> (o: f32[]) {\n  %0: f32[] = neg %x loc("\\q")\n  return %0\n}\n',
    "bad unicode escape in output name": 'func @f(%x: f32[]) -> ("\\uZZZZ": f32[]) {\n  return %x\n}\n',
    "lone surrogate escape in loc": 'func @f(%x: f32[]) -> (o: f32[]) {\n'
                                    '  %0: f32[] = neg %x loc("\\ud800")\n  return %0\n}\n',
    "string-typed float attribute": 'func @f(%x: f32[]) -> (o: f32[]) {\n'
                                    '  %0: f32[] = pow %x {exponent = "2"}\n  return %0\n}\n',
    "list-typed bool attribute": "func @f(%x: f32[2,2]) -> (o: f32[2,2]) {\n"
                                 "  %0: f32[2,2] = matmul %x, %x {transpose_a = [1]}\n  return %0\n}\n",
    "float shape in full": "func @f() -> (o: f32[2]) {\n  %0: f32[2] = full {shape = [2.0]}\n  return %0\n}\n",
    "bool num_classes": "func @f(%y: i32[2]) -> (o: f32[2,1]) {\n  %0: f32[2,1] = one_hot %y {num_classes = true}\n"
                        "  return %0\n}\n",
    "duplicate output names": "func @f(%x: f32[]) -> (o: f32[], o: f32[]) {\n  return %x, %x\n}\n",
    "NUL byte": "func @f(%x: f32[]) -> (o: f32[]) {\x00\n  return %x\n}\n",
    "empty text": "",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_ir_raises_clear_error(name: str) -> None:
    """Crafted inputs that once escaped as RecursionError/ValueError or parsed into unusable graphs."""
    text = HOSTILE[name]
    with bounded(max_seconds=30.0):
        with pytest.raises((ParseError, VerifyError)):
            verify(parse(text))
