"""The mapping tables: torch.nn class <-> mlpc.nn module <-> ONNX ops. A new layer is one entry here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mlpc import nn
from mlpc.errors import InteropError
from mlpc.interop.onnx_graph import OnnxBuilder

Params = dict[str, np.ndarray]  # a module's own parameters by local name ("weight", "bias"), mlpc layout


@dataclass(frozen=True)
class Option:
    """One constructor argument of an activation under its mlpc, torch and ONNX names (None: the ONNX op
    has no such attribute and an imported node gets `onnx_default`)."""

    mlpc: str
    torch: str
    onnx: str | None
    onnx_default: Any


@dataclass(frozen=True)
class Activation:
    """A layer without parameters that maps one-to-one onto a torch class and an ONNX op."""

    mlpc: type[nn.Module]
    torch: str  # class name in torch.nn
    onnx: str | None  # ONNX op type of the single-node form (None: there is none, `decompose` always)
    reference: Callable[..., np.ndarray]  # float64 NumPy definition; keyword options under their mlpc names
    options: tuple[Option, ...] = ()
    torch_fixed: tuple[tuple[str, Any], ...] = ()  # torch attributes that must have these values
    onnx_fixed: tuple[tuple[str, Any], ...] = ()  # ONNX attributes the single-node form carries
    onnx_defaults: tuple[tuple[str, Any], ...] = ()  # ONNX's value of an onnx_fixed attribute left out
    onnx_since: int = 1  # first opset with the single-node form; older opsets use `decompose`
    decompose: Callable[[OnnxBuilder, str, dict[str, Any]], str] | None = None  # (builder, x, options) -> y
    single: Callable[[dict[str, Any]], bool] | None = None  # whether the single node expresses these options
    variants: tuple[dict[str, Any], ...] = ()  # options tried when naming a region of nodes (default: defaults)
    exported: bool = True  # False for aliases (torch Flatten -> mlpc Identity) that never go back out

    def options_of(self, module: nn.Module) -> dict[str, Any]:
        return {o.mlpc: getattr(module, o.mlpc) for o in self.options}

    def build(self, **options: Any) -> nn.Module:
        return self.mlpc(**options)

    def from_torch(self, m: Any, where: str) -> nn.Module:
        for attr, want in self.torch_fixed:
            got = getattr(m, attr)
            if got != want:
                raise InteropError(f"layer {where} ({self.torch}) has {attr}={got!r}; mlpc's "
                                   f"{self.mlpc.__name__} is the {attr}={want!r} form")
        return self.build(**{o.mlpc: getattr(m, o.torch) for o in self.options})

    def to_torch(self, torch: Any, module: nn.Module, params: Params) -> Any:
        kw = {o.torch: v for o, v in zip(self.options, self.options_of(module).values())}
        kw.update(self.torch_fixed)
        return getattr(torch.nn, self.torch)(**kw)

    def emit_onnx(self, b: OnnxBuilder, module: nn.Module, params: Params, x: str) -> str:
        options = self.options_of(module)
        if self.onnx is None or b.opset < self.onnx_since or (self.single is not None and not self.single(options)):
            assert self.decompose is not None, f"{self.torch} has no ONNX form at opset {b.opset}"
            return self.decompose(b, x, options)
        attrs = {o.onnx: options[o.mlpc] for o in self.options if o.onnx is not None}
        attrs.update(self.onnx_fixed)
        return b.node(self.onnx, [x], **attrs)

    def candidates(self) -> tuple[dict[str, Any], ...]:
        return self.variants or ({o.mlpc: o.onnx_default for o in self.options},)

    def from_onnx_attrs(self, attrs: dict[str, Any], where: str) -> nn.Module:
        for attr, want in self.onnx_fixed:
            got = attrs.get(attr, dict(self.onnx_defaults).get(attr))
            if got != want:
                raise InteropError(f"{where} has {attr}={got!r}; mlpc's {self.mlpc.__name__} is the "
                                   f"{attr}={want!r} form")
        return self.build(**{o.mlpc: attrs.get(o.onnx, o.onnx_default) if o.onnx else o.onnx_default
                             for o in self.options})


class LinearMap:
    """nn.Linear: mlpc keeps W as [in, out], torch and ONNX Gemm(transB=1) as [out, in]."""

    mlpc = nn.Linear
    torch = "Linear"
    exported = True

    @staticmethod
    def from_torch(m: Any, where: str) -> nn.Module:
        w = _numpy(m.weight)
        lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        lin.weight.data = np.ascontiguousarray(w.T)
        if lin.bias is not None:
            lin.bias.data = _numpy(m.bias).copy()
        return lin

    @staticmethod
    def to_torch(torch: Any, module: nn.Module, params: Params) -> Any:
        assert isinstance(module, nn.Linear)
        lin = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(params["weight"].T)))
            if module.bias is not None:
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(params["bias"])))
        return lin

    @staticmethod
    def emit_onnx(b: OnnxBuilder, module: nn.Module, params: Params, x: str) -> str:
        inputs = [x, b.const(params["weight"].T, "weight")]
        if "bias" in params:
            inputs.append(b.const(params["bias"], "bias"))
        return b.node("Gemm", inputs, transB=1)

    # torch layout of each parameter from mlpc's, and back
    to_torch_layout: dict[str, Callable[[np.ndarray], np.ndarray]] = {"weight": lambda a: a.T}
    from_torch_layout: dict[str, Callable[[np.ndarray], np.ndarray]] = {"weight": lambda a: a.T}


def _numpy(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy(), dtype=np.float32)


# --- activations: NumPy definitions (float64) ----------------------------------------------------
GELU_C, GELU_K = math.sqrt(2.0 / math.pi), 0.044715


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + GELU_K * x ** 3)))


def _decompose_gelu_tanh(b: OnnxBuilder, x: str, options: dict[str, Any]) -> str:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in opset-17 ops."""
    x3 = b.node("Mul", [b.node("Mul", [x, x]), x])
    inner = b.node("Add", [x, b.node("Mul", [x3, b.scalar(GELU_K)])])
    t = b.node("Tanh", [b.node("Mul", [inner, b.scalar(GELU_C)])])
    return b.node("Mul", [b.node("Mul", [x, b.scalar(0.5)]), b.node("Add", [t, b.scalar(1.0)])])


ACTIVATIONS: tuple[Activation, ...] = (
    Activation(nn.ReLU, "ReLU", "Relu", lambda x: np.maximum(x, 0.0)),
    Activation(nn.Sigmoid, "Sigmoid", "Sigmoid", _sigmoid),
    Activation(nn.Tanh, "Tanh", "Tanh", np.tanh),
    Activation(nn.LeakyReLU, "LeakyReLU", "LeakyRelu",
               lambda x, negative_slope: np.where(x >= 0, x, negative_slope * x),
               options=(Option("negative_slope", "negative_slope", "alpha", 0.01),)),
    Activation(nn.GELU, "GELU", "Gelu", _gelu_tanh, torch_fixed=(("approximate", "tanh"),),
               onnx_fixed=(("approximate", "tanh"),), onnx_defaults=(("approximate", "none"),), onnx_since=20,
               decompose=_decompose_gelu_tanh),
    Activation(nn.Identity, "Identity", "Identity", lambda x: x),
    Activation(nn.Identity, "Flatten", "Flatten", lambda x: x, torch_fixed=(("start_dim", 1), ("end_dim", -1)),
               onnx_fixed=(("axis", 1),), onnx_defaults=(("axis", 1),), exported=False),
)

LayerMap = Activation | LinearMap
LAYERS: tuple[LayerMap, ...] = (LinearMap(), *ACTIVATIONS)
BY_TORCH: dict[str, LayerMap] = {m.torch: m for m in LAYERS}
BY_MLPC: dict[type, LayerMap] = {}
for _m in LAYERS:
    if _m.exported:
        BY_MLPC.setdefault(_m.mlpc, _m)


def for_module(module: nn.Module, where: str) -> LayerMap:
    """The table entry of an mlpc leaf module (exact class: a subclass may compute something else)."""
    entry = BY_MLPC.get(type(module))
    if entry is None:
        raise InteropError(f"module {where or '<root>'} ({type(module).__name__}) has no PyTorch/ONNX "
                           f"counterpart; mlpc maps {', '.join(sorted({c.__name__ for c in BY_MLPC}))} "
                           "inside Sequentials")
    return entry


def torch_names() -> str:
    return ", ".join(["Sequential", *BY_TORCH])
