"""Printer/parser round trip for every op, and for whole training graphs."""

import pytest

from mlpc import nn, optim
from mlpc.api import FRONT_STAGES, compile
from mlpc.ir import Graph, Input, Output, Value, structurally_equal
from mlpc.ops import Builder, all_ops
from mlpc.parser import parse
from mlpc.printer import print_graph
from mlpc.verifier import verify
from tests.op_cases import cases


def single_op_graph(case) -> Graph:
    b = Builder(loc="model.py:7")
    inputs = [Input(f"a{i}", Value(t, f"a{i}")) for i, t in enumerate(case.operands)]
    out = b.op(case.op, *[i.value for i in inputs], **case.attrs)
    outs = out if isinstance(out, tuple) else (out,)
    return Graph("f", inputs, b.ops, [Output(f"r{i}", v) for i, v in enumerate(outs)])


def test_cases_cover_every_registered_op():
    assert {c.op for c in cases()} == set(all_ops())


@pytest.mark.parametrize("case", cases("f32") + cases("f64"), ids=lambda c: c.id)
def test_every_op_round_trips(case):
    g = single_op_graph(case)
    verify(g)
    text = print_graph(g)
    g2 = parse(text)
    verify(g2)
    assert structurally_equal(g, g2)
    assert print_graph(g2) == text


@pytest.mark.parametrize("opt", [optim.SGD(lr=0.1), optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
                                 optim.Momentum(lr=0.1, unbiased=True), optim.Momentum(nesterov=True),
                                 optim.Adam(), optim.AdamW(), optim.Adam(bias_correction=False)])
def test_every_training_stage_round_trips(opt):
    model = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Residual(nn.Sequential(nn.Linear(7, 7), nn.Tanh())),
                          nn.Linear(7, 3), nn.Sigmoid(), nn.LeakyReLU(0.2))
    trainer = compile(model, nn.CrossEntropyLoss(), opt, batch_size=4)
    for stage in FRONT_STAGES:
        text = trainer.ir(stage)
        g = parse(text)
        verify(g)
        assert structurally_equal(g, trainer.graph(stage))
        assert print_graph(g) == text


def test_names_that_need_quotes_round_trip():
    b = Builder()
    x = Value(cases()[0].operands[0], "x")
    y = b.neg(x)
    g = Graph("f", [Input("x", x)], b.ops, [Output("0.weight", y), Output("true", y)])
    text = print_graph(g)
    assert '"0.weight"' in text and '"true"' in text
    assert structurally_equal(parse(text), g)


def test_special_float_attributes_round_trip():
    b = Builder()
    for v in (float("inf"), float("-inf"), 1e-300, -0.5, 3.0):
        b.op("full", value=v, dtype="f32", shape=(2,))
    g = Graph("f", [], b.ops, [Output(f"o{i}", op.result) for i, op in enumerate(b.ops)])
    assert structurally_equal(parse(print_graph(g)), g)
