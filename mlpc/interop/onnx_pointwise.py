"""Elementwise ONNX subgraphs (an exporter's decomposed GELU, SiLU, Softplus...) named as mlpc activations.

An exporter may write an activation as several nodes (torch's TorchScript exporter writes tanh-GELU as
eleven Mul/Add/Tanh nodes). Starting at the tensor `t`, nodes of elementwise ops whose other inputs are
scalar constants are taken in graph order; each time the taken nodes form a closed region (every use
of `t` and of their inner tensors is inside it, one tensor leaves it), the region is evaluated in float64
on a grid over [-6, 6] and compared with the NumPy definition of each activation in the table.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from mlpc import nn
from mlpc.interop import table

GRID = np.linspace(-6.0, 6.0, 2401)
TOLERANCE = 1e-5  # on |f - reference| / (1 + |reference|); GELU's tanh and erf forms differ by 2e-4
MAX_NODES = 64
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _attr(attrs: dict[str, Any], name: str, default: Any) -> Any:
    return attrs.get(name, default)


EVAL: dict[str, Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]] = {
    "Add": lambda a, k: a[0] + a[1],
    "Sub": lambda a, k: a[0] - a[1],
    "Mul": lambda a, k: a[0] * a[1],
    "Div": lambda a, k: a[0] / a[1],
    "Pow": lambda a, k: np.power(a[0], a[1]),
    "Neg": lambda a, k: -a[0],
    "Abs": lambda a, k: np.abs(a[0]),
    "Exp": lambda a, k: np.exp(a[0]),
    "Log": lambda a, k: np.log(a[0]),
    "Sqrt": lambda a, k: np.sqrt(a[0]),
    "Reciprocal": lambda a, k: 1.0 / a[0],
    "Tanh": lambda a, k: np.tanh(a[0]),
    "Sigmoid": lambda a, k: 0.5 * (1.0 + np.tanh(0.5 * a[0])),
    "Erf": lambda a, k: _erf(a[0]),
    "Relu": lambda a, k: np.maximum(a[0], 0.0),
    "LeakyRelu": lambda a, k: np.where(a[0] >= 0, a[0], _attr(k, "alpha", 0.01) * a[0]),
    "Elu": lambda a, k: np.where(a[0] > 0, a[0], _attr(k, "alpha", 1.0) * np.expm1(np.minimum(a[0], 0.0))),
    "Softplus": lambda a, k: np.logaddexp(0.0, a[0]),
    "Identity": lambda a, k: a[0],
    "Greater": lambda a, k: a[0] > a[1],
    "Less": lambda a, k: a[0] < a[1],
    "GreaterOrEqual": lambda a, k: a[0] >= a[1],
    "LessOrEqual": lambda a, k: a[0] <= a[1],
    "Where": lambda a, k: np.where(a[0], a[1], a[2]),
    "Max": lambda a, k: np.maximum.reduce(np.broadcast_arrays(*a)),
    "Min": lambda a, k: np.minimum.reduce(np.broadcast_arrays(*a)),
    "Cast": lambda a, k: np.asarray(a[0], dtype=np.float64),
}


def evaluate(nodes: list[Any], t: str, consts: dict[str, np.ndarray], attrs_of: Callable[[Any], dict[str, Any]],
             ) -> dict[str, np.ndarray]:
    """Values of every tensor of `nodes` (in order) with `t` = GRID."""
    values: dict[str, np.ndarray] = {t: GRID}
    for node in nodes:
        args = [values[i] if i in values else np.asarray(consts[i], dtype=np.float64).reshape(()) for i in node.input]
        with np.errstate(all="ignore"):
            values[node.output[0]] = np.asarray(EVAL[node.op_type](args, attrs_of(node)), dtype=np.float64)
    return values


def identify(values: np.ndarray) -> nn.Module | None:
    """The activation (with one of its candidate options) whose definition `values` matches on GRID."""
    for entry in table.ACTIVATIONS:
        if not entry.exported:
            continue
        for options in entry.candidates():
            ref = entry.reference(GRID, **options)
            if values.shape == ref.shape and np.all(np.abs(values - ref) <= TOLERANCE * (1.0 + np.abs(ref))):
                return entry.build(**options)
    return None


def is_candidate(node: Any, inside: set[str], consts: dict[str, np.ndarray]) -> bool:
    """An elementwise node whose inputs are region tensors or scalar constants, one output."""
    if node.op_type not in EVAL or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return False
    if not any(i in inside for i in node.input):
        return False
    return all(i in inside or (i in consts and np.asarray(consts[i]).size == 1) for i in node.input)


Found = tuple[nn.Module, str, list[Any]] | tuple[None, None, list[Any]]


def find_region(t: str, nodes: list[Any], consumers: dict[str, list[Any]], consts: dict[str, np.ndarray],
                attrs_of: Callable[[Any], dict[str, Any]]) -> Found:
    """(activation, output tensor, region nodes), or (None, None, nodes looked at) when nothing matches."""
    inside: set[str] = {t}
    region: list[Any] = []
    for node in nodes:
        if len(region) >= MAX_NODES:
            break
        if not is_candidate(node, inside, consts):
            continue
        region.append(node)
        inside.add(node.output[0])
        leaving = [x for x in inside if any(c not in region for c in consumers.get(x, []))]
        if len(leaving) == 1 and leaving[0] != t:
            values = evaluate(region, t, consts, attrs_of)
            found = identify(values[leaving[0]])
            if found is not None:
                return found, leaving[0], region
    return None, None, region
