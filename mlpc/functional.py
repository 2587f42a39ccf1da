"""Functional ops on traced tensors (`mlpc.F`): activations, losses, math."""

from __future__ import annotations

from typing import Any

from mlpc.tracing import Tensor, Tracer, as_tensor


def _unary(name: str, x: Any, **attrs: Any) -> Tensor:
    return Tracer.current().emit(name, as_tensor(x), **attrs)


def relu(x: Any) -> Tensor:
    return _unary("relu", x)


def sigmoid(x: Any) -> Tensor:
    return _unary("sigmoid", x)


def tanh(x: Any) -> Tensor:
    return _unary("tanh", x)


def gelu(x: Any, approximate: str = "tanh") -> Tensor:
    """GELU: `approximate='tanh'` (the default here) or `'none'` (exact, with erf; PyTorch's default)."""
    if approximate not in ("tanh", "none"):
        raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
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


def cross_entropy(logits: Any, labels: Any) -> Tensor:
    """Mean softmax cross-entropy of float logits [B, C] against integer labels [B]."""
    return Tracer.current().emit("softmax_cross_entropy", as_tensor(logits), as_tensor(labels))


def mse_loss(prediction: Any, target: Any) -> Tensor:
    """Mean of squared differences over all elements."""
    return Tracer.current().emit("mse", as_tensor(prediction), as_tensor(target))
