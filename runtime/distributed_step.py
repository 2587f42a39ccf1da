"""A data-parallel step: run the local half, sum the partial results over MPI in one bucket, run the update."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mlpc.distributed import Comm
from mlpc.errors import MlpcError
from passes.collective_split import SplitStep


class DistributedStep:
    """Runs a SplitStep's two compiled halves with one MPI Allreduce of a contiguous bucket between them.

    The bucket holds every reduced value (each rank's value times its row count) followed by the row
    count itself, so a single in-place sum gives both the totals and the global batch size; dividing
    by it turns each rank's mean into the global batch's mean (a sum over all rows / all rows, never a
    mean of means)."""

    def __init__(self, split: SplitStep, local: Any, update: Any, comm: Comm) -> None:
        self.split, self.local, self.update, self.comm = split, local, update, comm
        types = {i.name: i.value.type for i in split.update.inputs}
        self.layout: list[tuple[str, str, int, int, tuple[int, ...]]] = []
        at = 0
        for name, kind in split.reduced:
            n = int(np.prod(types[name].shape)) if types[name].shape else 1
            self.layout.append((name, kind, at, n, types[name].shape))
            at += n
        dtypes = [types[name].dtype.numpy for name, _ in split.reduced]
        self.bucket = np.zeros(at + 1, dtype=np.result_type(*dtypes))
        self.allreduce_seconds = 0.0  # time spent in MPI during the latest step (benchmarks read it)

    @property
    def reduced_bytes(self) -> int:
        return int(self.bucket.nbytes)

    def run(self, state: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
        rows = int(np.shape(data["x"])[0])
        partial = self.local.run(state, data)
        bucket = self.bucket
        for name, kind, at, n, _shape in self.layout:
            value = np.asarray(partial[name]).reshape(-1)
            if kind == "row_weighted_mean":
                np.multiply(value, rows, out=bucket[at:at + n])
            else:
                bucket[at:at + n] = value
        bucket[-1] = rows
        return self._reduce_and_update(state, {name: partial[name] for name in self.split.carried})

    def run_without_rows(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank got no rows of the global batch: contribute zeros, still take part in the update."""
        if self.split.carried:
            raise MlpcError("this step carries per-batch values from its forward pass to its update "
                            f"({', '.join(self.split.carried)}), so every rank needs at least one row")
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
        for name, kind, at, n, shape in self.layout:
            view = bucket[at:at + n]
            if kind == "row_weighted_mean":
                view *= bucket.dtype.type(1.0 / total_rows)
            elif kind == "mean":
                view *= bucket.dtype.type(1.0 / self.comm.size)
            inputs[name] = view.reshape(shape)
        return self.update.run(state, inputs)
