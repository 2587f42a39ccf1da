"""How a Trainer trains data-parallel: shard the global batch, reduce, and keep every rank in step."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from mlpc.distributed import Comm, shard_bounds
from mlpc.errors import InputError, MlpcError
from mlpc.ir import Graph

if TYPE_CHECKING:
    from mlpc.api import Trainer
    from runtime.backend import Record


def prepare(comm: Comm, batch_size: int) -> int:
    """Check the global batch against the ranks, pick this host's threads; returns this rank's rows of
    a full global batch (the batch its main step is compiled for)."""
    if batch_size < comm.size:
        raise ValueError(f"batch_size is the global batch and must be at least the number of ranks "
                         f"({comm.size}), got {batch_size}")
    if "MLPC_NUM_THREADS" not in os.environ and comm.size > 1:
        on_host = comm.comm.Split_type(_mpi_shared_type(), key=comm.rank).Get_size()
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            cpus = os.cpu_count() or 1
        os.environ["MLPC_NUM_THREADS"] = str(max(1, cpus // max(1, on_host)))
    lo, hi = comm.shard(batch_size)
    return hi - lo


def _mpi_shared_type() -> Any:
    from mlpc.distributed import mpi

    return mpi().COMM_TYPE_SHARED


def lower_step(trainer: "Trainer", graph: Graph, record: "Record") -> Any:
    """Split the optimized step at its allreduce ops and lower both halves with the trainer's backend."""
    from passes.collective_split import split_at_collectives
    from runtime.distributed_step import DistributedStep

    assert trainer.comm is not None
    split = split_at_collectives(graph)
    local = trainer.backend.lower(split.local, record)
    update = trainer.backend.lower(split.update, lambda stage, text: record(stage + ".update", text))
    return DistributedStep(split, local, update, trainer.comm)


def description(trainer: "Trainer") -> dict[str, Any]:
    """What every rank must agree on before training together."""
    try:
        model: Any = trainer.model.spec()
    except Exception:  # a user's module without spec(): compare parameter names and shapes only
        model = None
    return {"model": model, "loss": trainer.loss.spec(), "optimizer": trainer.optimizer.spec(),
            "batch_size": trainer.batch_size, "in_features": trainer.in_features, "backend": trainer.backend_name,
            "pipeline": trainer._pipeline(),
            "params": [(k, list(p.shape)) for k, p in trainer.model.named_parameters()]}


def synchronize(trainer: "Trainer") -> None:
    """Check the ranks agree, then give every rank rank 0's parameters and optimizer state."""
    comm = trainer.comm
    assert comm is not None
    comm.agree("model/loss/optimizer/batch size", description(trainer))
    broadcast_state(trainer)


def broadcast_state(trainer: "Trainer") -> None:
    """Copy rank 0's parameters, optimizer state and step count to every rank."""
    comm = trainer.comm
    assert comm is not None
    for name in sorted(trainer._state):
        host = trainer.backend.to_host(trainer._state[name])
        trainer._state[name] = trainer.backend.to_device(comm.broadcast_array(host).reshape(host.shape))
    trainer.steps_taken = int(comm.comm.bcast(trainer.steps_taken, root=0))


def step_without_rows(trainer: "Trainer", x: Any) -> dict[str, Any]:
    """A rank whose share of a small last global batch is empty still joins the reduction."""
    if np.ndim(x) != 2 or np.shape(x)[1] != trainer.in_features:
        raise InputError(f"x must have shape [batch, {trainer.in_features}], got {list(np.shape(x))}")
    compiled = trainer._compiled_for("step", trainer.local_batch_size)
    return compiled.run_without_rows(trainer._state)


def shard_batches(trainer: "Trainer", x: np.ndarray, y: np.ndarray, shuffle: bool, seed: int
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This rank's rows of every global batch (every rank draws the same permutation)."""
    comm = trainer.comm
    assert comm is not None
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    for lo in range(0, len(x), trainer.batch_size):
        idx = order[lo:lo + trainer.batch_size]
        a, b = comm.shard(len(idx))
        yield x[idx[a:b]], y[idx[a:b]]


def evaluate(trainer: "Trainer", x: Any, y: Any, local: Callable[[Any, Any], tuple[int, int]]) -> float:
    """Accuracy over all of (x, y): each rank scores its shard, the counts are summed over ranks."""
    comm = trainer.comm
    assert comm is not None
    n = len(x)
    if len(y) != n:
        raise InputError(f"x has {n} rows but y has {len(y)}")
    lo, hi = shard_bounds(n, comm.rank, comm.size)
    right, total = local(x[lo:hi], y[lo:hi]) if hi > lo else (0, 0)
    counts = np.array([right, total], dtype=np.int64)
    comm.comm.Allreduce(_in_place(), counts)
    if counts[1] == 0:
        raise InputError("evaluate got no rows")
    return float(counts[0] / counts[1])


def _in_place() -> Any:
    from mlpc.distributed import mpi

    return mpi().IN_PLACE


def guard(comm: Comm | None, fn: Callable[[], Any]) -> Any:
    """Run fn; if it raises on a multi-rank job, abort every rank (so none waits forever in a collective)
    after printing the error. Used by the CLI, where an exception would otherwise leave peers blocked."""
    if comm is None or comm.size == 1:
        return fn()
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - every failure must end the whole job
        import sys
        import traceback

        if isinstance(e, (MlpcError, ValueError, TypeError)):
            print(f"rank {comm.rank}: error: {e}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
        comm.abort(1)
        raise
