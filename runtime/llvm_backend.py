"""The LLVM CPU backend: fusion + memory plan + LLVM codegen, one native call per training step."""

from __future__ import annotations

import ctypes
import operator
import statistics
import time
import weakref
from typing import Any

import numpy as np

from mlpc.errors import InputError, MlpcError
from mlpc.ir import Graph
from mlpc.locking import ObjectLock
from mlpc.precision import check_cpu
from mlpc.printer import print_graph
from mlpc.types import DType
from passes.memory import MemoryPlan
from runtime import compile_cache
from runtime.backend import Record, register_backend

STAGES = ("fused", "planned", "llvm", "asm")
_STEP_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)
_SHUTDOWN_FN = ctypes.CFUNCTYPE(None)


def _shutdown(fn: Any, loaded: Any) -> None:
    fn()
    del loaded


def aligned_empty(nbytes: int, align: int = 64) -> np.ndarray:
    """A uint8 array of `nbytes` whose data pointer is `align`-byte aligned."""
    raw = np.zeros(nbytes + align, np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + nbytes]


def aligned_copy(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    out = aligned_empty(max(a.nbytes, 1)).view(a.dtype)[:a.size].reshape(a.shape)
    out[...] = a
    return out


def _meta(graph: Graph, mem: MemoryPlan, labels: list[tuple[str, int]], threads: int) -> dict[str, Any]:
    inputs = [[i.name, i.role, i.value.dtype.value, list(i.value.shape)] for i in graph.inputs]
    in_value_name = {i.value: i.name for i in graph.inputs}
    state = {i.name for i in graph.inputs if i.role != "data"}
    outputs = []
    for o in graph.outputs:
        v = o.value
        slot = mem.slots[v]
        where: list[Any]
        if v in in_value_name:
            where = ["input", in_value_name[v]]
        elif slot.external is not None:
            where = ["input", slot.external]
        else:
            where = ["arena", slot.offset]
        outputs.append([o.name, o.name in state, where, v.dtype.value, list(v.shape)])
    return {"arena": mem.arena_bytes, "inputs": inputs, "outputs": outputs,
            "labels": labels, "threads": threads, "bucket": list(mem.bucket) if mem.bucket else None}


class LlvmCompiled:
    """A loaded step: `run` fills a pointer array and makes one native call."""

    def __init__(self, meta: dict[str, Any], loaded: Any, texts: dict[str, str], compile_seconds: float,
                 from_cache: bool, graph: Graph | None = None, target: Any = None) -> None:
        self.meta = meta
        self.graph = graph
        self.target = target
        self._profiled: LlvmCompiled | None = None
        self.loaded = loaded  # keeps the code alive
        self.texts = texts
        self.compile_seconds = compile_seconds
        self.from_cache = from_cache
        self.arena = aligned_empty(max(int(meta["arena"]), 64))
        self.inputs = [(n, r, DType(d).numpy, tuple(s)) for n, r, d, s in meta["inputs"]]
        self.ptrs = (ctypes.c_void_p * (1 + len(self.inputs)))()
        self.ptrs[0] = self.arena.ctypes.data
        self.fn = _STEP_FN(loaded.address)
        self.lock = ObjectLock()  # fork-safe: see mlpc/locking.py
        # stop the step's worker threads before the code they run is freed
        weakref.finalize(self, _shutdown, _SHUTDOWN_FN(loaded.shutdown_address), loaded)
        self.keep: list[Any] = [None] * len(self.inputs)
        self.data = [(j, n, np.dtype(dt), s) for j, (n, r, dt, s) in enumerate(self.inputs) if r == "data"]
        self.state_pos = [j for j, x in enumerate(self.inputs) if x[1] != "data"]
        self.state_names = [self.inputs[j][0] for j in self.state_pos]
        self.seen_state: list[Any] = [None] * len(self.state_pos)
        names = self.state_names
        # the state values as a tuple, fetched in C: state -> (state[n] for n in names)
        self.get_state = operator.itemgetter(*names) if len(names) > 1 else lambda d: (d[names[0]],) if names \
            else ()
        self.labels = [(n, c) for n, c in meta["labels"]]
        self.checks_labels = any(n == "y" for n, _c in self.labels)  # mlpc_step checks y's range before it runs
        self.input_pos = {x[0]: i for i, x in enumerate(self.inputs)}
        self.results: list[tuple[str, np.ndarray]] = []   # non-state outputs: views into the arena
        self.copies: list[tuple[str, str, bool]] = []      # (output, input, is_state) copied on the host
        for name, is_state, where, dt, shape in meta["outputs"]:
            if where[0] == "arena":
                n = int(np.prod(shape)) if shape else 1
                view = self.arena[where[1]:where[1] + n * np.dtype(DType(dt).numpy).itemsize]
                view = view.view(DType(dt).numpy).reshape(tuple(shape))
                if is_state:
                    self.copies.append((name, "", True))
                    self.results.append(("state:" + name, view))
                else:
                    self.results.append((name, view))
            elif not (is_state and where[1] == name):
                self.copies.append((name, where[1], is_state))

    def _bind_state(self, state: dict[str, Any], values: list[Any]) -> None:
        for q, (j, value) in enumerate(zip(self.state_pos, values)):
            if value is self.seen_state[q]:
                continue
            name, _role, dt, shape = self.inputs[j]
            if not isinstance(value, np.ndarray) or value.dtype != dt or not value.flags.c_contiguous \
                    or not value.flags.writeable:
                raise InputError(f"state buffer {name!r} must be a writable contiguous {dt} array "
                                 f"(use the backend's to_device)")
            if value.shape != shape:
                raise InputError(f"state {name!r} has shape {list(value.shape)}, the step expects {list(shape)}")
            self.seen_state[q] = value
            self.keep[j] = value
            self.ptrs[1 + j] = value.ctypes.data

    def run(self, state: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
        with self.lock._lock:  # one arena per step: callers on several threads take turns (see mlpc/locking.py)
            return self._run(state, data)

    def bucket_view(self) -> np.ndarray | None:
        """The f32 view of the arena region holding the `partial.<k>` outputs and, in its last element,
        room for the row count (passes/memory.py), or None when the step has no such region."""
        where = self.meta.get("bucket")
        if not where:
            return None
        return self.arena[where[0]:where[0] + where[1]].view(np.float32)

    def run_in_arena(self, state: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
        """Like run, but arena outputs come back as views of the arena (valid until the next call, no
        copy): the data-parallel step reduces its gradients where the kernels wrote them. The caller
        holds `self.lock` across the run and its use of the views."""
        return self._run(state, data, copy=False)

    def _run(self, state: dict[str, Any], data: dict[str, np.ndarray], copy: bool = True) -> dict[str, Any]:
        try:
            same = all(map(operator.is_, self.get_state(state), self.seen_state))
        except KeyError as e:
            raise InputError(f"missing state input {e.args[0]!r}") from None
        if not same:
            self._bind_state(state, [state[n] for n in self.state_names])
        keep = self.keep
        for j, name, dt, shape in self.data:
            try:
                arr = data[name]
            except KeyError:
                raise InputError(f"missing data input {name!r}") from None
            if type(arr) is not np.ndarray or arr.dtype is not dt or arr.shape != shape \
                    or not arr.flags.c_contiguous:
                arr = self._convert(name, arr, dt, shape)
            elif arr is keep[j]:
                continue  # the very array of the last step, checked again above: its buffer pointer is set
            keep[j] = arr
            self.ptrs[1 + j] = arr.ctypes.data
        rc = self.fn(self.ptrs)
        if rc:
            if rc == 2:
                raise MlpcError("the compiled step could not start its worker threads (pthread_create failed)")
            self._label_error()
        result: dict[str, Any] = {}
        for name, view in self.results:
            result[name] = view.copy() if copy else view
        if self.copies:
            for name, src, is_state in self.copies:
                val = result.pop("state:" + name) if not src else np.array(self.keep[self.input_pos[src]])
                if is_state:
                    np.copyto(state[name], val)
                else:
                    result[name] = val
        return result

    @staticmethod
    def _convert(name: str, arr: Any, dt: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A data input as a C-contiguous array of `dt` (a copy when needed), its shape checked."""
        arr = np.ascontiguousarray(np.asarray(arr, dtype=dt)) if np.ndim(arr) else np.asarray(arr, dt)
        if arr.shape != shape:
            raise InputError(f"input {name!r} has shape {list(arr.shape)}, the compiled step expects {list(shape)}")
        return arr

    def profile(self, state: dict[str, Any], data: dict[str, np.ndarray], repeats: int) -> dict[str, float]:
        """{kernel name: median seconds} from a cycle-counting build of the same step (compiled once, cached);
        runs one warm-up and `repeats` timed steps, updating `state` (pass a copy). Thread 0 reads the counter
        before it meets the other threads at a barrier and again after a barrier behind the kernel, so each
        sample spans all threads' work on that kernel (and any wait): an upper bound on the kernel's time."""
        from runtime.machine_peaks import tsc_rate

        if self.graph is None:
            raise MlpcError("this compiled step does not know its graph; lower it with lower_graph")
        if self._profiled is None:
            self._profiled = lower_graph(self.graph, target=self.target, profile=True)
        p = self._profiled
        names = p.meta["kernels"]
        counters = (ctypes.c_int64 * len(names)).from_address(p.loaded.engine.get_global_value_address("mlpc_prof"))
        cycles = ctypes.CFUNCTYPE(ctypes.c_int64)(p.loaded.engine.get_function_address("mlpc_cycles"))
        hz = tsc_rate(cycles, 0.05)  # measured, not assumed: see runtime/machine_peaks.py
        p.run(state, data)
        samples: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(max(1, repeats)):
            for i in range(len(names)):
                counters[i] = 0
            p.run(state, data)
            for i, n in enumerate(names):
                samples[n].append(counters[i] / hz)
        return {n: statistics.median(v) for n, v in samples.items()}

    def _label_error(self) -> None:
        for name, classes in self.labels:
            y = self.keep[self.input_pos[name]]
            if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
                from mlpc.validate import label_error

                raise InputError(f"labels in {name!r}: {label_error(y, classes)}")
        raise InputError("the compiled step rejected its input")


def lower_graph(graph: Graph, record: Record | None = None, target: Any = None,
                use_cache: bool = True, profile: bool = False) -> LlvmCompiled:
    """Fuse, plan, generate and load `graph`, or load it from the compile cache (no codegen imports,
    no LLVM work on a hit: the entry holds the object and every stage's text)."""
    import llvmlite

    from codegen.llvm import PROFILE, VERSION
    from codegen.llvm.compile import LoadedCode
    from codegen.llvm.step import check_dtypes
    from codegen.llvm.target import host_target

    t0 = time.perf_counter()
    rec = record or (lambda stage, text: None)
    target = target or host_target()
    check_dtypes(graph, "the llvm backend")
    sources = compile_cache.source_fingerprint("codegen/llvm", "mlpc/ops", "passes/fusion.py", "passes/plan.py",
                                               "passes/memory.py",
                                               "runtime/llvm_backend.py")
    key = compile_cache.make_key(print_graph(graph, show_loc=False), target.key, VERSION, sources,
                                 llvmlite.__version__,
                                 f"profile={PROFILE or profile}")
    hit = compile_cache.load(key) if use_cache else None
    if hit is not None:
        meta, obj, texts = hit
        try:
            loaded = LoadedCode(obj, target)
        except Exception:  # noqa: BLE001 - an object MCJIT cannot load is a cache miss
            hit = None
        else:
            from mlpc.inspection.locations import reattach_locations

            for stage in STAGES:
                if stage in texts:  # the entry may come from another file's model of the same structure
                    rec(stage, reattach_locations(texts[stage], graph) if stage in ("fused", "planned")
                        else texts[stage])
            return LlvmCompiled(meta, loaded, texts, time.perf_counter() - t0, True, graph, target)
    meta, obj, texts = _generate(graph, target, PROFILE or profile)
    for stage in STAGES:
        rec(stage, texts[stage])
    loaded = LoadedCode(obj, target)
    if use_cache:
        compile_cache.store(key, meta, obj, texts)
    return LlvmCompiled(meta, loaded, texts, time.perf_counter() - t0, False, graph, target)


def _generate(graph: Graph, target: Any, profile: bool) -> tuple[dict[str, Any], bytes, dict[str, str]]:
    """Fusion, memory plan, LLVM module, optimized object code, and the four stage texts."""
    from codegen.llvm.compile import optimize_and_emit, split_functions_asm, split_functions_ir
    from codegen.llvm.step import build_step

    built = build_step(graph, target, "the llvm backend", profile)
    plan, mem, step = built.plan, built.mem, built.step
    texts = {"fused": plan.dump(),
             "planned": print_graph(graph, annotate=plan.annotations()) + mem.dump(plan)}
    co = optimize_and_emit(str(step.module), target)
    ir_funcs = split_functions_ir(co.ir_text)
    asm_funcs = split_functions_asm(co.asm_text)
    header = [f"; target {target.cpu} ({target.lanes} f32 lanes), {step.threads} thread(s), "
              f"arena {mem.arena_bytes} bytes"]
    ir_parts, asm_parts = list(header), [h.replace(";", "#", 1) for h in header]
    for info in step.kernels:
        tag = f"kernel {info.name}: {info.detail}{' [threaded]' if info.threaded else ''}"
        ir_parts.append(f"; ---- {tag}\n{ir_funcs.get(info.name, '; (inlined)')}")
        asm_parts.append(f"# ---- {tag}\n{asm_funcs.get(info.name, '# (inlined)')}")
    for fn in ("mlpc_body", "mlpc_step", "mlpc_worker", "mlpc_barrier", "mlpc_shutdown"):
        if fn in ir_funcs:
            ir_parts.append(f"; ---- {fn}\n{ir_funcs[fn]}")
        if fn in asm_funcs:
            asm_parts.append(f"# ---- {fn}\n{asm_funcs[fn]}")
    texts["llvm"] = "\n".join(ir_parts)
    texts["asm"] = "\n".join(asm_parts)
    meta = _meta(graph, mem, built.labels, step.threads)
    meta["kernels"] = [k.name for k in step.kernels]
    return meta, co.obj, texts


class LlvmBackend:
    """backend="llvm": precision "fp32" (default) or "bf16" (bf16 gemm operands, fp32 accumulation)."""

    name = "llvm"
    stages: tuple[str, ...] = STAGES

    def __init__(self, precision: str | None = None) -> None:
        self.precision = check_cpu(precision, "llvm")

    def lower(self, graph: Graph, record: Record) -> LlvmCompiled:
        from codegen.llvm.target import host_target, with_precision

        return lower_graph(graph, record, target=with_precision(host_target(), self.precision))

    def to_device(self, array: np.ndarray) -> np.ndarray:
        return aligned_copy(np.asarray(array))

    def to_host(self, buffer: Any) -> np.ndarray:
        return np.array(buffer, copy=True)


register_backend("llvm", LlvmBackend)
