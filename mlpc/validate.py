"""Checks on user data before it reaches a compiled step: shape, dtype, range, finiteness."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc.errors import InputError
from mlpc.types import TensorType

KDL_CPU = 1  # DLPack's device type of host memory


def as_array(x: Any, what: str = "x") -> np.ndarray:
    """x as a NumPy array: arrays pass through; lists are converted; torch CPU tensors (or anything with
    `__dlpack__` or the array interface) are viewed without a copy where their dtype and layout allow."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        device = x.__dlpack_device__()
        if int(device[0]) != KDL_CPU:
            where = f" ({x.device})" if hasattr(x, "device") else ""
            raise InputError(f"{what} lives on an accelerator{where}: move it to the CPU first (x.cpu())")
        if getattr(x, "requires_grad", False):
            x = x.detach()  # a view sharing memory; DLPack refuses tensors that require grad
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            dtype = getattr(x, "dtype", "?")
            raise InputError(f"{what} (dtype {dtype}) cannot be read as a NumPy array: {e}") from None
    if hasattr(x, "__array_interface__") or hasattr(x, "__array__"):
        return np.asarray(x)
    raise InputError(f"{what} must be a NumPy array or a CPU tensor, got {type(x).__name__}")


def features(x: Any, width: int, max_rows: int | None, what: str = "x") -> np.ndarray:
    """A C-contiguous float32 [n, width] copy/view of x. Integer and float64 inputs are converted."""
    x = as_array(x, what)
    if x.dtype.kind not in "fiub":
        raise InputError(f"{what} must hold real numbers, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != width:
        raise InputError(f"{what} must have shape [batch, {width}], got {list(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{what} is empty (0 rows)")
    if max_rows is not None and x.shape[0] > max_rows:
        raise InputError(f"{what} has {x.shape[0]} rows but the trainer was compiled for batches of at most "
                         f"{max_rows}; split the data into batches (Trainer.fit does this)")
    out = native(x, np.dtype(np.float32))
    if not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        orig = x[bad[0], bad[1]]
        why = f"{orig} overflows float32" if np.isfinite(orig) else "NaN or Inf"
        raise InputError(f"{what} contains {why} (first at row {bad[0]}, column {bad[1]})")
    return out


def native(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`a` as a C-contiguous, aligned, native-byte-order array of `dtype` (a copy only when needed)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.require(a, dtype=dtype, requirements=["C", "A"])


def targets(y: Any, expected: TensorType, num_classes: int | None, n: int) -> np.ndarray:
    """Labels for cross-entropy (integers in [0, classes)) or float targets for MSE."""
    y = as_array(y, "y")
    shape = (n,) + tuple(expected.shape[1:])
    if y.shape != shape:
        raise InputError(f"y must have shape {list(shape)} to match x, got {list(y.shape)}")
    if expected.dtype.is_int:
        if y.dtype.kind not in "iu":
            raise InputError(f"labels must be integers for cross-entropy, got dtype {y.dtype}")
        if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
            bad = int(y[(y < 0) | (y >= num_classes)][0])
            raise InputError(f"label {bad} is out of range: the model has {num_classes} classes (0..{num_classes - 1})")
        return native(y, expected.dtype.numpy)
    if y.dtype.kind not in "fiu":
        raise InputError(f"targets must be real numbers, got dtype {y.dtype}")
    out = native(y, expected.dtype.numpy)
    if not np.isfinite(out).all():
        raise InputError("y contains NaN or Inf (or values that overflow float32)")
    return out
