"""Typed argparse converters and checks shared by every subcommand: a bad value is one line, exit status 2.

A converter (`type=` of `add_argument`) raises `argparse.ArgumentTypeError`, which the `mlpc` parser
prints as `mlpc CMD: error: argument --flag: MESSAGE`; checks that need more than the text (the batch
size against the data, a model file's values) raise `UsageError`, printed the same way by `mlpc.cli`.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Iterable, NoReturn

from mlpc.errors import MlpcError

INT32_MAX = 2 ** 31 - 1
SEED_MAX = 2 ** 32 - 1
GPU_EXTRA = "pip install 'mlpc[gpu]'"


class UsageError(MlpcError):
    """A bad command-line argument (or a value standing in for one): `mlpc CMD: error: ...`, exit status 2."""


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False, kind: str = "an integer") -> str:
    if lo is not None and hi is not None and not lo_open:
        return f"{kind} in [{lo}, {hi}]"
    if lo is not None and hi is not None:
        return f"{kind} in ({lo}, {hi}]"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {lo}"
    return kind


def int_range(lo: int | None = None, hi: int | None = INT32_MAX) -> Callable[[str], int]:
    """An integer in [lo, hi]; the message names the range."""
    expected = _range_text(lo, hi)

    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    convert.__name__ = "int"
    return convert


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = True) -> Callable[[str], float]:
    """A finite number above `lo` (or at least `lo` when `lo_open` is false) and at most `hi`."""
    expected = _range_text(lo, hi, lo_open, "a finite number")

    def convert(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        bad = not math.isfinite(value)
        bad = bad or (lo is not None and (value <= lo if lo_open else value < lo))
        bad = bad or (hi is not None and value > hi)
        if bad:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    convert.__name__ = "float"
    return convert


positive_int = int_range(1)
count = int_range(0)
seed = int_range(0, SEED_MAX)
batch_size = int_range(1)
learning_rate = float_range(0.0)


def choice(names: Iterable[str], what: str) -> Callable[[str], str]:
    """One of `names`; the message lists them."""
    allowed = list(names)

    def convert(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose from {', '.join(allowed)}")
        return text

    convert.__name__ = what
    return convert


def optimizer_name(text: str) -> str:
    """A name `mlpc.optim.by_name` knows (sgd, adam, ...)."""
    from mlpc import optim

    try:
        optim.by_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


TRITON_BACKENDS = ("triton", "triton-bf16", "triton-ieee")


def precision_name(text: str) -> str:
    """fp32, tf32 or bf16 (ieee: fp32); whether the backend offers it is checked when compiling."""
    from mlpc.errors import MlpcError
    from mlpc.precision import canonical

    try:
        return canonical(text)
    except MlpcError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def backend_name(text: str) -> str:
    """A registered backend; a Triton backend without Triton installed names the extra that adds it."""
    from runtime.backend import available_backends

    names = available_backends()
    if text in names:
        return text
    if text in TRITON_BACKENDS:
        raise argparse.ArgumentTypeError(f"backend {text!r} needs Triton, which is not installed: {GPU_EXTRA}")
    known = sorted(set(names) | set(TRITON_BACKENDS))
    raise argparse.ArgumentTypeError(f"unknown backend {text!r}; choose from {', '.join(known)}")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `mlpc CMD: error: MESSAGE (see mlpc CMD --help)`, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
