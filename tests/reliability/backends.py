"""What the reliability tests expect of each backend: precision (tolerances) and speed (case budget)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.backend import get_backend


@dataclass(frozen=True)
class Profile:
    """Tolerances are for an f32 step against the same step in f64 (see differential.assert_step_close_f32)."""

    name: str
    precision: str  # "ieee" (f32 throughout), "tf32" or "bf16" (reduced-precision matmul operands)
    loss_rtol: float
    update_rtol: float  # norm-wise, on each parameter's update and each optimizer state
    value_rtol: float  # elementwise, for random graphs against the interpreter
    emulated: bool  # runs in a slow emulator here (Triton's interpreter without a GPU): small, few cases


TOLERANCES = {"ieee": (1e-4, 1e-3, 1e-4), "tf32": (3e-3, 2e-2, 3e-3), "bf16": (3e-2, 1e-1, 3e-2)}

@cache
def profile(name: str) -> Profile:
    be = get_backend(name)
    precision = getattr(be, "precision", "ieee")
    precision = precision if precision in TOLERANCES else "ieee"
    emulated = False
    if name.startswith("triton"):  # without a CUDA GPU its kernels run in Triton's (slow) interpreter
        import torch

        emulated = not torch.cuda.is_available()
    return Profile(name, precision, *TOLERANCES[precision], emulated)


def with_precision(prof: Profile, precision: str) -> Profile:
    """`prof` for a backend run in another precision ("fp32", "tf32", "bf16": mlpc.precision names)."""
    name = "ieee" if precision == "fp32" else precision
    return Profile(prof.name, name, *TOLERANCES[name], prof.emulated)


def budget(name: str, base: int) -> int:
    """Hypothesis examples for one backend: `base` (x20 under --long), a sixth of it for emulated backends."""
    n = base * (20 if os.environ.get("MLPC_FUZZ_PROFILE") == "long" else 1)
    return max(2, n // 6) if profile(name).emulated else n


def limits(name: str) -> dict[str, int]:
    """Problem sizes for strategies.problems: full range, or small ones where the backend is emulated."""
    return dict(max_width=24, max_batch=9, max_depth=3) if profile(name).emulated else {}


def run_cases(strategy: st.SearchStrategy[Any], n: int, check: Callable[[Any], None],
              pinned: Sequence[Any] = ()) -> None:
    """Run `check` on the `pinned` cases (failures found earlier), then on `n` hypothesis examples of
    `strategy`."""
    for case in pinned:
        check(case)

    @settings(max_examples=n)
    @given(strategy)
    def cases(case: Any) -> None:
        check(case)

    cases()
