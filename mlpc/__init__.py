"""mlpc: a compiler for training multi-layer perceptrons."""

from mlpc import functional as F
from mlpc import init, nn, optim
from mlpc.api import Trainer, compile
from mlpc.errors import (
    CheckpointError,
    DatasetError,
    InputError,
    MlpcError,
    NumericalError,
    ParseError,
    ShapeError,
    VerifyError,
)
from mlpc.ir import Graph
from mlpc.parser import parse
from mlpc.printer import print_graph
from mlpc.tracing import trace

__version__ = "0.1.0"


def load(path: str, model: "nn.Module | None" = None, backend: str | None = None) -> Trainer:
    """Rebuild a Trainer from a checkpoint written by `Trainer.save`."""
    from mlpc.checkpoint import load_trainer

    return load_trainer(path, model=model, backend=backend)


__all__ = ["CheckpointError", "DatasetError", "F", "Graph", "InputError", "MlpcError", "NumericalError",
           "ParseError", "ShapeError", "Trainer", "VerifyError", "compile", "init", "load", "nn", "optim",
           "parse", "print_graph", "trace"]
