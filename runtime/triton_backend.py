"""The Triton GPU backend: plans kernels, renders and loads them, runs a step on torch CUDA buffers."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from codegen.kernel_plan import Plan, plan_graph
from codegen.triton_memory import describe_pool
from codegen.triton_render import PRECISIONS, Launch, module_source, render
from codegen.views import View
from mlpc.errors import InputError, MlpcError
from mlpc.ir import Graph
from mlpc.precision import canonical
from mlpc.types import DType
from runtime.backend import Record, register_backend
from runtime.triton_loader import aot_compile_many, interpreting, load_module

if TYPE_CHECKING:
    import torch


def _torch() -> Any:
    """torch, after choosing Triton's mode (no GPU: the interpreter) before triton is imported;
    imported on first use so that other backends start without torch and triton."""
    from runtime.triton_check import select_device

    select_device()
    import torch
    import triton  # noqa: F401

    return torch


def torch_dtype(dt: DType) -> Any:
    torch = _torch()
    return {DType.f32: torch.float32, DType.bf16: torch.bfloat16, DType.f16: torch.float16,
            DType.f64: torch.float64, DType.i32: torch.int32, DType.i64: torch.int64, DType.i1: torch.bool}[dt]


class DeviceValue:
    """A step output left on the device; reading it (np.asarray, float) is the only host sync."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        torch = _torch()
        t = self.tensor.detach()
        arr = (t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy()
        return arr.astype(dtype) if dtype is not None else arr

    def __float__(self) -> float:
        return float(self.tensor.item())

    def __repr__(self) -> str:
        return f"DeviceValue({np.asarray(self)!r})"


_WARNED = False


def _device() -> str:
    global _WARNED
    torch = _torch()
    if interpreting():
        if not _WARNED and not torch.cuda.is_available():
            warnings.warn("no CUDA GPU: the triton backend runs its kernels in Triton's interpreter (slow)",
                          RuntimeWarning, stacklevel=3)
            _WARNED = True
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    raise MlpcError("the triton backend needs a CUDA GPU, or TRITON_INTERPRET=1 for the (slow) interpreter")


def _strided(flat: torch.Tensor, view: View) -> torch.Tensor:
    """`view` of a flat buffer; the buffer may itself be a slice of the step's pool."""
    return _torch().as_strided(flat, view.shape, view.strides, flat.storage_offset() + view.offset)


class TritonCompiled:
    """One planned graph: owns temporaries and optimizer arenas; binds data and state per run."""

    def __init__(self, plan: Plan, launches: list[Launch], module: Any, device: str,
                 cuda_graph: bool, record: Record | None) -> None:
        torch = _torch()
        self.plan = plan
        self.launches = launches
        self.kernels = [getattr(module, la.name) for la in launches]
        self.device = device
        self.use_graph = cuda_graph and device == "cuda"
        self.record = record
        self.owned: dict[str, Any] = {}
        pool = torch.zeros(max(plan.pool_bytes, 1), dtype=torch.uint8, device=device)  # every temporary
        for buf in plan.buffers.values():
            if buf.kind == "temp" and buf.offset is not None:
                nbytes = buf.numel * buf.dtype.itemsize
                self.owned[buf.name] = pool[buf.offset:buf.offset + nbytes].view(torch_dtype(buf.dtype))
            elif buf.kind in ("temp", "arena"):
                self.owned[buf.name] = torch.zeros(buf.numel, dtype=torch_dtype(buf.dtype), device=device)
        self.bound: dict[str, Any] = dict(self.owned)
        self.input_views = plan.inputs
        self.input_types = {i.name: i.value.type for i in plan.graph.inputs}
        self.roles = {i.name: i.role for i in plan.graph.inputs}
        self.arena_tensors = {name: _strided(self.owned[v.buf or ""], v).view(self.input_types[name].shape)
                              for name, v in plan.inputs.items() if v.buf in self.owned}
        self.staging: dict[str, Any] = {}
        self.graphs: dict[tuple, Any] = {}
        self.warm: dict[tuple, int] = {}
        self.recorded = False
        self.stages: dict[str, str] = {}  # filled by callers that keep what lower() recorded
        if device == "cuda":
            self._precompile()

    def kernel_ops(self) -> dict[str, list[int]]:
        """The planner's kernels (name -> op indices of the lowered graph) this step launches."""
        return self.plan.fusion.kernel_ops() if self.plan.fusion is not None else {}

    def _precompile(self) -> None:
        """Compile every kernel now (JIT warmup with stand-in data buffers), so that lowering pays
        the compile time and records Triton's ttir/ptx before any step runs."""
        torch = _torch()
        stand_in = dict(self.bound)
        for buf in self.plan.buffers.values():
            if buf.name not in stand_in:
                stand_in[buf.name] = torch.empty(buf.numel, dtype=torch_dtype(buf.dtype), device=self.device)
        compiled = []
        try:
            for la, kern in zip(self.launches, self.kernels, strict=True):
                args = [self._arg(a, stand_in) for _, a in la.args]
                compiled.append(kern.warmup(*args, grid=la.grid, **la.constexprs, num_warps=la.num_warps,
                                            num_stages=la.num_stages))
        except Exception:  # the first real launch compiles and records instead
            return
        self._record_ir(compiled)

    # -- binding --------------------------------------------------------------------------
    def _as_tensor(self, name: str, value: Any) -> torch.Tensor:
        torch = _torch()
        t = self.input_types[name]
        want = torch_dtype(t.dtype)
        if isinstance(value, torch.Tensor):
            tensor = value
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise InputError(f"input {name!r} has dtype {arr.dtype}, expected numbers")
            tensor = torch.from_numpy(np.asarray(arr, order="C"))
        if tuple(tensor.shape) != t.shape:
            raise InputError(f"input {name!r} has shape {list(tensor.shape)}, the graph expects {list(t.shape)}")
        if tensor.dtype != want or tensor.device.type != self.device or not tensor.is_contiguous():
            if self.use_graph and not isinstance(value, torch.Tensor):
                stage = self.staging.get(name)
                if stage is None:
                    stage = self.staging[name] = torch.empty(t.shape, dtype=want, device=self.device)
                stage.copy_(tensor, non_blocking=True)
                return stage
            tensor = tensor.to(device=self.device, dtype=want).contiguous()
        return tensor

    def _bind(self, state: dict[str, Any], data: dict[str, Any]) -> tuple:
        key = []
        for name, view in self.input_views.items():
            role = self.roles[name]
            if role == "data":
                if name not in data:
                    raise InputError(f"missing data input {name!r}")
                tensor = self._as_tensor(name, data[name])
            else:
                if name not in state:
                    raise InputError(f"missing state entry {name!r}")
                if name in self.arena_tensors:
                    arena = self.arena_tensors[name]
                    if state[name] is not arena:
                        arena.copy_(self._as_tensor(name, state[name]))
                        state[name] = arena
                    continue
                tensor = self._as_tensor(name, state[name])
                state[name] = tensor
            self.bound[view.buf or ""] = tensor.reshape(-1)
            key.append(tensor.data_ptr())
        return tuple(key)

    def _arg(self, a: Any, bound: dict[str, Any] | None = None) -> Any:
        if isinstance(a, View):
            flat = (self.bound if bound is None else bound)[a.buf or ""]
            return flat[a.offset:] if a.offset else flat
        return a

    # -- launching ------------------------------------------------------------------------
    def _launch_all(self) -> list[Any]:
        compiled = []
        for la, kern in zip(self.launches, self.kernels, strict=False):
            args = [self._arg(a) for _, a in la.args]
            compiled.append(kern[la.grid](*args, **la.constexprs, num_warps=la.num_warps,
                                          num_stages=la.num_stages))
        for src, dst in self.plan.copies:
            target = _strided(self.bound[dst.buf or ""], dst)
            if src.is_const:
                target.fill_(src.const or 0.0)
            else:
                target.copy_(_strided(self.bound[src.buf or ""], src))
        return compiled

    def run(self, state: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        key = self._bind(state, data)
        if self.use_graph:
            graph = self.graphs.get(key)
            if graph is not None:
                graph.replay()
            else:
                if len(self.warm) > 64:  # inputs at new addresses every step: never graphed, keep it small
                    self.warm.clear()
                self.warm[key] = self.warm.get(key, 0) + 1
                compiled = self._launch_all()
                self._record_ir(compiled)
                if self.warm[key] >= 2 and len(self.graphs) < 16:
                    self.graphs[key] = self._capture()
        else:
            self._record_ir(self._launch_all())
        return self._outputs()

    def _capture(self) -> Any:
        torch = _torch()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records the launches without running them
            self._launch_all()
        return graph

    def _outputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, view in self.plan.outputs.items():
            declared = self.plan.graph.output(name).value.type
            if view.is_const:  # the declared shape and dtype, not the planner's broadcast view
                out[name] = np.full(declared.shape, view.const, declared.dtype.numpy)
                continue
            t = _strided(self.bound[view.buf or ""], view)
            shape = self.plan.graph.output(name).value.shape
            out[name] = DeviceValue(t.reshape(shape).clone())
        return out

    def _record_ir(self, compiled: list[Any]) -> None:
        if self.recorded or self.record is None or self.device != "cuda":
            return
        self.recorded = True
        for stage in ("ttir", "ptx"):
            texts = [f"// ----- {la.name} -----\n{c.asm[stage]}" for la, c in zip(self.launches, compiled, strict=False)
                     if c is not None and stage in getattr(c, "asm", {})]
            self.record(stage, "\n".join(texts))


class TritonBackend:
    """backend="triton": fused Triton kernels; precision tf32 (default), fp32 (alias ieee), or bf16 operands
    (mlpc.precision; the default comes from MLPC_TRITON_PRECISION when set). `precision` keeps the
    Triton-internal names ("ieee" for fp32)."""

    name = "triton"
    stages: tuple[str, ...] = ("fused", "planned", "kernels", "triton", "ttir", "ptx")

    def __init__(self, precision: str | None = None, cuda_graph: bool = True, aot_ir: bool | None = None) -> None:
        precision = precision or os.environ.get("MLPC_TRITON_PRECISION", "tf32")
        name = canonical(precision)
        self.precision = "ieee" if name == "fp32" else name
        assert self.precision in PRECISIONS
        self.cuda_graph = cuda_graph
        self.aot_ir = aot_ir if aot_ir is not None else os.environ.get("MLPC_TRITON_AOT_IR", "0") == "1"

    def lower(self, graph: Graph, record: Record, sm_count: int | None = None) -> TritonCompiled:
        """Plan, render and load the kernels; `sm_count` overrides the GPU's (it sizes split-K)."""
        _refuse_f64(graph)
        device = _device()
        torch = _torch()
        if sm_count is None:
            sm_count = torch.cuda.get_device_properties(0).multi_processor_count if device == "cuda" else 132
        plan = plan_graph(graph, sm_count, self.precision)
        launches = [render(k, self.precision) for k in plan.kernels]
        source = module_source(launches)
        if plan.fusion is not None:
            record("fused", plan.fusion.dump())
        record("planned", describe_pool(plan))
        record("kernels", describe_plan(plan, launches))
        record("triton", source)
        module = load_module(source)
        if self.aot_ir and device != "cuda":
            results = aot_compile_many(source, launches)
            for stage in ("ttir", "ptx"):
                record(stage, "\n".join(f"// ----- {r['name']} (sm_90) -----\n{r.get(stage, r.get('error'))}"
                                        for r in results))
        return TritonCompiled(plan, launches, module, device, self.cuda_graph, record)

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        torch = _torch()
        arr = np.asarray(array)
        return torch.from_numpy(np.array(arr, copy=True)).to(_device())

    def to_host(self, buffer: Any) -> np.ndarray:
        torch = _torch()
        if isinstance(buffer, torch.Tensor):
            t = buffer.detach()
            return (t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy().copy()
        return np.array(buffer, copy=True)


def _refuse_f64(graph: Graph) -> None:
    """The kernels compute in float32 (float64 values would silently lose precision): refuse f64 up front."""
    values = [(f"input {i.name!r}", i.value) for i in graph.inputs]
    values += [(f"the result of {op.name}", r) for op in graph.ops for r in op.results]
    for what, v in values:
        if v.dtype == DType.f64:
            raise MlpcError(f"the triton backend computes in f32 (f16/bf16 operands); {what} is an f64 tensor "
                            f"{list(v.shape)}: use backend='numpy' for f64 graphs")


def describe_plan(plan: Plan, launches: list[Launch]) -> str:
    """One line per launch: kernel, grid, meta-parameters, and the IR ops it covers."""
    lines = [f"// {len(launches)} launches, {len(plan.buffers)} buffers, pool {plan.pool_bytes} bytes"]
    for k, la in zip(plan.kernels, launches, strict=False):
        ops = getattr(getattr(k, "body", None), "ops", [])
        names = [o.name for o in ops] + ["column sum"] * len(getattr(k, "colsums", []))
        extra = " + " + ", ".join(names) if names else ""
        meta = ", ".join(f"{a}={b}" for a, b in la.constexprs.items())
        plan_kernel = f" ({plan.origin[la.name]})" if la.name in plan.origin else ""
        lines.append(f"{la.name}{extra}{plan_kernel}  grid={la.grid} warps={la.num_warps} "
                     f"stages={la.num_stages} {meta}")
    return "\n".join(lines) + "\n"


GPU_DEPS = ("triton", "torch")
register_backend("triton", TritonBackend, GPU_DEPS, "gpu")


def _fixed(name: str, fixed: str) -> Callable[..., TritonBackend]:
    """A backend name that implies a precision: an explicit `precision=` must agree with it."""
    def make(precision: str | None = None) -> TritonBackend:
        if precision is not None and canonical(precision) != canonical(fixed):
            raise MlpcError(f"backend {name!r} computes in {canonical(fixed)}, but precision={precision!r} was "
                            f"given: use backend='triton' with precision={precision!r}")
        return TritonBackend(fixed)
    return make


register_backend("triton-ieee", _fixed("triton-ieee", "ieee"), GPU_DEPS, "gpu")
register_backend("triton-bf16", _fixed("triton-bf16", "bf16"), GPU_DEPS, "gpu")
