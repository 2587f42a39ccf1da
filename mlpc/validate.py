"""Checks on user data before it reaches a compiled step: shape, dtype, range, finiteness."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlpc.errors import InputError
from mlpc.types import TensorType

KDL_CPU = 1  # DLPack's device type of host memory
SMALL = 64   # arrays up to this many elements are checked through Python floats (no ufunc/reduction set-up)
_F32 = np.dtype(np.float32)
_NUMPY_DTYPES: dict[Any, np.dtype] = {}  # mlpc DType -> its canonical NumPy dtype object


def all_finite(a: np.ndarray) -> bool:
    """True when every element of the float array `a` is finite (exact for any size)."""
    if a.size <= SMALL:
        return all(map(math.isfinite, a.ravel().tolist()))
    return bool(np.isfinite(a).all())


def ready(a: Any, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    """The fast path's structural test: a plain, C-contiguous, aligned ndarray of exactly `dtype` (native byte
    order: `is` compares against the canonical dtype object) and `shape`, usable by the compiled step as is."""
    if type(a) is not np.ndarray or a.dtype is not dtype or a.shape != shape:
        return False
    fl = a.flags
    return bool(fl.c_contiguous and fl.aligned)


def array(a: Any, what: str) -> np.ndarray:
    """`a` as a plain ndarray: lists and tuples are converted (ragged ones refused), masked arrays refused
    (their masks would be ignored by the compiled code, which reads the raw data under the mask), torch CPU
    tensors and other DLPack / array-interface objects viewed without a copy where possible."""
    if isinstance(a, np.ma.MaskedArray):
        raise InputError(f"{what} is a NumPy masked array; mlpc does not apply masks (the compiled step would "
                         f"read the values under the mask): pass {what}.filled(value) or drop the masked rows")
    if isinstance(a, (list, tuple)):
        if any(isinstance(e, np.ma.MaskedArray) for e in a):
            raise InputError(f"{what} holds NumPy masked arrays; mlpc does not apply masks: fill them first")
        try:
            a = np.asarray(a)
        except ValueError:
            raise InputError(f"{what} is a ragged nested list (rows of different lengths); every row must "
                             f"have the same number of values") from None
        if a.dtype == object:
            raise InputError(f"{what} is a ragged or mixed nested list (NumPy makes it an object array); "
                             f"every row must have the same number of numbers")
    if not isinstance(a, np.ndarray):
        return _foreign(a, what)
    return a


def _foreign(x: Any, what: str) -> np.ndarray:
    """A torch CPU tensor (or anything with `__dlpack__` or the array interface) as a NumPy array, viewed
    without a copy where its dtype and layout allow."""
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
        return array(np.asarray(x), what)
    raise InputError(f"{what} must be a NumPy array or a CPU tensor, got {type(x).__name__}")


def shape_mismatch(name: str, got: tuple[int, ...], want: tuple[int, ...], layout: str = "mlpc") -> str:
    """The message for a parameter of the wrong shape; a transpose (a torch [out, in] weight) says so."""
    msg = f"{name}: shape {list(got)} does not match the model's {list(want)}"
    if len(got) == 2 and tuple(got) == tuple(want)[::-1]:
        if layout == "mlpc":
            msg += (" but is its transpose: torch stores Linear weights as [out, in] and mlpc as [in, out]; "
                    "load a torch state_dict with trainer.load_state_dict(sd, layout='torch')")
        else:
            msg += " but is its transpose"
    return msg


def features(x: Any, width: int, max_rows: int | None, what: str = "x") -> np.ndarray:
    """A C-contiguous float32 [n, width] copy/view of x. Integer and float64 inputs are converted.

    Fast path (an aligned C-contiguous float32 ndarray of the right shape, every value finite): returned as
    is after the same checks; anything else takes the general path, which raises the precise error."""
    if type(x) is np.ndarray and x.dtype is _F32 and x.ndim == 2 and x.shape[1] == width and 0 < x.shape[0] \
            and (max_rows is None or x.shape[0] <= max_rows) and (fl := x.flags).c_contiguous and fl.aligned:
        if all(map(math.isfinite, x.ravel().tolist())) if x.size <= SMALL else bool(np.isfinite(x).all()):
            return x
    x = array(x, what)
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


def targets(y: Any, expected: TensorType, num_classes: int | None, n: int,
            range_checked_later: bool = False) -> np.ndarray:
    """Labels for cross-entropy (integers in [0, classes)) or float targets for MSE.

    `range_checked_later=True`: the caller's compiled step checks the label range itself before it changes
    anything (the llvm step does, raising the same error), so an int32 array is not scanned here."""
    shape = (n,) + tuple(expected.shape[1:])
    want = _NUMPY_DTYPES.get(expected.dtype)
    if want is None:
        want = _NUMPY_DTYPES[expected.dtype] = np.dtype(expected.dtype.numpy)
    if ready(y, want, shape):
        if expected.dtype.is_int:
            if num_classes is None or range_checked_later or in_range(y, num_classes):
                return y
        elif all_finite(y):
            return y
    y = array(y, "y")
    if y.shape != shape:
        raise InputError(f"y must have shape {list(shape)} to match x, got {list(y.shape)}")
    if expected.dtype.is_int:
        if y.dtype.kind not in "iu":
            raise InputError(f"labels must be integers for cross-entropy, got dtype {y.dtype}")
        if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
            raise InputError(label_error(y, num_classes))
        return native(y, expected.dtype.numpy)
    if y.dtype.kind not in "fiu":
        raise InputError(f"targets must be real numbers, got dtype {y.dtype}")
    out = native(y, expected.dtype.numpy)
    if not np.isfinite(out).all():
        raise InputError("y contains NaN or Inf (or values that overflow float32)")
    return out


def in_range(y: np.ndarray, num_classes: int) -> bool:
    """True when every integer label is in [0, num_classes)."""
    if y.size <= SMALL:
        values = y.ravel().tolist()
        return not values or (min(values) >= 0 and max(values) < num_classes)
    return bool(y.min() >= 0 and y.max() < num_classes)


def label_error(y: np.ndarray, num_classes: int) -> str:
    """The message for labels outside [0, num_classes) (shared with the llvm step's native check)."""
    bad = int(y[(y < 0) | (y >= num_classes)][0])
    return f"label {bad} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"


def labels(y: Any, n: int, num_classes: int) -> np.ndarray:
    """Integer class labels [n] in [0, num_classes) (what `evaluate` scores predictions against)."""
    from mlpc.types import DType, TensorType

    return targets(y, TensorType(DType.i32, (n,)), num_classes, n)


def rows(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Whole data sets for fit/batches: plain arrays with the same number of rows (checked per batch later)."""
    xs, ys = array(x, "x"), array(y, "y")
    if xs.ndim == 0 or ys.ndim == 0 or len(xs) != len(ys):
        raise InputError(f"x and y must have the same number of rows, got shapes {list(xs.shape)} and "
                         f"{list(ys.shape)}")
    return xs, ys


def state_value(name: str, value: Any, like: np.ndarray) -> np.ndarray:
    """A parameter/optimizer-state value for `load_state`, converted to `like`'s dtype and shape: refuses
    object/string arrays, masked arrays, shape mismatches, non-integral or out-of-range integers (a step
    count of 2**40 would wrap) and floats that overflow float32."""
    a = array(value, name)
    if a.dtype.kind not in "fiub":
        raise InputError(f"{name}: dtype {a.dtype} is not numeric")
    if like.shape == () and a.shape == (1,):  # safetensors stores scalars as [1]
        a = a.reshape(())
    if a.shape != like.shape:
        raise InputError(shape_mismatch(name, a.shape, like.shape))
    if like.dtype.kind in "iu":
        if a.dtype.kind == "f" and (not np.isfinite(a).all() or (a != np.round(a)).any()):
            raise InputError(f"{name} must hold integers, got {a.ravel()[:4]}")
        info = np.iinfo(like.dtype)
        low = 0 if name == "t" else info.min  # the optimizer's step count
        if a.size and (a.min() < low or a.max() > info.max):
            raise InputError(f"{name} holds {a.max() if a.max() > info.max else a.min()}, outside the "
                             f"{like.dtype} range [{low}, {info.max}]")
    out = native(a, like.dtype)
    if like.dtype.kind == "f" and not np.array_equal(np.isfinite(out), np.isfinite(a)):
        raise InputError(f"{name} holds values that overflow {like.dtype}")
    return out
