"""Run any mlpc optimizer on a scalar function of one parameter vector, through the compiler."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mlpc.errors import MlpcError
from mlpc.optim import Optimizer, hyper_feed
from mlpc.tracing import Tracer
from mlpc.types import DType, TensorType


class CompiledObjective:
    """f(theta, **consts) traced, differentiated and given `optimizer`'s update pass; `step()` runs it."""

    def __init__(self, f: Callable[..., Any], theta0: np.ndarray, optimizer: Optimizer,
                 consts: dict[str, np.ndarray] | None = None, backend: str = "numpy") -> None:
        from passes.manager import PassManager
        from runtime.backend import get_backend

        theta0 = np.asarray(theta0, dtype=np.float64)
        consts = {k: np.asarray(v, dtype=np.float64) for k, v in (consts or {}).items()}
        with Tracer() as tr:
            theta = tr.input("theta", TensorType(DType.f64, theta0.shape), "param")
            args = {k: tr.input(k, TensorType(DType.f64, v.shape)) for k, v in consts.items()}
            loss = f(theta, **args)
            if loss.shape != ():
                raise MlpcError(f"the objective must return a scalar, got shape {list(loss.shape)}")
            graph = tr.graph("objective", {"loss": loss})
        self.graph = PassManager().run(graph, f"autodiff,{optimizer.pipeline_text()},simplify")
        self.backend = get_backend(backend)
        self.compiled = self.backend.lower(self.graph, lambda stage, text: None)
        self.consts = consts
        self.state: dict[str, Any] = {}
        for inp in self.graph.inputs:
            if inp.name == "theta":
                self.state[inp.name] = self.backend.to_device(theta0)
            elif inp.role == "state":
                self.state[inp.name] = self.backend.to_device(np.zeros(inp.value.shape, inp.value.dtype.numpy))
        for name, value in hyper_feed(self.graph, [optimizer.hyper_values()]).items():
            self.state[name] = self.backend.to_device(value)

    @property
    def theta(self) -> np.ndarray:
        return self.backend.to_host(self.state["theta"])

    def step(self) -> float:
        """One optimizer step; returns f at the parameters before the step."""
        return float(np.asarray(self.compiled.run(self.state, dict(self.consts))["loss"]))


def trajectory(f: Callable[..., Any], theta0: np.ndarray, optimizer: Optimizer, steps: int,
               consts: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The iterates theta_0 .. theta_steps, shape [steps + 1, *theta.shape]."""
    obj = CompiledObjective(f, theta0, optimizer, consts)
    points = [obj.theta]
    for _ in range(steps):
        obj.step()
        points.append(obj.theta)
    return np.stack(points)
