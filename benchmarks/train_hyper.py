"""Cost of gradient clipping per step, and of changing the learning rate between steps (llvm backend).

Clipping: 784-256-256-10 ReLU MLP, Adam, batch 128 and 1024; trainers with and without
`clip_grad_norm=1.0` alternate in rounds inside one process on the same rotating random batches; the
reported time is the lowest of the rounds' median step times, and the overhead is their ratio.
Changing lr: the same step with `trainer.lr = ...` (and a StepLR.step()) before every step, against
steps with a fixed lr, plus the number of graphs lowered during that run (0: no recompile) and, for
scale, what one recompile (mlpc.compile with the new lr) costs, as a schedule paid per change before
hyperparameters became runtime inputs.

    python benchmarks/train_hyper.py [--quick] [--json PATH]
    (default JSON: benchmarks/results/train_hyper.json; --quick writes train_hyper_quick.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mlpc  # noqa: E402
from benchmarks.cpu_step import time_round as median_step  # noqa: E402
from mlpc import nn, optim  # noqa: E402
from mlpc.optim import lr_scheduler  # noqa: E402

SIZES = (784, 256, 256, 10)


def make(batch: int, clip: float | None = None) -> mlpc.Trainer:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    return mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=batch,
                        backend="llvm", clip_grad_norm=clip)


def data(batch: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(batch)
    return ([rng.standard_normal((batch, SIZES[0])).astype(np.float32) for _ in range(16)],
            [rng.integers(0, SIZES[-1], batch).astype(np.int32) for _ in range(16)])


def alternate(trainers: dict[str, object], xs, ys, rounds: int, steps: int) -> dict[str, float]:
    """Lowest median step time (s) of each callable over rounds that alternate their order."""
    for step in trainers.values():
        median_step(step, xs, ys, 3, 0)  # warm up
    best = {k: float("inf") for k in trainers}
    names = list(trainers)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            best[name] = min(best[name], median_step(trainers[name], xs, ys, steps, r * steps))
    return best


def kernel_sum(trainer: mlpc.Trainer, xs: list[np.ndarray], ys: list[np.ndarray], repeats: int) -> float:
    """Sum over the step's kernels of their median time (s) from the llvm backend's cycle-counting
    build: less sensitive than wall-clock steps to other processes on a loaded machine."""
    compiled = trainer._compiled[("step", trainer.batch_size)]
    state = {k: np.array(trainer.backend.to_host(v), copy=True) for k, v in trainer._state.items()}
    return float(sum(compiled.profile(state, {"x": xs[0], "y": ys[0]}, repeats).values()))


def bench_clip(batch: int, rounds: int, steps: int) -> dict[str, float]:
    xs, ys = data(batch)
    plain, clipped = make(batch), make(batch, clip=1.0)
    best = alternate({"plain": plain.step, "clip": clipped.step}, xs, ys, rounds, steps)
    kp = min(kernel_sum(plain, xs, ys, steps) for _ in range(rounds // 2 + 1))
    kc = min(kernel_sum(clipped, xs, ys, steps) for _ in range(rounds // 2 + 1))
    return {"batch": batch, "plain_ms": best["plain"] * 1e3, "clip_ms": best["clip"] * 1e3,
            "overhead_pct": 100 * (best["clip"] / best["plain"] - 1),
            "kernels_plain_ms": kp * 1e3, "kernels_clip_ms": kc * 1e3, "kernels_overhead_pct": 100 * (kc / kp - 1)}


def bench_lr(batch: int, rounds: int, steps: int) -> dict[str, float]:
    xs, ys = data(batch)
    fixed, changing = make(batch), make(batch)
    sched = lr_scheduler.StepLR(changing, step_size=1, gamma=0.999)  # a new lr before every step

    def step_with_new_lr(x: np.ndarray, y: np.ndarray) -> float:
        sched.step()
        return changing.step(x, y)
    lowered = changing.compiles
    best = alternate({"fixed": fixed.step, "changing": step_with_new_lr}, xs, ys, rounds, steps)
    recompiles = changing.compiles - lowered
    t = time.perf_counter()
    n = 200
    for i in range(n):
        changing.lr = 1e-3 * (1 + i % 7)
    set_us = (time.perf_counter() - t) / n * 1e6
    # what one lr change cost when lr was a compile-time constant: a new graph, so a full compile
    # (the compile cache is switched off: it would have missed on the new lr anyway)
    old = os.environ.get("MLPC_CACHE_DIR")
    os.environ["MLPC_CACHE_DIR"] = "off"
    try:
        t = time.perf_counter()
        make(batch)
        recompile_s = time.perf_counter() - t
    finally:
        if old is None:
            del os.environ["MLPC_CACHE_DIR"]
        else:
            os.environ["MLPC_CACHE_DIR"] = old
    return {"batch": batch, "fixed_ms": best["fixed"] * 1e3, "changing_ms": best["changing"] * 1e3,
            "overhead_pct": 100 * (best["changing"] / best["fixed"] - 1), "recompiles": recompiles,
            "set_lr_us": set_us, "one_compile_s": recompile_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps (writes *_quick.json)")
    ap.add_argument("--json", default=None, help="where to write the results")
    args = ap.parse_args()
    path = args.json or f"benchmarks/results/train_hyper{'_quick' if args.quick else ''}.json"
    rounds, steps = (3, 8) if args.quick else (7, 30)
    load = os.getloadavg()
    clip = [bench_clip(b, rounds, steps) for b in (128, 1024)]
    lr = [bench_lr(b, rounds, steps) for b in (128, 1024)]
    busy = load[0] > 0.5 * (os.cpu_count() or 1)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, load average {load[0]:.1f} "
          f"({'LOADED: other jobs share the cores, times are noisy' if busy else 'quiet'})")
    print("\ngradient clipping (784-256-256-10 Adam, llvm), clip_grad_norm=1.0")
    print("(wall: lowest median step time of alternating rounds; kernels: sum of per-kernel medians, cycle counts)")
    print(f"{'batch':>5} {'plain ms':>9} {'clip ms':>9} {'overhead':>9} {'kern plain':>10} {'kern clip':>10} "
          f"{'overhead':>9}")
    for r in clip:
        print(f"{r['batch']:>5} {r['plain_ms']:9.3f} {r['clip_ms']:9.3f} {r['overhead_pct']:8.1f}% "
              f"{r['kernels_plain_ms']:10.3f} {r['kernels_clip_ms']:10.3f} {r['kernels_overhead_pct']:8.1f}%")
    print("\nchanging lr before every step (StepLR.step() + the step) vs a fixed lr")
    print(f"{'batch':>5} {'fixed ms':>9} {'changing ms':>11} {'overhead':>9} {'recompiles':>10} {'set lr us':>9} "
          f"{'1 compile s':>11}")
    for r in lr:
        print(f"{r['batch']:>5} {r['fixed_ms']:9.3f} {r['changing_ms']:11.3f} {r['overhead_pct']:8.1f}% "
              f"{r['recompiles']:>10} {r['set_lr_us']:9.1f} {r['one_compile_s']:11.3f}")
    with open(path, "w") as f:
        json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "loadavg": load, "quick": args.quick,
                   "clip": clip, "lr_change": lr}, f, indent=1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
