"""Optimizer update ops: each rule written once as scalar expressions (docs/design.md), state in and out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ir import Op
from mlpc.ops import scalar as S
from mlpc.ops.registry import Attrs, OpDef, register
from mlpc.types import DType, TensorType

STEP_TYPE = TensorType(DType.i32, ())


def _update_infer(name: str, n_state: int, n_out: int):
    """Operands: p, g, n_state state tensors like p, then the step count t (i32[])."""
    def infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        want = 2 + n_state + 1
        if len(types) != want:
            raise ShapeError(f"{name} takes {want} operands (p, g, {n_state} state, t), got {len(types)}")
        p = types[0]
        if not p.dtype.is_float:
            raise ShapeError(f"{name}: parameter must be float, got {p}")
        for i, t in enumerate(types[1:-1], 1):
            if t != p:
                raise ShapeError(f"{name}: operand {i} is {t}, expected {p} like the parameter")
        if types[-1] != STEP_TYPE:
            raise ShapeError(f"{name}: step count must be i32[], got {types[-1]}")
        return [p] * n_out
    return infer


@dataclass(frozen=True)
class StepScalar:
    """A value computed once per step from the step count t (i32[]), read by every element.

    kind "bias_correction": 1 - beta^(t+1), computed in float64 and rounded to the parameter's dtype;
    kind "first_step": t == 0 (a boolean)."""

    kind: str
    beta: float = 0.0


@dataclass(frozen=True)
class UpdateRule:
    """One optimizer update on one element, written once and rendered by NumPy, LLVM and Triton.

    Scalar-expression arguments: 0 = p, 1 = g, then `slots` (state tensors like p), then `scalars`.
    `outputs` are the new p then the new slots, the op's results in order."""

    slots: tuple[str, ...]
    scalars: tuple[StepScalar, ...]
    outputs: tuple[S.Expr, ...]

    def scalar_arg(self, i: int) -> S.Expr:
        return S.arg(2 + len(self.slots) + i)


def _slot(i: int) -> S.Expr:
    return S.arg(2 + i)


def sgd_rule(a: Attrs) -> UpdateRule:
    """PyTorch SGD: g += wd p; buf = g on the first step, else mu buf + (1 - dampening) g;
    p -= lr (g + mu buf if nesterov else buf); without momentum p -= lr g."""
    p, g = S.X, S.Y
    if a["weight_decay"]:
        g = g + a["weight_decay"] * p
    if not a["momentum"]:
        return UpdateRule((), (), (p - a["lr"] * g,))
    first = S.arg(3)
    buf = S.select(first, g, a["momentum"] * _slot(0) + (1 - a["dampening"]) * g)
    d = g + a["momentum"] * buf if a["nesterov"] else buf
    return UpdateRule(("buf",), (StepScalar("first_step"),), (p - a["lr"] * d, buf))


def momentum_rule(a: Attrs) -> UpdateRule:
    """u = beta u + (1 - beta) g; p -= lr u, or lr u / (1 - beta^(t+1)) when unbiased."""
    p, g = S.X, S.Y
    u = a["beta"] * _slot(0) + (1 - a["beta"]) * g
    if a["unbiased"]:
        return UpdateRule(("u",), (StepScalar("bias_correction", a["beta"]),),
                          (p - a["lr"] * (u / S.arg(3)), u))
    return UpdateRule(("u",), (), (p - a["lr"] * u, u))


def adam_rule(a: Attrs) -> UpdateRule:
    """Adam / AdamW: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr m^ / (sqrt(v^) + eps), with
    m^ = m / (1 - b1^(t+1)) and v^ likewise when bias_correction (else m, v); weight decay adds wd p to g,
    or (decoupled, AdamW) first scales p by 1 - lr wd."""
    p, g = S.X, S.Y
    if a["weight_decay"] and a["decoupled"]:
        p = p - (a["lr"] * a["weight_decay"]) * p
    elif a["weight_decay"]:
        g = g + a["weight_decay"] * p
    m = a["beta1"] * _slot(0) + (1 - a["beta1"]) * g
    v = a["beta2"] * _slot(1) + (1 - a["beta2"]) * (g * g)
    scalars: tuple[StepScalar, ...] = ()
    mh, vh = m, v
    if a["bias_correction"]:
        scalars = (StepScalar("bias_correction", a["beta1"]), StepScalar("bias_correction", a["beta2"]))
        # times the reciprocal: one division per step (hoisted out of element loops), within 1 ulp
        mh, vh = m * (1.0 / S.arg(4)), v * (1.0 / S.arg(5))
    return UpdateRule(("m", "v"), scalars, ((p - (a["lr"] * mh) / (S.sqrt(vh) + a["eps"])), m, v))


RULES = {"sgd_update": sgd_rule, "momentum_update": momentum_rule, "adam_update": adam_rule}


def update_rule(name: str, attrs: Attrs) -> UpdateRule:
    """The update rule of optimizer op `name` with (normalized) attributes."""
    try:
        return RULES[name](attrs)
    except KeyError:
        raise KeyError(f"no update rule for op {name!r}") from None


def step_scalar_value(s: StepScalar, t: Any, dtype: Any) -> Any:
    if s.kind == "first_step":
        return np.asarray(int(t) == 0)
    if s.kind == "bias_correction":
        return np.asarray(1.0 - s.beta ** (int(t) + 1), dtype)
    raise ValueError(f"unknown step scalar kind {s.kind!r}")


def _reference(name: str) -> Callable[..., Any]:
    """NumPy reference of an update op: its rule evaluated on arrays."""
    def ref(*operands: Any, **attrs: Any) -> Any:
        rule = update_rule(name, attrs)
        p, t = operands[0], operands[-1]
        args = list(operands[:-1]) + [step_scalar_value(s, t, p.dtype) for s in rule.scalars]
        outs = tuple(np.asarray(S.evaluate(e, args, p.dtype), p.dtype) for e in rule.outputs)
        return outs if len(outs) > 1 else outs[0]
    return ref


def _flops(name: str) -> Callable[[Op], int]:
    """FLOPs of one update: the arithmetic nodes of its rule, per parameter element."""
    def flops(op: Op) -> int:
        rule = update_rule(name, op.attrs)
        return S.count_ops(rule.outputs) * op.operands[0].type.size
    return flops


def _sgd_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    """With momentum: (p, g, buf, t) -> (p', buf'); without: (p, g, t) -> p'."""
    if attrs["momentum"]:
        return _update_infer("sgd_update", 1, 2)(types, attrs)
    return _update_infer("sgd_update", 0, 1)(types, attrs)


SGD_ATTRS = {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}
register(OpDef("sgd_update", "optimizer", _sgd_infer, _reference("sgd_update"), None, SGD_ATTRS,
               "PyTorch SGD: (p, g, [buf,] t) -> (p', [buf']); buf = g on the first step",
               flops=_flops("sgd_update")))
register(OpDef("momentum_update", "optimizer", _update_infer("momentum_update", 1, 2),
               _reference("momentum_update"), None, {"lr": 0.01, "beta": 0.9, "unbiased": False},
               "lecture momentum: u' = b u + (1-b) g; p' = p - lr u' [/(1 - b^(t+1))]",
               flops=_flops("momentum_update")))
register(OpDef("adam_update", "optimizer", _update_infer("adam_update", 2, 3), _reference("adam_update"), None,
               {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "bias_correction": True,
                "weight_decay": 0.0, "decoupled": False},
               "Adam/AdamW: (p, g, m, v, t) -> (p', m', v')", flops=_flops("adam_update")))
