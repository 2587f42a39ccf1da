"""bf16 emulation in the NumPy reference against exact formulas: rounding to nearest even, specials, the matmul."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mlpc.errors import MlpcError
from mlpc.precision import bf16_matmul, canonical, check_cpu, round_bf16


def bf16_exact(x: float) -> float:
    """The bf16 value nearest to finite x (ties to even), by exact rational arithmetic over all candidates."""
    f = Fraction(x)
    if f == 0:
        return x
    sign = -1 if f < 0 else 1
    a = abs(f)
    e = 0
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    while Fraction(2) ** e > a:
        e -= 1
    e = max(e, -126)  # subnormals share the smallest exponent
    ulp = Fraction(2) ** (e - 7)
    lo = (a // ulp) * ulp
    hi = lo + ulp
    if a - lo < hi - a or (a - lo == hi - a and (lo / ulp) % 2 == 0):
        best = lo
    else:
        best = hi
    if best >= Fraction(2) ** 128 * (1 - Fraction(1, 2 ** 9)):  # past the largest bf16's rounding boundary
        return sign * float("inf")
    return sign * float(best)


def test_rounding_matches_exact_formula_on_random_and_tie_values():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 32, 4000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    # exact ties: low 16 bits 0x8000, with the kept lsb both even and odd
    ties = (rng.integers(0, 2 ** 16, 200, dtype=np.uint64).astype(np.uint32) << np.uint32(16)) | np.uint32(0x8000)
    t = ties.view(np.float32)
    x = np.concatenate([x, t[np.isfinite(t)], np.float32([1.0, -1.0, 0.0, -0.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8])])
    got = round_bf16(x)
    want = np.array([bf16_exact(float(v)) for v in x], np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_rounding_ties_go_to_even():
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: even (1.0); 1 + 3*2^-8 halfway to 1 + 2^-6: even (1 + 2^-6)
    got = round_bf16(np.float32([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8)]))
    assert got.tolist() == [1.0, 1 + 2 ** -6, -1.0]


def test_specials_and_overflow():
    big = np.float32(np.finfo(np.float32).max)
    x = np.float32([np.inf, -np.inf, np.nan, big, -big, 0.0, -0.0, 3.3895e38])
    got = round_bf16(x)
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2])
    assert got[3] == np.inf and got[4] == -np.inf  # rounds past bf16's largest (3.3895e38)
    assert np.signbit(got[6]) and not np.signbit(got[5])
    assert got[7] == np.float32(3.3895313892515355e38)  # the largest bf16
    # a signalling NaN whose payload lies in the low bits stays NaN (quieted), never becomes inf; sign kept
    snan = np.uint32([0x7F800001, 0xFF800001]).view(np.float32)
    out = round_bf16(snan).view(np.uint32)
    assert out.tolist() == [0x7FC00000, 0xFFC00000]


def test_matmul_rounds_operands_and_sums_exactly():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal((7, 3)).astype(np.float32)
    want = np.array([[sum(Fraction(float(round_bf16(a)[i, k])) * Fraction(float(round_bf16(b)[k, j]))
                          for k in range(7)) for j in range(3)] for i in range(5)], dtype=np.float64)
    got = bf16_matmul(a, b, False, False)
    assert got.dtype == np.float32
    assert np.array_equal(got, want.astype(np.float32))  # float64 sums of exact products round once here
    assert np.array_equal(bf16_matmul(a.T.copy(), b.T.copy(), True, True), got)
    assert not np.array_equal(got, (a @ b).astype(np.float32))


def test_precision_names_and_refusals():
    assert canonical("ieee") == "fp32" and canonical("bf16") == "bf16"
    with pytest.raises(MlpcError, match="unknown precision='fp16'.*'fp32', 'tf32', 'bf16'"):
        canonical("fp16")
    with pytest.raises(MlpcError, match="precision='tf32' is not available on the llvm backend.*'fp32', 'bf16'"):
        check_cpu("tf32", "llvm")
    assert check_cpu(None, "numpy") == "fp32"
