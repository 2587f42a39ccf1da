"""A data-parallel step: run the local half, sum the partial results over MPI in one bucket, run the update."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import numpy as np

from mlpc.distributed import Comm
from mlpc.errors import MlpcError
from passes.collective_split import SplitStep
from passes.distribute import ROW_OFFSET

View = tuple[str, str, np.ndarray, tuple[int, ...]]  # (name, reduce kind, flat view of the bucket, shape)


class DistributedStep:
    """Runs a SplitStep's two compiled halves with one MPI Allreduce of a contiguous bucket between them.

    The bucket holds every reduced value (each rank's value times its row count) followed by the row
    count itself, so a single in-place sum gives both the totals and the global batch size; dividing
    by it turns each rank's mean into the global batch's mean (a sum over all rows / all rows, never a
    mean of means).

    When the local half is a native step whose memory plan put the reduced values in one region of its
    arena (the llvm backend: passes/memory.py), the bucket *is* that region: the kernels write the
    gradients there, MPI reduces them in place and the update kernels read them from there, with no copy.
    Otherwise (numpy) the values are copied into a separate bucket."""

    def __init__(self, split: SplitStep, local: Any, update: Any, comm: Comm) -> None:
        self.split, self.local, self.update, self.comm = split, local, update, comm
        types = {i.name: i.value.type for i in split.update.inputs}
        self.row_offset_input = any(i.name == ROW_OFFSET for i in split.local.inputs)
        arena = _arena_bucket(split, local)
        self.in_arena = arena is not None
        if arena is not None:
            self.bucket, offsets = arena
        else:
            dtypes = [types[name].dtype.numpy for name, _ in split.reduced]
            sizes = [types[name].size for name, _ in split.reduced]
            offsets = [int(s) for s in np.cumsum([0] + sizes[:-1])]
            self.bucket = np.zeros(sum(sizes) + 1, dtype=np.result_type(*dtypes))
        self.views: list[View] = []
        for (name, kind), at in zip(split.reduced, offsets):
            n = types[name].size
            self.views.append((name, kind, self.bucket[at:at + n], types[name].shape))
        self.allreduce_seconds = 0.0  # time spent in MPI during the latest step (benchmarks read it)

    @property
    def reduced_bytes(self) -> int:
        return int(self.bucket.nbytes)

    def run(self, state: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
        rows = int(np.shape(data["x"])[0])
        if self.row_offset_input:  # dropout masks are keyed by the global row: this rank's first row
            offset = self.comm.comm.exscan(rows)
            data = {**data, ROW_OFFSET: np.asarray(offset or 0, np.int32)}
        bucket = self.bucket
        with self.local.lock if self.in_arena else nullcontext():
            if self.in_arena:  # the kernels wrote the partial values into the bucket: scale them in place
                partial = self.local.run_in_arena(state, data)
                for _name, kind, view, _shape in self.views:
                    if kind == "row_weighted_mean":
                        view *= bucket.dtype.type(rows)
            else:
                partial = self.local.run(state, data)
                for name, kind, view, _shape in self.views:
                    value = np.asarray(partial[name]).reshape(-1)
                    if kind == "row_weighted_mean":
                        np.multiply(value, rows, out=view)
                    else:
                        view[:] = value
            bucket[-1] = rows
            return self._reduce_and_update(state, {name: partial[name] for name in self.split.carried})

    def run_without_rows(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank got no rows of the global batch: contribute zeros, still take part in the update."""
        if self.split.carried:
            raise MlpcError("this step carries per-batch values from its forward pass to its update "
                            f"({', '.join(self.split.carried)}), so every rank needs at least one row")
        if self.row_offset_input:
            self.comm.comm.exscan(0)  # the other ranks' offsets count this rank's (zero) rows
        with self.local.lock if self.in_arena else nullcontext():
            self.bucket[:] = 0
            return self._reduce_and_update(state, {})

    def _reduce_and_update(self, state: dict[str, Any], carried: dict[str, Any]) -> dict[str, Any]:
        bucket = self.bucket
        t0 = time.perf_counter()
        self.comm.sum_inplace(bucket)
        self.allreduce_seconds = time.perf_counter() - t0
        total_rows = float(bucket[-1])
        if total_rows <= 0:
            raise MlpcError("distributed step: no rank had any rows of this global batch")
        inputs: dict[str, Any] = dict(carried)
        for name, kind, view, shape in self.views:
            if kind == "row_weighted_mean":
                view *= bucket.dtype.type(1.0 / total_rows)
            elif kind == "mean":
                view *= bucket.dtype.type(1.0 / self.comm.size)
            inputs[name] = view.reshape(shape)
        return self.update.run(state, inputs)


def _arena_bucket(split: SplitStep, local: Any) -> tuple[np.ndarray, list[int]] | None:
    """The local step's arena region holding the reduced values (and the row count last), with each
    value's f32 offset in it, when its memory plan made one that lays them out in order."""
    region = local.bucket_view() if hasattr(local, "bucket_view") else None
    if region is None:
        return None
    start = int(local.meta["bucket"][0])
    where = {name: w for name, _state, w, _dt, _shape in local.meta["outputs"]}
    offsets = []
    for name, _kind in split.reduced:
        w = where.get(name)
        if w is None or w[0] != "arena" or (int(w[1]) - start) % 4:
            return None
        offsets.append((int(w[1]) - start) // 4)
    if offsets != sorted(offsets):
        return None
    return region, offsets
