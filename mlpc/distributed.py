"""Data-parallel context: the MPI communicator (through mpi4py), sharding and agreement checks."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpc.errors import MlpcError

# set by MPICH/Hydra (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), Slurm (SLURM_NTASKS under srun with PMI)
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_ranks() -> int:
    """How many ranks the MPI launcher started this process among (1 outside mpiexec), from its
    environment variables, without importing MPI."""
    for var in _SIZE_VARS:
        text = os.environ.get(var)
        if text and text.isdigit():
            return int(text)
    return 1


def mpi() -> Any:
    """The mpi4py.MPI module, or an error naming the `mpi` extra."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise MlpcError("distributed training needs mpi4py and an MPI library: "
                        "pip install 'mlpc[mpi]' (mpi4py + MPICH wheels)") from e
    return MPI


@dataclass
class Comm:
    """A communicator and this process's place in it."""

    comm: Any
    rank: int
    size: int

    def shard(self, rows: int) -> tuple[int, int]:
        """This rank's [lo, hi) rows of a global batch of `rows` rows (the first rows % size ranks get
        one more row; a rank may get none of a small last batch)."""
        return shard_bounds(rows, self.rank, self.size)

    def allgather_int(self, value: int) -> list[int]:
        return [int(v) for v in self.comm.allgather(int(value))]

    def broadcast_array(self, array: np.ndarray) -> np.ndarray:
        buf = np.ascontiguousarray(array).copy()
        self.comm.Bcast(buf, root=0)
        return buf

    def sum_inplace(self, buffer: np.ndarray) -> None:
        self.comm.Allreduce(mpi().IN_PLACE, buffer, op=mpi().SUM)

    def agree(self, what: str, description: dict[str, Any]) -> None:
        """Raise on every rank when the ranks were started with different `description`s."""
        digest = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()
        digests = self.comm.allgather(digest)
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise MlpcError(f"distributed: rank(s) {differ} were started with a different {what} than rank 0 "
                            f"(every rank must compile the same model, loss, optimizer and batch size)")

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (used when one rank fails, so no other rank waits forever)."""
        self.comm.Abort(code)


def shard_bounds(rows: int, rank: int, size: int) -> tuple[int, int]:
    base, extra = divmod(rows, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def resolve(distributed: Any) -> Comm | None:
    """`distributed=False/None` -> None; True -> COMM_WORLD; an mpi4py communicator -> itself."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        comm = mpi().COMM_WORLD
    elif hasattr(distributed, "Allreduce") and hasattr(distributed, "Get_rank"):
        comm = distributed
    else:
        raise TypeError(f"distributed must be True, False or an mpi4py communicator, got {type(distributed).__name__}")
    return Comm(comm, comm.Get_rank(), comm.Get_size())


def default_threads(ranks_on_host: int) -> int:
    """Cores divided among the ranks of this host (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, ranks_on_host))
