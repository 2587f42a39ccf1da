"""mlpc.compile(backend="triton-ieee") against backend="numpy" across optimizers, activations,
residual blocks and losses (on the GPU when present, else under TRITON_INTERPRET=1)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.triton_check import max_rel_error, select_device  # noqa: E402

DEVICE = select_device()
TOL = 1e-4 if DEVICE == "cuda" else 2e-5

import mlpc  # noqa: E402
from mlpc import nn, optim  # noqa: E402


def model(kind: str) -> nn.Module:
    if kind == "residual-gelu":
        return nn.Sequential(nn.Linear(11, 16), nn.GELU(),
                             nn.Residual(nn.Sequential(nn.Linear(16, 16), nn.Sigmoid())), nn.Linear(16, 5))
    if kind == "leaky-nobias":
        return nn.Sequential(nn.Linear(11, 20, bias=False), nn.LeakyReLU(0.1), nn.Linear(20, 5, bias=False))
    return nn.Sequential(nn.Linear(11, 20), nn.Tanh(), nn.Linear(20, 5))


def train(backend: str, kind: str, opt: str, loss: nn.Loss, x, y, steps: int = 3):
    t = mlpc.compile(model(kind), loss=loss, optimizer=optim.by_name(opt, 0.05), batch_size=len(x),
                     backend=backend, seed=7)
    losses = [t.step(x, y) for _ in range(steps)]
    return t, losses


@pytest.mark.parametrize("opt", ["sgd", "sgd-momentum", "momentum", "momentum-unbiased", "nesterov", "adam",
                                 "adam-nobc", "adamw"])
@pytest.mark.parametrize("kind", ["tanh", "residual-gelu", "leaky-nobias"])
def test_training_matches_numpy_backend(opt: str, kind: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((23, 11)).astype(np.float32)
    if kind == "leaky-nobias":
        loss: nn.Loss = nn.MSELoss()
        y = rng.standard_normal((23, 5)).astype(np.float32)
    else:
        loss, y = nn.CrossEntropyLoss(), rng.integers(0, 5, 23)
    ref, ref_losses = train("numpy", kind, opt, loss, x, y)
    tri, tri_losses = train("triton-ieee", kind, opt, loss, x, y)
    assert max_rel_error(np.array(tri_losses), np.array(ref_losses)) < TOL
    for name, value in ref.parameters().items():
        assert max_rel_error(tri.parameters()[name], value) < TOL, name
    for name, value in ref.optimizer_state().items():
        assert max_rel_error(tri.optimizer_state()[name], value) < TOL, name
