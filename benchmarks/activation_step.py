"""Activation training-step benchmark: mlpc (llvm backend) vs JAX jit, one full Adam step per activation.

Configurations: 784-1024-1024-10 at batch 256 with each hidden activation (relu, sigmoid, tanh, gelu-tanh,
gelu-erf, silu, elu, softplus), and the depth-20 width-256 Tanh MLP (784, twenty hidden layers of 256, 10) at
batch 256. Full step = forward, mean softmax cross-entropy, backward, Adam update, loss read back. mlpc and
JAX train on the same rotating random batches and alternate in rounds inside one process; each round gives a
median step time; the table shows the median over rounds [min-max], the ratio JAX / mlpc and mlpc's step
relative to its own ReLU step.

A full run writes benchmarks/results/activation_step.{json,txt}; --quick (or fewer rounds, a smaller budget)
writes benchmarks/results/quick/ (ignored by git) and refuses to overwrite a file git tracks.

    python benchmarks/activation_step.py [--quick] [--rounds N] [--budget S] [--only NAME ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import peers  # noqa: E402
from benchmarks.cpu_step import RESULTS, _tracked_by_git, fmt, spread, time_round  # noqa: E402

WIDE = [784, 1024, 1024, 10]
DEEP = [784] + [256] * 20 + [10]
BATCH, LR = 256, 1e-3
CONFIGS = {f"784-1024-1024-10 {a}": (WIDE, a) for a in peers.JAX_ACTIVATIONS}
CONFIGS["depth20-w256 tanh"] = (DEEP, "tanh")
ROUNDS, BUDGET = 5, 3.0  # a full run's defaults


def make_mlpc(sizes: list[int], activation: str):
    import mlpc
    from mlpc import nn, optim

    act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu-tanh": lambda: nn.GELU("tanh"),
           "gelu-erf": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "softplus": nn.Softplus}[activation]
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(act())
    tr = mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), optim.Adam(lr=LR), batch_size=BATCH,
                      backend="llvm")
    return tr.step


def bench(sizes: list[int], activation: str, rounds: int, budget: float, jax: bool) -> dict[str, dict | None]:
    """Microseconds per step, median [min-max] over rounds, for mlpc and (if available) JAX jit."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((BATCH, sizes[0])).astype(np.float32) for _ in range(16)]
    ys = [rng.integers(0, sizes[-1], BATCH).astype(np.int32) for _ in range(16)]
    steps = {"mlpc": make_mlpc(sizes, activation)}
    if jax:
        j = peers.make_jax(sizes, "adam", LR, act=activation)
        if j is not None:
            steps["jax"] = j
    per_step = {}
    for name, s in steps.items():  # warm up (first calls compile), size the rounds
        for i in range(3):
            s(xs[i], ys[i])
        per_step[name] = time_round(s, xs, ys, 3, 3)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(rounds):
        for name, s in steps.items():
            n = max(3, min(500, int(budget / rounds / max(per_step[name], 1e-6))))
            times[name].append(time_round(s, xs, ys, n, r * 5) * 1e6)
    return {"mlpc": spread(times["mlpc"]), "jax": spread(times["jax"]) if "jax" in times else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, 0.5 s per framework per configuration")
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--budget", type=float, default=BUDGET, help="seconds per framework per configuration")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), help="these configurations only (partial run)")
    ap.add_argument("--no-jax", action="store_true", help="mlpc only (partial run)")
    ap.add_argument("--json", default=None, help="output JSON (the table goes beside it as .txt)")
    args = ap.parse_args(argv)
    rounds, budget = (2, 0.5) if args.quick else (args.rounds, args.budget)
    if rounds < 1 or not budget > 0:
        ap.error("--rounds must be >= 1 and --budget > 0")
    partial = args.quick or rounds < ROUNDS or budget < BUDGET or bool(args.only) or args.no_jax
    path = args.json or os.path.join(RESULTS, "quick" if partial else "", "activation_step.json")
    if partial and _tracked_by_git(path):
        raise SystemExit(f"activation_step.py: refusing to overwrite {path} (tracked by git) with a partial run")
    from codegen.llvm.target import host_target

    tgt = host_target()
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"Adam step, batch {BATCH}, microseconds, median [min-max] of {rounds} rounds; jax/mlpc = JAX median / "
        f"mlpc median; vs relu = mlpc / mlpc's relu step (threads={tgt.threads}, {tgt.cpu}, {tgt.lanes} lanes)")
    rows = []
    relu = None
    for name in args.only or list(CONFIGS):
        sizes, act = CONFIGS[name]
        res = bench(sizes, act, rounds, budget, not args.no_jax)
        ours, theirs = res["mlpc"], res["jax"]
        if name.endswith(" relu"):
            relu = ours["median"] if ours else None
        ratio = f"{theirs['median'] / ours['median']:.2f}x" if ours and theirs else "n/a"
        rel = f"{ours['median'] / relu:.2f}" if ours and relu and name.startswith("784-") else "-"
        rows.append({"config": name, "sizes": sizes, "activation": act, "us_per_step": res,
                     "jax_over_mlpc": theirs["median"] / ours["median"] if ours and theirs else None})
        say(f"{name:28s} mlpc {fmt(ours)} | jax {fmt(theirs)} | jax/mlpc {ratio} | vs relu {rel}")
    load = os.getloadavg()
    say(f"\nload average at end: {load}")
    report = {"machine": {"cpu": tgt.cpu, "lanes": tgt.lanes, "threads": tgt.threads,
                          "python": platform.python_version(), "loadavg_at_end": load},
              "partial": partial, "rounds": rounds, "budget_s": budget, "batch": BATCH, "steps": rows}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.splitext(path)[0] + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
