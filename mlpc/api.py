"""The public entry points: `mlpc.compile` builds a Trainer; the Trainer runs compiled steps."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import numpy as np

from mlpc import nn, validate
from mlpc.errors import MlpcError, NumericalError
from mlpc.ir import Graph
from mlpc.locking import ObjectLock, locked
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
                name: str, seed: int = 0) -> Graph:
    """Trace the forward (and loss, when given: a training step, Dropout active) with params as inputs."""
    with Tracer() as tr:
        tr.training, tr.seed = loss is not None, seed
        x = tr.input("x", TensorType(DType.f32, (batch, in_features)))
        for pname, p in model.named_parameters():
            tr.param_tensors[id(p)] = tr.input(pname, TensorType(DType.f32, p.shape), "param")
        out = model(x)
        if len(out.shape) != 2 or out.shape[0] != batch:
            raise MlpcError(f"the model must map [batch, features] to [batch, outputs], got {list(out.shape)}")
        if loss is None:
            return tr.graph(name, {"logits": out})
        y = tr.input("y", loss.target_type(batch, out.shape[1]))
        # keep inputs ordered x, y, params (then t, when Dropout reads the step count)
        tr.inputs.insert(1, tr.inputs.pop())
        tr.inputs.sort(key=lambda i: i.role == "state")
        return tr.graph(name, {"loss": loss.trace(out, y)})


class Trainer:
    """A compiled model: `step` trains on one batch, `predict` runs the forward pass.

    Safe to share between threads: steps (any batch size), predict/evaluate, parameter and state reads,
    load_state and save run under one re-entrant lock per trainer (see mlpc/locking.py), so concurrent
    calls take turns and the result is that of some serial order of them.
    """

    def __init__(self, model: nn.Module, loss: nn.Loss, optimizer: Optimizer, batch_size: int,
                 backend: str, seed: int, in_features: int | None,
                 print_after: str | None = None, ir_stream: Any = None, probe: bool = False,
                 nan_guard: bool = False, param_groups: list[dict[str, Any]] | None = None,
                 clip_grad_norm: float | None = None, distributed: Any = None, precision: str | None = None) -> None:
        from mlpc import distributed as dist
        from mlpc.hyper import HyperParams
        from runtime.backend import backend_precision, get_backend

        self._lock = ObjectLock()  # before the backend's objects: see mlpc/locking.py on fork
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if in_features is None:
            lin = first_linear(model)
            if lin is None:
                raise MlpcError("cannot tell the input width: pass in_features= to mlpc.compile")
            in_features = lin.in_features
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.clip_grad_norm = _check_clip(clip_grad_norm, optimizer)
        self.hyper = HyperParams(optimizer, [n for n, _ in model.named_parameters()], param_groups)
        self.schedulers: list[Any] = []  # lr schedulers constructed on this trainer (saved with it)
        self.compiles = 0  # graphs lowered by the backend (a changed hyperparameter never adds one)
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
        self.backend = get_backend(backend, precision)
        self.precision = backend_precision(self.backend)  # "fp32", "tf32" or "bf16" (mlpc.precision)
        self._stages: dict[str, str] = {}
        self._graphs: dict[str, Graph] = {}
        self._compiled: dict[tuple[str, int], Any] = {}
        self._target_types: dict[int, Any] = {}  # rows -> the TensorType y must have (loss.target_type)
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
        self._hyper_dtypes = {i.name: i.value.dtype.numpy for i in step_graph.inputs_with_role("hyper")}
        self._push_hyper()
        if self.comm is not None:
            from mlpc import data_parallel

            data_parallel.synchronize(self)

    # --- compilation ---------------------------------------------------------------------
    def _out_features(self) -> int:
        forward = trace_model(self.model, 1, self.in_features, None, "width")
        return forward.outputs[0].value.shape[1]

    def _pipeline(self, distributed: bool | None = None) -> str:
        """The step's pass pipeline; `distributed` (default: whether the trainer is) adds the distribute pass."""
        probe = "probe," if self.probe else ""
        guard = ",nan_guard" if self.nan_guard else ""
        opt = self.optimizer.pipeline_text(self.clip_grad_norm or 0.0, self.hyper.pass_groups())
        distribute = "distribute," if (self.comm is not None if distributed is None else distributed) else ""
        return f"autodiff,{probe}{distribute}{opt},simplify{guard}"

    def _build_step(self, batch: int, record: bool) -> Graph:
        from passes.manager import PassManager

        stage_of = {"autodiff": "autodiff", "simplify": "simplified", "nan_guard": "guarded"}

        def on_stage(name: str, graph: Graph) -> None:
            if record:
                stage = stage_of.get(name, "optimizer")
                self._stages[stage] = print_graph(graph)
                self._graphs[stage] = graph

        traced = trace_model(self.model, batch, self.in_features, self.loss, "step", self.seed)
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
        self.compiles += 1
        return optimized

    def _recorder(self, record: bool) -> Callable[[str, str], None]:
        def rec(stage: str, text: str) -> None:
            if record:
                self._stages[stage] = text
        return rec

    @locked
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
                self.compiles += 1
        return self._compiled[key]

    # --- running -------------------------------------------------------------------------
    def step(self, x: Any, y: Any) -> float:
        """One training step on a batch of at most batch_size rows; returns the batch's mean loss.

        Data-parallel (`distributed=`): x and y are this rank's rows of the global batch (possibly none),
        and the loss returned is the mean over the whole global batch, the same on every rank."""
        with self._lock._lock:  # what @locked does, without its wrapper's call overhead (see mlpc/locking.py)
            return self._locked_step(x, y)

    def _locked_step(self, x: Any, y: Any) -> float:
        if self.comm is not None and np.shape(x)[:1] == (0,):
            from mlpc import data_parallel

            out = data_parallel.step_without_rows(self, x)
        else:
            xs = validate.features(x, self.in_features, self.local_batch_size)
            n = xs.shape[0]
            compiled = self._compiled.get(("step", n))
            if compiled is None:
                compiled = self._compiled_for("step", n)
            # a step that checks the label range natively (before it changes anything) spares the scan here
            target = self._target_types.get(n)
            if target is None:
                target = self._target_types[n] = self.loss.target_type(n, self.out_features)
            ys = validate.targets(y, target, self.num_classes, n, getattr(compiled, "checks_labels", False))
            out = compiled.run(self._state, {"x": xs, "y": ys})
        if self.nan_guard and float(np.asarray(out["nonfinite"])) != 0.0:
            raise NumericalError(f"step {self.steps_taken + 1}: the loss or a gradient became NaN or Inf "
                                 f"(loss {float(np.asarray(out['loss']))}); the step was not applied, parameters "
                                 f"and optimizer state are those after step {self.steps_taken}")
        self.steps_taken += 1
        if self.probe:
            self.last_probe = {k: float(np.asarray(v)) for k, v in out.items() if k.startswith("probe.")}
        value = out["loss"]
        loss = float(value) if type(value) is np.ndarray else float(np.asarray(value))
        if not math.isfinite(loss):
            raise NumericalError(f"loss became {loss} at step {self.steps_taken}")
        return loss

    @locked
    def predict(self, x: Any) -> np.ndarray:
        """Model outputs (logits) for any number of rows."""
        xs = validate.features(x, self.in_features, None)
        outs = []
        for lo in range(0, xs.shape[0], self.batch_size):
            chunk = xs[lo:lo + self.batch_size]
            compiled = self._compiled_for("predict", chunk.shape[0])
            outs.append(np.asarray(compiled.run(self._state, {"x": chunk})["logits"]))
        return np.concatenate(outs, axis=0)

    @locked
    def evaluate(self, x: Any, y: Any, metrics: Any = None) -> Any:
        """The loss's own metric as a float (`loss.metric`: accuracy for cross-entropy, element-wise
        accuracy for BCE, the loss itself for regression); with `metrics=[...]` (names from "loss",
        "accuracy", "elementwise_accuracy", "r2", "mse", "mae") a dict of those."""
        from mlpc.losses import metric_values

        if self.comm is not None and metrics is None and self.loss.metric == "accuracy":
            from mlpc import data_parallel  # each rank scores its share of the same (x, y); counts are summed

            return data_parallel.evaluate(self, x, y, self._correct)

        names = [self.loss.metric] if metrics is None else ([metrics] if isinstance(metrics, str) else list(metrics))
        xs = validate.features(x, self.in_features, None)
        ys = validate.targets(y, self.loss.target_type(xs.shape[0], self.out_features), self.num_classes,
                              xs.shape[0])
        values = metric_values(self.loss, self.predict(xs), ys, names)
        return values[names[0]] if metrics is None else values

    def _correct(self, x: Any, y: Any) -> tuple[int, int]:
        """(right, total) of argmax predictions on rows x against integer labels y (validated)."""
        xs = validate.features(x, self.in_features, None)
        ys = validate.targets(y, self.loss.target_type(xs.shape[0], self.out_features), self.num_classes,
                              xs.shape[0])
        pred = self.predict(xs).argmax(axis=1)
        return int((pred == ys).sum()), int(len(pred))

    def batches(self, x: Any, y: Any, shuffle: bool = True, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of batch_size rows (data-parallel: this rank's rows of each global batch)."""
        x, y = validate.rows(x, y)
        if self.comm is not None:
            from mlpc import data_parallel

            yield from data_parallel.shard_batches(self, x, y, shuffle, seed)
            return
        order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
        for lo in range(0, len(x), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            yield x[idx], y[idx]

    def fit(self, x: Any, y: Any, epochs: int = 1, shuffle: bool = True,
            on_step: Callable[[int, float], None] | None = None) -> list[float]:
        """Train for whole epochs (last partial batch included); returns the mean loss per epoch.
        Each step takes the trainer's lock; `on_step` runs outside it."""
        x, y = validate.rows(x, y)
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
    @locked
    def parameters(self) -> dict[str, np.ndarray]:
        return {k: self.backend.to_host(v) for k, v in self._state.items() if k in self.model.parameters()}

    @locked
    def optimizer_state(self) -> dict[str, np.ndarray]:
        params = self.model.parameters()
        return {k: self.backend.to_host(v) for k, v in self._state.items()
                if k not in params and k not in self._hyper_dtypes}

    # --- runtime hyperparameters (graph inputs: setting one never recompiles) -------------
    @locked
    def _push_hyper(self) -> None:
        from mlpc.hyper import write_scalar

        for name, value in self.hyper.feed().items():
            dt = self._hyper_dtypes[name]
            buf = self._state.get(name)
            self._state[name] = (self.backend.to_device(np.asarray(value, dt)) if buf is None
                                 else write_scalar(self.backend, buf, value, dt))

    @locked
    def hyper_arrays(self) -> dict[str, np.ndarray]:
        """The step's hyperparameter inputs as scalars of their dtype (what checkpoints store as hyper/<name>)."""
        return {n: np.asarray(v, self._hyper_dtypes[n]) for n, v in self.hyper.feed().items()}

    @locked
    def load_hyper_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Take hyperparameter inputs that differ from the current values' rounding (set by an exported library)."""
        known = self.hyper.feed()
        for name, arr in arrays.items():
            if name not in known:
                raise MlpcError(f"unknown hyperparameter input {name!r}")
            value = np.asarray(arr).reshape(()).astype(self._hyper_dtypes[name])
            if value != np.asarray(known[name], self._hyper_dtypes[name]):
                self.hyper.set_input(name, float(value))
        self._push_hyper()

    @locked
    def set_hyper(self, key: str, value: Any, group: int | None = None) -> None:
        """Set a torch-style option (lr, momentum, betas, weight_decay) of one group or all groups."""
        self.hyper.set(key, value, group)
        self._push_hyper()

    @property
    def param_groups(self) -> list[Any]:
        """torch-style groups: group["lr"] reads, group["lr"] = x sets (the next step uses it)."""
        from mlpc.hyper import ParamGroup

        return [ParamGroup(self.hyper, i, self._push_hyper) for i in range(len(self.hyper))]

    @property
    def lr(self) -> float:
        """The learning rate (of the first parameter group); setting it sets every group's."""
        return float(self.hyper.get("lr"))

    @lr.setter
    def lr(self, value: float) -> None:
        self.set_hyper("lr", value)

    @property
    def momentum(self) -> float:
        """SGD's momentum or Momentum's beta (first group); settable when compiled with momentum."""
        return float(self.hyper.get("momentum"))

    @momentum.setter
    def momentum(self, value: float) -> None:
        self.set_hyper("momentum", value)

    @property
    def betas(self) -> tuple[float, float]:
        """Adam's (beta1, beta2) of the first group; setting sets every group's."""
        return tuple(self.hyper.get("betas"))  # type: ignore[return-value]

    @betas.setter
    def betas(self, value: tuple[float, float]) -> None:
        self.set_hyper("betas", value)

    @property
    def weight_decay(self) -> float:
        return float(self.hyper.get("weight_decay"))

    @weight_decay.setter
    def weight_decay(self, value: float) -> None:
        self.set_hyper("weight_decay", value)

    @locked
    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace parameters/optimizer state by name; shapes and dtypes must match."""
        checked = {}
        for k, v in arrays.items():  # check everything before replacing anything
            if k not in self._state:
                raise MlpcError(f"unknown parameter or state {k!r}")
            checked[k] = validate.state_value(k, v, self.backend.to_host(self._state[k]))
        for k, v in checked.items():
            self._state[k] = self.backend.to_device(v)
        t = self._state.get("t")
        if t is not None:
            self.steps_taken = int(self.backend.to_host(t))

    def state_dict(self, layout: str = "mlpc") -> dict[str, np.ndarray]:
        """Parameters only (like a torch module's), as NumPy arrays; `layout="torch"` gives torch's names and
        [out, in] Linear weights (docs/interop.md)."""
        from mlpc.interop.state_dict import state_dict

        return state_dict(self, layout)

    def load_state_dict(self, state_dict: dict[str, Any], layout: str = "mlpc", strict: bool = True) -> None:
        """Load parameters from torch tensors or NumPy arrays given in `layout` ("mlpc" or "torch")."""
        from mlpc.interop.state_dict import load_state_dict

        load_state_dict(self, state_dict, layout, strict)

    def to_torch(self) -> Any:
        """A torch.nn.Sequential with the trained weights (needs the interop extra)."""
        from mlpc.interop.torch_out import to_torch

        return to_torch(self)

    def export_onnx(self, path: str, softmax: bool = False, dynamic_batch: bool = False, opset: int = 17) -> None:
        """Write the inference graph as ONNX: input `x`, output `logits` (and `probabilities` with softmax=True);
        the batch is batch_size unless dynamic_batch=True (needs the interop extra)."""
        from mlpc.interop.onnx_export import export_onnx

        export_onnx(self, path, softmax=softmax, dynamic_batch=dynamic_batch, opset=opset)

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

    def save(self, path: str, schedulers: list[Any] | None = None) -> None:
        """Write a checkpoint of one consistent state (taken under the trainer's lock; see save_trainer);
        lr schedulers (default: those constructed on this trainer) are saved too."""
        from mlpc.checkpoint import save_trainer

        chosen = self.schedulers if schedulers is None else schedulers
        if self.comm is None or self.comm.rank == 0:  # data-parallel: rank 0 writes, the others wait for it
            save_trainer(self, path, schedulers=chosen)
        if self.comm is not None:
            self.comm.comm.Barrier()


def compile(model: nn.Module, loss: nn.Loss | None = None, optimizer: Optimizer | None = None,
            batch_size: int = 128, backend: str = "llvm", seed: int = 0,
            in_features: int | None = None, print_after: str | None = None, ir_stream: Any = None,
            probe: bool = False, nan_guard: bool = False, param_groups: list[dict[str, Any]] | None = None,
            clip_grad_norm: float | None = None, distributed: Any = None, precision: str | None = None) -> Trainer:
    """Trace `model` + `loss`, differentiate, add the optimizer update, optimize, and lower to `backend`.

    `print_after="all"|"change"` writes the IR after each pass to `ir_stream` (MLIR-style headers).
    `probe=True` adds the probe pass (per-layer activation and gradient norms, see passes/probe.py);
    each `step` then leaves them in `trainer.last_probe`.
    `nan_guard=True` adds the nan_guard pass: a step whose loss or gradients are NaN/Inf raises
    `mlpc.NumericalError` naming the step and leaves parameters and optimizer state untouched.
    `param_groups=[{"params": [names], "lr": ..., "weight_decay": ...}]`: per-group options as in torch
    (parameters no group lists form a last group with the optimizer's values).
    `clip_grad_norm=max_norm`: scale all gradients by min(1, max_norm / (norm + 1e-6)) before the update,
    norm over all of them (torch.nn.utils.clip_grad_norm_), computed in the step.
    Hyperparameters (trainer.lr, .momentum, .betas, .weight_decay, .param_groups) are runtime inputs of
    the compiled step: changing them between steps does not recompile.
    `distributed=True` (or an mpi4py communicator) trains data-parallel over MPI ranks (run under
    `mpiexec`): `batch_size` is the global batch, gradients are averaged by an `allreduce` in the IR.
    `precision=` how matmuls compute (docs/precision.md): "fp32", "bf16" (operands rounded to bfloat16,
    fp32 accumulation; parameters, optimizer state and all other ops stay fp32) or "tf32" (Triton only);
    None: the backend's default (fp32 on the CPU; tf32 or MLPC_TRITON_PRECISION on Triton).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an mlpc.nn.Module, got {type(model).__name__}")
    if loss is not None and not isinstance(loss, nn.Loss):
        raise TypeError(f"loss must be an mlpc.nn.Loss such as nn.MSELoss(), got {type(loss).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an mlpc.optim optimizer, got {type(optimizer).__name__}")
    return Trainer(model, loss or nn.CrossEntropyLoss(), optimizer or Adam(), batch_size, backend, seed,
                   in_features, print_after, ir_stream, probe, nan_guard, param_groups, clip_grad_norm,
                   distributed=distributed, precision=precision)


def _check_clip(clip: Any, optimizer: Optimizer) -> float | None:
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not math.isfinite(clip) or clip <= 0:
        raise ValueError(f"clip_grad_norm must be a positive number (the max gradient norm) or None, got {clip!r}")
    if not optimizer.hyper_keys():
        raise ValueError(f"clip_grad_norm is not supported with {type(optimizer).__name__}")
    return float(clip)
