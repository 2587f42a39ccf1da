"""Compile time of the llvm backend against depth: cold (empty compile cache) and cached, with the time split.

Models: ReLU MLPs of depth 3, 10 and 50 at width 100 (784 -> 100 -> ... -> 10, the lecture's deep MLP) and
784-256-256-10; Adam, batch 128. Each measurement is a fresh process (`mlpc.compile` timed after the imports
of mlpc and the llvm backend): per repeat a new temporary MLPC_CACHE_DIR, one cold process, then one cached
process on the same directory. Reported: wall and process CPU seconds of `mlpc.compile` (median [min-max]),
and the cold compile's split: front end (tracing, autodiff, optimizer, simplify: everything before the
backend), fusion + memory plan, kernel IR emission (Python, llvmlite), IR printing, LLVM parse, LLVM
optimization, LLVM code generation, loading; plus the kernel count and the distinct kernel functions (kernels
of one signature share one), and the seconds the on-demand `asm` stage takes when it is read (not part of
compiling). On a loaded machine CPU seconds are the better guide to a quiet machine's wall time.

Python bytecode of the library is written once before timing (PYTHONDONTWRITEBYTECODE is dropped for the
children), so cold means "no compiled step", not "no .pyc".

A full run writes benchmarks/results/compile_time.{json,txt}; --quick (one repeat) or fewer repeats write
benchmarks/results/quick/ and never overwrite a file git tracks.

    python benchmarks/compile_time.py [--quick] [--repeats N] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.cpu_step import _tracked_by_git, fmt, spread  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
MODELS = {"depth-3": [784, 100, 100, 10], "depth-10": [784] + [100] * 9 + [10],
          "depth-50": [784] + [100] * 49 + [10], "784-256-256-10": [784, 256, 256, 10]}
REPEATS = 5
PHASES = ["front_end", "fuse_and_plan", "ir_emit", "ir_print", "llvm_parse", "llvm_optimize", "llvm_codegen",
          "load"]

CHILD = r"""
import json, sys, time
import mlpc
from mlpc import nn, optim
import runtime.llvm_backend
sizes = json.loads(sys.argv[1])
layers = []
for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    layers.append(nn.Linear(a, b))
    if i + 2 < len(sizes):
        layers.append(nn.ReLU())
model = nn.Sequential(*layers)
w, c = time.perf_counter(), time.process_time()
tr = mlpc.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=128, backend="llvm")
w, c = time.perf_counter() - w, time.process_time() - c
step = tr._compiled[("step", 128)]
listing = step.meta["listing"]["kernels"]
out = {"wall_s": w, "cpu_s": c, "backend_s": step.compile_seconds, "from_cache": step.from_cache,
       "seconds": dict(step.seconds, front_end=w - step.compile_seconds), "kernels": len(listing),
       "kernel_functions": len({k[2] for k in listing}), "threads": step.meta["threads"]}
if sys.argv[2] == "asm":
    t = time.perf_counter()
    out["asm_chars"] = len(tr.ir("asm"))
    out["asm_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def child_env(cache: str, threads: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(MLPC_CACHE_DIR=cache, PYTHONPATH=ROOT)
    if threads:
        env["MLPC_NUM_THREADS"] = threads
    return env


def run_child(sizes: list[int], env: dict[str, str], asm: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sizes), "asm" if asm else "-"], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"compile_time.py: the child process failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(sizes: list[int], repeats: int, threads: str | None) -> dict:
    """Cold and cached runs, `repeats` each (a fresh cache directory per repeat)."""
    runs: dict[str, list[dict]] = {"cold": [], "cached": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="mlpc-cache-") as d:
            env = child_env(d, threads)
            runs["cold"].append(run_child(sizes, env, asm=True))
            runs["cached"].append(run_child(sizes, env, asm=False))
    out: dict = {}
    for kind, rs in runs.items():
        if any(r["from_cache"] != (kind == "cached") for r in rs):
            raise SystemExit(f"compile_time.py: a {kind} run was {'' if kind == 'cold' else 'not '}served by the cache")
        out[kind] = {"wall_s": spread([r["wall_s"] for r in rs]), "cpu_s": spread([r["cpu_s"] for r in rs]),
                     "seconds": {p: spread([r["seconds"].get(p, 0.0) for r in rs]) for p in sorted(rs[0]["seconds"])}}
    cold = runs["cold"][0]
    out.update(kernels=cold["kernels"], kernel_functions=cold["kernel_functions"], threads=cold["threads"],
               asm_s=spread([r["asm_s"] for r in runs["cold"]]))
    return out


def output_path(json_arg: str | None, partial: bool) -> str:
    path = json_arg or os.path.join(RESULTS, "quick" if partial else "", "compile_time.json")
    if partial and _tracked_by_git(path):
        raise SystemExit(f"compile_time.py: refusing to overwrite {path} (tracked by git) with a quick or partial "
                         f"run; omit --json (writes {os.path.join(RESULTS, 'quick')}) or run the full benchmark")
    return path


def table(results: dict[str, dict]) -> list[str]:
    ms = 1e3
    lines = ["compile time, ms: median [min-max] over fresh processes; wall (cpu)",
             f"{'model':16s} {'kernels':>8s} {'functions':>9s} {'cold wall':>24s} {'cold cpu':>24s} "
             f"{'cached wall':>20s} {'asm on demand':>20s}"]

    def f(s: dict) -> str:
        return fmt({k: v * ms if k != "n" else v for k, v in s.items()}, 0)
    for name, r in results.items():
        lines.append(f"{name:16s} {r['kernels']:8d} {r['kernel_functions']:9d} {f(r['cold']['wall_s']):>24s} "
                     f"{f(r['cold']['cpu_s']):>24s} {f(r['cached']['wall_s']):>20s} {f(r['asm_s']):>20s}")
    lines += ["", "cold compile split, ms (median):",
              f"{'model':16s} " + " ".join(f"{p:>13s}" for p in PHASES)]
    for name, r in results.items():
        sec = r["cold"]["seconds"]
        lines.append(f"{name:16s} " + " ".join(f"{sec[p]['median'] * ms:13.0f}" if p in sec else f"{'-':>13s}"
                                               for p in PHASES))
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat per model (writes results/quick/)")
    ap.add_argument("--repeats", type=int, default=REPEATS, help=f"fresh-process repeats (default {REPEATS})")
    ap.add_argument("--threads", default=None, help="MLPC_NUM_THREADS for the children (default: inherited/auto)")
    ap.add_argument("--json", default=None, help="output JSON (a .txt with the table goes beside it)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    repeats = 1 if args.quick else args.repeats
    partial = repeats < REPEATS
    path = output_path(args.json, partial)
    with tempfile.TemporaryDirectory(prefix="mlpc-cache-") as d:  # write the library's .pyc files once
        run_child(MODELS["depth-3"], child_env(d, args.threads), asm=True)
    results = {}
    for name, sizes in MODELS.items():
        results[name] = measure(sizes, repeats, args.threads)
        print(f"{name}: cold {results[name]['cold']['wall_s']['median']:.3f} s", flush=True)
    lines = table(results)
    print("\n".join(lines))
    from codegen.llvm.target import host_target

    tgt = host_target()
    report = {"machine": {"cpu": tgt.cpu, "lanes": tgt.lanes, "python": platform.python_version(),
                          "loadavg_at_end": os.getloadavg()},
              "partial": partial, "repeats": repeats, "batch": 128, "optimizer": "adam", "models": MODELS,
              "results": results}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)
    with open(os.path.splitext(path)[0] + ".txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
