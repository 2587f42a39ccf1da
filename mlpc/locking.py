"""Fork-safe per-object re-entrant locks: os.fork waits for locked calls, the child gets usable locks.

Every Trainer, compiled llvm step and loaded library holds one `ObjectLock`; its public methods run under
it (`@locked`), so threads sharing the object take turns, and every result equals some serial order of
the calls. Before os.fork (also multiprocessing's fork start method) the forking thread acquires every
live lock in creation order (an object's lock is created before the locks of the objects it calls
into, so this order never deadlocks); the fork therefore never copies an object in the middle of a
step. After the fork the parent releases them; the child releases them too and replaces any lock it
does not own (held by a thread that does not exist in the child) by a fresh one.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import weakref
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_live: dict[int, weakref.ref["ObjectLock"]] = {}
_serial = itertools.count()
_held: list["ObjectLock"] = []


class ObjectLock:
    """A re-entrant lock registered for the fork handlers (use as a context manager)."""

    __slots__ = ("_lock", "_id", "__weakref__")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._id = next(_serial)
        _live[self._id] = weakref.ref(self, _forget(self._id))  # dict updates are atomic under the GIL

    def __enter__(self) -> "ObjectLock":
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def owned(self) -> bool:
        """True when the calling thread holds this lock."""
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]


def _forget(key: int) -> Callable[[Any], None]:
    def drop(_ref: Any) -> None:
        _live.pop(key, None)
    return drop


def locked(method: F) -> F:
    """Run a method under `self._lock` (an ObjectLock)."""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock._lock:  # the RLock itself (read on every call: the fork handler may replace it)
            return method(self, *args, **kwargs)
    return run  # type: ignore[return-value]


def _snapshot() -> list[ObjectLock]:
    refs = [r for _, r in sorted(_live.copy().items())]
    return [lk for lk in (r() for r in refs) if lk is not None]


def _before_fork() -> None:
    locks = _snapshot()
    for lk in locks:
        lk._lock.acquire()
    _held[:] = locks


def _after_fork_parent() -> None:
    for lk in reversed(_held):
        lk._lock.release()
    _held.clear()


def _after_fork_child() -> None:
    for lk in reversed(_held):
        lk._lock.release()
    _held.clear()
    for lk in _snapshot():
        if not lk.owned():  # free, or held by a thread that did not survive the fork
            lk._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                        after_in_child=_after_fork_child)
