"""Losses (`mlpc.nn.*Loss`): what the targets are, the traced scalar loss, and what `evaluate` reports."""

from __future__ import annotations

import abc
import inspect
import json
from typing import Any

import numpy as np

from mlpc import functional as F
from mlpc.tracing import Tensor, Tracer, user_location
from mlpc.types import DType, TensorType


def refuse(owner: str, name: str, value: Any, default: Any) -> None:
    """A torch argument mlpc accepts only at its default value."""
    if value is not default and value != default:
        raise ValueError(f"{owner}: {name}={value!r} is not supported (only {default!r})")


class Loss(abc.ABC):
    """A loss: `target_type` says what y must be, `__call__` traces the scalar loss.

    `metric` is what `Trainer.evaluate` reports by default: "accuracy" (argmax of the outputs against
    integer labels), "elementwise_accuracy" (sign of each logit against 0/1 targets) or "loss"."""

    _loc = ""
    metric = "loss"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Loss":
        self = super().__new__(cls)
        self._loc = user_location()  # the loss ops point at the line that built the loss
        return self

    def __init__(self) -> None:
        """No options: a subclass without its own __init__ refuses arguments instead of ignoring them."""
        super().__init__()

    def trace(self, prediction: Tensor, target: Tensor) -> Tensor:
        tracer = Tracer.current()
        tracer.module_locs.append(self._loc)
        try:
            return self(prediction, target)
        finally:
            tracer.module_locs.pop()

    def target_type(self, batch: int, out_features: int) -> TensorType:
        """The type the targets y must have for a batch (default: floats shaped like the output)."""
        return TensorType(DType.f32, (batch, out_features))

    @abc.abstractmethod
    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Trace the scalar loss."""

    def options(self) -> dict[str, Any]:
        """Constructor arguments that differ from their defaults (built-in losses)."""
        return {}

    def spec(self) -> dict:
        """JSON description; a user's subclass is stored by import path with its JSON-able constructor
        arguments (those __init__ names that are attributes of the same name)."""
        kind = type(self)
        if kind in LOSSES.values():
            return {"type": kind.__name__, **self.options()}
        return {"type": kind.__name__, "class": import_path(kind), "args": ctor_args(self)}


def import_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def ctor_args(obj: Any) -> dict[str, Any]:
    """The JSON-able values of obj's attributes named like its __init__ parameters."""
    out: dict[str, Any] = {}
    try:
        params = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return out
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name not in vars(obj):
            continue
        value = vars(obj)[name]
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[name] = value
    return out


class _Reduced(Loss):
    """A loss over all elements with torch's `reduction` argument ('mean' or 'sum')."""

    def __init__(self, reduction: str = "mean") -> None:
        from mlpc.composites import check_reduction

        check_reduction(reduction)
        self.reduction = reduction

    def options(self) -> dict[str, Any]:
        return {"reduction": self.reduction} if self.reduction != "mean" else {}


class CrossEntropyLoss(_Reduced):
    """Softmax cross-entropy (mean over rows), optional label smoothing; targets are integer labels [B]."""

    metric = "accuracy"

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        refuse("CrossEntropyLoss", "weight", weight, None)
        refuse("CrossEntropyLoss", "ignore_index", ignore_index, -100)
        super().__init__(reduction)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def target_type(self, batch: int, out_features: int) -> TensorType:
        return TensorType(DType.i32, (batch,))

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target, self.label_smoothing, self.reduction)

    def options(self) -> dict[str, Any]:
        out = super().options()
        if self.label_smoothing:
            out["label_smoothing"] = self.label_smoothing
        return out


class MSELoss(_Reduced):
    """Mean (or summed) squared error over all elements; targets are floats shaped like the output."""

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target, self.reduction)


class L1Loss(_Reduced):
    """Mean (or summed) absolute error over all elements."""

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(prediction, target, self.reduction)


class HuberLoss(_Reduced):
    """Huber loss with threshold `delta` (PyTorch's HuberLoss), mean or sum over all elements."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        if not float(delta) > 0:
            raise ValueError(f"HuberLoss: delta must be > 0, got {delta}")
        self.delta = float(delta)

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.huber_loss(prediction, target, self.delta, self.reduction)

    def options(self) -> dict[str, Any]:
        return {**super().options(), **({"delta": self.delta} if self.delta != 1.0 else {})}


class BCEWithLogitsLoss(_Reduced):
    """Sigmoid + binary cross-entropy in one stable expression; targets in [0, 1] shaped like the output
    ([B, 1] for a binary task, [B, C] for C independent labels)."""

    metric = "elementwise_accuracy"

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        refuse("BCEWithLogitsLoss", "weight", weight, None)
        refuse("BCEWithLogitsLoss", "pos_weight", pos_weight, None)
        super().__init__(reduction)

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(prediction, target, self.reduction)


LOSSES: dict[str, type[Loss]] = {c.__name__: c for c in (CrossEntropyLoss, MSELoss, L1Loss, HuberLoss,
                                                         BCEWithLogitsLoss)}


def loss_value(loss: Loss, prediction: np.ndarray, target: np.ndarray) -> float:
    """The loss of `prediction` against `target` over all rows at once, by the NumPy reference interpreter."""
    from mlpc.interpreter import interpret

    p = np.asarray(prediction, np.float32)
    with Tracer() as tr:
        pt = tr.input("prediction", TensorType(DType.f32, p.shape))
        tt = tr.input("target", loss.target_type(p.shape[0], p.shape[1]))
        graph = tr.graph("loss", {"loss": loss.trace(pt, tt)})
    y = np.asarray(target, graph.inputs[1].value.dtype.numpy)
    return float(interpret(graph, {"prediction": p, "target": y})["loss"])


def metric_values(loss: Loss, prediction: np.ndarray, target: np.ndarray, metrics: list[str]) -> dict[str, float]:
    """Named metrics of a prediction: "loss", "accuracy", "elementwise_accuracy", "r2", "mse", "mae"."""
    y = np.asarray(target)
    out: dict[str, float] = {}
    for m in metrics:
        if m == "loss":
            out[m] = loss_value(loss, prediction, y)
        elif m == "accuracy" and y.ndim == 1:
            out[m] = float((prediction.argmax(axis=1) == y).mean())
        elif m in ("accuracy", "elementwise_accuracy") and y.shape == prediction.shape:
            out[m] = float(((prediction > 0) == (y >= 0.5)).mean())
        elif m in ("r2", "mse", "mae") and y.shape == prediction.shape:
            d = prediction.astype(np.float64) - y
            if m == "r2":
                ss_tot = float(np.square(y - y.mean(axis=0)).sum())
                out[m] = 1.0 - float(np.square(d).sum()) / ss_tot if ss_tot > 0 else float("nan")
            else:
                out[m] = float(np.mean(np.square(d)) if m == "mse" else np.mean(np.abs(d)))
        elif m in ("accuracy", "elementwise_accuracy", "r2", "mse", "mae"):
            raise ValueError(f"metric {m!r} does not apply to targets of shape {list(y.shape)} and outputs of "
                             f"shape {list(prediction.shape)}")
        else:
            raise ValueError(f"unknown metric {m!r}; known: loss, accuracy, elementwise_accuracy, r2, mse, mae")
    return out
