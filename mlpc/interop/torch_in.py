"""PyTorch in: torch.nn.Sequential -> mlpc model with the same weights; torch optimizers and losses."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc import nn, optim
from mlpc.errors import InteropError, MlpcError
from mlpc.interop import deps, table


def from_torch(module: Any, example_input: Any = None) -> nn.Module:
    """An mlpc model computing what `module` (a torch.nn.Sequential, nested ones too) computes.

    Weights are copied (torch's [out, in] becomes mlpc's [in, out]). A layer mlpc cannot represent is
    refused with its position and class. `example_input` ([batch, features], torch or NumPy) checks shapes
    end to end: the torch module's output shape must equal the mlpc model's.
    """
    torch = deps.torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    model = _convert(torch, module, "")
    if not isinstance(model, nn.Sequential):
        model = nn.Sequential(model)
    if example_input is not None:
        check_example(torch, module, model, example_input)
    return model


def _convert(torch: Any, m: Any, where: str) -> nn.Module:
    if type(m) is torch.nn.Sequential:
        return nn.Sequential(*[_convert(torch, child, f"{where}.{name}" if where else name)
                               for name, child in m.named_children()])
    entry = table.BY_TORCH.get(type(m).__name__)
    if entry is None or type(m) is not getattr(torch.nn, entry.torch, None):
        raise InteropError(f"layer {where or '<root>'} ({type(m).__module__}.{type(m).__name__}) is not supported: "
                           f"mlpc maps torch.nn {table.torch_names()}")
    return entry.from_torch(m, where or "<root>")


def check_example(torch: Any, module: Any, model: nn.Module, example_input: Any) -> None:
    """Run `module` on example_input and trace `model` at the same shape; the output shapes must agree."""
    from mlpc.api import trace_model

    x = example_input if isinstance(example_input, torch.Tensor) else torch.as_tensor(np.asarray(example_input))
    if x.ndim != 2:
        raise InteropError(f"example_input must have shape [batch, features] (mlpc models take 2-d input), "
                           f"got {list(x.shape)}")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            want = tuple(module(x.to(torch.float32)).shape)
    except Exception as e:
        raise InteropError(f"the torch module fails on example_input of shape {list(x.shape)}: {e}") from None
    finally:
        module.train(was_training)
    try:
        graph = trace_model(model, int(x.shape[0]), int(x.shape[1]), None, "from_torch")
    except MlpcError as e:
        raise InteropError(f"the converted model does not take example_input of shape {list(x.shape)}: {e}") from None
    got = tuple(graph.outputs[0].value.shape)
    if got != want:
        raise InteropError(f"on example_input {list(x.shape)} the torch module gives {list(want)} but the mlpc "
                           f"model gives {list(got)}")


# --- optimizers ------------------------------------------------------------------------------------
IMPLEMENTATION_ONLY = ("foreach", "fused", "differentiable", "capturable", "params", "initial_lr")


def from_torch_optimizer(opt: Any) -> optim.Optimizer:
    """mlpc's SGD / Adam / AdamW with exactly the hyperparameters of a fresh torch optimizer."""
    torch = deps.torch()
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"opt must be a torch.optim.Optimizer, got {type(opt).__name__}")
    kind = type(opt).__name__
    if kind not in _OPTIMIZERS or type(opt) is not getattr(torch.optim, kind):
        raise InteropError(f"optimizer {type(opt).__module__}.{kind} is not supported: mlpc maps torch.optim "
                           f"{', '.join(_OPTIMIZERS)}")
    groups = opt.param_groups
    if len(groups) != 1:
        raise InteropError(f"{kind} has {len(groups)} param groups; mlpc applies one set of hyperparameters to "
                           "every parameter (param groups are not supported yet): build the optimizer on "
                           "model.parameters()")
    if any(len(s) for s in opt.state.values()):
        raise InteropError(f"{kind} has already taken steps: its state (momentum buffers, moment estimates) "
                           "is not carried over; pass a fresh optimizer")
    group = {k: v for k, v in groups[0].items() if k not in IMPLEMENTATION_ONLY}
    builder, must_be = _OPTIMIZERS[kind]
    for key, want in must_be.items():
        if bool(group.pop(key, want)) != want:
            raise InteropError(f"{kind}({key}={not want}) is not supported by mlpc")
    return builder(group, kind)


def _take(group: dict[str, Any], kind: str, *names: str) -> dict[str, Any]:
    extra = sorted(set(group) - set(names))
    if extra:
        raise InteropError(f"{kind} option(s) {', '.join(extra)} have no mlpc counterpart")
    return {k: group[k] for k in names}


def _sgd(group: dict[str, Any], kind: str) -> optim.Optimizer:
    g = _take(group, kind, "lr", "momentum", "dampening", "weight_decay", "nesterov")
    return optim.SGD(lr=float(g["lr"]), momentum=float(g["momentum"]), dampening=float(g["dampening"]),
                     nesterov=bool(g["nesterov"]), weight_decay=float(g["weight_decay"]))


def _adam(group: dict[str, Any], kind: str) -> optim.Optimizer:
    g = _take(group, kind, "lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")
    betas = (float(g["betas"][0]), float(g["betas"][1]))
    if g["decoupled_weight_decay"]:
        return optim.AdamW(lr=float(g["lr"]), betas=betas, eps=float(g["eps"]), weight_decay=float(g["weight_decay"]))
    return optim.Adam(lr=float(g["lr"]), betas=betas, eps=float(g["eps"]), weight_decay=float(g["weight_decay"]))


_OPTIMIZERS: dict[str, tuple[Any, dict[str, bool]]] = {
    "SGD": (_sgd, {"maximize": False}),
    "Adam": (_adam, {"maximize": False, "amsgrad": False}),
    "AdamW": (_adam, {"maximize": False, "amsgrad": False}),
}


# --- losses ----------------------------------------------------------------------------------------
def from_torch_loss(loss: Any) -> nn.Loss:
    """mlpc's CrossEntropyLoss / MSELoss for the torch loss with the same meaning."""
    torch = deps.torch()
    kind = type(loss).__name__
    checks = _LOSSES.get(kind)
    if checks is None or type(loss) is not getattr(torch.nn, kind):
        raise InteropError(f"loss {type(loss).__module__}.{kind} is not supported: mlpc maps torch.nn "
                           f"{', '.join(_LOSSES)}")
    for attr, want in checks[1].items():
        got = getattr(loss, attr)
        if got is not None and hasattr(got, "shape"):
            raise InteropError(f"{kind}({attr}=<tensor>) is not supported by mlpc")
        if got != want:
            raise InteropError(f"{kind}({attr}={got!r}) is not supported by mlpc (it computes {attr}={want!r})")
    if kind == "CrossEntropyLoss" and loss.ignore_index >= 0:
        raise InteropError(f"CrossEntropyLoss(ignore_index={loss.ignore_index}) is not supported by mlpc: "
                           "every label counts (a negative ignore_index, the default -100, is fine)")
    return checks[0]()


_LOSSES: dict[str, tuple[type[nn.Loss], dict[str, Any]]] = {
    "CrossEntropyLoss": (nn.CrossEntropyLoss, {"reduction": "mean", "label_smoothing": 0.0, "weight": None}),
    "MSELoss": (nn.MSELoss, {"reduction": "mean"}),
}
