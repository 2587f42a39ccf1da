"""Functions built from primitive ops at trace time (backends never see them): erf-GELU, softplus, reductions."""

from __future__ import annotations

import math

from mlpc.tracing import Tensor, Tracer

# Numerical Recipes' erfc (Chebyshev fit, fractional error < 1.2e-7): with z = |u| and t = 1/(1 + z/2),
# erfc(z) = t exp(-z^2 + P(t)). Measured in float64 over [-12, 12]: x Phi(x) within 1.4e-8 of the exact
# erf form, its derivative within 9e-8 (tests/mlpc/test_layers_torch.py checks both against torch).
ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
               1.48851587, -0.82215223, 0.17087277)
REDUCTIONS = ("mean", "sum")


def _emit(name: str, *operands: Tensor, **attrs: object) -> Tensor:
    return Tracer.current().emit(name, *operands, **attrs)


def normal_cdf(x: Tensor) -> Tensor:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 from the erfc fit above; exp(-z^2) underflows to 0, never NaN."""
    z = _emit("abs", x) * (1.0 / math.sqrt(2.0))
    t = 1.0 / (z * 0.5 + 1.0)
    poly = t * ERFC_COEFFS[-1] + ERFC_COEFFS[-2]
    for c in reversed(ERFC_COEFFS[:-2]):
        poly = poly * t + c
    half_erfc = t * _emit("exp", poly - _emit("square", z)) * 0.5
    return _emit("where", _emit("greater_equal", x, _like(0.0, x)), 1.0 - half_erfc, half_erfc)


def gelu_erf(x: Tensor) -> Tensor:
    """Exact-form GELU x Phi(x) (PyTorch's default `approximate='none'`)."""
    return x * normal_cdf(x)


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
