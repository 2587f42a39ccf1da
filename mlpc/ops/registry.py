"""The op registry: each op's type rule, VJP rule and NumPy reference, kept together as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ir import Op, Value
from mlpc.ops.scalar import Expr
from mlpc.types import TensorType

Attrs = dict[str, Any]
InferRule = Callable[[Sequence[TensorType], Attrs], list[TensorType]]
VjpRule = Callable[["Builder", Op, list["Value | None"]], list["Value | None"]]
Reference = Callable[..., Any]
ScalarRule = Callable[[Attrs], Expr]  # an elementwise op's math on one element (mlpc/ops/scalar.py)
FlopRule = Union[int, Callable[[Op], int]]  # FLOPs per result element, or FLOPs of one execution

# kinds guide fusion and codegen: how an op touches memory.
KINDS = ("elementwise", "reduction", "matmul", "shape", "loss", "optimizer", "constant", "other")


@dataclass(frozen=True)
class OpDef:
    """Everything mlpc knows about one op, beside the op."""

    name: str
    kind: str
    infer: InferRule
    reference: Reference
    vjp: VjpRule | None = None
    attrs: Attrs = field(default_factory=dict)  # defaults; keys not listed are rejected
    doc: str = ""
    scalar: ScalarRule | None = None  # elementwise math, rendered by every backend
    flops: FlopRule | None = None  # cost rule (mlpc/cost.py); every op must have one
    activation: bool = False  # a layer's nonlinearity (the probe pass records its output)


_REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.kind not in KINDS:
        raise ValueError(f"unknown op kind {opdef.kind!r}")
    if opdef.kind == "elementwise" and opdef.scalar is None:
        raise ValueError(f"elementwise op {opdef.name!r} needs a scalar rule")
    if opdef.flops is None:
        raise ValueError(f"op {opdef.name!r} needs a FLOP cost rule")
    if opdef.name in _REGISTRY:
        raise ValueError(f"op {opdef.name!r} registered twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def get(name: str) -> OpDef:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


def all_ops() -> dict[str, OpDef]:
    _load_all()
    return dict(_REGISTRY)


def _load_all() -> None:
    import mlpc.ops.collective  # noqa: F401
    import mlpc.ops.elementwise  # noqa: F401
    import mlpc.ops.linalg  # noqa: F401
    import mlpc.ops.nn  # noqa: F401
    import mlpc.ops.optim  # noqa: F401
    import mlpc.ops.random  # noqa: F401
    import mlpc.ops.structural  # noqa: F401


def normalize_attrs(opdef: OpDef, attrs: Attrs) -> Attrs:
    """Fill defaults, reject unknown keys, turn lists into tuples and ints into floats where the default is a float."""
    unknown = set(attrs) - set(opdef.attrs)
    if unknown:
        raise ShapeError(f"op {opdef.name} has no attribute(s) {sorted(unknown)}")
    out: Attrs = {}
    for key, default in opdef.attrs.items():
        v = attrs.get(key, default)
        if isinstance(v, list):
            v = tuple(v)
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if v is None and default is None:
            out[key] = None
            continue
        out[key] = _check_attr_type(opdef.name, key, default, v)
    return out


def _check_attr_type(op: str, key: str, default: Any, v: Any) -> Any:
    """An attribute must have its default's kind (float, bool, int, str, tuple of ints): parsed text can hold
    anything."""
    def bad(kind: str) -> ShapeError:
        return ShapeError(f"op {op}: attribute {key} must be {kind}, got {v!r}")

    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise bad("true or false")
    elif isinstance(default, float):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad("a number")
        v = float(v)
    elif isinstance(default, int):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad("an integer")
    elif isinstance(default, str):
        if not isinstance(v, str):
            raise bad("a string")
    elif isinstance(default, tuple):
        if not isinstance(v, tuple):
            raise bad("a list of integers")
        v = tuple(x.item() if isinstance(x, np.integer) else x for x in v)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise bad("a list of integers")
    return v


def infer_types(name: str, operand_types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    return get(name).infer(operand_types, attrs)


class Builder:
    """Appends ops to a list, inferring result types from the registry; used by tracing and passes."""

    def __init__(self, loc: str = "") -> None:
        self.ops: list[Op] = []
        self.loc = loc

    def op(self, name: str, *operands: Value, **attrs: Any) -> Any:
        """Emit one op; returns its result Value, or a tuple of Values for multi-result ops."""
        opdef = get(name)
        full_attrs = normalize_attrs(opdef, attrs)
        types = [v.type for v in operands]
        try:
            result_types = opdef.infer(types, full_attrs)
        except ShapeError as e:
            where = f" at {self.loc}" if self.loc else ""
            operand_text = ", ".join(str(t) for t in types)
            raise ShapeError(f"{name}({operand_text}){where}: {e}") from None
        results = [Value(t) for t in result_types]
        op = Op(name, list(operands), results, full_attrs, self.loc)
        for r in results:
            r.producer = op
        self.ops.append(op)
        return results[0] if len(results) == 1 else tuple(results)

    def scalar(self, value: float, like: Value) -> Value:
        """A rank-0 constant of `like`'s dtype."""
        return self.op("full", value=float(value), dtype=like.dtype.value, shape=())

    def zeros_like(self, v: Value) -> Value:
        return self.op("full", value=0.0, dtype=v.dtype.value, shape=v.shape)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        get(name)  # raises KeyError for unknown ops

        def emit(*operands: Value, **attrs: Any) -> Any:
            return self.op(name, *operands, **attrs)

        return emit
