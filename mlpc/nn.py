"""PyTorch-like modules: Linear, Sequential, Residual, activations, LayerNorm, Dropout (losses: mlpc.losses)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from mlpc import functional as F
from mlpc import init as initializers
from mlpc.init import Initializer
from mlpc.losses import (
    LOSSES,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    Loss,
    MSELoss,
    ctor_args,
    import_path,
    refuse,
)
from mlpc.tracing import Tensor, TensorOps, Tracer, user_location


class Parameter(TensorOps):
    """A trainable tensor: shape, initializer, and (once materialized) its values."""

    def __init__(self, shape: tuple[int, ...], initializer: Initializer) -> None:
        self.shape = tuple(shape)
        self.initializer = initializer
        self.data: np.ndarray | None = None

    def traced(self) -> Tensor:
        tracer = Tracer.current()
        if id(self) not in tracer.param_tensors:
            raise RuntimeError("this Parameter does not belong to the model being traced")
        return tracer.param_tensors[id(self)]

    def materialize(self, rng: np.random.Generator) -> None:
        self.data = self.initializer(self.shape, rng)

    def __repr__(self) -> str:
        return f"Parameter({list(self.shape)}, {self.initializer.name})"


class Module:
    """Base class: subclasses set Parameters/Modules as attributes and define forward()."""

    _loc = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Module":
        self = super().__new__(cls)
        self._loc = user_location()  # where the user built it: ops of built-in modules point here
        return self

    def __init__(self) -> None:
        """No options: a subclass without its own __init__ refuses arguments instead of ignoring them."""

    def forward(self, x: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} must define forward(x)")

    def __call__(self, x: Any) -> Tensor:
        from mlpc.tracing import as_tensor

        tracer = Tracer.current()
        builtin = type(self).__module__.startswith("mlpc.")
        tracer.module_locs.append(self._loc if builtin else "")
        try:
            return self.forward(as_tensor(x))
        finally:
            tracer.module_locs.pop()

    def children(self) -> Iterator[tuple[str, "Module"]]:
        for k, v in vars(self).items():
            if k.startswith("_"):
                continue
            if isinstance(v, Module):
                yield k, v

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for k, v in vars(self).items():
            if isinstance(v, Parameter) and not k.startswith("_"):
                yield prefix + k, v
        for k, m in self.children():
            yield from m.named_parameters(f"{prefix}{k}.")

    def parameters(self) -> dict[str, Parameter]:
        return dict(self.named_parameters())

    def initialize(self, seed: int = 0, force: bool = False) -> None:
        """Draw every not-yet-set parameter from its initializer, in order, from one seeded stream."""
        rng = np.random.default_rng(seed)
        for _, p in self.named_parameters():
            if p.data is None or force:
                p.materialize(rng)

    def spec(self) -> dict:
        """A JSON description from which `from_spec` rebuilds the module. A user's subclass is stored by
        import path and its JSON-able constructor arguments; `mlpc.load(..., model=)` overrides it."""
        return {"type": type(self).__name__, "class": import_path(type(self)), "args": ctor_args(self)}


class Linear(Module):
    """y = x W + b with W of shape [in_features, out_features] and b broadcast over rows."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: Initializer | str | None = None, bias_init: Initializer | str | None = None,
                 device: Any = None, dtype: Any = None) -> None:
        refuse("Linear", "device", device, None)
        refuse("Linear", "dtype", dtype, None)
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear needs positive sizes, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        w_init = _as_init(init) if init is not None else initializers.default_weight()
        self.weight = Parameter((in_features, out_features), w_init)
        self.bias: Parameter | None = None
        if bias:
            b_init = _as_init(bias_init) if bias_init is not None else initializers.default_bias(in_features)
            self.bias = Parameter((out_features,), b_init)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            from mlpc.errors import ShapeError

            raise ShapeError(f"Linear({self.in_features}, {self.out_features}) built at {self._loc} got "
                             f"input of shape {list(x.shape)}")
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y

    def spec(self) -> dict:
        return {"type": "Linear", "in": self.in_features, "out": self.out_features,
                "bias": self.bias is not None, "init": self.weight.initializer.spec(),
                "bias_init": self.bias.initializer.spec() if self.bias is not None else None}


def _as_init(i: Initializer | str) -> Initializer:
    return initializers.from_spec(i) if isinstance(i, str) else i


class Sequential(Module):
    """Applies its modules in order; parameters are named `<index>.<name>`."""

    def __init__(self, *modules: Module) -> None:
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential item {i} is a {type(m).__name__}, not an nn.Module")
            setattr(self, str(i), m)
        self._len = len(modules)

    def __getitem__(self, i: int) -> Module:
        return getattr(self, str(i % self._len))

    def __len__(self) -> int:
        return self._len

    def forward(self, x: Tensor) -> Tensor:
        for i in range(self._len):
            x = self[i](x)
        return x

    def spec(self) -> dict:
        return {"type": "Sequential", "modules": [self[i].spec() for i in range(self._len)]}


class Residual(Module):
    """x + block(x): the building block of an MLP-ResNet."""

    def __init__(self, block: Module) -> None:
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)

    def spec(self) -> dict:
        return {"type": "Residual", "block": self.block.spec()}


class _Activation(Module):
    """An activation without options (torch's `inplace` is accepted where torch has it: it changes no result)."""

    fn = staticmethod(F.relu)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def spec(self) -> dict:
        return {"type": type(self).__name__}


class _InplaceActivation(_Activation):
    def __init__(self, inplace: bool = False) -> None:
        if not isinstance(inplace, bool):
            raise TypeError(f"{type(self).__name__}: inplace must be a bool, got {inplace!r}")
        self.inplace = inplace  # a no-op: traced graphs have no aliasing, results are the same


class ReLU(_InplaceActivation):
    fn = staticmethod(F.relu)


class SiLU(_InplaceActivation):
    """x * sigmoid(x)."""

    fn = staticmethod(F.silu)


class Sigmoid(_Activation):
    fn = staticmethod(F.sigmoid)


class Tanh(_Activation):
    fn = staticmethod(F.tanh)


class Identity(_Activation):
    """y = x. Unlike torch's Identity, which ignores any arguments, this one refuses them."""

    fn = staticmethod(lambda x: x)


GELU_FORMS = ("none", "tanh")


class GELU(Module):
    """GELU as PyTorch: `approximate='none'` (x Phi(x), the default) or `'tanh'`.

    Checkpoints written before the form was stored hold the tanh form (mlpc's GELU was tanh then)."""

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in GELU_FORMS:
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def spec(self) -> dict:
        return {"type": "GELU", "approximate": self.approximate}


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)  # a no-op, as for ReLU

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def spec(self) -> dict:
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}


class ELU(Module):
    """x if x > 0 else alpha (e^x - 1)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        self.alpha = float(alpha)
        self.inplace = bool(inplace)  # a no-op, as for ReLU

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)

    def spec(self) -> dict:
        return {"type": "ELU", "alpha": self.alpha}


class Softplus(Module):
    """log(1 + e^(beta x)) / beta, linear where beta x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        if not float(beta) > 0:
            raise ValueError(f"Softplus: beta must be > 0, got {beta}")
        self.beta, self.threshold = float(beta), float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, self.beta, self.threshold)

    def spec(self) -> dict:
        return {"type": "Softplus", "beta": self.beta, "threshold": self.threshold}


class LayerNorm(Module):
    """Normalization over the last axis of n features, with an optional learned scale (weight, ones) and
    shift (bias, zeros), as torch.nn.LayerNorm(n)."""

    def __init__(self, normalized_shape: int | tuple[int, ...] | list[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        refuse("LayerNorm", "device", device, None)
        refuse("LayerNorm", "dtype", dtype, None)
        dims = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if len(dims) != 1 or not isinstance(dims[0], int) or dims[0] <= 0:
            raise ValueError(f"LayerNorm: normalized_shape must be one positive size (the last axis), got "
                             f"{normalized_shape!r}")
        if not float(eps) > 0:
            raise ValueError(f"LayerNorm: eps must be > 0, got {eps}")
        self.normalized_shape, self.eps = dims[0], float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        if self.elementwise_affine:
            self.weight = Parameter((dims[0],), initializers.constant(1.0))
            if bias:
                self.bias = Parameter((dims[0],), initializers.zeros())

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.normalized_shape,):
            from mlpc.errors import ShapeError

            raise ShapeError(f"LayerNorm({self.normalized_shape}) built at {self._loc} got input of shape "
                             f"{list(x.shape)}")
        y = F.layer_norm(x, self.eps)
        if self.weight is not None:
            y = y * self.weight
        return y + self.bias if self.bias is not None else y

    def spec(self) -> dict:
        return {"type": "LayerNorm", "n": self.normalized_shape, "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.bias is not None}


class Dropout(Module):
    """Zeroes each element with probability p in training steps and scales the rest by 1/(1-p); the
    identity in predict/evaluate. Masks come from Philox-4x32-10 keyed by (seed, step, position): see
    mlpc/ops/random.py."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.inplace = bool(inplace)  # a no-op, as for ReLU

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p)

    def spec(self) -> dict:
        return {"type": "Dropout", "p": self.p}


_MODULES: dict[str, type[Module]] = {c.__name__: c for c in (ReLU, SiLU, Sigmoid, Tanh, Identity)}
SPEC_VERSION = 2  # 1: before GELU stored its form (GELU meant tanh); 2: forms, new layers, class paths


def from_spec(spec: dict, version: int = SPEC_VERSION) -> Module:
    """Rebuild a module from `Module.spec()`; `version` is the description format it was written in."""
    kind = spec.get("type")
    if "class" in spec:
        return _user_object(spec, Module)  # type: ignore[return-value]
    if kind == "Sequential":
        return Sequential(*[from_spec(s, version) for s in spec["modules"]])
    if kind == "Linear":
        return Linear(spec["in"], spec["out"], spec["bias"], init=initializers.from_spec(spec["init"]),
                      bias_init=initializers.from_spec(spec["bias_init"]) if spec.get("bias_init") else None)
    if kind == "Residual":
        return Residual(from_spec(spec["block"], version))
    if kind == "GELU":
        return GELU(spec.get("approximate", "tanh"))  # no form stored: written when GELU meant tanh
    if kind == "LeakyReLU":
        return LeakyReLU(spec["negative_slope"])
    if kind == "ELU":
        return ELU(spec["alpha"])
    if kind == "Softplus":
        return Softplus(spec["beta"], spec["threshold"])
    if kind == "LayerNorm":
        return LayerNorm(spec["n"], spec["eps"], spec["elementwise_affine"], spec["bias"])
    if kind == "Dropout":
        return Dropout(spec["p"])
    if kind in _MODULES:
        return _MODULES[kind]()
    raise ValueError(f"unknown module type {kind!r} in model description")


def loss_from_spec(spec: dict) -> Loss:
    if "class" in spec:
        return _user_object(spec, Loss)  # type: ignore[return-value]
    kind = spec.get("type")
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}")
    return LOSSES[kind](**{k: v for k, v in spec.items() if k != "type"})


def _user_object(spec: dict, base: type) -> Any:
    """A user's Module/Loss subclass named by import path. Only modules already imported are searched (a
    checkpoint never makes mlpc import code), and the class must subclass `base`."""
    import sys

    what = "model=" if base is Module else "loss="
    path = str(spec["class"])
    modname, _, qualname = path.partition(":")
    obj: Any = sys.modules.get(modname)
    if obj is None:
        raise ValueError(f"the checkpoint's {base.__name__} class {path} is in a module that is not imported: "
                         f"import it first, or pass {what} to mlpc.load")
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise ValueError(f"{path} is not an mlpc {base.__name__} subclass: pass {what} to mlpc.load")
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise ValueError(f"bad constructor arguments for {path}")
    try:
        return obj(**args)
    except TypeError as e:
        raise ValueError(f"cannot rebuild {path} from the checkpoint ({e}): pass {what} to mlpc.load") from None


__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "ELU", "GELU", "HuberLoss", "Identity", "L1Loss",
           "LayerNorm", "LeakyReLU", "Linear", "Loss", "MSELoss", "Module", "Parameter", "ReLU", "Residual",
           "Sequential", "SiLU", "Sigmoid", "Softplus", "Tanh", "from_spec", "loss_from_spec"]
