"""Functions built from primitive ops at trace time (backends never see them): softplus, reductions."""

from __future__ import annotations

from mlpc.tracing import Tensor, Tracer

REDUCTIONS = ("mean", "sum")


def _emit(name: str, *operands: Tensor, **attrs: object) -> Tensor:
    return Tracer.current().emit(name, *operands, **attrs)


def stable_softplus(u: Tensor) -> Tensor:
    """log(1 + exp(u)) without overflow: u + log(1 + exp(-u)) for u > 0, else log(1 + exp(u)). Both `where`
    operands stay finite, and the derivative is sigmoid(u) everywhere (0.5 at 0, as torch)."""
    pos = _emit("greater", u, _like(0.0, u))
    lin = _emit("where", pos, u, _like(0.0, u))
    e = _emit("exp", _emit("where", pos, -u, u))
    return lin + _emit("log", e + 1.0)


def _like(value: float, x: Tensor) -> Tensor:
    return _emit("full", value=float(value), dtype=x.dtype.value, shape=())


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r} "
                         "(a training loss is a scalar: 'none' is not supported)")


def reduce_all(mean: Tensor, count: int, reduction: str) -> Tensor:
    """A mean over `count` elements, or their sum for reduction='sum'."""
    return mean * float(count) if reduction == "sum" else mean
