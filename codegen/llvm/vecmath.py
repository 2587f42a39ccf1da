"""Straight-line float32 exp, log and tanh in LLVM IR (Cephes polynomials): they vectorize, no libm calls."""

from __future__ import annotations

import math

from llvmlite import ir

from codegen.llvm.irutil import I32, const, intrinsic

# Accuracy (max error over every float32 input, in ulp of the float64 result rounded to float32; measured by
# tests/codegen/test_vecmath.py, exhaustively with --long) and special cases: see README "Floating point".
LOG2E = 1.4426950408889634
LN2_HI = 0.693359375  # ln 2 = LN2_HI + LN2_LO; LN2_HI has 9 significant bits, so n * LN2_HI is exact
LN2_LO = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
            5.0000001201e-1)
# Cephes logf: log(1 + m) = m - m^2/2 + m^3 P(m) for m in [sqrt(1/2) - 1, sqrt(2) - 1)
LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
            -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
SQRT_HALF = 0.70710678118654752440
# Cephes tanhf: tanh x = x + x^3 P(x^2) for |x| < 0.625, else 1 - 2 / (e^2|x| + 1) with the sign of x
TANH_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)
TANH_SMALL = 0.625
TANH_SAT = 10.0  # 1 - tanh(10) = 4.1e-9 < 2^-25: tanh rounds to +-1 exactly from here on
FLT_MIN = 1.1754943508222875e-38  # 2^-126, the smallest normal float32
C = ("contract",)


def _ity(ty: ir.Type) -> ir.Type:
    return ir.VectorType(I32, ty.count) if isinstance(ty, ir.VectorType) else I32


def _horner(b: ir.IRBuilder, x: ir.Value, coeffs: tuple[float, ...]) -> ir.Value:
    p = const(x.type, coeffs[0])
    for c in coeffs[1:]:
        p = b.fadd(b.fmul(p, x, flags=C), const(x.type, c), flags=C)
    return p


def fexp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """exp(x) (Cephes expf): x = n ln 2 + r, |r| <= ln 2 / 2, e^r by a polynomial, times 2^n as two powers of two
    (2^(n/2) 2^(n - n/2): both normal for every n in [-150, 128]). x > 88.72283 gives +inf, x < -104 (and -inf)
    0, NaN stays NaN; results below 2^-126 are subnormal, or zero under FTZ."""
    ty = x.type
    ity = _ity(ty)
    xc = b.select(b.fcmp_ordered(">", x, const(ty, 88.72283)), const(ty, 88.72283), x)
    xc = b.select(b.fcmp_ordered("<", xc, const(ty, -104.0)), const(ty, -104.0), xc)
    n = intrinsic(b, "floor", ty, [b.fadd(b.fmul(xc, const(ty, LOG2E)), const(ty, 0.5))])
    r = b.fsub(xc, b.fmul(n, const(ty, LN2_HI)))
    r = b.fsub(r, b.fmul(n, const(ty, LN2_LO)))
    p = _horner(b, r, EXP_POLY)
    r2 = b.fmul(r, r)
    p = b.fadd(b.fadd(b.fmul(p, r2, flags=C), r, flags=C), const(ty, 1.0))
    ni = b.fptosi(n, ity)
    n1 = b.ashr(ni, const(ity, 1))
    pow1 = b.bitcast(b.shl(b.add(n1, const(ity, 127)), const(ity, 23)), ty)
    pow2 = b.bitcast(b.shl(b.add(b.sub(ni, n1), const(ity, 127)), const(ity, 23)), ty)
    res = b.fmul(b.fmul(p, pow1), pow2)
    res = b.select(b.fcmp_ordered(">", x, const(ty, 88.72283)), const(ty, math.inf), res)
    res = b.select(b.fcmp_ordered("<", x, const(ty, -104.0)), const(ty, 0.0), res)
    return b.select(b.fcmp_unordered("uno", x, x), x, res)


def flog(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log(x) (Cephes logf): x = 2^e m with m in [sqrt(1/2), sqrt 2), log x = e ln 2 + log(1 + (m - 1)).
    Subnormal x are scaled by 2^23 first; log(+-0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays."""
    ty = x.type
    ity = _ity(ty)
    sub = b.fcmp_ordered("<", x, const(ty, FLT_MIN))
    xs = b.select(sub, b.fmul(x, const(ty, 8388608.0)), x)
    bits = b.bitcast(xs, ity)
    e = b.sub(b.lshr(bits, const(ity, 23)), b.select(sub, const(ity, 126 + 23), const(ity, 126)))
    m = b.bitcast(b.or_(b.and_(bits, const(ity, 0x007FFFFF)), const(ity, 0x3F000000)), ty)  # [0.5, 1)
    low = b.fcmp_ordered("<", m, const(ty, SQRT_HALF))
    fe = b.sitofp(b.sub(e, b.zext(low, ity)), ty)
    m = b.fsub(b.select(low, b.fadd(m, m), m), const(ty, 1.0))  # exact
    z = b.fmul(m, m)
    y = b.fmul(b.fmul(_horner(b, m, LOG_POLY), m), z)
    y = b.fadd(b.fmul(fe, const(ty, LN2_LO), flags=C), y, flags=C)
    y = b.fadd(b.fmul(z, const(ty, -0.5), flags=C), y, flags=C)
    r = b.fadd(m, y)
    r = b.fadd(b.fmul(fe, const(ty, LN2_HI), flags=C), r, flags=C)
    r = b.select(b.fcmp_ordered("==", x, const(ty, math.inf)), const(ty, math.inf), r)
    r = b.select(b.fcmp_ordered("==", x, const(ty, 0.0)), const(ty, -math.inf), r)
    r = b.select(b.fcmp_ordered("<", x, const(ty, 0.0)), const(ty, math.nan), r)
    return b.select(b.fcmp_unordered("uno", x, x), x, r)


def ftanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh(x) (Cephes tanhf): odd polynomial below |x| = 0.625 (tanh(-0) = -0, tanh x = x for tiny x), else
    1 - 2 / (e^2|x| + 1) with x's sign; exactly +-1 from |x| = 10 on (and at +-inf); NaN stays NaN."""
    ty = x.type
    ax = intrinsic(b, "fabs", ty, [x])
    z = b.fmul(x, x)
    small = b.fadd(b.fmul(b.fmul(_horner(b, z, TANH_POLY), z), x, flags=C), x, flags=C)
    ac = b.select(b.fcmp_ordered("<", ax, const(ty, TANH_SAT)), ax, const(ty, TANH_SAT))
    e = fexp(b, b.fadd(ac, ac))
    large = b.fsub(const(ty, 1.0), b.fdiv(const(ty, 2.0), b.fadd(e, const(ty, 1.0))))
    r = b.select(b.fcmp_ordered("<", ax, const(ty, TANH_SMALL)), small, large)
    r = intrinsic(b, "copysign", ty, [r, x])  # also the sign of zeros (and of DAZ-zeroed subnormals)
    return b.select(b.fcmp_unordered("uno", x, x), x, r)
