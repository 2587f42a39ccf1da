"""What the reliability tests expect of each backend: precision (tolerances), speed (case budget), known issues."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

import pytest
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

# Known bugs of other components, each matched on the backend and the failure message. A matching
# failure is reported as xfail with the reason; any other failure fails. Remove an entry once fixed.
KNOWN_ISSUES = [
    (r"^triton", r"^f64 step graph:", "triton backend runs f64 step graphs at f32 precision (5e-9 relative error "
     "on a 1x1 linear model) or crashes inside a kernel (InterpreterError, 1-class cross-entropy) instead of "
     "refusing f64 like the llvm backend"),
    (r"^llvm$", r"^lower: KeyError: .kernel has no buffer for", "llvm backend crashes with KeyError in codegen "
     "(instead of an MlpcError) when an optimizer update's result feeds another op, e.g. a second update"),
    (r"^triton", r"float32\(1, \d+\) vs ", "triton backend returns some outputs (e.g. constant ones, even i32 "
     "ones) as float32 with shape (1, n) instead of their declared type and shape"),
]


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


def budget(name: str, base: int) -> int:
    """Hypothesis examples for one backend: `base` (x20 under --long), a sixth of it for emulated backends."""
    n = base * (20 if os.environ.get("MLPC_FUZZ_PROFILE") == "long" else 1)
    return max(2, n // 6) if profile(name).emulated else n


def limits(name: str) -> dict[str, int]:
    """Problem sizes for strategies.problems: full range, or small ones where the backend is emulated."""
    return dict(max_width=24, max_batch=9, max_depth=3) if profile(name).emulated else {}


SEEN: set[str] = set()


def known_issue(backend: str, error: BaseException, context: str = "") -> bool:
    """True (and remembered for `xfail_known`) if `error` on `backend` is a known bug of another component.

    The case then counts as done instead of failing, so hypothesis neither shrinks it nor stops: the
    remaining cases still run and any other failure still fails the test.
    """
    text = f"{context}: {type(error).__name__}: {error}" if context else str(error)
    for b, pattern, reason in KNOWN_ISSUES:
        if re.search(b, backend) and re.search(pattern, text):
            SEEN.add(reason)
            from .fuzzing import count

            count(f"known issue hit on {backend}")
            return True
    return False


def run_cases(strategy: st.SearchStrategy[Any], n: int, check: Callable[[Any], None]) -> None:
    """Run `check` on `n` hypothesis examples of `strategy`; xfail at the end if a known issue was hit."""
    SEEN.clear()

    @settings(max_examples=n)
    @given(strategy)
    def cases(case: Any) -> None:
        check(case)

    cases()
    if SEEN:
        pytest.xfail("known issue(s): " + "; ".join(sorted(SEEN)))
