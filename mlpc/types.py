"""Element types and tensor types of the IR."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DType(enum.Enum):
    """An element type; `value` is its name in the textual IR."""

    f16 = "f16"
    bf16 = "bf16"
    f32 = "f32"
    f64 = "f64"
    i1 = "i1"
    i32 = "i32"
    i64 = "i64"

    @property
    def is_float(self) -> bool:
        return self in (DType.f16, DType.bf16, DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i32, DType.i64)

    @property
    def numpy(self) -> np.dtype:
        """The NumPy dtype used by the reference interpreter (bf16 computes in f32)."""
        return np.dtype(_NUMPY[self])

    @property
    def itemsize(self) -> int:
        return 2 if self == DType.bf16 else self.numpy.itemsize

    @staticmethod
    def from_numpy(dt: np.dtype | type) -> "DType":
        name = np.dtype(dt).name
        for d, n in _NUMPY.items():
            if n == name and d != DType.bf16:
                return d
        raise TypeError(f"no mlpc dtype for numpy dtype {name}")


_NUMPY = {
    DType.f16: "float16",
    DType.bf16: "float32",
    DType.f32: "float32",
    DType.f64: "float64",
    DType.i1: "bool",
    DType.i32: "int32",
    DType.i64: "int64",
}

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorType:
    """A statically shaped tensor type such as `f32[128,784]`; `f32[]` is a scalar."""

    dtype: DType
    shape: Shape

    def __post_init__(self) -> None:
        if not all(isinstance(d, int) and d >= 0 for d in self.shape):
            raise ValueError(f"bad shape {self.shape!r}: dimensions must be ints >= 0")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_shape(self, shape: Shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"


def f32(*shape: int) -> TensorType:
    """Shorthand for a float32 tensor type."""
    return TensorType(DType.f32, tuple(shape))
