"""Optimizer descriptions; the `optimizer` passes turn them into update ops inside the graph.

A description's fields are of two kinds: structural ones (momentum on or off, Nesterov, bias
correction, decoupled decay, eps) are compiled into the step; runtime ones (`hyper_keys`: lr,
momentum, betas, weight decay) are graph inputs the trainer sets between steps without recompiling.
The field values are the initial runtime values.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from mlpc.errors import MlpcError


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

    def pass_options(self) -> dict[str, Any]:
        """The options of the optimizer pass: the structural choices only."""
        return self.options()

    def hyper_keys(self) -> list[str]:
        """Names of the runtime hyperparameters (graph inputs hyper.<key>)."""
        return []

    def hyper_values(self) -> dict[str, float]:
        """This description's values of the runtime hyperparameters."""
        return {}

    def group_keys(self) -> tuple[str, ...]:
        """Options a parameter group may override (torch spelling: lr, momentum, betas, weight_decay)."""
        return ()

    def pipeline_text(self, clip: float = 0.0, groups: Sequence[Sequence[str]] = ()) -> str:
        from mlpc.printer import format_attr

        opts = dict(self.pass_options())
        if clip:
            opts["clip"] = float(clip)
        if groups:
            opts["groups"] = [list(g) for g in groups]
        text = ", ".join(f"{k}={format_attr(v)}" for k, v in opts.items())
        return f"{self.pass_name()}{{{text}}}"

    def spec(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **self.options()}

    def check_hyper(self, key: str, value: Any) -> float:
        """Validate a new runtime value; refuses values that would need a different graph."""
        name = type(self).__name__
        if key not in self.hyper_keys():
            raise MlpcError(f"{name} has no runtime hyperparameter {key!r} in this compiled step "
                            f"(runtime: {', '.join(self.hyper_keys()) or 'none'})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise ValueError(f"{name} {key} must be a finite number, got {value!r}")
        v = float(value)
        if key in ("beta", "beta1", "beta2") and not 0 <= v < 1:
            raise ValueError(f"{name} {key} must be in [0, 1), got {v}")
        if v < 0:
            raise ValueError(f"{name} {key} must be >= 0, got {v}")
        return v


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
        _check(self.weight_decay >= 0, f"SGD weight_decay must be >= 0, got {self.weight_decay}")
        _check(not self.nesterov or (self.momentum > 0 and self.dampening == 0),
               "Nesterov SGD needs momentum > 0 and dampening 0")

    def pass_options(self) -> dict[str, Any]:
        return {"momentum": float(self.momentum), "dampening": float(self.dampening), "nesterov": self.nesterov}

    def hyper_keys(self) -> list[str]:
        return ["lr"] + (["momentum"] if self.momentum else []) + ["weight_decay"]

    def hyper_values(self) -> dict[str, float]:
        vals = {"lr": float(self.lr), "momentum": float(self.momentum), "weight_decay": float(self.weight_decay)}
        return {k: vals[k] for k in self.hyper_keys()}

    def group_keys(self) -> tuple[str, ...]:
        return ("lr", "momentum", "weight_decay") if self.momentum else ("lr", "weight_decay")

    def check_hyper(self, key: str, value: Any) -> float:
        if key == "momentum" and not self.momentum:
            raise MlpcError("this step was compiled without momentum (SGD(momentum=0)): momentum changes the "
                            "graph's structure; compile with SGD(momentum=...) to set it")
        v = super().check_hyper(key, value)
        if key == "momentum" and self.nesterov and v == 0:
            raise MlpcError("Nesterov SGD needs momentum > 0: compile without nesterov to set momentum 0")
        return v


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

    def pass_options(self) -> dict[str, Any]:
        return {"unbiased": self.unbiased, "nesterov": self.nesterov}

    def hyper_keys(self) -> list[str]:
        return ["lr", "beta"]

    def hyper_values(self) -> dict[str, float]:
        return {"lr": float(self.lr), "beta": float(self.beta)}

    def group_keys(self) -> tuple[str, ...]:
        return ("lr", "momentum")


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
        _check(self.weight_decay >= 0, f"Adam weight_decay must be >= 0, got {self.weight_decay}")

    def pass_name(self) -> str:
        return "adam"

    def pass_options(self) -> dict[str, Any]:
        return {"eps": float(self.eps), "bias_correction": self.bias_correction, "decoupled": self.decoupled}

    def hyper_keys(self) -> list[str]:
        return ["lr", "beta1", "beta2", "weight_decay"]

    def hyper_values(self) -> dict[str, float]:
        return {"lr": float(self.lr), "beta1": self.betas[0], "beta2": self.betas[1],
                "weight_decay": float(self.weight_decay)}

    def group_keys(self) -> tuple[str, ...]:
        return ("lr", "betas", "weight_decay")


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, like PyTorch)."""

    weight_decay: float = 0.01
    decoupled: bool = field(default=True)


@dataclass(frozen=True)
class Newton(Optimizer):
    """theta -= lr (H + damping I)^-1 grad with the exact Hessian; small models only (lr compiled in)."""

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


def hyper_feed(graph: Any, groups: list[dict[str, float]]) -> dict[str, Any]:
    """Arrays for every `hyper` input of a compiled graph from per-group values (groups[k] for group k)."""
    import numpy as np

    from passes.optimizer import hyper_input

    feed = {}
    for inp in graph.inputs_with_role("hyper"):
        for k, vals in enumerate(groups):
            key = next((h for h in vals if hyper_input(h, k) == inp.name), None)
            if key is not None:
                feed[inp.name] = np.asarray(vals[key], dtype=inp.value.dtype.numpy)
                break
        else:
            raise MlpcError(f"no value for hyperparameter input {inp.name}")
    return feed


def __getattr__(name: str) -> Any:
    """`mlpc.optim.lr_scheduler` is the module mlpc.lr_scheduler (imported on first use)."""
    if name == "lr_scheduler":
        import importlib

        return importlib.import_module("mlpc.lr_scheduler")
    raise AttributeError(f"module 'mlpc.optim' has no attribute {name!r}")
