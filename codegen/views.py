"""Strided 2-D views of buffers: how a kernel reads a value (rank <= 2, broadcasts as zero strides)."""

from __future__ import annotations

from dataclasses import dataclass

from mlpc.errors import MlpcError
from mlpc.types import DType


class UnsupportedError(MlpcError, NotImplementedError):
    """The graph uses an op or shape the GPU code generator does not handle."""


@dataclass(frozen=True)
class View:
    """`shape` elements of buffer `buf` at `offset + i*strides[0] + j*strides[1]`, or a constant."""

    buf: str | None
    shape: tuple[int, int]
    strides: tuple[int, int]
    dtype: DType
    offset: int = 0
    const: float | None = None

    @property
    def is_const(self) -> bool:
        return self.buf is None

    @property
    def contiguous(self) -> bool:
        r, c = self.shape
        return self.strides == (c, 1) or (r == 1 and self.strides[1] == 1) or (c == 1 and r * c <= 1)

    def broadcast_to(self, shape: tuple[int, int]) -> View:
        """This view read as `shape` (numpy rules on the 2-D form); size-1 dims get stride 0."""
        if self.shape == shape:
            return self
        strides = list(self.strides)
        for d in range(2):
            if self.shape[d] == 1 and shape[d] != 1:
                strides[d] = 0
            elif self.shape[d] != shape[d]:
                raise UnsupportedError(f"cannot broadcast {self.shape} to {shape}")
        return View(self.buf, shape, (strides[0], strides[1]), self.dtype, self.offset, self.const)

    def transposed(self) -> View:
        return View(self.buf, (self.shape[1], self.shape[0]), (self.strides[1], self.strides[0]),
                    self.dtype, self.offset, self.const)

    def pattern(self) -> str:
        """The structural shape class a kernel specializes on: 'S' scalar, 'R' row vector
        (broadcast over rows), 'C' column vector, 'F' full tile, each with its unit strides."""
        r0, c0 = self.strides[0] == 0 or self.shape[0] == 1, self.strides[1] == 0 or self.shape[1] == 1
        if r0 and c0:
            return "S"
        if r0:
            return "R"
        if c0:
            return "C"
        return "F"


def shape2(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D form of a rank <= 2 shape: [] -> (1,1), [n] -> (1,n)."""
    if len(shape) == 0:
        return (1, 1)
    if len(shape) == 1:
        return (1, shape[0])
    if len(shape) == 2:
        return (shape[0], shape[1])
    raise UnsupportedError(f"the triton backend handles tensors of rank <= 2, got shape {list(shape)}")


def contiguous(buf: str, shape: tuple[int, ...], dtype: DType, offset: int = 0) -> View:
    r, c = shape2(shape)
    return View(buf, (r, c), (c, 1), dtype, offset)


def constant(value: float, shape: tuple[int, ...], dtype: DType) -> View:
    return View(None, shape2(shape), (0, 0), dtype, 0, value)
