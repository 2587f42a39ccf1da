"""Optimizer update ops: one op per rule in DESIGN.md, state in and new state out.

Operands: p, g, the state tensors (like p), the step count t (i32[]), then the runtime
hyperparameters as scalars of the parameter's dtype (`hyper_names`): lr, momentum/betas, weight decay, and the
gradient scale of global-norm clipping when `clip` is set. Attributes hold only what changes the
update's structure (momentum on or off, Nesterov, bias correction, decoupled decay, eps, clip).
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

from mlpc.errors import ShapeError
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


def _c(x, like):
    return np.asarray(x, dtype=like.dtype)


def _scaled(g, h, p):
    return g * _c(h["gscale"], p) if "gscale" in h else g


def sgd_reference(p, g, b, t, h, momentum, dampening, nesterov):
    """h: runtime hyperparameters (lr, [momentum], weight_decay, [gscale]) as f32 scalars."""
    g = _scaled(g, h, p)
    g = g + _c(h["weight_decay"], p) * p
    if momentum:
        mom = _c(h["momentum"], p)
        b = g if int(t) == 0 else mom * b + _c(1 - dampening, p) * g
        d = g + mom * b if nesterov else b
    else:
        d = g
    return p - _c(h["lr"], p) * d, b


def _sgd_ref(*operands, momentum, dampening, nesterov, clip):
    attrs = {"momentum": momentum, "clip": clip}
    (p, g, *state), t, h = split_operands("sgd_update", attrs, operands)
    new_p, b = sgd_reference(p, g, state[0] if state else None, t, h, momentum, dampening, nesterov)
    return (new_p, b) if momentum else new_p


SGD_ATTRS = {"momentum": False, "dampening": 0.0, "nesterov": False, "clip": False}
register(OpDef("sgd_update", "optimizer", _infer("sgd_update"), _sgd_ref, None, SGD_ATTRS,
               "PyTorch SGD: (p, g, [buf,] t, lr, [momentum,] weight_decay, [gscale]) -> (p', [buf']); "
               "buf = g on the first step"))


def _momentum_ref(*operands, unbiased, clip):
    (p, g, u), t, h = split_operands("momentum_update", {"clip": clip}, operands)
    g = _scaled(g, h, p)
    beta = _c(h["beta"], p)
    u = beta * u + (_c(1, p) - beta) * g
    step = u / _c(1 - float(beta) ** (int(t) + 1), p) if unbiased else u
    return p - _c(h["lr"], p) * step, u


register(OpDef("momentum_update", "optimizer", _infer("momentum_update"), _momentum_ref, None,
               {"unbiased": False, "clip": False},
               "lecture momentum: u' = b u + (1-b) g; p' = p - lr u' [/(1 - b^(t+1))]; "
               "operands (p, g, u, t, lr, beta, [gscale])"))


def _adam_ref(*operands, eps, bias_correction, decoupled, clip):
    (p, g, m, v), t, h = split_operands("adam_update", {"clip": clip}, operands)
    g = _scaled(g, h, p)
    lr, wd = _c(h["lr"], p), _c(h["weight_decay"], p)
    b1, b2 = _c(h["beta1"], p), _c(h["beta2"], p)
    if decoupled:
        p = p - (lr * wd) * p
    else:
        g = g + wd * p
    m = b1 * m + (_c(1, p) - b1) * g
    v = b2 * v + (_c(1, p) - b2) * (g * g)
    if bias_correction:
        step = int(t) + 1
        m_hat = m / _c(1 - float(b1) ** step, p)
        v_hat = v / _c(1 - float(b2) ** step, p)
    else:
        m_hat, v_hat = m, v
    return p - lr * m_hat / (np.sqrt(v_hat) + _c(eps, p)), m, v


register(OpDef("adam_update", "optimizer", _infer("adam_update"), _adam_ref, None,
               {"eps": 1e-8, "bias_correction": True, "decoupled": False, "clip": False},
               "Adam/AdamW: (p, g, m, v, t, lr, beta1, beta2, weight_decay, [gscale]) -> (p', m', v')"))


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
