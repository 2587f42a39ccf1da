"""Dropout: Philox known answers, masks bit-identical on the NumPy reference and llvm (Triton:
test_triton_layers.py), inverted scaling with the right expected value, active only in training steps,
fused into the neighbouring kernels, and bit-identical resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.ops.random import keep_scale, philox4x32, threshold
from mlpc.types import DType, TensorType
from runtime.llvm_backend import lower_graph


def mask_graph(shape: tuple[int, int], p: float, seed: int = 0, stream: int = 0) -> Graph:
    t = Value(TensorType(DType.i32, ()), "t")
    b = Builder()
    m = b.dropout_mask(t, p=p, seed=seed, stream=stream, shape=shape)
    return Graph("mask", [Input("t", t)], b.ops, [Output("mask", m)])


def reference_mask(g: Graph, t: int) -> np.ndarray:
    return interpret(g, {"t": np.asarray(t, np.int32)})["mask"]


def llvm_mask(g: Graph, t: int) -> np.ndarray:
    return np.asarray(lower_graph(g, use_cache=False).run({}, {"t": np.asarray(t, np.int32)})["mask"])


# Random123's known-answer vectors for Philox4x32-10 (counter, key -> output)
KAT = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]


@pytest.mark.parametrize("counter,key,want", KAT)
def test_philox_known_answers(counter, key, want):
    assert tuple(int(w) for w in philox4x32(*counter, *key)) == want


@pytest.mark.parametrize("shape,p,seed,stream", [((5, 7), 0.3, 0, 0), ((128, 256), 0.5, 7, 1),
                                                 ((33, 65), 0.9, (1 << 40) + 3, 4), ((4, 4), 0.0, 1, 0),
                                                 ((3, 5), 1.0, 1, 0), ((1, 1), 0.25, 2, 9)])
def test_llvm_masks_bit_identical_to_reference(shape, p, seed, stream):
    g = mask_graph(shape, p, seed, stream)
    for t in (0, 1, 2, 1000, 2**31 - 1):
        want = reference_mask(g, t)
        np.testing.assert_array_equal(llvm_mask(g, t), want)
        assert set(np.unique(want)) <= {0.0, np.float32(keep_scale(p))}


def test_rows_keep_their_mask_in_a_smaller_batch():
    """A partial last batch draws the same bits for its rows as a full one: position = row * cols + col."""
    full, part = reference_mask(mask_graph((10, 7), 0.5, 3), 4), reference_mask(mask_graph((3, 7), 0.5, 3), 4)
    np.testing.assert_array_equal(part, full[:3])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_expected_value_is_the_input(p):
    """E[x * mask] = x: the mean of 64 steps of a [256, 256] mask is 1 within 5 standard errors
    (se = sqrt(p / ((1-p) n)), n = 4.2M draws: 0.00049 at p = 0.5; the exact expectation is
    scale * (1 - floor(p 2^32) / 2^32), 1 within 1e-7). The dropped fraction is p within 5 binomial se."""
    g = mask_graph((256, 256), p, seed=11)
    masks = np.stack([reference_mask(g, t) for t in range(64)])
    n = masks.size
    exact = keep_scale(p) * (1 - threshold(p) / 2**32)
    assert abs(exact - 1) < 1e-7
    assert abs(masks.mean(dtype=np.float64) - 1) < 5 * math.sqrt(p / ((1 - p) * n))
    assert abs((masks == 0).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # and per element: each position's mean over the 64 steps stays within 6 se of 1 (65536 positions)
    per = masks.mean(axis=0, dtype=np.float64)
    assert np.abs(per - 1).max() < 6 * math.sqrt(p / ((1 - p) * 64)) + 1e-9


def test_steps_and_streams_draw_independent_masks():
    """Two masks agree on a fraction p^2 + (1-p)^2 of positions (within 5 se) across steps and streams."""
    p, n = 0.5, 256 * 256
    def mask(seed: int, stream: int, t: int) -> np.ndarray:
        return reference_mask(mask_graph((256, 256), p, seed, stream), t)

    a = mask(1, 0, 0)
    for other in (mask(1, 0, 1), mask(1, 1, 0), mask(2, 0, 0)):  # another step, stream, seed
        agree = (a == other).mean()
        q = p * p + (1 - p) ** 2
        assert abs(agree - q) < 5 * math.sqrt(q * (1 - q) / n)


def _dropout_trainer(backend: str, p: float = 0.5, seed: int = 4):
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(p))
    return mlpc.compile(model, nn.MSELoss(), optim.SGD(lr=0.1), batch_size=6, backend=backend, seed=seed)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_active_in_step_identity_in_predict(backend):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 8)).astype(np.float32)
    tr = _dropout_trainer(backend)
    w, b = tr.parameters()["0.weight"], tr.parameters()["0.bias"]
    dense = x @ w + b
    np.testing.assert_allclose(tr.predict(x), dense, rtol=1e-6, atol=1e-6)
    mask = reference_mask(mask_graph((6, 8), 0.5, seed=4, stream=0), 0)
    want = float(np.mean(np.square(dense * mask - y)))
    assert tr.step(x, y) == pytest.approx(want, rel=1e-6)
    assert tr.evaluate(x, y) == pytest.approx(float(np.mean(np.square(tr.predict(x) - y))), rel=1e-6)


def test_p_one_drops_everything_and_p_zero_adds_no_op():
    x = np.ones((6, 4), np.float32)
    y = np.ones((6, 8), np.float32)
    assert _dropout_trainer("llvm", p=1.0).step(x, y) == pytest.approx(1.0)
    assert "dropout_mask" not in _dropout_trainer("numpy", p=0.0).ir("traced")


def test_numpy_and_llvm_train_identically():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 10)).astype(np.float32), rng.integers(0, 3, 32)
    params = []
    for backend in ("numpy", "llvm"):
        m = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.4), nn.Linear(32, 32), nn.GELU(),
                          nn.Dropout(0.2), nn.Linear(32, 3))
        tr = mlpc.compile(m, nn.CrossEntropyLoss(), optim.Adam(lr=1e-2), batch_size=32, backend=backend)
        for _ in range(5):
            tr.step(x, y)
        params.append(tr.parameters())
    for k in params[0]:
        np.testing.assert_allclose(params[0][k], params[1][k], rtol=1e-5, atol=1e-5)


def test_mask_fuses_into_the_gemm_epilogues():
    m = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))
    tr = mlpc.compile(m, nn.CrossEntropyLoss(), batch_size=8, backend="llvm")
    kernels = [line for line in tr.ir("fused").splitlines() if line.startswith("//   k")]
    fills = [k for k in kernels if "[dropout_mask]" in k]
    assert len(fills) == 1
    mask = fills[0].split("-> (")[1].rstrip(")")
    users = [k for k in kernels if mask in k.split("] (")[1].split(") ->")[0].split(", ")]
    assert users and all("_gemm: [matmul" in k and "mul" in k for k in users), kernels


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_resume_is_bit_identical(tmp_path, backend):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 3, 16)

    def build():
        m = nn.Sequential(nn.Linear(6, 24), nn.SiLU(), nn.Dropout(0.5), nn.Linear(24, 3))
        return mlpc.compile(m, nn.CrossEntropyLoss(label_smoothing=0.1), optim.Adam(lr=1e-2), batch_size=16,
                            backend=backend, seed=9)

    straight = build()
    losses = [straight.step(x, y) for _ in range(6)]
    first = build()
    resumed_losses = [first.step(x, y) for _ in range(3)]
    first.save(str(tmp_path / "ck.safetensors"))
    second = mlpc.load(str(tmp_path / "ck.safetensors"))
    resumed_losses += [second.step(x, y) for _ in range(3)]
    assert resumed_losses == losses
    for k, v in straight.parameters().items():
        np.testing.assert_array_equal(second.parameters()[k], v)


def test_exported_library_draws_the_same_masks(tmp_path):
    """The AOT library carries t as state and runs the LLVM mask kernel: its steps equal the trainer's."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 6)).astype(np.float32), rng.integers(0, 3, 7).astype(np.int32)
    m = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(0.5), nn.LayerNorm(16), nn.Linear(16, 3))
    tr = mlpc.compile(m, nn.CrossEntropyLoss(label_smoothing=0.1), optim.Adam(lr=1e-2), batch_size=7, backend="llvm")
    lib = mlpc.load_library(mlpc.export(tr, str(tmp_path), "drop").library)
    assert [lib.step(x, y) for _ in range(3)] == [tr.step(x, y) for _ in range(3)]
    np.testing.assert_array_equal(lib.predict(x), tr.predict(x))


def test_exported_library_trains_a_float_target_loss(tmp_path):
    """BCE (like every float-target loss) exports: the loss is in the compiled step."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 6)).astype(np.float32), (rng.random((7, 3)) > 0.5).astype(np.float32)
    m = nn.Sequential(nn.Linear(6, 8), nn.SiLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    tr = mlpc.compile(m, nn.BCEWithLogitsLoss(), optim.SGD(lr=0.1), batch_size=7, backend="llvm")
    lib = mlpc.load_library(mlpc.export(tr, str(tmp_path), "bce").library)
    assert [lib.step(x, y) for _ in range(2)] == [tr.step(x, y) for _ in range(2)]
