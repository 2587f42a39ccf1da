"""Resumable training: data order as a function of (seed, epoch), periodic atomic checkpoints, exact resume."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from mlpc.checkpoint import (
    PRECISION_KEY,
    load_arrays,
    model_description,
    remove_stale_temps,
    restore_train_state,
    save_trainer,
    split_hyper,
    stored_precision,
    train_state_of,
    trainer_metadata,
)
from mlpc.errors import CheckpointError

if TYPE_CHECKING:
    from mlpc.api import Trainer

# metadata that must match between a checkpoint and the run resuming from it (the backend and the NaN
# guard may differ: neither changes the arithmetic of a good step)
MUST_MATCH = ("mlpc.model", "mlpc.loss", "mlpc.optimizer", "mlpc.batch_size", "mlpc.in_features", "mlpc.seed")


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of one epoch: depends only on (seed, epoch), so a resumed run sees the same batches."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def data_fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """A cheap identity of a training set (shapes, all labels, a sample of rows) to refuse resuming on other data."""
    h = hashlib.sha256(json.dumps([list(x.shape), list(y.shape), str(x.dtype), str(y.dtype)]).encode())
    h.update(np.ascontiguousarray(y).tobytes())
    rows = np.linspace(0, len(x) - 1, num=min(len(x), 64)).astype(np.int64)
    h.update(np.ascontiguousarray(x[rows]).tobytes())
    return h.hexdigest()[:32]


@dataclass
class Position:
    """Where a run is: global step, and the epoch and batch inside it that come next."""

    step: int
    epoch: int
    batch: int


def position(step: int, n: int, batch_size: int) -> Position:
    per_epoch = math.ceil(n / batch_size)
    return Position(step, step // per_epoch, step % per_epoch)


def resume(trainer: "Trainer", path: str, x: np.ndarray, y: np.ndarray) -> Position | None:
    """Load the run state from the checkpoint at `path` into `trainer` (None if there is none yet), for
    continuing training on x, y.

    Stale temp files of killed writers are removed first. A checkpoint that exists but is damaged, or that
    belongs to another model, optimizer, batch size, seed or data set, raises CheckpointError.
    """
    import os

    remove_stale_temps(path)
    if not os.path.exists(path):
        return None
    tensors, meta = load_arrays(path)
    want = trainer_metadata(trainer)
    meta = {**meta, "mlpc.model": model_description(meta, path)}  # older description versions compare as now
    for key in MUST_MATCH:
        if meta.get(key) != want[key]:
            raise CheckpointError(f"{path} was written by a different run: {key} is {meta.get(key)} there, "
                                  f"{want[key]} now")
    if PRECISION_KEY in meta and stored_precision(meta) != want[PRECISION_KEY]:
        raise CheckpointError(f"{path} was written by a run in precision {stored_precision(meta)}, this one computes "
                              f"in {want[PRECISION_KEY]}: pass the same precision to resume it")
    if meta.get("mlpc.data") not in (None, data_fingerprint(x, y)):
        raise CheckpointError(f"{path} was written while training on different data")
    arrays = {k.split("/", 1)[1]: v for k, v in tensors.items() if "/" in k and not k.startswith("hyper/")}
    missing = set(trainer.parameters()) | set(trainer.optimizer_state())
    missing -= set(arrays)
    if missing:
        raise CheckpointError(f"{path} lacks {sorted(missing)}")
    trainer.load_state(arrays)
    trainer.steps_taken = int(meta["mlpc.steps"])
    restore_train_state(path, trainer, train_state_of(path, meta), split_hyper(tensors), rebuild=False)
    return position(trainer.steps_taken, len(x), trainer.batch_size)


def train(trainer: "Trainer", x: np.ndarray, y: np.ndarray, epochs: int, checkpoint: str | None = None,
          every: int = 0, on_step: Callable[[int, float], None] | None = None,
          on_epoch: Callable[[int, list[float]], None] | None = None) -> None:
    """Train from `trainer.steps_taken` to the end of epoch `epochs`, checkpointing every `every` steps
    (and at the end) when `checkpoint` is set. Batch k of epoch e is always the same rows. The trainer's
    lr schedulers (`trainer.schedulers`) step after every training step and are checkpointed with it."""
    n = len(x)
    extra = {"mlpc.data": data_fingerprint(x, y)}
    start = position(trainer.steps_taken, n, trainer.batch_size)
    per_epoch = math.ceil(n / trainer.batch_size)
    for epoch in range(start.epoch, epochs):
        order = epoch_order(trainer.seed, epoch, n)
        losses = []
        for b in range(start.batch if epoch == start.epoch else 0, per_epoch):
            idx = order[b * trainer.batch_size:(b + 1) * trainer.batch_size]
            mine = idx
            if trainer.comm is not None:  # data-parallel: this rank's rows of the global batch
                lo, hi = trainer.comm.shard(len(idx))
                mine = idx[lo:hi]
            losses.append(trainer.step(x[mine], y[mine]))
            for sched in trainer.schedulers:
                sched.step()
            if on_step is not None:
                on_step(len(idx), losses[-1])
            if checkpoint and every and trainer.steps_taken % every == 0:
                _save(trainer, checkpoint, extra)
        if on_epoch is not None:
            on_epoch(epoch, losses)
    if checkpoint:
        _save(trainer, checkpoint, extra)


def _save(trainer: "Trainer", path: str, extra: dict[str, str]) -> None:
    """Write the checkpoint (data-parallel: rank 0 writes, every rank waits until it is on disk)."""
    if trainer.comm is None or trainer.comm.rank == 0:
        save_trainer(trainer, path, extra)
    if trainer.comm is not None:
        trainer.comm.comm.Barrier()
