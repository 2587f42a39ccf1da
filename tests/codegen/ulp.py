"""Float32 accuracy harness: scalar expressions JIT-compiled through the LLVM renderer, errors in ulp."""

from __future__ import annotations

import ctypes
from functools import cache

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from codegen.llvm import ewops
from codegen.llvm.irutil import I64, PTR, gep, loop
from codegen.llvm.target import host_target
from codegen.llvm.threads import restore_ftz, set_ftz
from mlpc.ops import scalar as S
from mlpc.types import DType

TINY = 2.0 ** -126  # smallest normal float32; results below it are flushed (FTZ) or clamped (exp)
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-40, -1e-40, TINY, -TINY,
                     np.finfo(np.float32).max, -np.finfo(np.float32).max, 1.0, -1.0, 0.5, 88.7, 88.72283,
                     88.73, -87.3, -87.4, -103.0, 0.625, -0.625, 10.0, -10.0, 9.0, 4.0, -4.0, 20.0], np.float32)


class Kernel:
    """out[i] = expr(x[i]) over float32 arrays, `lanes` wide, with the steps' MXCSR (FTZ and DAZ)."""

    def __init__(self, expr: S.Expr, lanes: int | None = None) -> None:
        target = host_target(1)
        self.lanes = lanes or target.lanes
        ty = ir.VectorType(ir.FloatType(), self.lanes) if self.lanes > 1 else ir.FloatType()
        mod = ir.Module()
        fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64]), "f")
        b = ir.IRBuilder(fn.append_basic_block())
        saved = set_ftz(b, mod, target)
        with loop(b, 0, fn.args[2]) as i:
            x = b.load(gep(b, ty, fn.args[0], i), typ=ty)
            x.align = 4
            st = b.store(ewops.render(b, expr, [x], [DType.f32], DType.f32, self.lanes), gep(b, ty, fn.args[1], i))
            st.align = 4
        restore_ftz(b, mod, saved)
        b.ret_void()
        m = llvm.parse_assembly(str(mod))
        tm = target.machine()
        m.triple, m.data_layout = target.triple, str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(m, pb)
        self.asm = tm.emit_assembly(m)
        self.engine = llvm.create_mcjit_compiler(m, tm)
        self.engine.finalize_object()
        self.fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(
            self.engine.get_function_address("f"))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        padded = np.zeros(-(-n // self.lanes) * self.lanes, np.float32)
        padded[:n] = x
        out = np.empty_like(padded)
        self.fn(padded.ctypes.data, out.ctypes.data, len(padded) // self.lanes)
        return out[:n]


@cache
def kernel(expr: S.Expr) -> Kernel:
    return Kernel(expr)


def bit_sample(stride: int, start: int = 0, stop: int = 1 << 32) -> np.ndarray:
    """Every `stride`-th float32 bit pattern in [start, stop): both signs, every exponent, NaNs included."""
    return np.arange(start, stop, stride, dtype=np.uint64).astype(np.uint32).view(np.float32)


def ulp_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in ulp of float32 at the float64 reference `ref` (spacing of 2^e for 2^e <= |ref| < 2^e+1,
    never below the smallest normal's spacing 2^-149). Only meaningful where both are finite."""
    r = np.abs(ref.astype(np.float64))
    e = np.floor(np.log2(np.maximum(r, TINY)))
    return np.abs(got.astype(np.float64) - ref) / np.exp2(e - 23)


def daz(x: np.ndarray) -> np.ndarray:
    """The inputs as the kernels see them under DAZ: subnormals are zeros of the same sign (float64)."""
    x64 = x.astype(np.float64)
    return np.where(np.abs(x64) < TINY, np.copysign(0.0, x64), x64)


def check_specials(got: np.ndarray, ref: np.ndarray) -> list[str]:
    """Mismatches where the reference (rounded to float32) is NaN, infinite or a signed zero: those must be
    reproduced exactly (any NaN for a NaN)."""
    with np.errstate(over="ignore"):
        r32 = ref.astype(np.float32)
    bad = []
    for g, r in zip(got, r32):
        if np.isnan(r):
            ok = bool(np.isnan(g))
        elif np.isinf(r) or r == 0:
            ok = g == r and np.signbit(g) == np.signbit(r)
        else:
            continue
        if not ok:
            bad.append(f"got {g!r}, want {r!r}")
    return bad


def measure(expr: S.Expr, ref_fn, x: np.ndarray) -> dict[str, float]:
    """Max ulp error of the rendered expression against float64 `ref_fn` over finite results of normal
    magnitude, and the max absolute error where the reference is below 2^-126 (the flushed region)."""
    got = kernel(expr)(x)
    with np.errstate(all="ignore"):
        ref = ref_fn(daz(x))
    fin = np.isfinite(ref) & np.isfinite(x)
    normal = fin & (np.abs(ref) >= TINY) & (np.abs(ref) <= float(np.finfo(np.float32).max))
    tiny = fin & (np.abs(ref) < TINY)
    worst = ulp_error(got[normal], ref[normal])
    i = int(np.argmax(worst)) if worst.size else 0
    return {"max_ulp": float(worst.max()) if worst.size else 0.0,
            "worst_x": float(x[normal][i]) if worst.size else 0.0,
            "nonfinite_got": int(np.count_nonzero(~np.isfinite(got[normal]))),
            "max_abs_tiny": float(np.abs(got[tiny].astype(np.float64) - ref[tiny]).max()) if tiny.any() else 0.0}
