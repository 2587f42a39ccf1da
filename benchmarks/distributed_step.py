"""Data-parallel benchmark: one process (1 and 2 threads) against 2 MPI ranks of 1 thread each.

784-256-256-10 and 784-1024-1024-10 ReLU, Adam, global batch 128 and 1024, llvm backend. Reports steps/s,
samples/s, the measured Allreduce time per step and the cost model's prediction beside it:
    step(K) = compute(1 rank) * rows_per_rank / batch + allreduce(bytes, K)
    allreduce(bytes, K) = 2 (K-1)/K * bytes / bandwidth + 2 log2(K) * latency      (ring/recursive halving)
with bandwidth and latency measured here with a bare MPI Allreduce of the same bytes between the ranks.
Also the bound on overlapping the Allreduce with the backward pass (nonblocking Iallreduce): the local
half then the Allreduce, against an Iallreduce of a same-sized buffer running across the whole local half.

    python benchmarks/distributed_step.py [--quick] [--json PATH]

A --quick run writes only under benchmarks/results/quick/ (ignored by git), never the committed results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODELS = {"784-256-256-10": [784, 256, 256, 10], "784-1024-1024-10": [784, 1024, 1024, 10]}
BATCHES = [128, 1024]


def build(sizes: list[int], batch: int, distributed: bool):  # -> Trainer
    import mlpc
    from mlpc import nn, optim

    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i + 2 < len(sizes) else [])
    return mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), optim.Adam(lr=1e-4), batch_size=batch,
                        backend="llvm", distributed=distributed)


def measure(sizes: list[int], batch: int, steps: int, distributed: bool) -> dict:
    """Median step time on this process's rows (every rank runs the same loop)."""
    tr = build(sizes, batch, distributed)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((batch, sizes[0])).astype(np.float32) for _ in range(8)]
    ys = [rng.integers(0, sizes[-1], batch).astype(np.int32) for _ in range(8)]
    shard = (lambda a: a[slice(*tr.comm.shard(batch))]) if tr.comm is not None else (lambda a: a)
    xs, ys = [shard(x) for x in xs], [shard(y) for y in ys]
    compiled = tr._compiled_for("step", len(xs[0]))
    times, reduce_times = [], []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        tr.step(xs[i % 8], ys[i % 8])
        if i >= 3:
            times.append(time.perf_counter() - t0)
            reduce_times.append(getattr(compiled, "allreduce_seconds", 0.0))
    out = {"step_s": statistics.median(times), "allreduce_s": statistics.median(reduce_times),
           "grad_bytes": int(sum(p.nbytes for p in tr.parameters().values()))}
    if hasattr(compiled, "reduced_bytes"):  # the bucket MPI reduces: loss + gradients (+ alignment) + row count
        out["reduced_bytes"] = compiled.reduced_bytes
        out["in_arena"] = bool(compiled.in_arena)
    if tr.comm is not None and getattr(compiled, "in_arena", False):
        out.update(overlap_bound(tr, compiled, {"x": xs[0], "y": ys[0]}, steps))
    if tr.comm is not None:
        out["allreduce_s_max"] = tr.comm.comm.allreduce(out["allreduce_s"], op=_mpi().MAX)
        out["step_s"] = tr.comm.comm.allreduce(out["step_s"], op=_mpi().MAX)
    return out


def overlap_bound(tr, compiled, data: dict, steps: int) -> dict:  # noqa: ANN001
    """What overlapping the Allreduce with the backward pass could gain at best: the local half followed
    by the Allreduce of its bucket, against an Iallreduce of a same-sized buffer started before the local
    half and waited for after it (the most any split of the bucket could overlap). Max over ranks."""
    MPI = _mpi()
    comm, bucket = tr.comm.comm, compiled.bucket
    spare = np.zeros_like(bucket)

    def sequential() -> None:
        compiled.local.run_in_arena(tr._state, data)
        comm.Allreduce(MPI.IN_PLACE, bucket, op=MPI.SUM)

    def overlapped() -> None:
        req = comm.Iallreduce(MPI.IN_PLACE, spare, op=MPI.SUM)
        compiled.local.run_in_arena(tr._state, data)
        req.Wait()

    out = {}
    for name, fn in (("local_s", lambda: compiled.local.run_in_arena(tr._state, data)),
                     ("sequential_s", sequential), ("overlap_bound_s", overlapped)):
        ts = []
        for _ in range(max(5, steps // 2)):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = comm.allreduce(statistics.median(ts), op=MPI.MAX)
    return out


def _mpi():  # noqa: ANN202
    from mpi4py import MPI

    return MPI


def link(nbytes: int, repeats: int = 30) -> float:
    """Median seconds of a bare in-place Allreduce of nbytes between the ranks of COMM_WORLD."""
    MPI = _mpi()
    buf = np.zeros(nbytes // 4, np.float32)
    ts = []
    for _ in range(repeats):
        MPI.COMM_WORLD.Barrier()
        t0 = time.perf_counter()
        MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def rank_main(steps: int) -> None:
    """Runs under mpiexec: every configuration, printing one JSON line from rank 0."""
    results = []
    for name, sizes in MODELS.items():
        for batch in BATCHES:
            r = measure(sizes, batch, steps, True)
            r["bare_allreduce_s"] = link(r.get("reduced_bytes", r["grad_bytes"]))
            results.append({"model": name, "batch": batch, **r})
    if _mpi().COMM_WORLD.rank == 0:
        print("RESULTS " + json.dumps(results), flush=True)


def single(threads: int, steps: int) -> list[dict]:
    code = (f"import sys, json; sys.path.insert(0, {ROOT!r}); from benchmarks.distributed_step import *; "
            f"print('RESULTS ' + json.dumps([{{'model': n, 'batch': b, **measure(s, b, {steps}, False)}} "
            f"for n, s in MODELS.items() for b in BATCHES]))")
    return _run([sys.executable, "-c", code], threads)


def _run(cmd: list[str], threads: int) -> list[dict]:
    env = dict(os.environ, MLPC_NUM_THREADS=str(threads), PYTHONPATH=ROOT)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


def table(one1: list[dict], one2: list[dict], two: list[dict]) -> tuple[str, list[dict]]:
    rows = []
    lines = ["| model | batch | steps/s: 1 proc x 1 thr | 1 proc x 2 thr | 2 ranks x 1 thr | samples/s: 1 x 1 | "
             "1 x 2 | 2 ranks | 2 ranks / (1 x 2 thr) | allreduce ms/step (measured) | predicted step ms "
             "(model) | measured step ms (2 ranks) | local half + Allreduce ms | with Iallreduce overlapped ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a, b, c in zip(one1, one2, two):
        predicted = a["step_s"] * 0.5 + c["bare_allreduce_s"]  # compute / K + allreduce(bytes, K = 2)
        batch = a["batch"]
        row = {"model": a["model"], "batch": batch, "one_rank_1_thread_step_s": a["step_s"],
               "one_rank_2_threads_step_s": b["step_s"], "two_ranks_step_s": c["step_s"],
               "samples_per_s": {"one_rank_1_thread": batch / a["step_s"], "one_rank_2_threads": batch / b["step_s"],
                                 "two_ranks": batch / c["step_s"]},
               "two_ranks_vs_2_threads": b["step_s"] / c["step_s"],
               "allreduce_s": c["allreduce_s_max"], "bare_allreduce_s": c["bare_allreduce_s"],
               "predicted_two_ranks_step_s": predicted, "grad_bytes": c["grad_bytes"],
               "reduced_bytes": c.get("reduced_bytes", c["grad_bytes"]),
               "local_half_s": c.get("local_s"), "local_then_allreduce_s": c.get("sequential_s"),
               "iallreduce_overlap_bound_s": c.get("overlap_bound_s")}
        rows.append(row)
        lines.append(f"| {a['model']} | {batch} | {1 / a['step_s']:.0f} | {1 / b['step_s']:.0f} | "
                     f"{1 / c['step_s']:.0f} | {batch / a['step_s']:.0f} | {batch / b['step_s']:.0f} | "
                     f"{batch / c['step_s']:.0f} | {b['step_s'] / c['step_s']:.2f} | "
                     f"{1e3 * c['allreduce_s_max']:.3f} | {1e3 * predicted:.3f} | {1e3 * c['step_s']:.3f} | "
                     f"{_ms(c.get('sequential_s'))} | {_ms(c.get('overlap_bound_s'))} |")
    return "\n".join(lines), rows


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps; writes under benchmarks/results/quick/")
    ap.add_argument("--json", default=None, help="where to write the JSON (default benchmarks/results/)")
    ap.add_argument("--rank-main", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_main is not None:
        rank_main(args.rank_main)
        return
    out_dir = os.path.join(ROOT, "benchmarks", "results", "quick" if args.quick else "")
    path = os.path.abspath(args.json or os.path.join(out_dir, "distributed_step.json"))
    if args.quick and not path.startswith(os.path.join(ROOT, "benchmarks", "results", "quick") + os.sep):
        ap.error(f"--quick writes only under benchmarks/results/quick/, not {path}")
    steps = 10 if args.quick else 60
    mpiexec = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    one1, one2 = single(1, steps), single(2, steps)
    two = _run([mpiexec, "-n", "2", sys.executable, os.path.abspath(__file__), "--rank-main", str(steps)], 1)
    text, rows = table(one1, one2, two)
    print(text)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"steps": steps, "load_average": os.getloadavg(), "rows": rows}, f, indent=1)
    with open(path[:-5] + ".md", "w") as f:
        f.write(text + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
