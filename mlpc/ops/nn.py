"""Neural-network ops: softmax family, softmax cross-entropy with its fused gradient, MSE, one-hot."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ops.registry import Attrs, Builder, OpDef, register
from mlpc.types import DType, TensorType


def _rowwise(per_element: int):
    """FLOP rule: `per_element` FLOPs for each element of the first operand."""
    return lambda op: per_element * op.operands[0].type.size


def _rowwise_infer(name: str):
    def infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if len(types) != 1 or types[0].rank < 1 or not types[0].dtype.is_float:
            raise ShapeError(f"{name} takes one float tensor of rank >= 1")
        return [types[0]]
    return infer


def _softmax_ref(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax_ref(x):
    s = x - x.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def softmax_vjp_of(b: Builder, y, g):
    """Cotangent of x for y = softmax(x) given dy = g: y * (g - sum(g * y))."""
    dot = b.sum(b.mul(g, y), axes=[-1], keepdims=True)
    return b.mul(y, b.sub(g, dot))


register(OpDef("softmax", "other", _rowwise_infer("softmax"), _softmax_ref,
               lambda b, op, cts: [softmax_vjp_of(b, op.result, cts[0])],
               doc="softmax over the last axis", flops=_rowwise(5)))  # max, sub, exp, sum, div
register(OpDef("log_softmax", "other", _rowwise_infer("log_softmax"), _log_softmax_ref,
               lambda b, op, cts: [b.sub(cts[0], b.mul(b.exp(op.result),
                                                       b.sum(cts[0], axes=[-1], keepdims=True)))],
               doc="log of softmax over the last axis, computed stably", flops=_rowwise(5)))


def _check_logits_labels(name: str, logits: TensorType, labels: TensorType) -> None:
    if logits.rank != 2 or not logits.dtype.is_float:
        raise ShapeError(f"{name} needs float logits [batch, classes], got {logits}")
    if labels.rank != 1 or not labels.dtype.is_int:
        raise ShapeError(f"{name} needs integer labels [batch], got {labels}")
    if labels.shape[0] != logits.shape[0]:
        raise ShapeError(f"{name}: {logits.shape[0]} rows of logits but {labels.shape[0]} labels")


def _sce_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 2:
        raise ShapeError("softmax_cross_entropy takes (logits, labels)")
    _check_logits_labels("softmax_cross_entropy", *types)
    return [TensorType(types[0].dtype, ())]


def _sce_ref(logits, labels):
    lsm = _log_softmax_ref(logits)
    return np.asarray(-lsm[np.arange(len(labels)), labels].mean(), logits.dtype)


def _sce_grad_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 3:
        raise ShapeError("softmax_cross_entropy_grad takes (logits, labels, g)")
    _check_logits_labels("softmax_cross_entropy_grad", types[0], types[1])
    if types[2] != TensorType(types[0].dtype, ()):
        raise ShapeError(f"softmax_cross_entropy_grad's g must be a {types[0].dtype.value} scalar")
    return [types[0]]


def _sce_grad_ref(logits, labels, g):
    s = _softmax_ref(logits)
    s[np.arange(len(labels)), labels] -= 1
    return (s * (g / logits.shape[0])).astype(logits.dtype)


def _sce_grad_vjp(b: Builder, op, cts):
    """Second-order rule: d/dlogits and d/dg of g * (softmax(logits) - onehot) / B."""
    logits, labels, g = op.operands
    ct = cts[0]
    batch = b.scalar(float(logits.shape[0]), g)
    s = b.softmax(logits)
    h = b.mul(ct, b.div(g, batch))
    d_logits = softmax_vjp_of(b, s, h)
    diff = b.sub(s, b.one_hot(labels, num_classes=logits.shape[1], dtype=logits.dtype.value))
    d_g = b.div(b.sum(b.mul(ct, diff), axes=[0, 1]), batch)
    return [d_logits, None, d_g]


register(OpDef("softmax_cross_entropy", "loss", _sce_infer, _sce_ref,
               lambda b, op, cts: [b.softmax_cross_entropy_grad(op.operands[0], op.operands[1], cts[0]), None],
               doc="mean over rows of -log softmax(logits)[label]", flops=_rowwise(5)))
register(OpDef("softmax_cross_entropy_grad", "loss", _sce_grad_infer, _sce_grad_ref, _sce_grad_vjp,
               doc="fused gradient g * (softmax(logits) - onehot(labels)) / batch", flops=_rowwise(6)))


def _mse_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 2 or types[0] != types[1] or not types[0].dtype.is_float:
        raise ShapeError(f"mse takes (prediction, target) of one float type, got {[str(t) for t in types]}")
    return [TensorType(types[0].dtype, ())]


def _mse_vjp(b: Builder, op, cts):
    p, t = op.operands
    scale = b.div(b.mul(cts[0], b.scalar(2.0, p)), b.scalar(float(max(p.type.size, 1)), p))
    d = b.mul(b.sub(p, t), scale)
    return [d, b.neg(d)]


register(OpDef("mse", "loss", _mse_infer,
               lambda p, t: np.asarray(np.mean(np.square(p - t)), p.dtype), _mse_vjp,
               doc="mean over all elements of (prediction - target)^2", flops=_rowwise(3)))


def _one_hot_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 1 or not types[0].dtype.is_int:
        raise ShapeError("one_hot takes one integer tensor")
    if attrs["num_classes"] <= 0:
        raise ShapeError("one_hot needs num_classes > 0")
    return [TensorType(DType(attrs["dtype"]), types[0].shape + (attrs["num_classes"],))]


def _one_hot_ref(labels, num_classes, dtype):
    return (labels[..., None] == np.arange(num_classes)).astype(DType(dtype).numpy)


register(OpDef("one_hot", "other", _one_hot_infer, _one_hot_ref, lambda b, op, cts: [None],
               {"num_classes": 1, "dtype": "f32"}, "1.0 at each label's class, else 0.0", flops=0))
