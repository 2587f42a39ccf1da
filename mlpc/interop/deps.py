"""Imports of the optional packages behind the `interop` extra, with an error that names the extra."""

from __future__ import annotations

import importlib
from typing import Any

from mlpc.errors import MlpcError

EXTRA_HINT = "pip install 'mlpc[interop]'"


class MissingExtraError(MlpcError, ImportError):
    """An optional package of the `interop` extra is not installed."""


def require(module: str, purpose: str) -> Any:
    """Import `module` or raise MissingExtraError naming the `interop` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MissingExtraError(f"{purpose} needs the `{top}` package, which is not installed ({e}); "
                                f"it comes with the interop extra: {EXTRA_HINT}") from None


def torch() -> Any:
    return require("torch", "PyTorch interop")


def onnx() -> Any:
    return require("onnx", "ONNX export and import")
