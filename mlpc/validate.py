"""Checks on user data before it reaches a compiled step: shape, dtype, range, finiteness."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc.errors import InputError
from mlpc.types import TensorType


def features(x: Any, width: int, max_rows: int | None, what: str = "x") -> np.ndarray:
    """A C-contiguous float32 [n, width] copy/view of x. Integer and float64 inputs are converted."""
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise InputError(f"{what} must be a NumPy array, got {type(x).__name__}")
    if x.dtype.kind not in "fiub":
        raise InputError(f"{what} must hold real numbers, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != width:
        raise InputError(f"{what} must have shape [batch, {width}], got {list(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{what} is empty (0 rows)")
    if max_rows is not None and x.shape[0] > max_rows:
        raise InputError(f"{what} has {x.shape[0]} rows but the trainer was compiled for batches of at most "
                         f"{max_rows}; split the data into batches (Trainer.fit does this)")
    out = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        raise InputError(f"{what} contains NaN or Inf (first at row {bad[0]}, column {bad[1]})")
    return out


def targets(y: Any, expected: TensorType, num_classes: int | None, n: int) -> np.ndarray:
    """Labels for cross-entropy (integers in [0, classes)) or float targets for MSE."""
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if not isinstance(y, np.ndarray):
        raise InputError(f"y must be a NumPy array, got {type(y).__name__}")
    shape = (n,) + tuple(expected.shape[1:])
    if y.shape != shape:
        raise InputError(f"y must have shape {list(shape)} to match x, got {list(y.shape)}")
    if expected.dtype.is_int:
        if y.dtype.kind not in "iu":
            raise InputError(f"labels must be integers for cross-entropy, got dtype {y.dtype}")
        if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
            bad = int(y[(y < 0) | (y >= num_classes)][0])
            raise InputError(f"label {bad} is out of range: the model has {num_classes} classes (0..{num_classes - 1})")
        return np.ascontiguousarray(y, dtype=expected.dtype.numpy)
    if y.dtype.kind not in "fiu":
        raise InputError(f"targets must be real numbers, got dtype {y.dtype}")
    out = np.ascontiguousarray(y, dtype=expected.dtype.numpy)
    if not np.isfinite(out).all():
        raise InputError("y contains NaN or Inf")
    return out
