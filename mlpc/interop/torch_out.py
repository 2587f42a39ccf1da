"""PyTorch out: an mlpc model (or a Trainer's trained weights) as a torch.nn.Sequential."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc import nn
from mlpc.errors import InteropError
from mlpc.interop import deps, table


def local_params(params: dict[str, np.ndarray], path: str, module: nn.Module) -> dict[str, np.ndarray]:
    """The parameters of the module at `path`, by local name ("weight", "bias")."""
    return {local: params[f"{path}.{local}" if path else local] for local in module.parameters()}


def module_params(model: nn.Module) -> dict[str, np.ndarray]:
    """A model's own parameter values (set by from_torch / from_onnx, or initialized)."""
    out = {}
    for name, p in model.named_parameters():
        if p.data is None:
            raise InteropError(f"parameter {name} has no values yet: compile the model or call "
                               "model.initialize(seed) first")
        out[name] = p.data
    return out


def to_torch(source: Any) -> Any:
    """torch.nn.Sequential with the same structure; weights from a Trainer (trained) or an mlpc model."""
    from mlpc.api import Trainer

    torch = deps.torch()
    if isinstance(source, Trainer):
        model, params = source.model, source.parameters()
    elif isinstance(source, nn.Module):
        model, params = source, module_params(source)
    else:
        raise TypeError(f"to_torch takes a Trainer or an mlpc.nn.Module, got {type(source).__name__}")
    out = _build(torch, model, params, "")
    return out if isinstance(out, torch.nn.Sequential) else torch.nn.Sequential(out)


def _build(torch: Any, module: nn.Module, params: dict[str, np.ndarray], path: str) -> Any:
    if type(module) is nn.Sequential:
        return torch.nn.Sequential(*[_build(torch, child, params, f"{path}.{name}" if path else name)
                                     for name, child in module.children()])
    if any(True for _ in module.children()):
        raise InteropError(f"module {path or '<root>'} ({type(module).__name__}) has no PyTorch counterpart: "
                           "to_torch maps Sequentials of built-in layers")
    entry = table.for_module(module, path)
    return entry.to_torch(torch, module, local_params(params, path, module))
