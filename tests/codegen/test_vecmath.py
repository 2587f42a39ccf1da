"""Accuracy of the LLVM backend's exp/log/tanh/erf and of every activation's forward and derivative rule, over
the whole float32 range (every 2039th bit pattern; every pattern with --long), with the steps' FTZ/DAZ."""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pytest

from mlpc.ops import scalar as S
from tests.codegen.activation_rules import ACTIVATIONS, PRIMITIVES
from tests.codegen.ulp import SPECIALS, TINY, bit_sample, daz, kernel, ulp_error

LONG = os.environ.get("MLPC_FUZZ_PROFILE") == "long"
STRIDE = 2039  # 2.1M inputs, all exponents, both signs (a prime: mantissa patterns vary)
CHUNK = 1 << 24

# Max |got - exact| in ulp of the float32 result (float64 reference; 0.5 would be correctly rounded), over
# inputs whose exact result is a normal float32. Measured over the CI sample: exp 0.963, log 0.753, tanh 1.242,
# erf 5.476; every float32 input: exp 1.011 (x = 70.39), log 0.827 (x = 1.4136), tanh 1.330 (x = 0.6283),
# erf 7.483 (x = 3.9151: erf rounds to 1 - 2^-24 there).
PRIMITIVE_ULP = {"exp": 1.1, "log": 0.85, "tanh": 1.35, "erf": 7.5}
# Activations and the derivative rules the backward epilogues compute: error relative to max(|f|, 1), in units
# of 2^-23 (ulp of 1). Their rules cancel where f is small (1 - tanh^2 for large |x|, 1 + erf(x / sqrt 2) for
# x << 0), where a relative error in ulp is unbounded (the NumPy backend evaluating the same rule in float32
# cancels alike); measured over every 2039th float32.
ACTIVATION_ERR = {"sigmoid": 0.8, "sigmoid'": 0.8, "tanh'": 1.0, "gelu": 1.2, "gelu'": 4.7, "gelu_erf": 7.1,
                  "gelu_erf'": 1.8, "silu": 1.2, "silu'": 8.2, "elu": 0.5, "elu'": 0.5, "softplus": 1.1,
                  "softplus'": 0.6}


def _chunks() -> Iterator[np.ndarray]:
    if LONG:
        for start in range(0, 1 << 32, CHUNK):
            yield bit_sample(1, start, start + CHUNK)
    else:
        yield bit_sample(STRIDE)


def _eval(name: str, table: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rendered rule, float64 reference) per chunk of inputs (DAZ: subnormal inputs are zeros)."""
    expr, ref_fn = table[name]
    for x in _chunks():
        with np.errstate(all="ignore"):
            yield kernel(expr)(x), ref_fn(daz(x))


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_primitive_max_ulp_over_float32(name):
    worst, tiny_err = 0.0, 0.0
    for got, ref in _eval(name, PRIMITIVES):
        normal = np.isfinite(ref) & (np.abs(ref) >= TINY) & (np.abs(ref) <= float(np.finfo(np.float32).max))
        assert np.isfinite(got[normal]).all(), f"{name}: non-finite result for a finite exact one"
        worst = max(worst, float(ulp_error(got[normal], ref[normal]).max()))
        tiny = np.isfinite(ref) & (np.abs(ref) < TINY)  # exact result subnormal: flushed to zero (FTZ)
        if tiny.any():
            tiny_err = max(tiny_err, float(np.abs(got[tiny] - ref[tiny]).max()))
    print(f"{name}: max {worst:.3f} ulp")
    assert worst <= PRIMITIVE_ULP[name], f"{name}: {worst:.3f} ulp > {PRIMITIVE_ULP[name]}"
    assert tiny_err <= TINY


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_error_over_float32(name):
    worst = 0.0
    for got, ref in _eval(name, ACTIVATIONS):
        fin = np.isfinite(ref)
        assert np.isfinite(got[fin]).all(), f"{name}: non-finite result for a finite exact one"
        err = np.abs(got[fin] - ref[fin]) / np.maximum(np.abs(ref[fin]), 1.0) / 2.0 ** -23
        worst = max(worst, float(err.max()))
    print(f"{name}: max {worst:.3f} x 2^-23 max(|f|, 1)")
    assert worst <= ACTIVATION_ERR[name], f"{name}: {worst:.3f} > {ACTIVATION_ERR[name]}"


def _same_special(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Where `want` is NaN, an infinity or a zero, `got` is the same (any NaN, the same signed zero)."""
    for x, g, w in zip(SPECIALS, got, want):
        if np.isnan(w):
            assert np.isnan(g), f"{what}({x!r}) = {g!r}, want NaN"
        elif np.isinf(w) or w == 0:
            assert g == w and np.signbit(g) == np.signbit(w), f"{what}({x!r}) = {g!r}, want {w!r}"


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_primitive_special_values_exact(name):
    expr, ref_fn = PRIMITIVES[name]
    with np.errstate(all="ignore"):
        want = ref_fn(daz(SPECIALS)).astype(np.float32)
    _same_special(kernel(expr)(SPECIALS), want, name)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_special_inputs_as_the_numpy_backend(name):
    """+-0, +-inf and NaN inputs give what the NumPy reference evaluating the same rule gives, bit for bit."""
    expr = ACTIVATIONS[name][0]
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    with np.errstate(all="ignore"):
        want = np.asarray(S.evaluate(expr, [x], np.float32), np.float32)
    got = kernel(expr)(x)
    for xi, g, w in zip(x, got, want):
        assert (np.isnan(g) and np.isnan(w)) or (g == w and np.signbit(g) == np.signbit(w)), \
            f"{name}({xi!r}) = {g!r}, NumPy {w!r}"


def test_saturation_is_exact():
    x = bit_sample(STRIDE)
    x = x[np.isfinite(x)]
    t = kernel(S.tanh(S.X))(x)
    big = np.abs(x) >= 10.0
    assert (t[big] == np.sign(x[big])).all()
    assert (np.abs(t) <= 1.0).all()
    s = kernel(ACTIVATIONS["sigmoid"][0])(x)
    assert (s[x >= 17.0] == 1.0).all() and (s[x < -88.73] == 0.0).all() and not np.signbit(s).any()
    assert ((s >= 0.0) & (s <= 1.0)).all()


def test_odd_functions_keep_the_sign_of_zero_and_are_odd():
    x = bit_sample(STRIDE)
    x = x[np.isfinite(x) & (x >= 0)]
    for expr in (S.tanh(S.X), S.erf(S.X)):
        f = kernel(expr)
        np.testing.assert_array_equal(f(-x), -f(x))


@pytest.mark.parametrize("name", list(PRIMITIVES) + list(ACTIVATIONS))
def test_rendered_kernel_calls_nothing(name):
    """Straight-line vector code: no call (libm or other) in the loop of any primitive or rule."""
    expr = {**PRIMITIVES, **ACTIVATIONS}[name][0]
    asm = kernel(expr).asm
    body = [line for line in asm.splitlines() if line.strip() and not line.strip().startswith((".", "#"))]
    assert not [line for line in body if "call" in line], name
    assert "zmm" in asm or "ymm" in asm or "xmm" in asm
