"""The distribute pass and the split at collectives, without MPI: IR shape, purity and one-rank equivalence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import mlpc
from mlpc.interpreter import Interpreter
from mlpc.ir import structurally_equal
from mlpc.parser import parse
from mlpc.printer import print_graph
from passes.collective_split import split_at_collectives
from passes.manager import PassManager
from tests.distributed.worker import data, model, optimizer

ROOT = Path(__file__).resolve().parents[2]


def _step(pipeline: str):  # -> Graph
    from mlpc.api import trace_model

    m = model()
    m.initialize(0)
    return PassManager().run(trace_model(m, 6, 13, mlpc.nn.CrossEntropyLoss(), "step"), pipeline)


def test_distribute_wraps_loss_and_every_gradient() -> None:
    g = _step("autodiff,distribute")
    reduced = [op for op in g.ops if op.name == "allreduce"]
    grads = [o for o in g.outputs if o.name.startswith("grad.")]
    assert len(reduced) == len(grads) + 1
    assert all(op.attrs["reduce"] == "row_weighted_mean" for op in reduced)
    assert {o.value.producer.name for o in g.outputs} == {"allreduce"}
    text = print_graph(g)
    assert 'allreduce' in text and structurally_equal(parse(text), g)  # prints and parses back


def test_one_rank_pipeline_has_no_collectives() -> None:
    assert not any(op.name == "allreduce" for op in _step("autodiff,adam,simplify").ops)


def test_split_halves_compose_to_the_whole_step() -> None:
    whole = _step("autodiff,distribute,sgd{momentum=0.9},simplify")
    before = print_graph(whole)
    split = split_at_collectives(whole)
    assert print_graph(whole) == before  # pure: the input graph is untouched
    assert not any(op.name == "allreduce" for op in split.local.ops + split.update.ops)
    assert [n for n, _ in split.reduced] == [o.name for o in split.local.outputs if o.name.startswith("partial.")]
    x, y = data(6)
    rng = np.random.default_rng(1)
    env = {"x": x, "y": y}
    for inp in whole.inputs:
        if inp.role != "data":
            env[inp.name] = rng.standard_normal(inp.value.shape).astype(inp.value.dtype.numpy)
    env["t"] = np.array(3, np.int32)
    want = Interpreter(whole).run(dict(env))
    local = Interpreter(split.local).run({i.name: env[i.name] for i in split.local.inputs})
    update_env = {i.name: env[i.name] for i in split.update.inputs if i.name in env}
    update_env.update({k: v for k, v in local.items()})
    got = Interpreter(split.update).run(update_env)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])  # same ops, same order: bitwise


def test_dump_shows_the_allreduce() -> None:
    r = subprocess.run([sys.executable, "-m", "mlpc.cli", "dump", "--distributed", "--backend", "numpy", "--no-loc"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("= allreduce") == 5 and 'reduce = "row_weighted_mean"' in r.stdout


def test_distributed_refuses_bad_values() -> None:
    import pytest

    with pytest.raises(TypeError, match="distributed must be"):
        mlpc.compile(model(), optimizer=optimizer("adam"), batch_size=4, backend="numpy", distributed="yes")
