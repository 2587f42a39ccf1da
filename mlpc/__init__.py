"""mlpc: a compiler for training multi-layer perceptrons."""

from typing import Any

from mlpc import functional as F
from mlpc import init, nn, optim
from mlpc.api import Trainer, compile
from mlpc.derivatives import grad, hessian
from mlpc.errors import (
    CheckpointError,
    DatasetError,
    InputError,
    InteropError,
    MlpcError,
    NumericalError,
    ParseError,
    ShapeError,
    VerifyError,
)
from mlpc.inspection import inspect
from mlpc.interop import MissingExtraError, from_onnx, from_torch, from_torch_loss, from_torch_optimizer
from mlpc.ir import Graph
from mlpc.parser import parse
from mlpc.printer import print_graph
from mlpc.tracing import trace

__version__ = "0.1.0"


def load(path: str, model: "nn.Module | None" = None, backend: str | None = None,
         loss: "nn.Loss | None" = None, precision: str | None = None) -> Trainer:
    """Rebuild a Trainer from a checkpoint written by `Trainer.save`; `model=` / `loss=` replace the stored
    descriptions (needed for a user's class whose module is not imported); `precision=` the stored one."""
    from mlpc.checkpoint import load_trainer

    return load_trainer(path, model=model, backend=backend, loss=loss, precision=precision)


def export(trainer: Trainer, outdir: str, name: str = "model", **options: Any) -> Any:
    """Write OUTDIR/lib<name>.so, <name>.h and <name>.safetensors: the model as a C library (docs/aot.md)."""
    from runtime.aot_export import export as _export

    return _export(trainer, outdir, name, **options)


def load_library(path: str, probe: bool = True) -> Any:
    """Open a library written by `export` / `mlpc aot` through ctypes: step, predict, parameters, save."""
    from runtime.aot_loader import load_library as _load_library

    return _load_library(path, probe=probe)


__all__ = ["CheckpointError", "DatasetError", "F", "Graph", "InputError", "InteropError", "MissingExtraError",
           "MlpcError", "NumericalError", "ParseError", "ShapeError", "Trainer", "VerifyError", "compile", "export",
           "from_onnx", "from_torch", "from_torch_loss", "from_torch_optimizer", "grad", "hessian", "init",
           "inspect", "load", "load_library", "nn", "optim", "parse", "print_graph", "trace"]
