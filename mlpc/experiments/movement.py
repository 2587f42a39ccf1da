"""Weight movement during training: ||W_t - W_0|| / ||W_0|| per layer (the lecture's key idea #2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlpc.api import Trainer
from mlpc.errors import MlpcError


@dataclass
class Movement:
    """steps[j] is a step count; relative[name][j] = ||W_t - W_0|| / ||W_0|| for that layer at steps[j]."""

    steps: list[int]
    relative: dict[str, list[float]]
    losses: list[float]

    def final(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.relative.items()}


def weight_names(params: dict[str, np.ndarray]) -> list[str]:
    """The 2-D parameters (the layers' W), in model order."""
    return [k for k, v in params.items() if v.ndim == 2]


def relative_movement(w0: dict[str, np.ndarray], wt: dict[str, np.ndarray], names: list[str]) -> dict[str, float]:
    out = {}
    for k in names:
        base = float(np.linalg.norm(w0[k]))
        if base == 0:
            raise MlpcError(f"{k} starts at zero: its relative movement is undefined")
        out[k] = float(np.linalg.norm(wt[k].astype(np.float64) - w0[k])) / base
    return out


def distance_between(wa: dict[str, np.ndarray], wb: dict[str, np.ndarray], base: dict[str, np.ndarray],
                     names: list[str]) -> dict[str, float]:
    """||W^a - W^b|| / ||base||: e.g. between the end points of two runs started from different seeds."""
    return relative_movement({k: base[k] for k in names}, {k: base[k] + (wb[k] - wa[k]) for k in names}, names)


def track(trainer: Trainer, x: np.ndarray, y: np.ndarray, epochs: int = 1, every: int = 10, seed: int = 0) -> Movement:
    """Train `trainer` on (x, y), recording every layer's relative movement every `every` steps."""
    if every <= 0 or epochs <= 0:
        raise MlpcError("epochs and every must be positive")
    w0 = {k: v.astype(np.float64) for k, v in trainer.parameters().items()}
    names = weight_names(w0)
    steps, losses = [0], []
    relative: dict[str, list[float]] = {k: [0.0] for k in names}
    step = 0
    for epoch in range(epochs):
        for xb, yb in trainer.batches(x, y, shuffle=True, seed=seed + epoch):
            losses.append(trainer.step(xb, yb))
            step += 1
            if step % every == 0:
                for k, v in relative_movement(w0, trainer.parameters(), names).items():
                    relative[k].append(v)
                steps.append(step)
    if steps[-1] != step:
        for k, v in relative_movement(w0, trainer.parameters(), names).items():
            relative[k].append(v)
        steps.append(step)
    return Movement(steps, relative, losses)
