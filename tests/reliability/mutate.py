"""Byte-level mutations for loader fuzzing: truncation, bit flips, splices, random bytes; plus resource guards."""

from __future__ import annotations

import time
import tracemalloc
from contextlib import contextmanager
from typing import Any, Iterator

from hypothesis import strategies as st


@st.composite
def mutated(draw: Any, seed: bytes) -> bytes:
    """`seed` truncated, bit-flipped, with bytes overwritten/inserted/deleted, or replaced by random bytes."""
    how = draw(st.sampled_from(["truncate", "flip", "flips", "overwrite", "insert", "delete", "random"]))
    data = bytearray(seed)
    if how == "random" or not data:
        return draw(st.binary(max_size=512))
    if how == "truncate":
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    if how in ("flip", "flips"):
        for _ in range(1 if how == "flip" else draw(st.integers(2, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    i = draw(st.integers(0, len(data) - 1))
    chunk = draw(st.binary(min_size=1, max_size=16))
    if how == "overwrite":
        data[i:i + len(chunk)] = chunk
    elif how == "insert":
        data[i:i] = chunk
    else:
        del data[i:i + draw(st.integers(1, 64))]
    return bytes(data)


@contextmanager
def bounded(max_seconds: float = 30.0, max_bytes: int = 64 << 20) -> Iterator[None]:
    """Fail if the block runs longer than `max_seconds` or allocates (Python + NumPy) more than `max_bytes`."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed <= max_seconds, f"took {elapsed:.1f} s (limit {max_seconds} s): a hang on bad input"
    assert peak <= max_bytes, f"allocated {peak / 2**20:.1f} MiB (limit {max_bytes / 2**20:.0f} MiB) on bad input"
