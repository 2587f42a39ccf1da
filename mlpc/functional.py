"""Functional ops on traced tensors (`mlpc.F`): activations, losses, math."""

from __future__ import annotations

from typing import Any

from mlpc.tracing import Tensor, Tracer, as_tensor
from mlpc.types import DType, TensorType

STEP_INPUT = "t"  # the optimizer passes' step count (passes/optimizer.py STEP)


def _unary(name: str, x: Any, **attrs: Any) -> Tensor:
    return Tracer.current().emit(name, as_tensor(x), **attrs)


def relu(x: Any) -> Tensor:
    return _unary("relu", x)


def sigmoid(x: Any) -> Tensor:
    return _unary("sigmoid", x)


def tanh(x: Any) -> Tensor:
    return _unary("tanh", x)


def gelu(x: Any, approximate: str = "none") -> Tensor:
    """GELU as PyTorch: `approximate='none'` (x * Phi(x) with erf, the default) or `'tanh'`."""
    if approximate not in ("tanh", "none"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _unary("gelu" if approximate == "tanh" else "gelu_erf", x)


def silu(x: Any) -> Tensor:
    """SiLU (swish): x * sigmoid(x)."""
    return _unary("silu", x)


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Tensor:
    return _unary("leaky_relu", x, alpha=float(negative_slope))


def exp(x: Any) -> Tensor:
    return _unary("exp", x)


def log(x: Any) -> Tensor:
    return _unary("log", x)


def sqrt(x: Any) -> Tensor:
    return _unary("sqrt", x)


def square(x: Any) -> Tensor:
    return _unary("square", x)


def abs(x: Any) -> Tensor:  # noqa: A001 - mirrors numpy/torch naming
    return _unary("abs", x)


def softmax(x: Any) -> Tensor:
    return _unary("softmax", x)


def log_softmax(x: Any) -> Tensor:
    return _unary("log_softmax", x)


def maximum(x: Any, y: Any) -> Tensor:
    a = as_tensor(x)
    return Tracer.current().emit("maximum", a, as_tensor(y, like=a))


def minimum(x: Any, y: Any) -> Tensor:
    a = as_tensor(x)
    return Tracer.current().emit("minimum", a, as_tensor(y, like=a))


def where(cond: Any, x: Any, y: Any) -> Tensor:
    a = as_tensor(x)
    return Tracer.current().emit("where", as_tensor(cond), a, as_tensor(y, like=a))


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
    return Tracer.current().emit("matmul", as_tensor(a), as_tensor(b),
                                 transpose_a=transpose_a, transpose_b=transpose_b)


def transpose(x: Any, perm: tuple[int, ...] = ()) -> Tensor:
    return _unary("transpose", x, perm=tuple(perm))


def broadcast_to(x: Any, shape: tuple[int, ...]) -> Tensor:
    return _unary("broadcast_to", x, shape=tuple(shape))


def one_hot(labels: Any, num_classes: int) -> Tensor:
    return _unary("one_hot", labels, num_classes=int(num_classes), dtype="f32")


def cross_entropy(logits: Any, labels: Any, label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of float logits [B, C] against integer labels [B], as torch's F.cross_entropy:
    with label smoothing e the target is (1-e) onehot + e/C; reduction 'mean' over rows or 'sum'."""
    from mlpc.composites import check_reduction, reduce_all

    check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    lg = as_tensor(logits)
    loss = Tracer.current().emit("softmax_cross_entropy", lg, as_tensor(labels))
    if label_smoothing:
        uniform = -(log_softmax(lg).mean())  # mean over rows of mean over classes of -log p
        loss = loss * (1.0 - label_smoothing) + uniform * label_smoothing
    return reduce_all(loss, lg.shape[0], reduction)


def mse_loss(prediction: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum, reduction='sum') of squared differences over all elements."""
    from mlpc.composites import check_reduction, reduce_all

    check_reduction(reduction)
    p = as_tensor(prediction)
    return reduce_all(Tracer.current().emit("mse", p, as_tensor(target)), p.value.type.size, reduction)


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1); exp sees min(x, 0) so the unused branch never overflows."""
    t = as_tensor(x)
    neg = (exp(minimum(t, 0.0)) - 1.0) * float(alpha)
    return where(t > 0.0, t, neg)


def softplus(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold (PyTorch's Softplus)."""
    from mlpc.composites import stable_softplus

    t = as_tensor(x)
    u = t * float(beta) if beta != 1.0 else t
    soft = stable_softplus(u)
    soft = soft / float(beta) if beta != 1.0 else soft
    return where(u > float(threshold), t, soft)


def layer_norm(x: Any, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the last axis (biased variance, as PyTorch)."""
    t = as_tensor(x)
    centered = t - t.mean(axis=-1, keepdims=True)
    var = square(centered).mean(axis=-1, keepdims=True)
    return centered / sqrt(var + float(eps))


def binary_cross_entropy_with_logits(logits: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum) over elements of -[y log sigmoid(x) + (1-y) log(1 - sigmoid(x))], computed stably as
    (1 - y) x + softplus(-x)."""
    from mlpc.composites import check_reduction, reduce_all, stable_softplus

    check_reduction(reduction)
    x, y = as_tensor(logits), as_tensor(target)
    per = (1.0 - y) * x + stable_softplus(-x)
    return reduce_all(per.mean(), x.value.type.size, reduction)


def l1_loss(prediction: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum) of |prediction - target|."""
    from mlpc.composites import check_reduction, reduce_all

    check_reduction(reduction)
    p = as_tensor(prediction)
    return reduce_all(abs(p - as_tensor(target)).mean(), p.value.type.size, reduction)


def huber_loss(prediction: Any, target: Any, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """Mean (or sum) of 0.5 d^2 where |d| < delta, else delta (|d| - delta/2), d = prediction - target."""
    from mlpc.composites import check_reduction, reduce_all

    check_reduction(reduction)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    p = as_tensor(prediction)
    d = p - as_tensor(target)
    a = abs(d)
    per = where(a < float(delta), square(d) * 0.5, (a - 0.5 * float(delta)) * float(delta))
    return reduce_all(per.mean(), p.value.type.size, reduction)


def dropout(x: Any, p: float = 0.5) -> Tensor:
    """Inverted dropout in a training trace (x * mask, see mlpc/ops/random.py); x itself otherwise.

    The mask's key is the step count `t`: the graph input the optimizer pass also counts steps with."""
    t = as_tensor(x)
    tracer = Tracer.current()
    if not tracer.training or p == 0.0:
        return t
    if len(t.shape) != 2:
        raise ValueError(f"dropout applies to [batch, features] tensors, got shape {list(t.shape)}")
    step = next((i for i in tracer.inputs if i.name == STEP_INPUT), None)
    if step is None:
        step_t = tracer.input(STEP_INPUT, TensorType(DType.i32, ()), "state")
    else:
        step_t = Tensor(step.value)
    stream = tracer.random_streams
    tracer.random_streams += 1
    mask = tracer.emit("dropout_mask", step_t, p=float(p), seed=int(tracer.seed), stream=stream, shape=t.shape)
    # the mask reads only the graph input t: hoisting it to the front lets x * mask (and g * mask in the
    # backward pass) fuse into the kernel that produces x, whose position is before the mask otherwise
    ops = tracer.builder.ops
    ops.insert(0, ops.pop())
    return t * mask
