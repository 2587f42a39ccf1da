"""Parameters as a state_dict in mlpc's layout or torch's ([out, in] weights), and loading one back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from mlpc import nn
from mlpc.errors import InteropError
from mlpc.interop import table
from mlpc.validate import array, shape_mismatch

if TYPE_CHECKING:
    from mlpc.api import Trainer

LAYOUTS = ("mlpc", "torch")
CONTAINERS = (nn.Sequential, nn.Residual)


def leaves(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(path, module) of each leaf module in order, through Sequential and Residual containers."""
    if type(model) in CONTAINERS:
        for name, child in model.children():
            yield from leaves(child, f"{prefix}{name}.")
        return
    if any(True for _ in model.children()):
        raise InteropError(f"module {prefix[:-1] or '<root>'} ({type(model).__name__}) is a custom module: only "
                           "Sequential and Residual containers of built-in layers map to PyTorch/ONNX")
    yield prefix[:-1], model


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, got {layout!r}")


def _converters(model: nn.Module, to_torch: bool) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Full parameter name -> layout conversion, for the parameters whose layout differs."""
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for path, module in leaves(model):
        if not module.parameters():
            continue
        entry = table.for_module(module, path)
        conv = getattr(entry, "to_torch_layout" if to_torch else "from_torch_layout", {})
        for local, fn in conv.items():
            out[f"{path}.{local}" if path else local] = fn
    return out


def state_dict(trainer: "Trainer", layout: str = "mlpc") -> dict[str, np.ndarray]:
    """The trained parameters by name (no optimizer state), as NumPy arrays in `layout`."""
    _check_layout(layout)
    params = trainer.parameters()
    names = [n for n, _ in trainer.model.named_parameters()]
    if layout == "mlpc":
        return {n: params[n].copy() for n in names}
    conv = _converters(trainer.model, to_torch=True)
    return {n: np.ascontiguousarray(conv[n](params[n])) if n in conv else params[n].copy() for n in names}


def load_state_dict(trainer: "Trainer", sd: dict[str, Any], layout: str = "mlpc", strict: bool = True) -> None:
    """Replace parameters from `sd` (torch tensors or NumPy arrays) given in `layout`.

    strict=True (as torch) requires exactly the model's parameter names."""
    _check_layout(layout)
    if not hasattr(sd, "items"):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(sd).__name__}")
    shapes = {n: tuple(p.shape) for n, p in trainer.model.named_parameters()}
    missing = [n for n in shapes if n not in sd]
    unexpected = [str(n) for n in sd if n not in shapes]
    if strict and (missing or unexpected):
        raise InteropError("state_dict does not match the model's parameters: "
                           + "; ".join(s for s in (f"missing {missing}" if missing else "",
                                                   f"unexpected {unexpected}" if unexpected else "") if s)
                           + f" (the model has {list(shapes)})")
    conv = _converters(trainer.model, to_torch=False) if layout == "torch" else {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in sd.items():
        if name not in shapes:
            continue
        a = array(value, f"state_dict[{name!r}]")
        if name in conv:
            if a.ndim == 2 and tuple(a.shape) == shapes[name] and a.shape[0] != a.shape[1]:
                raise InteropError(f"{name}: shape {list(a.shape)} is mlpc's [in, out] layout but layout='torch' "
                                   "expects torch's [out, in]: pass layout='mlpc' or transpose it")
            a = conv[name](a)
        if tuple(a.shape) != shapes[name]:
            raise InteropError(shape_mismatch(name, a.shape, shapes[name], layout))
        if a.dtype.kind not in "fiu":
            raise InteropError(f"{name}: dtype {a.dtype} is not a real number type")
        arrays[name] = np.ascontiguousarray(a, dtype=np.float32)
    trainer.load_state(arrays)

