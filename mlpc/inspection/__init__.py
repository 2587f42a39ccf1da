"""Looking inside a compiled model: every stage's IR, its kernels and their cost, memory, pictures, reports."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from mlpc.errors import MlpcError
from mlpc.ir import Graph

from .kernels import KernelInfo, KernelPlan, attach_sources, plan_kernels
from .memory import Lifetimes, lifetimes
from .roofline import Machine

GRAPH_STAGES = ("traced", "autodiff", "optimizer", "simplified")
STAGE_HELP = {
    "traced": "the traced forward pass and loss",
    "autodiff": "after reverse-mode autodiff: gradients as outputs",
    "optimizer": "after the optimizer pass: update ops, state inputs/outputs",
    "simplified": "after fold, algebraic, cse and dce: what the backend gets",
    "fused": "ops grouped into kernels (the planner, under the backend's policy)",
    "planned": "the static memory arena / pool (memory planner)",
    "llvm": "LLVM IR of the kernels and step driver",
    "asm": "native assembly from LLVM",
    "triton": "Triton kernel source",
    "ttir": "Triton IR",
    "ptx": "PTX for NVIDIA GPUs",
    "predict": "the forward-only graph used by predict()",
}


@dataclass
class Stats:
    """Headline numbers of a compiled training step."""

    parameters: int
    parameter_bytes: int
    state_bytes: int
    flops_per_step: int
    bytes_per_step: int
    ops: int
    kernels: int
    kernel_grouping: str
    arena_bytes: int
    arena_source: str
    batch_size: int
    backend: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("parameters", f"{self.parameters:,} ({_bytes(self.parameter_bytes)})"),
            ("optimizer state", _bytes(self.state_bytes)),
            ("FLOPs per step", f"{self.flops_per_step:,} ({self.flops_per_step / max(self.batch_size, 1):,.0f}"
                               " per example)"),
            ("bytes moved per step", f"{_bytes(self.bytes_per_step)} (kernel boundaries)"),
            ("ops", str(self.ops)),
            ("kernels", f"{self.kernels} ({self.kernel_grouping})"),
            ("arena", f"{_bytes(self.arena_bytes)} ({self.arena_source})"),
            ("batch size", str(self.batch_size)),
            ("backend", self.backend),
        ]

    def text(self) -> str:
        return "\n".join(f"{k:<22} {v}" for k, v in self.rows()) + "\n"


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 2 ** 20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2 ** 20:.2f} MiB"


class Inspection:
    """Everything mlpc can show about one Trainer; cheap parts on demand, timings only when asked."""

    def __init__(self, trainer: Any, repeats: int = 5, use_fusion: bool = True) -> None:
        self.trainer = trainer
        self.repeats = repeats
        self.use_fusion = use_fusion
        self._plans: dict[str, KernelPlan] = {}
        self._timed: KernelPlan | None = None
        self.time_source = ""
        self._predict_graph: Graph | None = None
        self._machine: Machine | None = None

    # --- stages -------------------------------------------------------------------------
    def stages(self) -> list[str]:
        """The trainer's stages in pipeline order: front end, then whatever the backend records."""
        return list(self.trainer.stages())

    def ir(self, stage: str = "simplified") -> str:
        """A stage's text; `predict` (the forward-only inference graph) is compiled on first request."""
        if stage == "predict" and stage not in self.trainer.stages():
            self.trainer._compiled_for("predict", self.trainer.batch_size)
        if stage not in self.trainer.stages():
            raise MlpcError(f"no stage {stage!r}; stages: {', '.join(self.stages())}, predict")
        return str(self.trainer.ir(stage))

    def graph(self, stage: str = "simplified") -> Graph:
        """The IR graph of a graph stage; fused/planned show the simplified graph (what gets lowered)."""
        if stage == "predict":
            if self._predict_graph is None:
                from mlpc.parser import parse

                self._predict_graph = parse(self.ir("predict"))
            return self._predict_graph
        if stage in ("fused", "planned") and stage in self.trainer.stages():
            stage = "simplified"
        if stage not in GRAPH_STAGES or stage not in self.trainer.stages():
            graph_stages = [s for s in self.stages() if s in GRAPH_STAGES or s in ("fused", "planned")]
            if stage not in self.stages():
                raise MlpcError(f"no stage {stage!r}; stages: {', '.join(self.stages())}")
            raise MlpcError(f"stage {stage!r} is text, not a graph; graph stages: {', '.join(graph_stages)}")
        return self.trainer.graph(stage)

    # --- kernels, memory, machine -----------------------------------------------------------
    def kernel_plan(self, stage: str = "simplified") -> KernelPlan:
        """Kernel grouping of a graph stage (the lowered graph by default), without timings: the
        backend's own kernels when its compiled step reports them, else the fusion pass's, else one per op."""
        g = self.graph(stage)
        key = "simplified" if stage in ("fused", "planned") else stage
        if key not in self._plans:
            self._plans[key] = self._backend_plan(g) or self._fusion_plan(g)
        return self._plans[key]

    def _fusion_plan(self, g: Graph) -> KernelPlan:
        kp = plan_kernels(g, self.use_fusion)
        own = self.trainer.backend.stages
        if kp.fused and own and "fused" not in own:
            kp.grouping += (f" (an approximation: the {self.trainer.backend_name} backend plans its own kernels "
                            "and does not report them)")
        return kp

    def _backend_plan(self, g: Graph) -> KernelPlan | None:
        from .kernels import plan_from_backend

        compiled = self._compiled_step()
        report = getattr(compiled, "kernel_ops", None)
        if not self.use_fusion or not callable(report) or g is not self.trainer.graph("simplified"):
            return None
        return plan_from_backend(g, dict(report()), str(self.trainer.backend_name))

    def kernels(self) -> list[KernelInfo]:
        """The lowered graph's kernels with source and measured time (measured once, then reused)."""
        if self._timed is None:
            from .profile import attach_times

            g = self.graph("simplified")
            kp = self._backend_plan(g) or self._fusion_plan(g)
            texts = {s: self.trainer.ir(s) for s in self.trainer.stages()}
            attach_sources(kp, texts, list(self.trainer.stages()))
            compiled = self._compiled_step()
            self.time_source = attach_times(kp, self.repeats, compiled, self.trainer.backend.to_device,
                                            self.trainer.backend_name)
            self._timed = kp
        return self._timed.kernels

    def _compiled_step(self) -> Any:
        try:
            return self.trainer._compiled_for("step", self.trainer.batch_size)
        except (AttributeError, KeyError):
            return None

    def step_samples(self) -> list[float]:
        """Seconds of each timed step (after warm-up; see profile.step_samples), [] without a compiled step."""
        from .profile import step_samples

        compiled = self._compiled_step()
        if compiled is None:
            return []
        return step_samples(compiled, self.graph("simplified"), self.trainer.backend.to_device, self.repeats)

    def step_seconds(self) -> float:
        """Median seconds of one real training step on this backend (0.0 when there is no compiled step);
        the trainer's weights are untouched."""
        from .profile import step_time

        compiled = self._compiled_step()
        if compiled is None:
            return 0.0
        return step_time(compiled, self.graph("simplified"), self.trainer.backend.to_device, self.repeats)

    def memory(self) -> Lifetimes:
        return lifetimes(self.kernel_plan())

    def machine(self, refresh: bool = False) -> Machine:
        """The roofline for this trainer's step: its thread count and precision (measured once per host)."""
        from .roofline import machine, step_threads

        precision = str(getattr(self.trainer, "precision", "fp32"))
        if self._machine is None or refresh:
            self._machine = machine(refresh, step_threads(self._compiled_step()), precision, spot_check=True)
        return self._machine

    def roofline_table(self) -> str:
        """Every timed kernel's fraction of the compute peak, of the bandwidth ceiling and of the roof (text)."""
        from .roofline import kernel_table

        kernels = self.kernels()
        m = self.machine()
        return (f"kernel times: {self.time_source}\nceilings: {m.how}\n"
                + kernel_table(m, kernels))

    def stats(self) -> Stats:
        from mlpc.cost import op_flops

        g = self.graph("simplified")
        kp = self.kernel_plan()
        params = g.inputs_with_role("param")
        state = g.inputs_with_role("state")
        lt = self.memory()
        arena, arena_source = lt.arena_bytes, lt.source
        if "planned" in self.trainer.stages():  # the backend's own plan (scratch space included) wins
            m = re.search(r"^// arena: (\d+) bytes", self.trainer.ir("planned"), re.M)
            if m:
                arena, arena_source = int(m.group(1)), f"the {self.trainer.backend_name} backend's memory plan"
        return Stats(
            parameters=sum(p.value.type.size for p in params),
            parameter_bytes=sum(p.value.type.nbytes for p in params),
            state_bytes=sum(s.value.type.nbytes for s in state),
            flops_per_step=sum(op_flops(op) for op in g.ops),
            bytes_per_step=sum(k.cost.bytes for k in kp.kernels),
            ops=len(g.ops), kernels=len(kp.kernels), kernel_grouping=kp.grouping,
            arena_bytes=arena, arena_source=arena_source,
            batch_size=int(self.trainer.batch_size), backend=str(self.trainer.backend_name))

    # --- pictures and reports ---------------------------------------------------------------
    def dot(self, stage: str = "simplified") -> str:
        from .dot import to_dot

        g = self.graph(stage)
        return to_dot(g, self.kernel_plan(stage if stage in (*GRAPH_STAGES, "predict") else "simplified"),
                      title=f"@{g.name} after {stage}")

    def render(self, stage: str = "simplified", fmt: str = "svg") -> bytes:
        from .dot import render

        return render(self.dot(stage), fmt)

    def report(self, path: str | None = None) -> str:
        """The self-contained HTML report; written atomically to `path` when given."""
        from .report import build_report

        html = build_report(self)
        if path is not None:
            from mlpc.checkpoint import atomic_write

            atomic_write(os.fspath(path), html.encode("utf-8"))
        return html

    def _repr_html_(self) -> str:
        return self.report()


def inspect(target: Any, repeats: int = 5, use_fusion: bool = True, **compile_args: Any) -> Inspection:
    """Inspect a Trainer, an nn.Module (compiled with `compile_args`) or a MODEL.py path.

    >>> view = mlpc.inspect(trainer)
    >>> view.stages(); view.ir("autodiff"); view.stats(); view.report("report.html")
    """
    import mlpc
    from mlpc import nn

    if isinstance(target, (str, os.PathLike)):
        from mlpc.modelfile import load_model_file

        mf = load_model_file(os.fspath(target))
        compile_args.setdefault("loss", mf.loss)
        compile_args.setdefault("optimizer", mf.optimizer)
        if mf.batch_size:
            compile_args.setdefault("batch_size", mf.batch_size)
        compile_args.setdefault("in_features", mf.in_features)
        target = mf.model
    if isinstance(target, nn.Module):
        target = mlpc.compile(target, **compile_args)
    elif compile_args:
        raise TypeError("compile arguments are only accepted with a model, not a compiled Trainer")
    if not isinstance(target, mlpc.Trainer):
        raise TypeError(f"mlpc.inspect needs a Trainer, an nn.Module or a model file, got {type(target).__name__}")
    return Inspection(target, repeats=repeats, use_fusion=use_fusion)


__all__ = ["GRAPH_STAGES", "STAGE_HELP", "Inspection", "KernelInfo", "KernelPlan", "Stats", "inspect"]
