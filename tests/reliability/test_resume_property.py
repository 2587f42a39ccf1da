"""Interrupt training at a random step (in process), resume from the last checkpoint, and finish bit-identical
to an uninterrupted run: random models, every optimizer, partial batches and epoch boundaries."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpc
from mlpc import resume
from mlpc.checkpoint import load_arrays

from .fuzzing import count, examples
from .strategies import Problem, optimizers


class Crash(Exception):
    pass


def _build(opt: dict, width: int, classes: int, batch: int, seed: int) -> mlpc.Trainer:
    from mlpc import nn

    p = Problem([], "ce", opt, batch, [], seed)
    model = nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, classes))
    return mlpc.compile(model, nn.CrossEntropyLoss(), p.optimizer(), batch_size=batch, seed=seed)


def _state(tr: mlpc.Trainer) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in {**tr.parameters(), **tr.optimizer_state()}.items()}


@given(opt=optimizers(), n=st.integers(1, 40), batch=st.integers(1, 9), epochs=st.integers(1, 3),
       every=st.integers(1, 5), width=st.integers(1, 9), data=st.data())
@examples(40)
def test_interrupted_run_resumes_bit_identically(tmp_path_factory: pytest.TempPathFactory, opt: dict, n: int,
                                                 batch: int, epochs: int, every: int, width: int,
                                                 data: st.DataObject) -> None:
    count("in-process interrupt + resume")
    rng = np.random.default_rng(n * 131 + batch)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    total = epochs * -(-n // batch)
    crash_at = data.draw(st.integers(1, total))
    ckpt = os.path.join(str(tmp_path_factory.mktemp("resume")), "c.safetensors")

    whole = _build(opt, width, 3, batch, 9)
    resume.train(whole, x, y, epochs)
    assert whole.steps_taken == total

    first = _build(opt, width, 3, batch, 9)

    def on_step(rows: int, loss: float) -> None:
        if first.steps_taken == crash_at:
            raise Crash

    try:
        resume.train(first, x, y, epochs, checkpoint=ckpt, every=every, on_step=on_step)
    except Crash:
        pass
    second = _build(opt, width, 3, batch, 9)
    where = resume.resume(second, ckpt, x, y)
    saved = ((crash_at - 1) // every) * every  # on_step runs before that step's checkpoint is written
    if saved == 0:
        assert where is None
    else:
        assert where is not None and where.step == saved == second.steps_taken
    resume.train(second, x, y, epochs, checkpoint=ckpt, every=every)
    assert _state(second) == _state(whole)
    assert int(load_arrays(ckpt)[1]["mlpc.steps"]) == total
