"""CPU training-step benchmark: mlpc (llvm backend) vs NumPy, PyTorch eager, torch.compile, JAX jit.

Full step = forward, mean softmax cross-entropy, backward, optimizer update, loss read back.
Models 784-100-10 and 784-256-256-10 (ReLU), Adam and SGD-momentum, batch 1/16/128/1024, fp32; then
issue 16's shapes (784-256-256-10 ReLU, depth-20 width-256 Tanh, 784-1024-1024-10 GELU-tanh) with Adam at
batch 1/16/128/1024 in fp32 and bf16 (mlpc `precision="bf16"`, PyTorch eager and torch.compile under CPU
bf16 autocast; NumPy and JAX fp32 only), each row with mlpc's fraction of the measured FMA peak
(runtime/machine_peaks.py) at that precision. Every
framework trains on the same rotating set of distinct random batches, frameworks alternate in
rounds inside one process; each round gives a median step time, and the table reports the median
over the rounds with their spread [min-max] (ratios are of medians). Also: one MNIST epoch (batch
128, repeated), the gemm kernel's GFLOP/s vs numpy sgemm (repeated), and compile time (cold and
from the on-disk cache, each in fresh processes, repeated).

A full run writes benchmarks/results/cpu_step.{json,txt}; a quick or partial run (--quick,
--no-torch-compile, fewer rounds or a smaller budget) writes benchmarks/results/quick/ (ignored by
git) and refuses to overwrite a file git tracks.

    python benchmarks/cpu_step.py [--quick] [--no-torch-compile] [--shapes NAME ...] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import peers  # noqa: E402

MODELS = {"784-100-10": [784, 100, 10], "784-256-256-10": [784, 256, 256, 10]}  # ReLU, both optimizers, fp32
# issue 16's shapes: Adam, fp32 and bf16; depth 20 = 20 Linear layers (784 -> 19 x 256 -> 10)
SHAPES = {"784-256-256-10 relu": ([784, 256, 256, 10], "relu"),
          "depth20-w256 tanh": ([784] + [256] * 19 + [10], "tanh"),
          "784-1024-1024-10 gelu": ([784, 1024, 1024, 10], "gelu")}
PRECISIONS = ("fp32", "bf16")
FP32_ONLY = ("numpy", "jax")  # peers without a bf16 variant here (shown as n/a in bf16 rows)
OPTS = {"adam": 1e-3, "sgd-momentum": 1e-3}  # lr 1e-2 + momentum 0.9 diverges at batch 1
BATCHES = [1, 16, 128, 1024]
ROUNDS, BUDGET = 5, 1.5  # a full run's defaults; anything less is a partial run
# Peers share the process and their thread pools spin after a step (PyTorch's OpenMP workers, JAX's Eigen
# pool): timed back to back, mlpc's 2 threads competed with them (784-100-10 SGD b=128: 1444 us in the
# mix vs 411 us alone). Each timed round starts after a pause that lets the previous framework's pool
# park, and two untimed steps of its own.
SETTLE_S = 0.3
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median, min and max of repeated measurements, and how many there were."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


class Unsupported(Exception):
    """A configuration this build cannot run (shown as `n/a (reason)`)."""


def make_mlpc(sizes: list[int], opt: str, lr: float, batch: int, act: str = "relu", precision: str = "fp32") -> Any:
    """A compiled llvm Trainer; precision="bf16" needs `mlpc.compile(..., precision=)` (else Unsupported)."""
    import mlpc
    from mlpc import nn, optim

    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": lambda: nn.GELU(approximate="tanh")}
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(acts[act]())
    o = optim.Adam(lr=lr) if opt == "adam" else optim.SGD(lr=lr, momentum=0.9)
    extra = {} if precision == "fp32" else {"precision": precision}
    try:
        return mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), o, batch_size=batch, backend="llvm",
                            **extra)
    except TypeError as e:
        if "precision" in str(e):
            raise Unsupported("precision= not supported") from None
        raise


def _make_peer(fw: str, sizes: list[int], opt: str, lr: float, threads: int, act: str, precision: str) -> Any:
    if precision != "fp32" and fw in FP32_ONLY:
        raise Unsupported("fp32 only")
    bf16 = precision == "bf16"
    if fw == "numpy":
        return peers.make_numpy(sizes, opt, lr, act)
    if fw == "torch":
        return peers.make_torch(sizes, opt, lr, threads, act, autocast=bf16)
    if fw == "torch.compile":
        return peers.make_torch_compile(sizes, opt, lr, threads, act, autocast=bf16)
    return peers.make_jax(sizes, opt, lr, act)


def time_round(step: Callable, xs: list[np.ndarray], ys: list[np.ndarray], n: int, offset: int) -> float:
    ts = []
    for i in range(n):
        j = (offset + i) % len(xs)
        t = time.perf_counter()
        step(xs[j], ys[j])
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_config(sizes: list[int], opt: str, batch: int, frameworks: list[str], threads: int, rounds: int,
                 budget: float, act: str = "relu", precision: str = "fp32") -> dict[str, Any]:
    """Per framework: median, min and max over `rounds` of the round's median microseconds per step (None
    when unavailable, with the reason under "notes"), and mlpc's FLOPs per step under "flops"."""
    lr = OPTS[opt]
    rng = np.random.default_rng(batch)
    nb = 64  # distinct batches: Adam must not memorize them (subnormal gradients slow some peers)
    xs = [rng.standard_normal((batch, sizes[0])).astype(np.float32) for _ in range(nb)]
    ys = [rng.integers(0, sizes[-1], batch).astype(np.int32) for _ in range(nb)]
    steps: dict[str, Callable | None] = {}
    notes: dict[str, str] = {}
    flops = 0
    for fw in frameworks:
        try:
            if fw == "mlpc":
                tr = make_mlpc(sizes, opt, lr, batch, act, precision)
                flops = _flops(tr)
                steps[fw] = tr.step
            else:
                steps[fw] = _make_peer(fw, sizes, opt, lr, threads, act, precision)
        except Unsupported as e:
            steps[fw], notes[fw] = None, str(e)
        except Exception as e:  # noqa: BLE001 - a peer that fails to build is reported, not fatal
            print(f"  {fw}: unavailable ({type(e).__name__}: {e})", file=sys.stderr)
            steps[fw], notes[fw] = None, f"{type(e).__name__}"
    live = {k: s for k, s in steps.items() if s is not None}
    per_step: dict[str, float] = {}
    for name, s in live.items():  # warm up (first calls compile) and size the rounds
        for i in range(3):
            s(xs[i], ys[i])
        t = time.perf_counter()
        for i in range(5):
            s(xs[i], ys[i])
        per_step[name] = (time.perf_counter() - t) / 5
    results: dict[str, list[float]] = {k: [] for k in live}
    failed: set[str] = set()
    for r in range(rounds):
        for name, s in live.items():
            if name in failed:
                continue
            n = max(5, min(2000, int(budget / rounds / max(per_step[name], 1e-6))))
            try:
                time.sleep(SETTLE_S)
                for i in range(2):
                    s(xs[i], ys[i])
                results[name].append(time_round(s, xs, ys, n, r * 7))
            except Exception as e:  # noqa: BLE001 - e.g. divergence (NumericalError): report, go on
                print(f"  {name}: stopped ({type(e).__name__}: {e})", file=sys.stderr)
                failed.add(name)
    for name in failed:
        results.pop(name, None)
        notes[name] = "stopped"
    out: dict[str, Any] = {fw: (spread([t * 1e6 for t in results[fw]]) if results.get(fw) else None)
                           for fw in frameworks}
    return {**out, "notes": notes, "flops": flops}


def _flops(trainer: Any) -> int:
    """FLOPs of one training step by mlpc's cost model (what the fraction of peak is computed from)."""
    from mlpc.inspection import Inspection

    return int(Inspection(trainer).stats().flops_per_step)


def gemm_gflops(shapes: list[tuple[int, int, int]], repeats: int, threads: int = 2) -> list[dict]:
    """mlpc's gemm kernel on `threads` threads vs numpy's sgemm (OpenBLAS, its default threads)."""
    from dataclasses import replace

    from codegen.llvm.target import host_target
    from mlpc.ir import Graph, Input, Output, Value
    from mlpc.ops import Builder
    from mlpc.types import f32
    from runtime.llvm_backend import lower_graph

    out = []
    for m, k, n in shapes:
        b = Builder()
        a, w = Value(f32(m, k), "a"), Value(f32(k, n), "w")
        g = Graph("mm", [Input("a", a, "param"), Input("w", w, "param")], b.ops, [])
        h = b.matmul(a, w)
        g = Graph("mm", g.inputs, b.ops, [Output("h", h)])
        c = lower_graph(g, target=replace(host_target(), threads=threads), use_cache=False)
        rng = np.random.default_rng(0)
        st = {"a": rng.standard_normal((m, k)).astype(np.float32), "w": rng.standard_normal((k, n)).astype(np.float32)}
        flops = 2.0 * m * n * k
        reps = max(3, int(0.3e9 / flops * 50))
        ours, theirs = [], []
        c.run(st, {})  # binds the buffers; then time the native call alone
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(reps):
                c.fn(c.ptrs)
            ours.append((time.perf_counter() - t) / reps)
            t = time.perf_counter()
            for _ in range(reps):
                st["a"] @ st["w"]
            theirs.append((time.perf_counter() - t) / reps)
        out.append({"shape": f"{m}x{k}x{n}", "mlpc_gflops": spread([flops / t / 1e9 for t in ours]),
                    "numpy_gflops": spread([flops / t / 1e9 for t in theirs]), "threads": c.meta["threads"]})
    return out


COMPILE_SNIPPET = """
import time
import mlpc
from mlpc import nn, optim
import runtime.llvm_backend
t = time.perf_counter()
m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
tr = mlpc.compile(m, nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=128, backend="llvm")
total = time.perf_counter() - t
c = tr._compiled[("step", 128)]
print(total, c.compile_seconds, c.from_cache)
"""


def compile_times(repeats: int) -> dict:
    """Cold (empty compile cache) and cached compile, each in `repeats` fresh processes: median, min, max."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out: dict[str, list[tuple[float, float, str]]] = {"cold": [], "cached": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, MLPC_CACHE_DIR=d, PYTHONPATH=root)
            for kind in ("cold", "cached"):
                r = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], env=env, capture_output=True,
                                   text=True, cwd=root, timeout=300)
                total, backend, cached = r.stdout.split()
                out[kind].append((float(total), float(backend), cached))
    return {kind: {"mlpc.compile_s": spread([t for t, _, _ in runs]),
                   "backend_lower_s": spread([b for _, b, _ in runs]),
                   "from_cache": sorted({c for _, _, c in runs})} for kind, runs in out.items()}


def mnist_epoch(frameworks: list[str], threads: int, repeats: int) -> dict[str, dict | None]:
    """Seconds per MNIST epoch (468 full batches of 128) per framework: median, min, max of `repeats` epochs."""
    from mlpc import datasets

    ds = datasets.mnist()
    x, y = ds.x_train, ds.y_train.astype(np.int32)
    sizes = MODELS["784-256-256-10"]
    out: dict[str, dict | None] = {}
    for fw in frameworks:
        if fw == "torch.compile":
            continue
        step = {"mlpc": lambda: make_mlpc(sizes, "adam", 1e-3, 128).step,
                "numpy": lambda: peers.make_numpy(sizes, "adam", 1e-3),
                "torch": lambda: peers.make_torch(sizes, "adam", 1e-3, threads),
                "jax": lambda: peers.make_jax(sizes, "adam", 1e-3)}[fw]()
        if step is None:
            out[fw] = None
            continue
        step(x[:128], y[:128])
        n = len(x) // 128 * 128  # full batches (one compiled shape for every framework)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for lo in range(0, n, 128):
                step(x[lo:lo + 128], y[lo:lo + 128])
            times.append(time.perf_counter() - t)
        out[fw] = spread(times)
    return out


def fmt(s: dict | None, digits: int = 1) -> str:
    """`median [min-max]` of a spread."""
    if not s:
        return "n/a"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def output_path(args: argparse.Namespace, partial: bool) -> str:
    """Where the JSON goes: a partial run never lands on the committed results."""
    path = args.json or os.path.join(RESULTS, "quick" if partial else "", "cpu_step.json")
    if partial and _tracked_by_git(path):
        raise SystemExit(f"cpu_step.py: refusing to overwrite {path} (tracked by git) with a quick or partial "
                         f"run; omit --json (writes {os.path.join(RESULTS, 'quick')}) or run the full benchmark")
    return path


def _tracked_by_git(path: str) -> bool:
    try:
        r = subprocess.run(["git", "ls-files", "--error-unmatch", os.path.abspath(path)], capture_output=True,
                           cwd=os.path.dirname(os.path.abspath(__file__)), timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return os.path.abspath(path).startswith(RESULTS + os.sep) and "quick" not in path
    return r.returncode == 0


def configs(quick: bool, shapes: list[str] | None) -> list[tuple[str, list[int], str, str, str, int]]:
    """(name, sizes, activation, optimizer, precision, batch) of every step configuration to time: the
    ReLU models with both optimizers in fp32, then issue 16's shapes with Adam in fp32 and bf16 (a shape's
    fp32 Adam row is not repeated when the first part has it)."""
    out = []
    models = {"784-256-256-10": MODELS["784-256-256-10"]} if quick else MODELS
    if shapes is None:
        for mname, sizes in models.items():
            for opt in (["adam"] if quick else list(OPTS)):
                out += [(mname, sizes, "relu", opt, "fp32", b) for b in BATCHES]
    chosen = shapes or (["784-256-256-10 relu"] if quick else list(SHAPES))
    done = {(tuple(c[1]), c[2], c[3], c[4], c[5]) for c in out}
    for name in chosen:
        sizes, act = SHAPES[name]
        for precision in PRECISIONS:
            out += [(name, sizes, act, "adam", precision, b) for b in BATCHES
                    if (tuple(sizes), act, "adam", precision, b) not in done]
    return out


def step_table(cases: list, frameworks: list[str], threads: int, rounds: int, budget: float,
               say: Callable[[str], None]) -> list[dict]:
    """Time every configuration; one printed row each with ratios (peer median / mlpc median, same
    precision, same run) and mlpc's fraction of this machine's measured FMA peak at that precision."""
    from runtime.machine_peaks import peaks

    p = peaks(threads)
    say(f"microseconds per step, median [min-max] of {rounds} rounds (each round: a median step time); "
        f"ratio = peer median / mlpc median; peak = mlpc's FLOP/s over the measured FMA peak ({threads} "
        f"thread(s): fp32 {p.compute_peak(threads) / 1e9:.0f} GFLOP/s, bf16 "
        f"{p.compute_peak(threads, 'bf16') / 1e9:.0f} GFLOP/s)")
    rows = []
    fp32_mlpc: dict[tuple, float] = {}  # (sizes, act, opt, batch) -> mlpc's fp32 median, for bf16 speedups
    for name, sizes, act, opt, precision, batch in cases:
        res = bench_config(sizes, opt, batch, frameworks, threads, rounds, budget, act, precision)
        notes, flops = res.pop("notes"), res.pop("flops")
        ours = res["mlpc"]
        key = (tuple(sizes), act, opt, batch)
        if ours and precision == "fp32":
            fp32_mlpc[key] = ours["median"]
        peak = p.compute_peak(threads, precision)
        fraction = {fw: flops / (v["median"] * 1e-6) / peak for fw, v in res.items() if v and flops}
        rows.append({"model": name, "activation": act, "optimizer": opt, "precision": precision, "batch": batch,
                     "us_per_step": res, "notes": notes, "flops_per_step": flops, "fraction_of_peak": fraction})
        cells = []
        for fw in frameworks:
            v = res.get(fw)
            ratio = f" ({v['median'] / ours['median']:4.2f}x)" if v and ours and fw != "mlpc" else ""
            cells.append(f"{fw} {fmt(v)}{ratio}" if v else f"{fw} n/a ({notes.get(fw, 'unavailable')})")
        pct = f" | peak {100 * fraction['mlpc']:.0f}%" if "mlpc" in fraction else ""
        if ours and precision != "fp32" and key in fp32_mlpc:
            rows[-1]["speedup_vs_mlpc_fp32"] = fp32_mlpc[key] / ours["median"]
            pct += f" | {rows[-1]['speedup_vs_mlpc_fp32']:.2f}x mlpc fp32"
        say(f"{name:22s} {opt:12s} {precision} b={batch:<5d} " + " | ".join(cells) + pct)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="784-256-256-10 ReLU only, Adam, fp32 and bf16, 3 rounds (writes benchmarks/results/quick/)")
    ap.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (slow cold compiles)")
    ap.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=None,
                    help="only these of issue 16's shapes (a partial run)")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"timed rounds per configuration (default {ROUNDS})")
    ap.add_argument("--budget", type=float, default=BUDGET, help="seconds per framework per configuration")
    ap.add_argument("--json", default=None,
                    help="output JSON (a .txt with the printed tables goes beside it); default "
                         "benchmarks/results/cpu_step.json, or benchmarks/results/quick/ for a partial run")
    args = ap.parse_args(argv)
    if args.rounds < 1 or not args.budget > 0:
        ap.error("--rounds must be >= 1 and --budget > 0")
    rounds = 3 if args.quick else args.rounds
    partial = args.quick or args.no_torch_compile or rounds < ROUNDS or args.budget < BUDGET or bool(args.shapes)
    path = output_path(args, partial)
    from codegen.llvm.target import host_target

    tgt = host_target()
    threads = tgt.threads
    frameworks = ["mlpc", "numpy", "torch", "torch.compile", "jax"]
    if args.no_torch_compile:
        frameworks.remove("torch.compile")
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    rows = step_table(configs(args.quick, args.shapes), frameworks, threads, rounds, args.budget, say)
    load = os.getloadavg()
    report = {"machine": {"cpu": tgt.cpu, "lanes": tgt.lanes, "threads": threads, "python": platform.python_version(),
                          "loadavg_at_end": load},
              "partial": partial, "rounds": rounds, "steps": rows}
    say("\nmatmul kernel GFLOP/s, median [min-max] of 5 (mlpc on 2 threads vs numpy sgemm, same process):")
    report["gemm"] = gemm_gflops([(1024, 1024, 1024), (128, 784, 256)], 5)
    for g in report["gemm"]:
        say(f"  {g['shape']:16s} mlpc {fmt(g['mlpc_gflops'])}  numpy {fmt(g['numpy_gflops'])}  "
            f"({g['mlpc_gflops']['median'] / g['numpy_gflops']['median'] * 100:.0f}%)  threads={g['threads']}")
    epochs = 1 if args.quick else 3
    say(f"\nMNIST epoch (784-256-256-10, Adam, batch 128, 468 full batches), seconds, median [min-max] of {epochs}:")
    report["mnist_epoch_s"] = mnist_epoch(frameworks, threads, epochs)
    for fw, v in report["mnist_epoch_s"].items():
        say(f"  {fw:8s} {fmt(v, 3)}")
    say(f"\ncompile time of 784-256-256-10 + Adam, ms, median [min-max] of {epochs} fresh processes each:")
    report["compile"] = compile_times(epochs)
    for k, v in report["compile"].items():
        ms = {key: {s: x * 1e3 if s != "n" else x for s, x in v[key].items()}
              for key in ("mlpc.compile_s", "backend_lower_s")}
        say(f"  {k:7s} mlpc.compile {fmt(ms['mlpc.compile_s'])}, backend lower {fmt(ms['backend_lower_s'])}, "
            f"from cache: {'/'.join(v['from_cache'])}")
    say(f"\nload average at end: {load}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    txt = os.path.splitext(path)[0] + ".txt"
    with open(txt, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path} and {txt}")


if __name__ == "__main__":
    main()
