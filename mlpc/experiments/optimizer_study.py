"""One MLP on MNIST trained with each of the lecture's optimizers: loss curves and test accuracy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mlpc import init, nn, optim


def lecture_optimizers(lr: float = 0.1, adam_lr: float = 1e-3) -> dict[str, optim.Optimizer]:
    """SGD, momentum (plain and unbiased), Nesterov, Adam with and without bias correction."""
    return {
        "SGD": optim.SGD(lr=lr),
        "momentum": optim.Momentum(lr=lr, beta=0.9),
        "momentum (unbiased)": optim.Momentum(lr=lr, beta=0.9, unbiased=True),
        "Nesterov": optim.Momentum(lr=lr, beta=0.9, nesterov=True),
        "Adam": optim.Adam(lr=adam_lr),
        "Adam (no bias correction)": optim.Adam(lr=adam_lr, bias_correction=False),
    }


def default_model(hidden: int = 100, depth: int = 2) -> nn.Sequential:
    """784 -> hidden (x depth-1) -> 10, ReLU, Kaiming-normal weights and zero biases."""
    mods: list[nn.Module] = []
    n = 784
    for _ in range(depth - 1):
        mods += [nn.Linear(n, hidden, init=init.kaiming_normal(), bias_init=init.zeros()), nn.ReLU()]
        n = hidden
    mods.append(nn.Linear(n, 10, init=init.kaiming_normal(), bias_init=init.zeros()))
    return nn.Sequential(*mods)


@dataclass
class StudyResult:
    losses: dict[str, list[float]] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"{'optimizer':<28} {'final loss':>11} {'test acc':>9} {'time s':>7}"]
        for name, losses in self.losses.items():
            tail = float(np.mean(losses[-50:]))
            lines.append(f"{name:<28} {tail:11.4f} {100 * self.test_accuracy[name]:8.2f}% {self.seconds[name]:7.1f}")
        return "\n".join(lines)


def _recorder(losses: list[float]) -> Callable[[int, float], None]:
    def on_step(batch: int, loss: float) -> None:
        losses.append(loss)
    return on_step


def run_study(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              optimizers: dict[str, optim.Optimizer], model_fn: Callable[[], nn.Module] = default_model,
              epochs: int = 1, batch_size: int = 128, seed: int = 0, backend: str = "numpy") -> StudyResult:
    """Train a fresh `model_fn()` (same seed, same batches) with each optimizer."""
    import mlpc

    out = StudyResult()
    for name, opt in optimizers.items():
        start = time.perf_counter()
        trainer = mlpc.compile(model_fn(), nn.CrossEntropyLoss(), opt, batch_size=batch_size, backend=backend,
                               seed=seed)
        losses: list[float] = []
        trainer.fit(x_train, y_train, epochs=epochs, on_step=_recorder(losses))
        out.losses[name] = losses
        out.test_accuracy[name] = trainer.evaluate(x_test, y_test)
        out.seconds[name] = time.perf_counter() - start
    return out
