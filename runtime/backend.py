"""The contract between the trainer and a backend: lower a graph once, run it many times."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

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


_BACKENDS: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    _BACKENDS[name] = factory


def get_backend(name: str) -> Backend:
    _load_builtin()
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]()


def available_backends() -> list[str]:
    _load_builtin()
    return sorted(_BACKENDS)


def _load_builtin() -> None:
    import runtime.numpy_backend  # noqa: F401

    for module in ("runtime.llvm_backend", "runtime.triton_backend"):
        try:
            __import__(module)
        except ImportError:
            pass
