"""Optimizer update ops: one op per rule in DESIGN.md, state in and new state out."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlpc.errors import ShapeError
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


def _c(x, like):
    return np.asarray(x, dtype=like.dtype)


def sgd_reference(p, g, b, t, lr, momentum, dampening, nesterov, weight_decay):
    if weight_decay:
        g = g + _c(weight_decay, p) * p
    if momentum:
        b = g if int(t) == 0 else _c(momentum, p) * b + _c(1 - dampening, p) * g
        d = g + _c(momentum, p) * b if nesterov else b
    else:
        d = g
    return p - _c(lr, p) * d, b


def _sgd_ref(*operands, **attrs):
    if attrs["momentum"]:
        p, g, b, t = operands
        return sgd_reference(p, g, b, t, **attrs)
    p, g, t = operands
    return sgd_reference(p, g, None, t, **attrs)[0]


def _sgd_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    """With momentum: (p, g, buf, t) -> (p', buf'); without: (p, g, t) -> p'."""
    if attrs["momentum"]:
        return _update_infer("sgd_update", 1, 2)(types, attrs)
    return _update_infer("sgd_update", 0, 1)(types, attrs)


SGD_ATTRS = {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}
register(OpDef("sgd_update", "optimizer", _sgd_infer, _sgd_ref, None, SGD_ATTRS,
               "PyTorch SGD: (p, g, [buf,] t) -> (p', [buf']); buf = g on the first step"))


def _momentum_ref(p, g, u, t, lr, beta, unbiased):
    u = _c(beta, p) * u + _c(1 - beta, p) * g
    step = u / _c(1 - beta ** (int(t) + 1), p) if unbiased else u
    return p - _c(lr, p) * step, u


register(OpDef("momentum_update", "optimizer", _update_infer("momentum_update", 1, 2), _momentum_ref, None,
               {"lr": 0.01, "beta": 0.9, "unbiased": False},
               "lecture momentum: u' = b u + (1-b) g; p' = p - lr u' [/(1 - b^(t+1))]"))


def _adam_ref(p, g, m, v, t, lr, beta1, beta2, eps, bias_correction, weight_decay, decoupled):
    if weight_decay and decoupled:
        p = p - _c(lr * weight_decay, p) * p
    elif weight_decay:
        g = g + _c(weight_decay, p) * p
    m = _c(beta1, p) * m + _c(1 - beta1, p) * g
    v = _c(beta2, p) * v + _c(1 - beta2, p) * (g * g)
    if bias_correction:
        step = int(t) + 1
        m_hat = m / _c(1 - beta1 ** step, p)
        v_hat = v / _c(1 - beta2 ** step, p)
    else:
        m_hat, v_hat = m, v
    return p - _c(lr, p) * m_hat / (np.sqrt(v_hat) + _c(eps, p)), m, v


register(OpDef("adam_update", "optimizer", _update_infer("adam_update", 2, 3), _adam_ref, None,
               {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "bias_correction": True,
                "weight_decay": 0.0, "decoupled": False},
               "Adam/AdamW: (p, g, m, v, t) -> (p', m', v')"))
