"""Interop with PyTorch and ONNX: models, weights, optimizers and losses in and out (docs/interop.md)."""

from mlpc.interop.deps import MissingExtraError
from mlpc.interop.onnx_import import from_onnx
from mlpc.interop.torch_in import from_torch, from_torch_loss, from_torch_optimizer
from mlpc.interop.torch_out import to_torch

__all__ = ["MissingExtraError", "from_onnx", "from_torch", "from_torch_loss", "from_torch_optimizer", "to_torch"]
