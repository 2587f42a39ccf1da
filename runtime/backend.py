"""The contract between the trainer and a backend: lower a graph once, run it many times."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from mlpc.errors import MlpcError
from mlpc.ir import Graph

Record = Callable[[str, str], None]  # record(stage_name, text): backend stages for dumps


class Compiled(Protocol):
    """One lowered graph. `state` maps every param/state input name to a backend buffer."""

    def run(self, state: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
        """Read param/state inputs from `state` and data inputs from `data`; write every output
        named like a `state` entry back into `state` (in place or by replacing the entry);
        return the other outputs (host NumPy arrays, or device values convertible with
        `np.asarray`)."""
        ...


class Backend(Protocol):
    """A code generator + runtime for one target."""

    name: str
    stages: tuple[str, ...]  # names of the stages this backend records, in order

    def lower(self, graph: Graph, record: Record) -> Compiled:
        """Run the backend's passes and codegen on an optimized graph, recording each stage."""
        ...

    def to_device(self, array: np.ndarray) -> Any:
        """A buffer for a parameter or optimizer-state value."""
        ...

    def to_host(self, buffer: Any) -> np.ndarray:
        """A host copy of a buffer."""
        ...


@dataclass(frozen=True)
class _Entry:
    factory: Callable[[], Backend]
    requires: tuple[str, ...]  # optional modules the backend imports when it is built
    extra: str  # the pyproject extra that installs them


_BACKENDS: dict[str, _Entry] = {}


def register_backend(name: str, factory: Callable[[], Backend], requires: tuple[str, ...] = (),
                     extra: str = "") -> None:
    _BACKENDS[name] = _Entry(factory, requires, extra)


def _missing(entry: _Entry) -> list[str]:
    return [m for m in entry.requires if importlib.util.find_spec(m) is None]


def get_backend(name: str, precision: str | None = None) -> Backend:
    """The backend `name`; `precision` ("fp32", "tf32", "bf16": mlpc.precision) of its matmuls, None for the
    backend's default (fp32 on the CPU backends; tf32 or MLPC_TRITON_PRECISION on Triton)."""
    _load_builtin()
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(_BACKENDS))}")
    entry = _BACKENDS[name]
    missing = _missing(entry)
    if missing:
        raise MlpcError(f"backend {name!r} needs {' and '.join(missing)}: pip install -e .[{entry.extra}]")
    return entry.factory() if precision is None else entry.factory(precision=precision)  # type: ignore[call-arg]


def backend_precision(backend: Backend) -> str:
    """The shared name of the precision a backend instance computes its matmuls in ("ieee" -> "fp32")."""
    from mlpc.precision import canonical

    return canonical(getattr(backend, "precision", "fp32"))


def available_backends() -> list[str]:
    """Registered backends whose optional dependencies are installed (numpy and llvm always are)."""
    _load_builtin()
    return sorted(n for n, e in _BACKENDS.items() if not _missing(e))


def _load_builtin() -> None:
    """Import every backend module; each registers itself (an import error is a bug and propagates)."""
    import runtime.llvm_backend  # noqa: F401
    import runtime.numpy_backend  # noqa: F401
    import runtime.triton_backend  # noqa: F401
