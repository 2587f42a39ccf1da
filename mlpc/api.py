"""The public entry points: `mlpc.compile` builds a Trainer; the Trainer runs compiled steps."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import numpy as np

from mlpc import nn, validate
from mlpc.errors import MlpcError, NumericalError
from mlpc.ir import Graph
from mlpc.optim import Adam, Optimizer
from mlpc.printer import print_graph
from mlpc.tracing import Tracer
from mlpc.types import DType, TensorType

FRONT_STAGES = ("traced", "autodiff", "optimizer", "simplified")


def first_linear(model: nn.Module) -> nn.Linear | None:
    if isinstance(model, nn.Linear):
        return model
    for _, child in model.children():
        found = first_linear(child)
        if found is not None:
            return found
    return None


def trace_model(model: nn.Module, batch: int, in_features: int, loss: nn.Loss | None,
                name: str) -> Graph:
    """Trace the forward (and loss, when given) with params as inputs."""
    with Tracer() as tr:
        x = tr.input("x", TensorType(DType.f32, (batch, in_features)))
        for pname, p in model.named_parameters():
            tr.param_tensors[id(p)] = tr.input(pname, TensorType(DType.f32, p.shape), "param")
        out = model(x)
        if len(out.shape) != 2 or out.shape[0] != batch:
            raise MlpcError(f"the model must map [batch, features] to [batch, outputs], got {list(out.shape)}")
        if loss is None:
            return tr.graph(name, {"logits": out})
        y = tr.input("y", loss.target_type(batch, out.shape[1]))
        # keep inputs ordered x, y, params
        tr.inputs.insert(1, tr.inputs.pop())
        return tr.graph(name, {"loss": loss.trace(out, y)})


class Trainer:
    """A compiled model: `step` trains on one batch, `predict` runs the forward pass."""

    def __init__(self, model: nn.Module, loss: nn.Loss, optimizer: Optimizer, batch_size: int,
                 backend: str, seed: int, in_features: int | None,
                 print_after: str | None = None, ir_stream: Any = None, probe: bool = False,
                 nan_guard: bool = False, distributed: Any = None) -> None:
        from mlpc import distributed as dist
        from runtime.backend import get_backend

        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if in_features is None:
            lin = first_linear(model)
            if lin is None:
                raise MlpcError("cannot tell the input width: pass in_features= to mlpc.compile")
            in_features = lin.in_features
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.batch_size, self.in_features, self.seed = batch_size, in_features, seed
        self.backend_name = backend
        self.nan_guard = nan_guard
        self.comm = dist.resolve(distributed)
        # rows of one global batch this process steps on (all of it, unless data-parallel)
        self.local_batch_size = batch_size
        if self.comm is not None:
            from mlpc import data_parallel

            self.local_batch_size = data_parallel.prepare(self.comm, batch_size)
        self.print_after, self.ir_stream = print_after, ir_stream
        self.probe = probe
        self.last_probe: dict[str, float] = {}  # probe.* outputs of the latest step (probe=True)
        self.backend = get_backend(backend)
        self._stages: dict[str, str] = {}
        self._graphs: dict[str, Graph] = {}
        self._compiled: dict[tuple[str, int], Any] = {}
        self.steps_taken = 0
        model.initialize(seed)
        step_graph = self._build_step(self.local_batch_size, record=True)
        self.out_features = self._out_features()
        self.num_classes = self.out_features if isinstance(loss, nn.CrossEntropyLoss) else None
        self._state: dict[str, Any] = {}
        for inp in step_graph.inputs:
            if inp.role == "param":
                data = model.parameters()[inp.name].data
                assert data is not None
                self._state[inp.name] = self.backend.to_device(data)
            elif inp.role == "state":
                self._state[inp.name] = self.backend.to_device(np.zeros(inp.value.shape, inp.value.dtype.numpy))
        if self.comm is not None:
            from mlpc import data_parallel

            data_parallel.synchronize(self)

    # --- compilation ---------------------------------------------------------------------
    def _out_features(self) -> int:
        g = self._graphs["traced"]
        for op in g.ops:
            if op.name in ("softmax_cross_entropy", "mse"):
                return op.operands[0].shape[1]
        raise MlpcError("the traced step has no loss op")

    def _pipeline(self) -> str:
        probe = "probe," if self.probe else ""
        guard = ",nan_guard" if self.nan_guard else ""
        distribute = "distribute," if self.comm is not None else ""
        return f"autodiff,{probe}{distribute}{self.optimizer.pipeline_text()},simplify{guard}"

    def _build_step(self, batch: int, record: bool) -> Graph:
        from passes.manager import PassManager

        stage_of = {"autodiff": "autodiff", "simplify": "simplified", "nan_guard": "guarded"}

        def on_stage(name: str, graph: Graph) -> None:
            if record:
                stage = stage_of.get(name, "optimizer")
                self._stages[stage] = print_graph(graph)
                self._graphs[stage] = graph

        traced = trace_model(self.model, batch, self.in_features, self.loss, "step")
        if record:
            self._stages["traced"] = print_graph(traced)
            self._graphs["traced"] = traced
        pm = PassManager(on_stage=on_stage, print_after_all=record and self.print_after == "all",
                         print_after_change=record and self.print_after == "change",
                         stream=self.ir_stream if record else None)
        optimized = pm.run(traced, self._pipeline())
        if record:
            self.pass_timings = pm.timing_report()
        if self.comm is not None:
            from mlpc import data_parallel

            lowered = data_parallel.lower_step(self, optimized, self._recorder(record))
        else:
            lowered = self.backend.lower(optimized, self._recorder(record))
        self._compiled[("step", batch)] = lowered
        return optimized

    def _recorder(self, record: bool) -> Callable[[str, str], None]:
        def rec(stage: str, text: str) -> None:
            if record:
                self._stages[stage] = text
        return rec

    def _compiled_for(self, kind: str, batch: int) -> Any:
        key = (kind, batch)
        if key not in self._compiled:
            if kind == "step":
                self._build_step(batch, record=False)
            else:
                from passes.manager import PassManager

                g = trace_model(self.model, batch, self.in_features, None, "predict")
                g = PassManager().run(g, "simplify")
                if batch == self.batch_size:
                    self._stages["predict"] = print_graph(g)
                self._compiled[key] = self.backend.lower(g, self._recorder(False))
        return self._compiled[key]

    # --- running -------------------------------------------------------------------------
    def step(self, x: Any, y: Any) -> float:
        """One training step on a batch of at most batch_size rows; returns the batch's mean loss.

        Data-parallel (`distributed=`): x and y are this rank's rows of the global batch (possibly none),
        and the loss returned is the mean over the whole global batch, the same on every rank."""
        if self.comm is not None and np.shape(x)[:1] == (0,):
            from mlpc import data_parallel

            out = data_parallel.step_without_rows(self, x)
        else:
            xs = validate.features(x, self.in_features, self.local_batch_size)
            target = self.loss.target_type(xs.shape[0], self.out_features)
            ys = validate.targets(y, target, self.num_classes, xs.shape[0])
            compiled = self._compiled_for("step", xs.shape[0])
            out = compiled.run(self._state, {"x": xs, "y": ys})
        if self.nan_guard and float(np.asarray(out["nonfinite"])) != 0.0:
            raise NumericalError(f"step {self.steps_taken + 1}: the loss or a gradient became NaN or Inf "
                                 f"(loss {float(np.asarray(out['loss']))}); the step was not applied, parameters "
                                 f"and optimizer state are those after step {self.steps_taken}")
        self.steps_taken += 1
        if self.probe:
            self.last_probe = {k: float(np.asarray(v)) for k, v in out.items() if k.startswith("probe.")}
        loss = float(np.asarray(out["loss"]))
        if not math.isfinite(loss):
            raise NumericalError(f"loss became {loss} at step {self.steps_taken}")
        return loss

    def predict(self, x: Any) -> np.ndarray:
        """Model outputs (logits) for any number of rows."""
        xs = validate.features(x, self.in_features, None)
        outs = []
        for lo in range(0, xs.shape[0], self.batch_size):
            chunk = xs[lo:lo + self.batch_size]
            compiled = self._compiled_for("predict", chunk.shape[0])
            outs.append(np.asarray(compiled.run(self._state, {"x": chunk})["logits"]))
        return np.concatenate(outs, axis=0)

    def evaluate(self, x: Any, y: Any) -> float:
        """Classification accuracy of predict(x) against integer labels y (data-parallel: each rank
        scores its share of the same (x, y) and the counts are summed over the ranks)."""
        if self.comm is not None:
            from mlpc import data_parallel

            return data_parallel.evaluate(self, x, y, self._correct)
        right, total = self._correct(x, y)
        return right / total

    def _correct(self, x: Any, y: Any) -> tuple[int, int]:
        pred = self.predict(x).argmax(axis=1)
        return int((pred == np.asarray(y)).sum()), int(len(pred))

    def batches(self, x: np.ndarray, y: np.ndarray, shuffle: bool = True, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of batch_size rows (data-parallel: this rank's rows of each global batch)."""
        if self.comm is not None:
            from mlpc import data_parallel

            yield from data_parallel.shard_batches(self, x, y, shuffle, seed)
            return
        order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
        for lo in range(0, len(x), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            yield x[idx], y[idx]

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 1, shuffle: bool = True,
            on_step: Callable[[int, float], None] | None = None) -> list[float]:
        """Train for whole epochs (last partial batch included); returns the mean loss per epoch."""
        history = []
        for epoch in range(epochs):
            losses = []
            for xb, yb in self.batches(x, y, shuffle, seed=self.seed + self.steps_taken + epoch):
                losses.append(self.step(xb, yb))
                if on_step is not None:
                    on_step(len(xb), losses[-1])
            history.append(float(np.mean(losses)))
        return history

    # --- state ---------------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        return {k: self.backend.to_host(v) for k, v in self._state.items() if k in self.model.parameters()}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return {k: self.backend.to_host(v) for k, v in self._state.items() if k not in self.model.parameters()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace parameters/optimizer state by name; shapes and dtypes must match."""
        for k, v in arrays.items():
            if k not in self._state:
                raise MlpcError(f"unknown parameter or state {k!r}")
            cur = self.backend.to_host(self._state[k])
            if cur.shape == () and v.shape == (1,):  # safetensors stores scalars as [1]
                v = v.reshape(())
            if cur.shape != v.shape:
                raise MlpcError(f"{k}: shape {list(v.shape)} does not match the model's {list(cur.shape)}")
            self._state[k] = self.backend.to_device(np.asarray(v, dtype=cur.dtype))
        t = self._state.get("t")
        if t is not None:
            self.steps_taken = int(self.backend.to_host(t))

    # --- inspection ----------------------------------------------------------------------
    def stages(self) -> list[str]:
        order = list(FRONT_STAGES) + list(self.backend.stages)
        return [s for s in order if s in self._stages] + [s for s in self._stages if s not in order]

    def ir(self, stage: str = "simplified") -> str:
        if stage not in self._stages:
            raise KeyError(f"no stage {stage!r}; stages: {', '.join(self.stages())}")
        return self._stages[stage]

    def graph(self, stage: str = "simplified") -> Graph:
        return self._graphs[stage]

    def save(self, path: str) -> None:
        from mlpc.checkpoint import save_trainer

        if self.comm is None:
            save_trainer(self, path)
            return
        if self.comm.rank == 0:  # every rank holds the same state: rank 0 writes, the others wait for it
            save_trainer(self, path)
        self.comm.comm.Barrier()


def compile(model: nn.Module, loss: nn.Loss | None = None, optimizer: Optimizer | None = None,
            batch_size: int = 128, backend: str = "llvm", seed: int = 0,
            in_features: int | None = None, print_after: str | None = None, ir_stream: Any = None,
            probe: bool = False, nan_guard: bool = False, distributed: Any = None) -> Trainer:
    """Trace `model` + `loss`, differentiate, add the optimizer update, optimize, and lower to `backend`.

    `print_after="all"|"change"` writes the IR after each pass to `ir_stream` (MLIR-style headers).
    `probe=True` adds the probe pass (per-layer activation and gradient norms, see passes/probe.py);
    each `step` then leaves them in `trainer.last_probe`.
    `nan_guard=True` adds the nan_guard pass: a step whose loss or gradients are NaN/Inf raises
    `mlpc.NumericalError` naming the step and leaves parameters and optimizer state untouched.
    `distributed=True` (or an mpi4py communicator) trains data-parallel over MPI ranks (run under
    `mpiexec`): `batch_size` is the global batch, gradients are averaged by an `allreduce` in the IR.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an mlpc.nn.Module, got {type(model).__name__}")
    return Trainer(model, loss or nn.CrossEntropyLoss(), optimizer or Adam(), batch_size, backend, seed,
                   in_features, print_after, ir_stream, probe, nan_guard, distributed)
