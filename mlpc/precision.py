"""Matmul precision names shared by every backend, and the NumPy emulation of bf16 operand rounding."""

from __future__ import annotations

import numpy as np

from mlpc.errors import MlpcError

# "fp32": IEEE float32 products and sums; "tf32": operands rounded to 10 mantissa bits (Triton on GPUs
# only); "bf16": operands rounded to bfloat16 (8 exponent, 7 mantissa bits), products summed in fp32.
# Parameters, optimizer state, activations and every non-matmul op stay fp32 in all three.
PRECISIONS = ("fp32", "tf32", "bf16")
CPU_PRECISIONS = ("fp32", "bf16")
ALIASES = {"ieee": "fp32"}  # the Triton backend's older name for fp32


def canonical(precision: str) -> str:
    """The shared name of a precision ("ieee" -> "fp32"); unknown names are refused."""
    if not isinstance(precision, str):
        raise MlpcError(f"precision must be a string, one of {', '.join(map(repr, PRECISIONS))}; "
                        f"got {type(precision).__name__}")
    name = ALIASES.get(precision, precision)
    if name not in PRECISIONS:
        raise MlpcError(f"unknown precision={precision!r}; choose one of {', '.join(map(repr, PRECISIONS))}")
    return name


def check_cpu(precision: str | None, backend: str) -> str:
    """The precision a CPU backend (llvm, numpy) computes in: fp32 by default; tf32 is refused."""
    name = canonical("fp32" if precision is None else precision)
    if name not in CPU_PRECISIONS:
        raise MlpcError(f"precision={precision!r} is not available on the {backend} backend (CPU); "
                        f"choose one of {', '.join(map(repr, CPU_PRECISIONS))}")
    return name


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), returned as float32.

    Finite values that round past bf16's largest (3.3895e38) become +-inf; infinities stay; NaN stays NaN
    (quieted, sign kept), as the hardware conversion (VCVTNE2PS2BF16) does."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    bits = a.view(np.uint32)
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + np.uint32(0x7FFF) + lsb) & np.uint32(0xFFFF0000)
    nan = np.isnan(a)
    if nan.any():
        rounded = np.where(nan, (bits | np.uint32(0x00400000)) & np.uint32(0xFFFF0000), rounded)
    return rounded.astype(np.uint32).view(np.float32).reshape(a.shape)


def bf16_matmul(a: np.ndarray, b: np.ndarray, transpose_a: bool, transpose_b: bool) -> np.ndarray:
    """op(A) @ op(B) with both operands rounded to bf16 and the products summed in float64, then rounded
    to float32: products of two bf16 values are exact in float32, so this is an fp32-accumulated bf16
    matmul up to the order (and rounding) of its sums (float64 inputs keep a float64 result)."""
    x = round_bf16(a).astype(np.float64)
    y = round_bf16(b).astype(np.float64)
    out = (x.T if transpose_a else x) @ (y.T if transpose_b else y)
    return out.astype(np.result_type(a, b, np.float32))
