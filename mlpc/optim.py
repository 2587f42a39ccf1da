"""Optimizer descriptions; the `optimizer` passes turn them into update ops inside the graph."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Optimizer:
    """Base: `pass_name` is the registered pass that emits this optimizer's update."""

    def __post_init__(self) -> None:
        """Hyperparameters as plain Python values: real scalars of any kind (NumPy's included) become
        float/int/bool; anything else (strings, arrays, NaN, Inf, a bool given as a number) is refused."""
        for f in fields(self):
            object.__setattr__(self, f.name, _plain(type(self).__name__, f.name, str(f.type), getattr(self, f.name)))

    def pass_name(self) -> str:
        return type(self).__name__.lower()

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}

    def pipeline_text(self) -> str:
        from mlpc.printer import format_attr

        opts = ", ".join(f"{k}={format_attr(v)}" for k, v in self.options().items())
        return f"{self.pass_name()}{{{opts}}}"

    def spec(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **self.options()}


def _plain(owner: str, name: str, kind: str, v: Any) -> Any:
    def bad(want: str) -> ValueError:
        return ValueError(f"{owner} {name} must be {want}, got {v!r} ({type(v).__name__})")

    if kind == "bool":
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers.Integral) and v in (0, 1)):
            return bool(v)
        raise bad("True or False")
    if kind.startswith("tuple"):
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise bad("a pair of real numbers")
        return tuple(_plain(owner, name, "float", b) for b in v)
    is_bool = isinstance(v, (bool, np.bool_))
    if kind == "int":
        if isinstance(v, numbers.Integral) and not is_bool:
            return int(v)
        raise bad("an integer")
    if not isinstance(v, numbers.Real) or is_bool:
        raise bad("a real number")
    out = float(v)
    if not math.isfinite(out):
        raise bad("a finite number")
    return out


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class SGD(Optimizer):
    """PyTorch's SGD (momentum buffer = g on the first step, optional Nesterov, weight decay)."""

    lr: float = 0.01
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.lr > 0, f"SGD lr must be > 0, got {self.lr}")
        _check(self.momentum >= 0, f"SGD momentum must be >= 0, got {self.momentum}")
        _check(not self.nesterov or (self.momentum > 0 and self.dampening == 0),
               "Nesterov SGD needs momentum > 0 and dampening 0")


@dataclass(frozen=True)
class Momentum(Optimizer):
    """The lecture's momentum: u' = beta u + (1-beta) g; optional bias correction and look-ahead."""

    lr: float = 0.01
    beta: float = 0.9
    unbiased: bool = False
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.lr > 0, f"Momentum lr must be > 0, got {self.lr}")
        _check(0 <= self.beta < 1, f"Momentum beta must be in [0, 1), got {self.beta}")


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam; `decoupled=True` is AdamW; `bias_correction=False` drops the 1 - beta^t terms."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    bias_correction: bool = True
    weight_decay: float = 0.0
    decoupled: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.lr > 0, f"Adam lr must be > 0, got {self.lr}")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
               f"Adam betas must be two numbers in [0, 1), got {self.betas}")

    def pass_name(self) -> str:
        return "adam"


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, like PyTorch)."""

    weight_decay: float = 0.01
    decoupled: bool = field(default=True)


@dataclass(frozen=True)
class Newton(Optimizer):
    """theta -= lr (H + damping I)^-1 grad with the exact Hessian; small models only."""

    lr: float = 1.0
    damping: float = 0.0
    max_params: int = 20000


_BY_NAME = {"SGD": SGD, "Momentum": Momentum, "Adam": Adam, "AdamW": AdamW, "Newton": Newton}


def from_spec(spec: dict[str, Any]) -> Optimizer:
    args = dict(spec)
    kind = args.pop("type")
    if kind not in _BY_NAME:
        raise ValueError(f"unknown optimizer {kind!r}")
    if "betas" in args:
        args["betas"] = tuple(args["betas"])
    return _BY_NAME[kind](**args)


def by_name(name: str, lr: float | None = None) -> Optimizer:
    """CLI names: sgd, momentum, nesterov, adam, adamw, ..."""
    table: dict[str, tuple[type[Optimizer], dict[str, Any]]] = {
        "sgd": (SGD, {}), "sgd-momentum": (SGD, {"momentum": 0.9}),
        "momentum": (Momentum, {}), "momentum-unbiased": (Momentum, {"unbiased": True}),
        "nesterov": (Momentum, {"nesterov": True}), "adam": (Adam, {}),
        "adam-nobc": (Adam, {"bias_correction": False}), "adamw": (AdamW, {}),
    }
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(table)}")
    cls, kw = table[name]
    if lr is not None:
        kw = {**kw, "lr": lr}
    return cls(**kw)
