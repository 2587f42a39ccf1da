"""The lecture's 2-D quadratic f(theta) = 1/2 theta'P theta + q'theta and optimizer paths over it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlpc import optim
from mlpc.experiments.objective import trajectory
from mlpc.tracing import Tensor


def quadratic_loss(theta: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """1/2 theta'P theta + q'theta, written with DSL ops (theta is a vector)."""
    row = theta.reshape(1, theta.shape[0])
    return ((row @ p) * row).sum() * 0.5 + (q * theta).sum()


@dataclass
class Quadratic:
    """P positive definite (an ill-conditioned ellipse by default), q, and a start point."""

    p: np.ndarray = field(default_factory=lambda: np.array([[3.0, 1.6], [1.6, 1.2]]))
    q: np.ndarray = field(default_factory=lambda: np.array([-1.0, 0.5]))
    start: np.ndarray = field(default_factory=lambda: np.array([-2.5, 3.5]))

    def __post_init__(self) -> None:
        if np.any(np.linalg.eigvalsh(self.p) <= 0):
            raise ValueError("P must be positive definite")

    def value(self, theta: np.ndarray) -> np.ndarray:
        """f at points theta [..., 2] (NumPy, for contour plots)."""
        return 0.5 * np.einsum("...i,ij,...j->...", theta, self.p, theta) + theta @ self.q

    def minimum(self) -> np.ndarray:
        return -np.linalg.solve(self.p, self.q)

    def path(self, optimizer: optim.Optimizer, steps: int) -> np.ndarray:
        return trajectory(quadratic_loss, self.start, optimizer, steps, {"p": self.p, "q": self.q})


def lecture_optimizers(quad: Quadratic) -> dict[str, optim.Optimizer]:
    """GD at three step sizes (relative to 2/lambda_max, where GD stops converging), momentum, Nesterov, Adam."""
    edge = 2.0 / float(np.linalg.eigvalsh(quad.p).max())
    return {
        f"GD lr={0.2 * edge:.2f}": optim.SGD(lr=0.2 * edge),
        f"GD lr={0.5 * edge:.2f}": optim.SGD(lr=0.5 * edge),
        f"GD lr={0.95 * edge:.2f}": optim.SGD(lr=0.95 * edge),
        "momentum (beta=0.9)": optim.Momentum(lr=0.5 * edge, beta=0.9),
        "Nesterov (beta=0.9)": optim.Momentum(lr=0.5 * edge, beta=0.9, nesterov=True),
        "Adam (lr=0.3)": optim.Adam(lr=0.3),
        "Newton (lr=1)": optim.Newton(lr=1.0),
    }
