"""`mlpc.export`: a trainer's model as libNAME.so + NAME.h + NAME.safetensors (no Python at run time)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mlpc.errors import MlpcError
from mlpc.ir import Graph
from mlpc.printer import print_graph
from mlpc.types import DType, TensorType
from runtime.aot_stamp import stamp

if TYPE_CHECKING:
    from codegen.aot.spec import LibrarySpec
    from codegen.llvm.target import Target
    from mlpc.api import Trainer


@dataclass
class Exported:
    """What `export` wrote, and how."""

    name: str
    library: Path
    header: Path
    weights: Path
    spec: "LibrarySpec"
    seconds: float
    command: list[str]
    sources: list[Path] = field(default_factory=list)


def export_target(generic: bool = False, cpu: str | None = None, features: str | None = None,
                  threads: int | None = None) -> "Target":
    """The target to compile for: the host (default), baseline x86-64 (`generic`: SSE2, no AVX), or a
    named LLVM cpu + feature string. Cross-compilation is out of scope: the triple is the host's."""
    import llvmlite.binding as llvm

    from codegen.llvm.target import Target, host_target, host_threads, init_llvm, lanes_for

    init_llvm()
    nthreads = threads if threads is not None else host_threads()
    if nthreads < 1:
        raise MlpcError(f"threads must be at least 1, got {nthreads}")
    if not generic and cpu is None and features is None:
        host = host_target()
        return Target(host.triple, host.cpu, host.features, host.lanes, nthreads, host.ftz)
    triple = llvm.get_process_triple()
    is_x86 = triple.startswith("x86_64")
    if generic:
        if not is_x86:
            raise MlpcError(f"--generic means baseline x86-64; this host is {triple}: name --cpu instead")
        cpu, features = "x86-64", ""
    cpu = cpu or "generic"
    features = features or ""
    try:
        llvm.Target.from_triple(triple).create_target_machine(cpu=cpu, features=features)
    except RuntimeError as e:  # pragma: no cover - LLVM accepts unknown cpus with a warning
        raise MlpcError(f"LLVM rejects cpu {cpu!r} with features {features!r}: {e}") from None
    lanes = lanes_for(features)
    if lanes == 1 and is_x86:
        lanes = 4  # SSE2 is part of x86-64
    return Target(triple, cpu, features, lanes, nthreads, True)


def step_graphs(trainer: "Trainer", inference: bool, train_batches: Sequence[int], predict_batch: int,
                allreduce_hook: bool = False) -> list[tuple[str, int, Graph]]:
    """(kind, batch, optimized graph) for every step the library holds, built as the trainer builds them
    (with `allreduce_hook`, train steps go through the distribute pass: allreduce ops before the update)."""
    from mlpc.api import trace_model
    from passes.manager import PassManager

    out: list[tuple[str, int, Graph]] = []
    pipeline = trainer._pipeline(distributed=allreduce_hook)
    if not inference:
        for b in sorted(set(train_batches) | {trainer.batch_size}):
            if b <= 0:
                raise MlpcError(f"training batch sizes must be positive, got {b}")
            if b == trainer.batch_size and "simplified" in trainer._graphs and pipeline == trainer._pipeline():
                g = trainer.graph("simplified")
            else:
                traced = trace_model(trainer.model, b, trainer.in_features, trainer.loss, "step")
                g = PassManager().run(traced, pipeline)
            out.append(("train", b, g))
    if predict_batch <= 0:
        raise MlpcError(f"the predict batch must be positive, got {predict_batch}")
    g = trace_model(trainer.model, predict_batch, trainer.in_features, None, "predict")
    out.append(("predict", predict_batch, PassManager().run(g, "simplify")))
    return out


def ir_hash(graphs: Sequence[Graph]) -> str:
    """SHA-256 of the printed IR (without source locations) of every graph in the library."""
    h = hashlib.sha256()
    for g in graphs:
        h.update(print_graph(g, show_loc=False).encode())
        h.update(b"\0")
    return h.hexdigest()


def _checkpoint_blobs(trainer: "Trainer", build: Path, name: str, inference: bool, digest: str
                      ) -> tuple[Path, Path, dict[str, str]]:
    """The trainer's checkpoint (NAME.safetensors), the copy embedded in the library (params only when
    inference-only), and the fixed metadata the library writes into checkpoints it saves."""
    from mlpc.checkpoint import load_arrays, save_arrays

    full = build / f"{name}.safetensors"
    trainer.save(str(full))
    tensors, meta = load_arrays(str(full))
    fixed = {k: v for k, v in meta.items() if k not in ("mlpc.checksum", "mlpc.steps")}
    fixed.update({"mlpc.library": name, "mlpc.ir_hash": digest})
    if "mlpc.train_state" in fixed:  # the library runs no lr schedulers; its hyper/ tensors hold the values
        ts = json.loads(fixed["mlpc.train_state"])
        fixed["mlpc.train_state"] = json.dumps({**ts, "schedulers": []})
    if not inference:
        return full, full, fixed
    blob = build / f"{name}.weights.safetensors"
    params = {k: v for k, v in tensors.items() if k.startswith("param/")}
    save_arrays(str(blob), params, {k: v for k, v in meta.items() if k not in ("mlpc.checksum", "mlpc.format")})
    return full, blob, fixed


def _loss_kind(trainer: "Trainer") -> str:
    """The library's target kind: "cross_entropy" (integer labels) or "mse" (float targets shaped like the
    outputs, for every float-target loss: the loss itself is compiled into the step)."""
    target = trainer.loss.target_type(1, trainer.out_features)
    if target == TensorType(DType.i32, (1,)):
        return "cross_entropy"
    if target == TensorType(DType.f32, (1, trainer.out_features)):
        return "mse"
    raise MlpcError(f"cannot export a model trained with {type(trainer.loss).__name__} (targets {target})")


def compile_library(build: Path, name: str, objects: Sequence[str], threads: int, cc: str | None,
                    cflags: Sequence[str]) -> list[str]:
    """Run the system C compiler in `build`: glue + weights + kernels -> lib<name>.so."""
    compiler = shlex.split(cc or os.environ.get("CC") or "cc")
    if shutil.which(compiler[0]) is None:
        raise MlpcError(f"no C compiler: {compiler[0]!r} not found (set CC or pass cc=)")
    cmd = [*compiler, "-std=c11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra",
           *cflags, "-o", f"lib{name}.so", *objects, f"-Wl,-soname,lib{name}.so", "-Wl,-z,noexecstack", "-lm"]
    if threads > 1:
        cmd.append("-pthread")
    r = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
    if r.returncode != 0:
        raise MlpcError(f"the C compiler failed ({' '.join(cmd)}):\n{r.stderr.strip()}")
    return cmd


def export(trainer: "Trainer", outdir: str | os.PathLike[str], name: str = "model", *, inference: bool = False,
           generic: bool = False, cpu: str | None = None, features: str | None = None, threads: int | None = None,
           train_batches: Sequence[int] = (), predict_batch: int | None = None, cc: str | None = None,
           cflags: Sequence[str] = (), keep_sources: bool = False, abi_version: int | None = None,
           allreduce_hook: bool | None = None) -> Exported:
    """Compile `trainer`'s model into OUTDIR/lib<name>.so with OUTDIR/<name>.h and OUTDIR/<name>.safetensors.

    The library holds the training step at the trainer's batch size (plus `train_batches`) and a
    predict step of `predict_batch` rows (default: the batch size; any row count works by chunking),
    and the trainer's current weights. `inference=True` leaves out the backward pass and optimizer.
    `abi_version` overrides the ABI version stamped into the library (for tests of the loader).
    `allreduce_hook` (default: whether the trainer is data-parallel) splits each train step where the
    gradients are complete, so that NAME_set_allreduce's function can sum them over the ranks of the
    caller's own MPI job before the update (docs/distributed.md).
    """
    import mlpc
    from codegen.aot import glue
    from codegen.aot.abi import ABI_VERSION, check_library_name, check_tensor_name
    from codegen.aot.header import render_header
    from codegen.aot.objects import build_split_train_step, build_step, link_object
    from codegen.aot.spec import BufferSpec, LibrarySpec, TargetSpec

    t0 = time.perf_counter()
    check_library_name(name)
    target = export_target(generic, cpu, features, threads)
    if getattr(trainer, "precision", "fp32") == "bf16":  # the library computes as the trainer does (tf32: fp32)
        from codegen.llvm.target import with_precision

        target = with_precision(target, "bf16")
    loss = _loss_kind(trainer)
    pbatch = predict_batch or trainer.batch_size
    hook = (trainer.comm is not None if allreduce_hook is None else bool(allreduce_hook)) and not inference
    graphs = step_graphs(trainer, inference, train_batches, pbatch, hook)
    digest = ir_hash([g for _k, _b, g in graphs])
    modules = []
    for kind, b, g in graphs:
        symbol = f"{name}__{kind}_b{b}"
        modules += build_split_train_step(g, b, symbol, target) if hook and kind == "train" else \
            [build_step(g, kind, b, symbol, target)]

    first = graphs[0][2]
    buffers = [BufferSpec(check_tensor_name(i.name), i.role, i.value.dtype.value, tuple(i.value.shape))
               for i in first.inputs if i.role in ("param", "state", "hyper")]
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{name}-build-", dir=out))
    except OSError as e:
        raise MlpcError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    try:
        full_ckpt, blob, fixed_meta = _checkpoint_blobs(trainer, build, name, inference, digest)
        spec = LibrarySpec(
            name=name, buffers=buffers, steps=[m.spec for m in modules if m.spec.kind != "update"],
            batch_size=pbatch if inference else trainer.batch_size, in_features=trainer.in_features,
            out_features=trainer.out_features, loss=loss,
            target=TargetSpec(target.triple, target.cpu, target.features, target.lanes, target.threads, target.ftz,
                              target.precision),
            ir_hash=digest, inference_only=inference, checkpoint_meta=fixed_meta,
            model_spec=_model_spec(trainer), optimizer_spec=trainer.optimizer.spec(),
            mlpc_version=mlpc.__version__, abi_version=ABI_VERSION if abi_version is None else abi_version,
            allreduce_hook=hook)
        obj, kernels_ir = link_object(modules, target)
        (build / f"{name}_kernels.o").write_bytes(obj)
        if keep_sources:
            (build / f"{name}_kernels.ll").write_text(kernels_ir)
        (build / f"{name}.h").write_text(render_header(spec))
        wsym = f"{name}__weights"
        (build / f"{name}.c").write_text(glue.render_glue(spec, f"{name}.h", wsym))
        (build / f"{name}_weights.S").write_text(glue.render_weights_asm(wsym, blob.name))
        cmd = compile_library(build, name, [f"{name}.c", f"{name}_weights.S", f"{name}_kernels.o"],
                              max(s.threads for s in spec.symbols), cc, cflags)
        stamp(build / f"lib{name}.so")
        results = {"lib": out / f"lib{name}.so", "h": out / f"{name}.h", "w": out / f"{name}.safetensors"}
        os.replace(build / f"lib{name}.so", results["lib"])
        os.replace(build / f"{name}.h", results["h"])
        os.replace(full_ckpt, results["w"])
        sources = []
        if keep_sources:
            src = out / f"{name}_src"
            src.mkdir(exist_ok=True)
            for f in (f"{name}.c", f"{name}_weights.S", f"{name}_kernels.o", f"{name}_kernels.ll", blob.name):
                if (build / f).exists():
                    os.replace(build / f, src / f)
                    sources.append(src / f)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return Exported(name, results["lib"], results["h"], results["w"], spec, time.perf_counter() - t0, cmd, sources)


def _model_spec(trainer: "Trainer") -> Any:
    try:
        return trainer.model.spec()
    except TypeError:
        return None
