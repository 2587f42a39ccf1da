"""Weight initialization schemes (W has shape [n, m], fan_in = n), seeded and reproducible."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

Shape = tuple[int, ...]


def fans(shape: Shape) -> tuple[int, int]:
    """fan_in, fan_out of a weight [n, m] (layer computes XW + b); a bias [m] has fan_in m."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 1:
        return shape[0], shape[0]
    n = int(np.prod(shape)) if shape else 1
    return n, n


@dataclass(frozen=True)
class Initializer:
    """A named scheme: `init(shape, rng, fan_in=None)` returns float32 values."""

    name: str
    args: tuple[tuple[str, float | str], ...]
    sample: Callable[[Shape, np.random.Generator, int, int], np.ndarray]

    def __call__(self, shape: Shape, rng: np.random.Generator, fan_in: int | None = None,
                 fan_out: int | None = None) -> np.ndarray:
        fi, fo = fans(shape)
        out = self.sample(shape, rng, fan_in or fi, fan_out or fo)
        return np.asarray(out, dtype=np.float32).reshape(shape)

    def spec(self) -> dict:
        return {"name": self.name, **dict(self.args)}


def zeros() -> Initializer:
    return Initializer("zeros", (), lambda s, r, fi, fo: np.zeros(s))


def constant(value: float) -> Initializer:
    return Initializer("constant", (("value", value),), lambda s, r, fi, fo: np.full(s, value))


def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    return Initializer("normal", (("mean", mean), ("std", std)), lambda s, r, fi, fo: r.normal(mean, std, s))


def uniform(low: float = 0.0, high: float = 1.0) -> Initializer:
    return Initializer("uniform", (("low", low), ("high", high)), lambda s, r, fi, fo: r.uniform(low, high, s))


def normal_fan_in(variance_times_n: float = 1.0) -> Initializer:
    """N(0, c/n) with n = fan_in: the lecture's sigma^2 = 1/n, 2/n, 3/n family."""
    c = variance_times_n
    return Initializer("normal_fan_in", (("variance_times_n", c),),
                       lambda s, r, fi, fo: r.normal(0.0, math.sqrt(c / fi), s))


def xavier_uniform(gain: float = 1.0) -> Initializer:
    return Initializer("xavier_uniform", (("gain", gain),),
                       lambda s, r, fi, fo: r.uniform(-1, 1, s) * gain * math.sqrt(6.0 / (fi + fo)))


def xavier_normal(gain: float = 1.0) -> Initializer:
    return Initializer("xavier_normal", (("gain", gain),),
                       lambda s, r, fi, fo: r.normal(0.0, gain * math.sqrt(2.0 / (fi + fo)), s))


def calculate_gain(nonlinearity: str, a: float = 0.0) -> float:
    if nonlinearity in ("linear", "identity", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def kaiming_uniform(nonlinearity: str = "relu", a: float = 0.0) -> Initializer:
    gain = calculate_gain(nonlinearity, a)
    return Initializer("kaiming_uniform", (("nonlinearity", nonlinearity), ("a", a)),
                       lambda s, r, fi, fo: r.uniform(-1, 1, s) * gain * math.sqrt(3.0 / fi))


def kaiming_normal(nonlinearity: str = "relu", a: float = 0.0) -> Initializer:
    """For ReLU this is N(0, 2/n)."""
    gain = calculate_gain(nonlinearity, a)
    return Initializer("kaiming_normal", (("nonlinearity", nonlinearity), ("a", a)),
                       lambda s, r, fi, fo: r.normal(0.0, gain / math.sqrt(fi), s))


def default_weight() -> Initializer:
    """PyTorch's Linear default: U(-1/sqrt(n), 1/sqrt(n))."""
    return kaiming_uniform("leaky_relu", math.sqrt(5.0))


def default_bias(fan_in: int) -> Initializer:
    bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
    return uniform(-bound, bound)


_BY_NAME: dict[str, Callable[..., Initializer]] = {
    "zeros": zeros, "constant": constant, "normal": normal, "uniform": uniform,
    "normal_fan_in": normal_fan_in, "xavier_uniform": xavier_uniform, "xavier_normal": xavier_normal,
    "kaiming_uniform": kaiming_uniform, "kaiming_normal": kaiming_normal,
}


def from_spec(spec: dict | str) -> Initializer:
    """Rebuild an initializer from `Initializer.spec()` or a bare name like "kaiming_normal"."""
    if isinstance(spec, str):
        spec = {"name": spec}
    args = dict(spec)
    name = args.pop("name")
    if name not in _BY_NAME:
        raise ValueError(f"unknown initializer {name!r}; known: {', '.join(sorted(_BY_NAME))}")
    if name in ("kaiming_uniform", "kaiming_normal") and "a" in args:
        args["a"] = float(args["a"])
    return _BY_NAME[name](**args)
