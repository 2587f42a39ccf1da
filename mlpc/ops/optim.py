"""Optimizer update ops: each rule written once as scalar expressions (docs/design.md), state in and out.

Operands: p, g, the state tensors (like p), the step count t (i32[]), then the runtime
hyperparameters as scalars of the parameter's dtype (`hyper_names`): lr, momentum/betas, weight decay, and the
gradient scale of global-norm clipping when `clip` is set. Attributes hold only what changes the
update's structure (momentum on or off, Nesterov, bias correction, decoupled decay, eps, clip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ir import Op
from mlpc.ops import scalar as S
from mlpc.ops.registry import Attrs, OpDef, register
from mlpc.types import DType, TensorType

T = TypeVar("T")
STEP_TYPE = TensorType(DType.i32, ())
UPDATE_OPS = ("sgd_update", "momentum_update", "adam_update")


def n_state(name: str, attrs: Attrs) -> int:
    """How many state tensors (beside p and g) an update op reads."""
    if name == "sgd_update":
        return 1 if attrs.get("momentum") else 0
    return {"momentum_update": 1, "adam_update": 2}[name]


def hyper_names(name: str, attrs: Attrs) -> list[str]:
    """The runtime scalar operands of an update op, in operand order after t."""
    if name == "sgd_update":
        names = ["lr"] + (["momentum"] if attrs.get("momentum") else []) + ["weight_decay"]
    elif name == "momentum_update":
        names = ["lr", "beta"]
    else:
        names = ["lr", "beta1", "beta2", "weight_decay"]
    return names + (["gscale"] if attrs.get("clip") else [])


def split_operands(op_name: str, attrs: Attrs, operands: Sequence[T]) -> tuple[list[T], T, dict[str, T]]:
    """(tensor operands p, g, state...; the step count t; {hyper name: scalar operand})."""
    k = 2 + n_state(op_name, attrs)
    names = hyper_names(op_name, attrs)
    return list(operands[:k]), operands[k], dict(zip(names, operands[k + 1:]))


def _infer(name: str):
    def infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        ns, hyper = n_state(name, attrs), hyper_names(name, attrs)
        want = 2 + ns + 1 + len(hyper)
        if len(types) != want:
            raise ShapeError(f"{name} takes {want} operands (p, g, {ns} state, t, {', '.join(hyper)}), "
                             f"got {len(types)}")
        p = types[0]
        if not p.dtype.is_float:
            raise ShapeError(f"{name}: parameter must be float, got {p}")
        for i, t in enumerate(types[1:2 + ns], 1):
            if t != p:
                raise ShapeError(f"{name}: operand {i} is {t}, expected {p} like the parameter")
        if types[2 + ns] != STEP_TYPE:
            raise ShapeError(f"{name}: step count must be i32[], got {types[2 + ns]}")
        for h, t in zip(hyper, types[3 + ns:]):
            if t != TensorType(p.dtype, ()):
                raise ShapeError(f"{name}: hyperparameter {h} must be {p.dtype.value}[] like the parameter, got {t}")
        return [p] * (1 + ns)
    return infer


@dataclass(frozen=True)
class StepScalar:
    """A value computed once per step from the step count t (i32[]), read by every element.

    kind "bias_correction": 1 - beta^(t+1) for the runtime hyperparameter that `beta` names, computed in
    float64 and rounded to the parameter's dtype;
    kind "first_step": t == 0 (a boolean)."""

    kind: str
    beta: str = ""  # the hyperparameter named as beta (a runtime operand)


@dataclass(frozen=True)
class UpdateRule:
    """One optimizer update on one element, written once and rendered by NumPy, LLVM and Triton.

    Scalar-expression arguments: 0 = p, 1 = g, then `slots` (state tensors like p), then the runtime
    hyperparameters `hypers` (the op's scalar operands after t, in order), then the step `scalars`.
    `outputs` are the new p then the new slots, the op's results in order."""

    slots: tuple[str, ...]
    hypers: tuple[str, ...]
    scalars: tuple[StepScalar, ...]
    outputs: tuple[S.Expr, ...]

    def scalar_arg(self, i: int) -> S.Expr:
        return S.arg(2 + len(self.slots) + len(self.hypers) + i)


class _Args:
    """Builds a rule's argument numbering: slots, hyperparameters, step scalars."""

    def __init__(self, name: str, a: Attrs) -> None:
        self.ns = n_state(name, a)
        self.hypers = tuple(hyper_names(name, a))
        self.scalars: list[StepScalar] = []

    def slot(self, i: int) -> S.Expr:
        return S.arg(2 + i)

    def h(self, name: str) -> S.Expr:
        return S.arg(2 + self.ns + self.hypers.index(name))

    def step(self, sc: StepScalar) -> S.Expr:
        self.scalars.append(sc)
        return S.arg(2 + self.ns + len(self.hypers) + len(self.scalars) - 1)

    def rule(self, slots: tuple[str, ...], outputs: tuple[S.Expr, ...]) -> UpdateRule:
        return UpdateRule(slots, self.hypers, tuple(self.scalars), outputs)


def _grad(r: _Args, a: Attrs) -> S.Expr:
    """g, times the clipping scale when `clip` is set."""
    return S.Y * r.h("gscale") if a.get("clip") else S.Y


def sgd_rule(a: Attrs) -> UpdateRule:
    """PyTorch SGD: g += wd p; buf = g on the first step, else mu buf + (1 - dampening) g;
    p -= lr (g + mu buf if nesterov else buf); without momentum p -= lr g."""
    r = _Args("sgd_update", a)
    p = S.X
    g = _grad(r, a) + r.h("weight_decay") * p
    if not a["momentum"]:
        return r.rule((), (p - r.h("lr") * g,))
    mom = r.h("momentum")
    first = r.step(StepScalar("first_step"))
    buf = S.select(first, g, mom * r.slot(0) + float(1 - a["dampening"]) * g)
    d = g + mom * buf if a["nesterov"] else buf
    return r.rule(("buf",), (p - r.h("lr") * d, buf))


def momentum_rule(a: Attrs) -> UpdateRule:
    """u = beta u + (1 - beta) g; p -= lr u, or lr u / (1 - beta^(t+1)) when unbiased."""
    r = _Args("momentum_update", a)
    p, g, beta = S.X, _grad(r, a), r.h("beta")
    u = beta * r.slot(0) + (1.0 - beta) * g
    step = u / r.step(StepScalar("bias_correction", "beta")) if a["unbiased"] else u
    return r.rule(("u",), (p - r.h("lr") * step, u))


def adam_rule(a: Attrs) -> UpdateRule:
    """Adam / AdamW: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr m^ / (sqrt(v^) + eps), with
    m^ = m / (1 - b1^(t+1)) and v^ likewise when bias_correction (else m, v); weight decay adds wd p to g,
    or (decoupled, AdamW) first scales p by 1 - lr wd."""
    r = _Args("adam_update", a)
    p, g = S.X, _grad(r, a)
    lr, wd, b1, b2 = r.h("lr"), r.h("weight_decay"), r.h("beta1"), r.h("beta2")
    if a["decoupled"]:
        p = p - (lr * wd) * p
    else:
        g = g + wd * p
    m = b1 * r.slot(0) + (1.0 - b1) * g
    v = b2 * r.slot(1) + (1.0 - b2) * (g * g)
    mh, vh = m, v
    if a["bias_correction"]:
        c1 = r.step(StepScalar("bias_correction", "beta1"))
        c2 = r.step(StepScalar("bias_correction", "beta2"))
        # times the reciprocal: one division per step (hoisted out of element loops), within 1 ulp
        mh, vh = m * (1.0 / c1), v * (1.0 / c2)
    return r.rule(("m", "v"), (p - (lr * mh) / (S.sqrt(vh) + float(a["eps"])), m, v))


RULES = {"sgd_update": sgd_rule, "momentum_update": momentum_rule, "adam_update": adam_rule}


def update_rule(name: str, attrs: Attrs) -> UpdateRule:
    """The update rule of optimizer op `name` with (normalized) attributes."""
    try:
        return RULES[name](attrs)
    except KeyError:
        raise KeyError(f"no update rule for op {name!r}") from None


def step_scalar_value(s: StepScalar, t: Any, hyper: dict[str, Any], dtype: Any) -> Any:
    """The value of step scalar `s` at step t with runtime hyperparameters `hyper`."""
    if s.kind == "first_step":
        return np.asarray(int(t) == 0)
    if s.kind == "bias_correction":
        return np.asarray(1.0 - float(hyper[s.beta]) ** (int(t) + 1), dtype)
    raise ValueError(f"unknown step scalar kind {s.kind!r}")


def _reference(name: str) -> Callable[..., Any]:
    """NumPy reference of an update op: its rule evaluated on arrays."""
    def ref(*operands: Any, **attrs: Any) -> Any:
        rule = update_rule(name, attrs)
        tensors, t, hyper = split_operands(name, attrs, operands)
        p = tensors[0]
        hv = [np.asarray(hyper[k], p.dtype) for k in rule.hypers]
        args = list(tensors) + hv + [step_scalar_value(s, t, hyper, p.dtype) for s in rule.scalars]
        outs = tuple(np.asarray(S.evaluate(e, args, p.dtype), p.dtype) for e in rule.outputs)
        return outs if len(outs) > 1 else outs[0]
    return ref


def _flops(name: str) -> Callable[[Op], int]:
    """FLOPs of one update: the arithmetic nodes of its rule that read a tensor, per parameter element
    (arithmetic on hyperparameters and step scalars alone runs once per step)."""
    def flops(op: Op) -> int:
        rule = update_rule(name, op.attrs)
        return S.count_ops(rule.outputs, 2 + len(rule.slots)) * op.operands[0].type.size
    return flops

SGD_ATTRS = {"momentum": False, "dampening": 0.0, "nesterov": False, "clip": False}
register(OpDef("sgd_update", "optimizer", _infer("sgd_update"), _reference("sgd_update"), None, SGD_ATTRS,
               "PyTorch SGD: (p, g, [buf,] t, lr, [momentum,] weight_decay, [gscale]) -> (p', [buf']); "
               "buf = g on the first step", flops=_flops("sgd_update")))


register(OpDef("momentum_update", "optimizer", _infer("momentum_update"), _reference("momentum_update"), None,
               {"unbiased": False, "clip": False},
               "lecture momentum: u' = b u + (1-b) g; p' = p - lr u' [/(1 - b^(t+1))]; "
               "operands (p, g, u, t, lr, beta, [gscale])", flops=_flops("momentum_update")))
register(OpDef("adam_update", "optimizer", _infer("adam_update"), _reference("adam_update"), None,
               {"eps": 1e-8, "bias_correction": True, "decoupled": False, "clip": False},
               "Adam/AdamW: (p, g, m, v, t, lr, beta1, beta2, weight_decay, [gscale]) -> (p', m', v')",
               flops=_flops("adam_update")))


HYPER_DEFAULTS = {"lr": 0.01, "momentum": 0.0, "beta": 0.9, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0,
                  "gscale": 1.0}


def split_attrs(name: str, options: dict) -> tuple[Attrs, dict[str, float]]:
    """Mixed options (lr=..., momentum=0.9, nesterov=True, ...) -> (the op's structural attrs, the
    runtime values of its hyperparameters); for hand-built graphs that inline hyperparameters."""
    opts = dict(options)
    values = {k: float(opts.pop(k)) for k in list(opts) if k in HYPER_DEFAULTS and k != "momentum"}
    if name == "sgd_update":
        mom = opts.pop("momentum", 0.0)
        values["momentum"] = float(mom)
        opts["momentum"] = bool(mom)
    attrs = {**_ATTR_DEFAULTS[name], **opts}
    names = hyper_names(name, attrs)
    return attrs, {k: values.get(k, HYPER_DEFAULTS[k]) for k in names}


_ATTR_DEFAULTS: dict[str, Attrs] = {"sgd_update": SGD_ATTRS, "momentum_update": {"unbiased": False, "clip": False},
                                    "adam_update": {"eps": 1e-8, "bias_correction": True, "decoupled": False,
                                                    "clip": False}}


def inline_update(b, name: str, p, g, state: list, t, options: dict, consts: dict):
    """Emit update op `name` with its hyperparameters as `full` constants from mixed `options`
    (hand-built graphs); `consts` shares the constants between the parameters of one graph."""
    attrs, values = split_attrs(name, options)
    hv = []
    for k in hyper_names(name, attrs):
        if k not in consts:
            consts[k] = b.scalar(values[k], p)
        hv.append(consts[k])
    return b.op(name, p, g, *state, t, *hv, **attrs)
