"""Programs the MPI tests start under `mpiexec`: each scenario prints one JSON line on rank 0."""

from __future__ import annotations

import json
import sys

import numpy as np

import mlpc
from mlpc import data_parallel, distributed, nn, optim
from mlpc.errors import MlpcError

IN, OUT = 13, 5


def model(hidden: int = 11, dropout: float = 0.0) -> nn.Module:
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(nn.Linear(IN, hidden), nn.Tanh(), *drop, nn.Linear(hidden, 9), nn.ReLU(), *drop,
                         nn.Linear(9, OUT))


def optimizer(name: str) -> optim.Optimizer:
    return optim.SGD(lr=0.05, momentum=0.9) if name == "sgd-momentum" else optim.Adam(lr=1e-2)


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, IN)).astype(np.float32), rng.integers(0, OUT, n).astype(np.int32)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-30))


def equal(backend: str, opt: str, batch: int, n: int, epochs: int, dropout: float = 0.0) -> dict:
    """Data-parallel steps against one process at the same global batch; identical params on all ranks.
    With dropout, each rank must draw the mask rows one process draws for the same rows."""
    comm = distributed.resolve(True)
    assert comm is not None
    x, y = data(n)
    dp = mlpc.compile(model(dropout=dropout), optimizer=optimizer(opt), batch_size=batch, backend=backend,
                      distributed=True)
    ref = mlpc.compile(model(dropout=dropout), optimizer=optimizer(opt), batch_size=batch, backend=backend)
    worst_loss = worst_param = 0.0
    steps = empty = 0
    for epoch in range(epochs):
        for (xs, ys), (xr, yr) in zip(dp.batches(x, y, seed=epoch), ref.batches(x, y, seed=epoch)):
            empty += int(len(xs) == 0)
            loss_dp, loss_ref = dp.step(xs, ys), ref.step(xr, yr)
            steps += 1
            worst_loss = max(worst_loss, abs(loss_dp - loss_ref) / abs(loss_ref))
            params = dp.parameters()
            digests = comm.comm.allgather(b"".join(params[k].tobytes() for k in sorted(params)))
            if any(d != digests[0] for d in digests):
                raise AssertionError(f"ranks hold different parameters after step {steps}")
            want = ref.parameters()
            worst_param = max(worst_param, max(rel(params[k], want[k]) for k in want))
    losses = comm.comm.allgather(loss_dp)
    return {"steps": steps, "loss_rel": worst_loss, "param_rel": worst_param, "empty_steps": comm.comm.allreduce(empty),
            "same_loss": all(v == losses[0] for v in losses), "accuracy": dp.evaluate(x, y),
            "accuracy_ref": ref.evaluate(x, y), "ranks": comm.size,
            "in_arena": bool(getattr(dp._compiled_for("step", dp.local_batch_size), "in_arena", False))}


def mismatch(kind: str) -> dict:
    """Ranks started with different models or batch sizes must all stop with the same clear error."""
    comm = distributed.resolve(True)
    assert comm is not None
    odd = comm.rank == 1
    try:
        mlpc.compile(model(12 if odd and kind == "model" else 11), batch_size=9 if odd and kind == "batch" else 8,
                     backend="numpy", distributed=True)
    except MlpcError as e:
        return {"error": str(e)}
    return {"error": None}


def fail_at(step: int) -> dict:
    """Rank 1 raises at `step`; data_parallel.guard must end the whole job (the CLI uses the same guard)."""
    comm = distributed.resolve(True)
    x, y = data(400)
    t = mlpc.compile(model(), batch_size=8, backend="numpy", distributed=True)

    def train() -> None:
        for i, (xs, ys) in enumerate(t.batches(x, y)):
            if comm is not None and comm.rank == 1 and i == step:
                raise MlpcError("injected failure")
            t.step(xs, ys)

    data_parallel.guard(comm, train)
    return {"finished": True}


def main() -> None:
    scenario, args = sys.argv[1], sys.argv[2:]
    if scenario == "equal":
        out = equal(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), float(args[5]) if args[5:] else 0.0)
    elif scenario == "mismatch":
        out = mismatch(args[0])
    else:
        out = fail_at(int(args[0]))
    comm = distributed.resolve(True)
    assert comm is not None
    rows = comm.comm.gather({"rank": comm.rank, **out}, root=0)
    if comm.rank == 0:  # one line from rank 0: ranks printing at once could interleave their lines
        print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
