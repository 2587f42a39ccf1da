"""Loading a user's MODEL.py: it defines `model` (or `build()`), optionally loss/optimizer/batch_size."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

from mlpc import nn
from mlpc.errors import MlpcError
from mlpc.optim import Optimizer


@dataclass
class ModelFile:
    model: nn.Module
    loss: nn.Loss | None = None
    optimizer: Optimizer | None = None
    batch_size: int | None = None
    in_features: int | None = None


def default_model() -> nn.Module:
    """The built-in 784-256-10 ReLU MLP for MNIST."""
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def load_model_file(path: str | None) -> ModelFile:
    if path is None:
        return ModelFile(default_model())
    if not os.path.exists(path):
        raise MlpcError(f"model file {path} does not exist")
    name = "mlpc_user_model_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MlpcError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    ns: dict[str, Any] = vars(module)
    model = ns.get("model")
    if model is None and callable(ns.get("build")):
        model = ns["build"]()
    if not isinstance(model, nn.Module):
        raise MlpcError(f"{path} must define `model = nn.Sequential(...)` or `def build(): return model`")
    return ModelFile(model, ns.get("loss"), ns.get("optimizer"), ns.get("batch_size"), ns.get("in_features"))
