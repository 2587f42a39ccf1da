"""Large-batch correctness on the GPU: whole training steps of 784-256-256-10 at 2^15 rows (the
256-row tf32 tiles and wide split-K only appear at such sizes) against the NumPy interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from runtime.triton_check import run_reference, run_triton, select_device  # noqa: E402

select_device()

from tests.handbuilt import mlp_step_graph, random_inputs  # noqa: E402

TOL = {"tf32": 3e-3, "bf16": 3e-2, "ieee": 1e-5}  # |out - ref| / |ref| (2-norms), per tensor

if __name__ == "__main__":
    batch = 2 ** int(sys.argv[1]) if len(sys.argv) > 1 else 2 ** 15
    failed = False
    for sizes, loss in (([784, 256, 256, 10], "sce"), ([32, 128, 128, 16], "mse")):
        g = mlp_step_graph(sizes, batch, loss, bias=loss == "sce")
        inp = random_inputs(g, seed=11, classes=sizes[-1])
        for precision in ("tf32", "bf16"):
            got, _ = run_triton(g, inp, precision, steps=2)
            want = run_reference(g, inp, steps=2)
            errors = {k: float(np.linalg.norm(np.asarray(got[k], np.float64).ravel() - want[k].ravel())
                               / max(np.linalg.norm(want[k].ravel()), 1e-30)) for k in want if k in got and k != "t"}
            worst = max(errors.values())
            ok = worst <= TOL[precision]
            failed |= not ok
            print(f"{sizes} batch {batch} {precision}: worst relative error {worst:.2e} "
                  f"({max(errors, key=errors.get)}) {'ok' if ok else 'FAIL'}", flush=True)
    raise SystemExit(1 if failed else 0)
