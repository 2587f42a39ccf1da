"""bf16 training-step benchmark: mlpc fp32 vs mlpc bf16 (llvm backend) vs PyTorch eager fp32 and bf16 autocast.

Full Adam step (forward, mean softmax cross-entropy, backward, update, loss read back) of ReLU MLPs
784-1024-1024-10 and 784-256-256-10 at batch 128 and 1024. The steps alternate in rounds inside one process,
each round gives a median step time; the table reports the median over rounds with [min-max], and the
ratios of medians: bf16's speed-up over mlpc fp32 and over PyTorch's bf16 autocast (torch.autocast("cpu",
torch.bfloat16): matmuls in bf16 with fp32 weights, as mlpc's bf16). The llvm bf16 kernels use VDPBF16PS when
the CPU has AVX512-BF16 (the JSON says which); `MLPC_DISABLE_CPU_FEATURES=avx512bf16` measures the fallback.

A full run writes benchmarks/results/bf16_step.{json,txt}; --quick (784-256-256-10 and batch 128 only,
2 rounds) writes benchmarks/results/quick/ (ignored by git) and never overwrites a committed file.

    python benchmarks/bf16_step.py [--quick] [--rounds N] [--no-torch] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.cpu_step import RESULTS, _tracked_by_git, fmt, spread  # noqa: E402

MODELS = {"784-1024-1024-10": [784, 1024, 1024, 10], "784-256-256-10": [784, 256, 256, 10]}
BATCHES = [128, 1024]
ROUNDS, BUDGET = 5, 1.0  # a full run's rounds; seconds of steps per framework per round
LR = 1e-3
Step = Callable[[np.ndarray, np.ndarray], float]


def make_mlpc(sizes: list[int], batch: int, precision: str) -> Step:
    import mlpc
    from mlpc import nn, optim

    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    tr = mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), optim.Adam(lr=LR), batch_size=batch,
                      backend="llvm", precision=precision)
    return tr.step


def make_torch(sizes: list[int], threads: int, autocast: bool) -> Step | None:
    try:
        import torch
    except ImportError:
        return None
    from benchmarks.peers import _torch_model

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    model, opt = _torch_model(sizes, "adam", LR)
    lossf = torch.nn.CrossEntropyLoss()

    def step(x: np.ndarray, y: np.ndarray) -> float:
        opt.zero_grad(set_to_none=True)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = lossf(model(xt), yt)
        else:
            loss = lossf(model(xt), yt)
        loss.backward()
        opt.step()
        return float(loss.item())
    return step


def bench(sizes: list[int], batch: int, threads: int, rounds: int, budget: float, torch_too: bool
          ) -> dict[str, dict | None]:
    rng = np.random.default_rng(batch)
    xs = [rng.standard_normal((batch, sizes[0])).astype(np.float32) for _ in range(16)]
    ys = [rng.integers(0, sizes[-1], batch).astype(np.int32) for _ in range(16)]
    steps: dict[str, Step | None] = {"mlpc fp32": make_mlpc(sizes, batch, "fp32"),
                                     "mlpc bf16": make_mlpc(sizes, batch, "bf16")}
    if torch_too:
        steps["torch fp32"] = make_torch(sizes, threads, False)
        steps["torch bf16 autocast"] = make_torch(sizes, threads, True)
    per: dict[str, list[float]] = {k: [] for k in steps}
    for step in steps.values():  # warm up (and compile) outside the timed rounds
        if step is not None:
            for i in range(3):
                step(xs[i], ys[i])
    for r in range(rounds):
        for name, step in steps.items():
            if step is None:
                continue
            ts: list[float] = []
            t_end = time.perf_counter() + budget
            i = r
            while time.perf_counter() < t_end or len(ts) < 3:
                t0 = time.perf_counter()
                step(xs[i % 16], ys[i % 16])
                ts.append(time.perf_counter() - t0)
                i += 1
            per[name].append(1e6 * statistics.median(ts))
    return {k: (spread(v) if v else None) for k, v in per.items()}


def ratio(a: dict | None, b: dict | None) -> float | None:
    return None if a is None or b is None else a["median"] / b["median"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="784-256-256-10 at batch 128, 2 rounds")
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--budget", type=float, default=BUDGET, help="seconds per framework per round")
    ap.add_argument("--no-torch", action="store_true", help="mlpc only")
    ap.add_argument("--json", default=None, help="output path (default benchmarks/results/bf16_step.json, or "
                                                 "benchmarks/results/quick/ for a partial run)")
    args = ap.parse_args(argv)
    from codegen.llvm.target import host_target

    rounds = 2 if args.quick else args.rounds
    partial = args.quick or args.no_torch or rounds < ROUNDS or args.budget < BUDGET
    path = args.json or os.path.join(RESULTS, "quick" if partial else "", "bf16_step.json")
    if partial and _tracked_by_git(path):
        raise SystemExit(f"bf16_step.py: refusing to overwrite {path} (tracked by git) with a partial run")
    host = host_target()
    models = {"784-256-256-10": MODELS["784-256-256-10"]} if args.quick else MODELS
    batches = [128] if args.quick else BATCHES
    rows = []
    header = (f"{'model':<18}{'batch':>6}  {'mlpc fp32 us':>22}  {'mlpc bf16 us':>22}  {'torch fp32 us':>22}  "
              f"{'torch bf16 autocast us':>24}  {'bf16/fp32':>9}  {'vs autocast':>11}")
    print(f"# {host.cpu}, {host.lanes} f32 lanes, {host.threads} thread(s), bf16 kernels: "
          f"{'VDPBF16PS' if host.bf16_native else 'widened FMA fallback'}")
    print(header)
    for mname, sizes in models.items():
        for batch in batches:
            res = bench(sizes, batch, host.threads, rounds, args.budget, not args.no_torch)
            speed = ratio(res["mlpc fp32"], res["mlpc bf16"])
            vs_torch = ratio(res.get("torch bf16 autocast"), res["mlpc bf16"])
            rows.append({"model": mname, "batch": batch, "us": res, "bf16_speedup_over_fp32": speed,
                         "bf16_speedup_over_torch_autocast": vs_torch})
            print(f"{mname:<18}{batch:>6}  {fmt(res['mlpc fp32']):>22}  {fmt(res['mlpc bf16']):>22}  "
                  f"{fmt(res.get('torch fp32')):>22}  {fmt(res.get('torch bf16 autocast')):>24}  "
                  f"{'n/a' if speed is None else f'{speed:.2f}x':>9}  "
                  f"{'n/a' if vs_torch is None else f'{vs_torch:.2f}x':>11}", flush=True)
    out = {"host": {"cpu": host.cpu, "lanes": host.lanes, "threads": host.threads, "bf16_native": host.bf16_native,
                    "machine": platform.machine(), "load_average": os.getloadavg()[0]},
           "rounds": rounds, "budget_s": args.budget, "partial": partial, "rows": rows}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
