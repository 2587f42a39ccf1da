"""Loading a user's MODEL.py: it defines `model` (or `build()`), optionally loss/optimizer/batch_size."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpc import nn
from mlpc.commands.argtypes import INT32_MAX
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
    try:
        spec.loader.exec_module(module)
    except MlpcError:
        raise
    except SyntaxError as e:
        raise MlpcError(f"{path}:{e.lineno}: SyntaxError: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - the user's own code failed: name its line, not ours
        raise MlpcError(f"{_user_line(path, e)}: {type(e).__name__}: {e}") from None
    ns: dict[str, Any] = vars(module)
    model = ns.get("model")
    if model is None and callable(ns.get("build")):
        try:
            model = ns["build"]()
        except MlpcError:
            raise
        except Exception as e:  # noqa: BLE001 - as above
            raise MlpcError(f"{_user_line(path, e)}: build() raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise MlpcError(f"{path} must define `model = nn.Sequential(...)` or `def build(): return model`")
    return ModelFile(model, _checked(path, ns, "loss", nn.Loss, "a loss object such as nn.CrossEntropyLoss()"),
                     _checked(path, ns, "optimizer", Optimizer, "an optimizer object such as optim.Adam(lr=1e-3)"),
                     _size(path, ns, "batch_size"), _size(path, ns, "in_features"))


def _checked(path: str, ns: dict[str, Any], name: str, kind: type, expected: str) -> Any:
    value = ns.get(name)
    if value is not None and not isinstance(value, kind):
        raise MlpcError(f"{path}: `{name}` must be {expected} (or left out), got {_show(value)}")
    return value


def _size(path: str, ns: dict[str, Any], name: str) -> int | None:
    value = ns.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= INT32_MAX:
        raise MlpcError(f"{path}: `{name}` must be an integer in [1, {INT32_MAX}] (or left out), got {_show(value)}")
    return int(value)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def _user_line(path: str, error: BaseException) -> str:
    """`path:line` of the innermost frame of the model file in the error's traceback."""
    import traceback

    here = os.path.abspath(path)
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == here]
    return f"{path}:{lines[-1]}" if lines else path
