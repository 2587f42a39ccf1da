"""PyTorch-like modules for writing MLPs: Linear, Sequential, activations, Residual, losses."""

from __future__ import annotations

import abc
from typing import Any, Iterator

import numpy as np

from mlpc import functional as F
from mlpc import init as initializers
from mlpc.init import Initializer
from mlpc.tracing import Tensor, TensorOps, Tracer, user_location
from mlpc.types import DType, TensorType


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
        """A JSON description from which `from_spec` rebuilds the module (built-in modules only)."""
        raise TypeError(f"{type(self).__name__} is not a built-in module and cannot be described as JSON; "
                        "pass model= to mlpc.load")


class Linear(Module):
    """y = x W + b with W of shape [in_features, out_features] and b broadcast over rows."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: Initializer | str | None = None, bias_init: Initializer | str | None = None) -> None:
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
    fn = staticmethod(F.relu)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def spec(self) -> dict:
        return {"type": type(self).__name__}


class ReLU(_Activation):
    fn = staticmethod(F.relu)


class Sigmoid(_Activation):
    fn = staticmethod(F.sigmoid)


class Tanh(_Activation):
    fn = staticmethod(F.tanh)


class GELU(_Activation):
    """Tanh-approximate GELU."""

    fn = staticmethod(F.gelu)


class Identity(_Activation):
    fn = staticmethod(lambda x: x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def spec(self) -> dict:
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}


class Loss(abc.ABC):
    """A loss: `target_type` says what y must be, `__call__` traces the scalar loss."""

    _loc = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Loss":
        self = super().__new__(cls)
        self._loc = user_location()  # the loss ops point at the line that built the loss
        return self

    def trace(self, prediction: Tensor, target: Tensor) -> Tensor:
        tracer = Tracer.current()
        tracer.module_locs.append(self._loc)
        try:
            return self(prediction, target)
        finally:
            tracer.module_locs.pop()

    @abc.abstractmethod
    def target_type(self, batch: int, out_features: int) -> TensorType:
        """The type the targets y must have for a batch."""

    @abc.abstractmethod
    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Trace the scalar loss."""

    def spec(self) -> dict:
        return {"type": type(self).__name__}


class CrossEntropyLoss(Loss):
    """Mean softmax cross-entropy; targets are integer class labels [B]."""

    def target_type(self, batch: int, out_features: int) -> TensorType:
        return TensorType(DType.i32, (batch,))

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target)


class MSELoss(Loss):
    """Mean squared error over all elements; targets are floats shaped like the output."""

    def target_type(self, batch: int, out_features: int) -> TensorType:
        return TensorType(DType.f32, (batch, out_features))

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target)


_MODULES = {"ReLU": ReLU, "Sigmoid": Sigmoid, "Tanh": Tanh, "GELU": GELU, "Identity": Identity}
_LOSSES = {"CrossEntropyLoss": CrossEntropyLoss, "MSELoss": MSELoss}


def from_spec(spec: dict) -> Module:
    """Rebuild a built-in module from `Module.spec()`."""
    kind = spec.get("type")
    if kind == "Sequential":
        return Sequential(*[from_spec(s) for s in spec["modules"]])
    if kind == "Linear":
        return Linear(spec["in"], spec["out"], spec["bias"], init=initializers.from_spec(spec["init"]),
                      bias_init=initializers.from_spec(spec["bias_init"]) if spec.get("bias_init") else None)
    if kind == "Residual":
        return Residual(from_spec(spec["block"]))
    if kind == "LeakyReLU":
        return LeakyReLU(spec["negative_slope"])
    if kind in _MODULES:
        return _MODULES[kind]()
    raise ValueError(f"unknown module type {kind!r} in model description")


def loss_from_spec(spec: dict) -> Loss:
    if spec.get("type") not in _LOSSES:
        raise ValueError(f"unknown loss {spec.get('type')!r}")
    return _LOSSES[spec["type"]]()
