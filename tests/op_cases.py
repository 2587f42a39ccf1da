"""One sample call per registered op: operand types, attributes and a safe input domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpc.types import DType, TensorType


def T(dtype: str, *shape: int) -> TensorType:
    return TensorType(DType(dtype), tuple(shape))


@dataclass
class Case:
    op: str
    operands: list[TensorType]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = "any"  # any | positive | away0 (|x| >= 0.2) | labels:<classes> | bool | optimizer
    diff: list[int] | None = None  # operand indices to differentiate (default: all float operands)

    @property
    def id(self) -> str:
        return f"{self.op}-{'-'.join(str(t) for t in self.operands)}-{self.attrs}"


def cases(dtype: str = "f64") -> list[Case]:
    f = dtype
    return [
        Case("add", [T(f, 3, 4), T(f, 4)]),
        Case("add", [T(f, 3, 1), T(f, 1, 4)]),
        Case("sub", [T(f, 3, 4), T(f, 3, 4)]),
        Case("sub", [T(f), T(f, 2, 3)]),
        Case("mul", [T(f, 3, 4), T(f, 4)]),
        Case("div", [T(f, 3, 4), T(f, 3, 1)], domain="positive"),
        Case("maximum", [T(f, 3, 4), T(f, 4)]),
        Case("minimum", [T(f, 3, 4), T(f, 3, 4)]),
        Case("greater", [T(f, 3, 4), T(f, 4)]),
        Case("greater_equal", [T(f, 3, 4), T(f, 3, 4)]),
        Case("less", [T(f, 2), T(f, 2)]),
        Case("less_equal", [T(f, 2), T(f)]),
        Case("equal", [T(f, 2, 2), T(f, 2, 2)]),
        Case("where", [T("i1", 3, 4), T(f, 3, 4), T(f, 4)], domain="where"),
        Case("neg", [T(f, 3, 4)]),
        Case("exp", [T(f, 3, 4)]),
        Case("log", [T(f, 3, 4)], domain="positive"),
        Case("sqrt", [T(f, 3, 4)], domain="positive"),
        Case("square", [T(f, 5)]),
        Case("abs", [T(f, 5)], domain="away0"),
        Case("sign", [T(f, 5)], domain="away0"),
        Case("pow", [T(f, 2, 3)], {"exponent": 3.0}, domain="positive"),
        Case("relu", [T(f, 4, 5)], domain="away0"),
        Case("relu_grad", [T(f, 4, 5), T(f, 4, 5)], domain="away0"),
        Case("leaky_relu", [T(f, 4, 5)], {"alpha": 0.1}, domain="away0"),
        Case("leaky_relu_grad", [T(f, 4, 5), T(f, 4, 5)], {"alpha": 0.2}, domain="away0"),
        Case("sigmoid", [T(f, 4, 5)]),
        Case("tanh", [T(f, 4, 5)]),
        Case("gelu", [T(f, 4, 5)]),
        Case("erf", [T(f, 4, 5)]),
        Case("gelu_erf", [T(f, 4, 5)]),
        Case("silu", [T(f, 4, 5)]),
        Case("cast", [T(f, 3)], {"dtype": "f32" if f == "f64" else "f64"}),
        Case("full", [], {"value": 2.5, "dtype": f, "shape": (2, 3)}),
        Case("broadcast_to", [T(f, 1, 4)], {"shape": (3, 4)}),
        Case("broadcast_to", [T(f, 4)], {"shape": (2, 3, 4)}),
        Case("reshape", [T(f, 3, 4)], {"shape": (2, 6)}),
        Case("transpose", [T(f, 3, 4)]),
        Case("transpose", [T(f, 2, 3, 4)], {"perm": (1, 2, 0)}),
        Case("sum", [T(f, 3, 4)], {"axes": (0,)}),
        Case("sum", [T(f, 2, 3, 4)], {"axes": (0, 2), "keepdims": True}),
        Case("mean", [T(f, 3, 4)], {"axes": (1,)}),
        Case("mean", [T(f, 3, 4)], {"axes": (0, 1)}),
        Case("max", [T(f, 3, 4)], {"axes": (1,)}),
        Case("max", [T(f, 3, 4)], {"axes": (0,), "keepdims": True}),
        Case("matmul", [T(f, 3, 4), T(f, 4, 5)]),
        Case("matmul", [T(f, 4, 3), T(f, 4, 5)], {"transpose_a": True}),
        Case("matmul", [T(f, 3, 4), T(f, 5, 4)], {"transpose_b": True}),
        Case("matmul", [T(f, 4, 3), T(f, 5, 4)], {"transpose_a": True, "transpose_b": True}),
        Case("softmax", [T(f, 3, 5)]),
        Case("log_softmax", [T(f, 3, 5)]),
        Case("softmax_cross_entropy", [T(f, 4, 5), T("i32", 4)], domain="labels:5"),
        Case("softmax_cross_entropy_grad", [T(f, 4, 5), T("i32", 4), T(f)], domain="labels:5"),
        Case("mse", [T(f, 3, 2), T(f, 3, 2)]),
        Case("one_hot", [T("i32", 4)], {"num_classes": 5, "dtype": f}, domain="labels:5"),
        # update ops: p, g, state..., t, then the f32[] hyperparameters (mlpc.ops.optim.hyper_names)
        Case("sgd_update", [T(f, 3), T(f, 3), T("i32"), T(f), T(f)], {}, domain="optimizer"),
        Case("sgd_update", [T(f, 3), T(f, 3), T(f, 3), T("i32"), T(f), T(f), T(f), T(f)],
             {"momentum": True, "nesterov": True, "clip": True}, domain="optimizer"),
        Case("momentum_update", [T(f, 3), T(f, 3), T(f, 3), T("i32"), T(f), T(f)], {"unbiased": True},
             domain="optimizer"),
        Case("adam_update", [T(f, 2, 3), T(f, 2, 3), T(f, 2, 3), T(f, 2, 3), T("i32"), T(f), T(f), T(f), T(f)],
             {"decoupled": True}, domain="optimizer"),
        Case("eye", [], {"n": 3, "dtype": f}),
        Case("concat", [T(f, 2, 3), T(f, 4, 3)], {"axis": 0}),
        Case("concat", [T(f, 2, 3), T(f, 2, 1), T(f, 2, 2)], {"axis": 1}),
        Case("slice", [T(f, 5, 3)], {"axis": 0, "start": 1, "stop": 4}),
        Case("slice", [T(f, 2, 6)], {"axis": 1, "start": 0, "stop": 2}),
        Case("linear_solve", [T(f, 3, 3), T(f, 3)], {"shift": 5.0}),
        Case("linear_solve", [T(f, 3, 3), T(f, 3, 2)], {"shift": 5.0, "method": "lu"}),
        Case("allreduce", [T(f, 3, 4)], {"reduce": "row_weighted_mean"}),
        Case("dropout_mask", [T("i32")], {"p": 0.3, "seed": 7, "stream": 1, "shape": (5, 7)}),
    ]


def sample(case: Case, rng: np.random.Generator) -> list[np.ndarray]:
    """Inputs for `case` in its domain."""
    out = []
    for t in case.operands:
        if t.dtype == DType.i1:
            out.append(rng.random(t.shape) > 0.5)
        elif t.dtype.is_int:
            hi = int(case.domain.split(":")[1]) if case.domain.startswith("labels:") else 5
            out.append(rng.integers(0, hi, t.shape).astype(t.dtype.numpy))
        elif case.domain == "optimizer":  # hyperparameters in (0, 1), tensors >= 0 (Adam's v)
            lo, hi = (0.05, 0.95) if t.rank == 0 else (0.0, 2.0)
            out.append(rng.uniform(lo, hi, t.shape).astype(t.dtype.numpy))
        elif case.domain == "positive":
            out.append(rng.uniform(0.5, 2.0, t.shape).astype(t.dtype.numpy))
        elif case.domain == "away0":
            v = rng.uniform(0.2, 2.0, t.shape) * rng.choice([-1.0, 1.0], t.shape)
            out.append(np.asarray(v, t.dtype.numpy))
        else:
            out.append(rng.normal(0, 1, t.shape).astype(t.dtype.numpy))
    return out
