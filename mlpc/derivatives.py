"""`mlpc.grad(f)` and `mlpc.hessian(f)`: derivatives of scalar functions written with DSL ops."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mlpc.errors import MlpcError
from mlpc.ir import Graph
from mlpc.tracing import Tensor, Tracer, as_tensor
from mlpc.types import DType, TensorType


def _array(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "fiu":
        raise MlpcError(f"grad/hessian take numeric arrays, got dtype {arr.dtype}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int32)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def trace_scalar(f: Callable[..., Any], args: tuple[np.ndarray, ...]) -> Graph:
    """Trace f(x, *rest): x becomes the param input `x`, the rest data inputs `arg1`.. ; output `loss`."""
    x = args[0]
    if x.dtype.kind != "f":
        raise MlpcError(f"the first argument is differentiated and must be float, got {x.dtype}")
    with Tracer() as tr:
        tx = tr.input("x", TensorType(DType.from_numpy(x.dtype), x.shape), "param")
        rest = [tr.input(f"arg{i}", TensorType(DType.from_numpy(a.dtype), a.shape)) for i, a in enumerate(args[1:], 1)]
        out = f(tx, *rest)
        if not isinstance(out, Tensor):
            out = as_tensor(out, like=tx)
        if out.shape != () or not out.dtype.is_float:
            raise MlpcError(f"grad/hessian need f to return a float scalar, got {out.value.type}")
        return tr.graph("f", {"loss": out})


def _feeds(args: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    return {"x": args[0], **{f"arg{i}": a for i, a in enumerate(args[1:], 1)}}


def _cached(f: Callable[..., Any], pipeline: str, output: str) -> Callable[..., np.ndarray]:
    cache: dict[tuple[Any, ...], Graph] = {}

    def run(*args: Any) -> np.ndarray:
        from mlpc.interpreter import interpret
        from passes.manager import PassManager

        if not args:
            raise MlpcError("call with at least the point x at which to differentiate")
        arrays = tuple(_array(a) for a in args)
        key = tuple((a.shape, a.dtype.str) for a in arrays)
        if key not in cache:
            cache[key] = PassManager().run(trace_scalar(f, arrays), pipeline)
        return np.asarray(interpret(cache[key], _feeds(arrays))[output])

    return run


def grad(f: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """grad(f)(x, *consts): d f / d x as a NumPy array shaped like x (reverse-mode autodiff)."""
    return _cached(f, "autodiff,simplify", "grad.x")


def hessian(f: Callable[..., Any], max_params: int = 20000) -> Callable[..., np.ndarray]:
    """hessian(f)(x, *consts): the [x.size, x.size] matrix of second derivatives (second-order autodiff)."""
    return _cached(f, f"hessian{{max_params={max_params}}},simplify", "hessian")
