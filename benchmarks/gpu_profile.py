"""Per-kernel time of one mlpc training step on the GPU, plus a block-size sweep of its matmuls and
cuBLAS (torch.matmul) on the same shapes and layouts, so the slow kernels can be found without a
profiler. Prints tables, writes JSON.

    python benchmarks/gpu_profile.py --net mnist --batch 18 --precision tf32 --json prof.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gpu_step import NETS, bench, make_data, mlpc_step  # noqa: E402
from codegen.kernel_plan import MatmulKernel  # noqa: E402
from codegen.views import View  # noqa: E402

SWEEP = [(128, 128, 32, 8, 3), (128, 128, 32, 4, 4), (128, 256, 32, 8, 3), (64, 128, 32, 4, 4),
         (128, 64, 32, 4, 4), (128, 128, 64, 8, 3), (128, 128, 16, 8, 4), (256, 128, 32, 8, 3)]


def launch_fn(compiled: Any, la: Any, meta: dict | None = None, grid: tuple | None = None,
              warps: int | None = None, stages: int | None = None) -> Any:
    kern = compiled.kernels[compiled.launches.index(la)]
    args = [compiled._arg(a) for _, a in la.args]
    constexprs = {**la.constexprs, **(meta or {})}
    g = grid or la.grid
    w = warps or la.num_warps
    s = stages or la.num_stages
    return lambda: kern[g](*args, **constexprs, num_warps=w, num_stages=s)


def matmul_cost(k: MatmulKernel) -> tuple[float, float]:
    """(FLOP, minimum bytes) of one matmul kernel."""
    flop = 2.0 * k.m * k.n * k.k
    nbytes = 4.0 * (k.m * k.k + k.k * k.n + k.m * k.n * max(1, len(k.body.stores)))
    return flop, nbytes


def cublas_fn(k: MatmulKernel, compiled: Any, precision: str) -> Any:
    """torch.matmul on the kernel's own operand views (same strides, so the same layouts)."""
    def view(v: View) -> torch.Tensor:
        return torch.as_strided(compiled.bound[v.buf], v.shape, v.strides, v.offset)

    a, b = view(k.a), view(k.b)
    if precision == "bf16":
        a, b = a.bfloat16(), b.bfloat16()
    return lambda: torch.matmul(a, b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--net", default="mnist", choices=list(NETS))
    ap.add_argument("--batch", type=int, default=18, help="log2 batch size")
    ap.add_argument("--precision", default="tf32", choices=["tf32", "bf16"])
    ap.add_argument("--sweep", type=int, default=0, help="time other block sizes for the N slowest matmuls")
    ap.add_argument("--rep-ms", type=int, default=30)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    net = NETS[args.net]
    batch = 2 ** args.batch
    data = make_data(net, batch, "cuda" if torch.cuda.is_available() else "cpu", seed=1)
    step, _ = mlpc_step(net, batch, args.precision, data)
    for _ in range(3):
        step()
    compiled = _find_compiled(step)
    total = bench(step, args.rep_ms)
    rows = []
    t0 = time.perf_counter()
    pairs = list(zip(compiled.plan.kernels, compiled.launches, strict=True))
    for k, la in pairs:
        ms = bench(launch_fn(compiled, la), args.rep_ms)
        row: dict[str, Any] = {"kernel": la.name, "ms": ms, "grid": list(la.grid), "meta": la.constexprs,
                               "warps": la.num_warps, "stages": la.num_stages}
        if isinstance(k, MatmulKernel):
            flop, nbytes = matmul_cost(k)
            row.update(m=k.m, n=k.n, k=k.k, a_strides=list(k.a.strides), b_strides=list(k.b.strides),
                       tflops=flop / ms / 1e9, gbs=nbytes / ms / 1e6)
            row["cublas_ms"] = bench(cublas_fn(k, compiled, args.precision), args.rep_ms)
        rows.append(row)
    slow = sorted((r["ms"], i) for i, r in enumerate(rows) if "m" in r)[::-1][:args.sweep]
    for _, i in slow:
        k, la = pairs[i]
        row = rows[i]
        assert isinstance(k, MatmulKernel)
        best = (row["ms"], "planned")
        for bm, bn, bk, w, s in SWEEP:
            if (k.split_k > 1 or k.colsums) and bm != la.constexprs["BM"]:
                continue
            grid = (-(-k.m // bm) * -(-k.n // bn), k.split_k)
            try:
                t = bench(launch_fn(compiled, la, {"BM": bm, "BN": bn, "BK": bk}, grid, w, s), args.rep_ms)
            except Exception as e:  # out of shared memory and the like
                row.setdefault("sweep_errors", []).append(f"{bm},{bn},{bk},{w},{s}: {str(e)[:80]}")
                continue
            row.setdefault("sweep", []).append([bm, bn, bk, w, s, t])
            best = min(best, (t, f"{bm}x{bn}x{bk} w{w} s{s}"))
        row["best"] = best
    print(f"{args.net} batch 2^{args.batch} {args.precision}: step {total:.3f} ms (graph replay), "
          f"kernels sum {sum(r['ms'] for r in rows):.3f} ms; profiled in {time.perf_counter() - t0:.0f} s")
    for r in rows:
        extra = ""
        if "m" in r:
            extra = (f" {r['m']}x{r['n']}x{r['k']} A{r['a_strides']} B{r['b_strides']} {r['tflops']:.0f} TFLOP/s "
                     f"cublas {r['cublas_ms']:.3f} ms")
            if "best" in r:
                extra += f" best {r['best'][0]:.3f} ({r['best'][1]})"
        print(f"  {r['kernel']:8} {r['ms']:8.3f} ms grid={r['grid']} {r['meta']}{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps({"net": args.net, "batch": batch, "precision": args.precision,
                                               "step_ms": total, "kernels": rows}, indent=1, default=str))
    return 0


def _find_compiled(step: Any) -> Any:
    """The TritonCompiled object captured by mlpc_step's closure."""
    for cell in step.__closure__ or ():
        obj = cell.cell_contents
        if hasattr(obj, "launches") and hasattr(obj, "plan"):
            return obj
    raise RuntimeError("no compiled step in the closure")


if __name__ == "__main__":
    raise SystemExit(main())

