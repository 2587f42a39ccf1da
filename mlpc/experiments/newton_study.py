"""Damped Newton vs gradient descent on full-batch softmax regression."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mlpc import nn, optim
from mlpc.api import Trainer
from mlpc.errors import NumericalError


@dataclass
class NewtonStudy:
    """Loss curves (loss after 0..iters iterations) for Newton and for GD at each step size."""

    newton: list[float]
    gd: dict[float, list[float]]
    newton_seconds: float

    def best_gd(self) -> tuple[float, list[float]]:
        lr = min(self.gd, key=lambda k: self.gd[k][-1])
        return lr, self.gd[lr]


def _curve(trainer: Trainer, x: np.ndarray, y: np.ndarray, iters: int) -> list[float]:
    losses = []
    try:
        for _ in range(iters + 1):  # the last step only reads the loss after `iters` updates
            losses.append(trainer.step(x, y))
    except NumericalError:
        losses += [float("inf")] * (iters + 1 - len(losses))
    return losses


def pool(x: np.ndarray, k: int) -> np.ndarray:
    """Average-pool 28x28 MNIST images by k x k (k = 1 leaves them as they are)."""
    if 28 % k:
        raise ValueError(f"pool size must divide 28, got {k}")
    n = 28 // k
    return x.reshape(len(x), n, k, n, k).mean(axis=(2, 4)).reshape(len(x), n * n).astype(np.float32)


def newton_vs_gd(x: np.ndarray, y: np.ndarray, newton: optim.Newton, newton_iters: int = 10,
                 gd_iters: int = 100, gd_lrs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0), seed: int = 0,
                 backend: str = "numpy") -> NewtonStudy:
    """Softmax regression (Linear(features, classes)) on the full batch (x, y), same initialization for all."""
    import mlpc

    classes = int(y.max()) + 1
    start = time.perf_counter()
    tr = mlpc.compile(nn.Linear(x.shape[1], classes), optimizer=newton, batch_size=len(x), seed=seed,
                      backend=backend)
    newton_curve = _curve(tr, x, y, newton_iters)
    seconds = time.perf_counter() - start
    gd = {}
    for lr in gd_lrs:
        tr = mlpc.compile(nn.Linear(x.shape[1], classes), optimizer=optim.SGD(lr=lr), batch_size=len(x), seed=seed,
                          backend=backend)
        gd[lr] = _curve(tr, x, y, gd_iters)
    return NewtonStudy(newton_curve, gd, seconds)
