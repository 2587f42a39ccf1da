"""Reliability suite: reports how many fuzz cases each test family tried (profiles live in tests/conftest.py)."""

from __future__ import annotations

import os
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fuzz case counts (and write them as JSON to $MLPC_FUZZ_COUNTS when set)."""
    from .fuzzing import COUNTS, write_counts

    if not COUNTS:
        return
    terminalreporter.section(f"mlpc fuzzing ({os.environ.get('MLPC_FUZZ_PROFILE', 'ci')} profile): cases tried")
    for name, n in sorted(COUNTS.items()):
        terminalreporter.write_line(f"{n:8d}  {name}")
    terminalreporter.write_line(f"{sum(COUNTS.values()):8d}  total")
    out = os.environ.get("MLPC_FUZZ_COUNTS")
    if out:
        write_counts(out)
