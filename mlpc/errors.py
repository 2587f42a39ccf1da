"""The project's exception types: every user-facing failure is one of these."""

from __future__ import annotations


class MlpcError(Exception):
    """Base class of every error mlpc raises on purpose."""


class ShapeError(MlpcError, ValueError):
    """An op got operands whose shapes or dtypes do not fit its type rule."""


class InputError(MlpcError, ValueError):
    """Data handed to a compiled step has the wrong shape, dtype or values."""


class ParseError(MlpcError, ValueError):
    """The textual IR could not be parsed; carries line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


class VerifyError(MlpcError):
    """A graph broke an IR invariant (SSA, def-before-use, type rule)."""


class DatasetError(MlpcError, OSError):
    """A dataset file is missing, truncated or not in the expected format."""


class CheckpointError(MlpcError, OSError):
    """A checkpoint file is missing, corrupt or does not match the model."""


class NumericalError(MlpcError, FloatingPointError):
    """Training produced NaN or Inf and was stopped before corrupting weights."""


class InteropError(MlpcError, ValueError):
    """A PyTorch module, optimizer, loss, state_dict or ONNX file that mlpc cannot map faithfully."""
