"""Activation and gradient norms per layer at initialization (the lecture's depth-50 figure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mlpc import init, nn, optim
from mlpc.errors import MlpcError
from mlpc.init import Initializer

LECTURE_INITS = ("1/n", "2/n", "3/n")
UNIFORM_INITS = ("xavier_uniform", "kaiming_uniform")


def initializer(name: str) -> Initializer:
    """`c/n` is N(0, c/n) (fan_in n); anything else is an mlpc.init name such as `kaiming_uniform`."""
    if name.endswith("/n"):
        try:
            c = float(name[:-2])
        except ValueError:
            raise MlpcError(f"bad initialization {name!r}: expected c/n with a number c, e.g. 2/n") from None
        if not c >= 0 or c == float("inf"):
            raise MlpcError(f"bad initialization {name!r}: the variance must be a finite number >= 0")
        return init.normal_fan_in(c)
    try:
        return init.from_spec(name)
    except (ValueError, TypeError) as e:
        raise MlpcError(f"bad initialization {name!r}: {e}") from None


def deep_mlp(weight_init: Initializer, depth: int = 50, width: int = 100, in_features: int = 784,
             classes: int = 10, bias: bool = False) -> nn.Sequential:
    """`depth` Linear layers (in -> width -> ... -> classes) with ReLU between; biases start at 0."""
    if depth < 1 or width < 1:
        raise MlpcError(f"depth and width must be >= 1, got depth {depth}, width {width}")
    mods: list[nn.Module] = []
    n = in_features
    for i in range(depth):
        out = classes if i == depth - 1 else width
        mods.append(nn.Linear(n, out, bias=bias, init=weight_init, bias_init=init.zeros()))
        if i < depth - 1:
            mods.append(nn.ReLU())
        n = out
    return nn.Sequential(*mods)


@dataclass
class ProbeResult:
    """Norms for one initialization: act[k] after k layers (act[0] = ||X||), grad[i] = ||dL/dW_{i+1}||."""

    name: str
    loss: float
    act: list[float]
    grad: list[float]
    bias_grad: list[float] = field(default_factory=list)


def probe_init(name: str, x: np.ndarray, y: np.ndarray, depth: int = 50, width: int = 100, seed: int = 0,
               bias: bool = False, backend: str = "numpy") -> ProbeResult:
    """Build the deep MLP with initialization `name`, run one probed step on (x, y), read the norms."""
    import mlpc

    model = deep_mlp(initializer(name), depth, width, x.shape[1], int(y.max()) + 1, bias)
    trainer = mlpc.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=1e-3), batch_size=len(x),
                           backend=backend, seed=seed, probe=True)
    loss = trainer.step(x, y)  # the probe reads the norms at the parameters before the update
    p = trainer.last_probe
    weights = [f"{2 * i}.weight" for i in range(depth)]
    return ProbeResult(name, loss, [p[f"probe.act.{k}"] for k in range(depth + 1)],
                       [p["probe.grad." + w] for w in weights],
                       [p[f"probe.grad.{2 * i}.bias"] for i in range(depth)] if bias else [])


def theory_ratio(c: float, layers: int) -> float:
    """Expected growth of a ReLU activation norm over `layers` layers of N(0, c/n) weights: (c/2)^(layers/2)."""
    return (c / 2.0) ** (layers / 2.0)


def table(results: list[ProbeResult], every: int = 5) -> str:
    """Rows: layer k (every `every`-th), then per init its activation norm and weight-gradient norm."""
    depth = len(results[0].grad)
    rows = sorted(set(range(0, depth + 1, every)) | {1, depth})
    widths = [max(12, len(r.name) + 6) for r in results]
    head = f"{'layer':>5} " + " ".join(f"{'act ' + r.name:>{w}} {'grad ' + r.name:>{w}}"
                                        for r, w in zip(results, widths, strict=True))
    lines = [head]
    for k in rows:
        cells = []
        for r, w in zip(results, widths, strict=True):
            g = r.grad[k - 1] if k >= 1 else math.nan
            cells.append(f"{r.act[k]:{w}.4g} {g:{w}.4g}")
        lines.append(f"{k:5d} " + " ".join(cells))
    return "\n".join(lines)
