"""CPU training-step benchmark: mlpc (llvm backend) vs NumPy, PyTorch eager, torch.compile, JAX jit.

Full step = forward, mean softmax cross-entropy, backward, optimizer update, loss read back.
Models 784-100-10 and 784-256-256-10 (ReLU), Adam and SGD-momentum, batch 1/16/128/1024. Every
framework trains on the same rotating set of distinct random batches, frameworks alternate in
rounds inside one process, and the reported time is the lowest of the rounds' median step times.
Also: one MNIST epoch (batch 128), the gemm kernel's GFLOP/s vs numpy sgemm, and compile time
(cold and from the on-disk cache, each in a fresh process).

    python benchmarks/cpu_step.py [--quick] [--no-torch-compile] [--json PATH]
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
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import peers  # noqa: E402

MODELS = {"784-100-10": [784, 100, 10], "784-256-256-10": [784, 256, 256, 10]}
OPTS = {"adam": 1e-3, "sgd-momentum": 1e-3}  # lr 1e-2 + momentum 0.9 diverges at batch 1
BATCHES = [1, 16, 128, 1024]


def make_mlpc(sizes: list[int], opt: str, lr: float, batch: int) -> Callable[[np.ndarray, np.ndarray], float]:
    import mlpc
    from mlpc import nn, optim

    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    o = optim.Adam(lr=lr) if opt == "adam" else optim.SGD(lr=lr, momentum=0.9)
    tr = mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), o, batch_size=batch, backend="llvm")
    return tr.step


def time_round(step: Callable, xs: list[np.ndarray], ys: list[np.ndarray], n: int, offset: int) -> float:
    ts = []
    for i in range(n):
        j = (offset + i) % len(xs)
        t = time.perf_counter()
        step(xs[j], ys[j])
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_config(sizes: list[int], opt: str, batch: int, frameworks: list[str], threads: int, rounds: int,
                 budget: float) -> dict[str, float | None]:
    lr = OPTS[opt]
    rng = np.random.default_rng(batch)
    nb = 64  # distinct batches: Adam must not memorize them (subnormal gradients slow some peers)
    xs = [rng.standard_normal((batch, sizes[0])).astype(np.float32) for _ in range(nb)]
    ys = [rng.integers(0, sizes[-1], batch).astype(np.int32) for _ in range(nb)]
    steps: dict[str, Callable | None] = {}
    for fw in frameworks:
        try:
            if fw == "mlpc":
                steps[fw] = make_mlpc(sizes, opt, lr, batch)
            elif fw == "numpy":
                steps[fw] = peers.make_numpy(sizes, opt, lr)
            elif fw == "torch":
                steps[fw] = peers.make_torch(sizes, opt, lr, threads)
            elif fw == "torch.compile":
                steps[fw] = peers.make_torch_compile(sizes, opt, lr, threads)
            elif fw == "jax":
                steps[fw] = peers.make_jax(sizes, opt, lr)
        except Exception as e:  # noqa: BLE001 - a peer that fails to build is reported, not fatal
            print(f"  {fw}: unavailable ({type(e).__name__}: {e})", file=sys.stderr)
            steps[fw] = None
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
                results[name].append(time_round(s, xs, ys, n, r * 7))
            except Exception as e:  # noqa: BLE001 - e.g. divergence (NumericalError): report, go on
                print(f"  {name}: stopped ({type(e).__name__}: {e})", file=sys.stderr)
                failed.add(name)
    for name in failed:
        results.pop(name, None)
    return {fw: (min(results[fw]) * 1e6 if fw in results else None) for fw in frameworks}


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
        out.append({"shape": f"{m}x{k}x{n}", "mlpc_gflops": flops / min(ours) / 1e9,
                    "numpy_gflops": flops / min(theirs) / 1e9, "threads": c.meta["threads"]})
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


def compile_times() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, MLPC_CACHE_DIR=d, PYTHONPATH=root)
        runs = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], env=env, capture_output=True, text=True,
                               cwd=root, timeout=300)
            total, backend, cached = r.stdout.split()
            runs.append({"mlpc.compile_s": float(total), "backend_lower_s": float(backend), "from_cache": cached})
    return {"cold": runs[0], "cached": runs[1]}


def mnist_epoch(frameworks: list[str], threads: int) -> dict[str, float | None]:
    from mlpc import datasets

    ds = datasets.mnist()
    x, y = ds.x_train, ds.y_train.astype(np.int32)
    sizes = MODELS["784-256-256-10"]
    out: dict[str, float | None] = {}
    for fw in frameworks:
        if fw == "torch.compile":
            continue
        step = {"mlpc": lambda: make_mlpc(sizes, "adam", 1e-3, 128),
                "numpy": lambda: peers.make_numpy(sizes, "adam", 1e-3),
                "torch": lambda: peers.make_torch(sizes, "adam", 1e-3, threads),
                "jax": lambda: peers.make_jax(sizes, "adam", 1e-3)}[fw]()
        if step is None:
            out[fw] = None
            continue
        step(x[:128], y[:128])
        n = len(x) // 128 * 128  # full batches (one compiled shape for every framework)
        t = time.perf_counter()
        for lo in range(0, n, 128):
            step(x[lo:lo + 128], y[lo:lo + 128])
        out[fw] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="model 784-256-256-10, Adam only, fewer rounds")
    ap.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (slow cold compiles)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.5, help="seconds per framework per configuration")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                   "cpu_step.json"))
    args = ap.parse_args()
    from codegen.llvm.target import host_target

    tgt = host_target()
    threads = tgt.threads
    frameworks = ["mlpc", "numpy", "torch", "torch.compile", "jax"]
    if args.no_torch_compile:
        frameworks.remove("torch.compile")
    models = {"784-256-256-10": MODELS["784-256-256-10"]} if args.quick else MODELS
    opts = ["adam"] if args.quick else list(OPTS)
    rows = []
    for mname, sizes in models.items():
        for opt in opts:
            for batch in BATCHES:
                res = bench_config(sizes, opt, batch, frameworks, threads, 3 if args.quick else args.rounds,
                                   args.budget)
                rows.append({"model": mname, "optimizer": opt, "batch": batch, "us_per_step": res})
                ours = res["mlpc"]
                cells = []
                for fw in frameworks:
                    v = res.get(fw)
                    ratio = f" ({v / ours:4.2f}x)" if v and ours and fw != "mlpc" else ""
                    cells.append(f"{fw} {v:9.1f}{ratio}" if v else f"{fw} n/a")
                print(f"{mname:15s} {opt:12s} b={batch:<5d} " + " | ".join(cells), flush=True)
    load = os.getloadavg()
    report = {"machine": {"cpu": tgt.cpu, "lanes": tgt.lanes, "threads": threads, "python": platform.python_version(),
                          "loadavg_at_end": load},
              "steps": rows}
    print("\nmatmul kernel GFLOP/s (mlpc on 2 threads vs numpy sgemm, same process):", flush=True)
    report["gemm"] = gemm_gflops([(1024, 1024, 1024), (128, 784, 256)], 5)
    for g in report["gemm"]:
        print(f"  {g['shape']:16s} mlpc {g['mlpc_gflops']:7.1f}  numpy {g['numpy_gflops']:7.1f}  "
              f"({g['mlpc_gflops'] / g['numpy_gflops'] * 100:.0f}%)  threads={g['threads']}")
    print("\nMNIST epoch (784-256-256-10, Adam, batch 128, 468 full batches), seconds:", flush=True)
    report["mnist_epoch_s"] = mnist_epoch(frameworks, threads)
    for fw, v in report["mnist_epoch_s"].items():
        print(f"  {fw:8s} {v:.3f}" if v else f"  {fw:8s} n/a")
    print("\ncompile time of 784-256-256-10 + Adam (fresh processes):", flush=True)
    report["compile"] = compile_times()
    for k, v in report["compile"].items():
        print(f"  {k:7s} mlpc.compile {v['mlpc.compile_s'] * 1e3:7.1f} ms, backend lower "
              f"{v['backend_lower_s'] * 1e3:7.1f} ms, from cache: {v['from_cache']}")
    print(f"\nload average at end: {load}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
