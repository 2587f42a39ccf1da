"""The llvm data-parallel step without a copy: gradients reduced in place in the arena; dropout masks keyed
by the global row (one process, a 1-rank communicator; the 2- and 3-rank runs are in test_mpi.py)."""

from __future__ import annotations

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.ops.random import _mask_ref
from mlpc.types import DType, TensorType
from passes.memory import ALIGN
from runtime.llvm_backend import lower_graph


def _model(dropout: float = 0.0) -> nn.Module:
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(nn.Linear(13, 11), nn.Tanh(), *drop, nn.Linear(11, 9), nn.ReLU(), nn.Linear(9, 5))


def _data(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 13)).astype(np.float32), rng.integers(0, 5, n).astype(np.int32)


def test_gradients_are_reduced_in_place_in_the_arena() -> None:
    tr = mlpc.compile(_model(), optimizer=optim.Adam(lr=1e-2), batch_size=8, backend="llvm", distributed=True)
    ref = mlpc.compile(_model(), optimizer=optim.Adam(lr=1e-2), batch_size=8, backend="llvm")
    x, y = _data()
    for _ in range(5):
        # one rank: the only difference from one process is x rows / rows (exact in float32 for 8 rows)
        assert tr.step(x, y) == pytest.approx(ref.step(x, y), rel=1e-6)
    step = tr._compiled_for("step", 8)
    assert step.in_arena
    assert np.shares_memory(step.bucket, step.local.arena)  # MPI reduces the arena itself
    start, nbytes = step.local.meta["bucket"]
    assert step.bucket.__array_interface__["data"][0] == step.local.arena.ctypes.data + start
    assert step.bucket.nbytes == nbytes
    where = {o[0]: o for o in step.local.meta["outputs"]}
    names = [name for name, _ in step.split.reduced]
    assert len(names) == 7  # the loss and six gradients
    at = start
    for name in names:  # back to back in output order (each slot aligned), the row count last
        _name, _state, (kind, offset), _dt, shape = where[name]
        assert kind == "arena" and offset == at, (name, offset, at)
        at = -(-(offset + 4 * int(np.prod(shape))) // ALIGN) * ALIGN
    assert at + ALIGN == start + nbytes
    # the update half reads the reduced values where MPI left them: no input copies
    views = {name: view for name, _kind, view, _shape in step.views}
    assert all(np.shares_memory(views[n], step.local.arena) for n in names)
    params, want = tr.parameters(), ref.parameters()
    for k in want:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-6, atol=1e-7)


def test_numpy_backend_keeps_the_copying_bucket() -> None:
    tr = mlpc.compile(_model(), batch_size=8, backend="numpy", distributed=True)
    tr.step(*_data())
    assert not tr._compiled_for("step", 8).in_arena


def test_distribute_pass_keys_masks_by_the_row_offset() -> None:
    tr = mlpc.compile(_model(0.3), batch_size=8, backend="numpy", distributed=True)
    tr.step(*_data())
    split = tr._compiled_for("step", 8).split
    assert any(i.name == "row_offset" and i.role == "data" for i in split.local.inputs)
    masks = [op for op in split.local.ops if op.name == "dropout_mask"]
    assert masks and all(len(op.operands) == 2 for op in masks)


@pytest.mark.parametrize("cols", [7, 8, 5])
def test_llvm_mask_with_row_offset_is_a_slice_of_the_whole_batch_mask(cols: int) -> None:
    rows = 6
    i32 = TensorType(DType.i32, ())
    t, row0 = Value(i32, "t"), Value(i32, "row0")
    b = Builder()
    mask = b.op("dropout_mask", t, row0, p=0.4, seed=11, stream=3, shape=(rows, cols))
    g = Graph("mask", [Input("t", t), Input("row0", row0)], b.ops, [Output("mask", mask)])
    compiled = lower_graph(g, use_cache=False)
    whole = _mask_ref(np.int32(5), p=0.4, seed=11, stream=3, shape=(rows + 11, cols))
    for r0 in range(12):
        got = compiled.run({}, {"t": np.asarray(5, np.int32), "row0": np.asarray(r0, np.int32)})["mask"]
        np.testing.assert_array_equal(got, whole[r0:r0 + rows])  # integer draws: bit for bit


def test_dropout_trains_as_one_process_on_one_rank() -> None:
    x, y = _data()
    for backend in ("numpy", "llvm"):
        tr = mlpc.compile(_model(0.3), optimizer=optim.Adam(lr=1e-2), batch_size=8, backend=backend,
                          distributed=True)
        ref = mlpc.compile(_model(0.3), optimizer=optim.Adam(lr=1e-2), batch_size=8, backend=backend)
        for _ in range(4):
            assert tr.step(x, y) == pytest.approx(ref.step(x, y), rel=1e-6)
