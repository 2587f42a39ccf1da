"""Arguments shared by subcommands: the model file and how to compile it."""

from __future__ import annotations

import argparse
import os
from typing import Any

from mlpc import nn, optim
from mlpc.commands import argtypes
from mlpc.commands.argtypes import UsageError
from mlpc.modelfile import ModelFile, load_model_file


def add_model_args(p: argparse.ArgumentParser, default_backend: str | None = None) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="Python file defining `model` (default: built-in 784-256-10 ReLU MLP)")
    p.add_argument("--batch-size", type=argtypes.batch_size, default=None,
                   help="batch size, at least 1 (default: the model file's batch_size, else 128)")
    p.add_argument("--optimizer", type=argtypes.optimizer_name, default=None,
                   help="sgd, sgd-momentum, momentum, momentum-unbiased, nesterov, adam, adam-nobc, adamw")
    p.add_argument("--lr", type=argtypes.learning_rate, default=None, help="learning rate, a finite number > 0")
    p.add_argument("--backend", type=argtypes.backend_name, default=default_backend,
                   help="numpy, llvm or triton (triton needs the gpu extra: pip install 'mlpc[gpu]')")
    p.add_argument("--precision", type=argtypes.precision_name, default=None,
                   help="matmul precision: fp32, bf16 (bf16 operands, fp32 accumulation and weights) or tf32 "
                        "(triton only); default: the backend's (fp32 on the CPU)")
    p.add_argument("--seed", type=argtypes.seed, default=0,
                   help=f"initialization and shuffling seed, in [0, {argtypes.SEED_MAX}]")


def default_backend() -> str:
    return "llvm"  # llvmlite is a core dependency: the llvm backend is always there


def batch_size_of(args: argparse.Namespace, mf: ModelFile) -> tuple[int, str]:
    """The batch size to compile for and where it came from (for error messages)."""
    if args.batch_size is not None:
        return args.batch_size, "argument --batch-size"
    if mf.batch_size is not None:
        return mf.batch_size, f"batch_size in {args.model}"
    return 128, "the default batch size"


def bytes_per_row(mf: ModelFile) -> int:
    """Bytes the forward pass and loss hold per batch row: a lower bound on what a step needs per row."""
    from mlpc.api import first_linear, trace_model

    in_features = mf.in_features
    if in_features is None:
        lin = first_linear(mf.model)
        if lin is None:
            return 0  # mlpc.compile explains the missing in_features
        in_features = lin.in_features
    loss = mf.loss or nn.CrossEntropyLoss()

    def total(batch: int) -> int:
        g = trace_model(mf.model, batch, in_features, loss, "size")
        return sum(i.value.type.nbytes for i in g.inputs if i.role == "data") + \
            sum(r.type.nbytes for op in g.ops for r in op.results)

    return max(0, total(2) - total(1))


def physical_memory() -> int:
    """This machine's RAM in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_batch_fits(mf: ModelFile, batch: int, source: str) -> None:
    """Refuse a batch whose activations alone exceed this machine's memory, naming the largest that fits."""
    per_row, ram = bytes_per_row(mf), physical_memory()
    if per_row and ram and batch * per_row > ram:
        largest = max(1, ram // per_row)
        raise UsageError(f"{source}: {batch} rows need at least {batch * per_row / 2 ** 30:.1f} GiB for the "
                         f"activations alone and this machine has {ram / 2 ** 30:.1f} GiB; expected an integer in "
                         f"[1, {min(largest, argtypes.INT32_MAX)}]")


def check_batch_data(batch: int, source: str, rows: int, what: str = "training examples") -> None:
    """Refuse a batch larger than the data it trains on."""
    if batch > rows:
        raise UsageError(f"{source}: expected an integer in [1, {rows}] (the number of {what}), got {batch}")


def compile_from_args(args: argparse.Namespace, mf: ModelFile | None = None, **extra: Any):  # -> Trainer
    import mlpc

    mf = mf or load_model_file(args.model)
    if args.optimizer is not None:
        opt = optim.by_name(args.optimizer, args.lr)
    elif mf.optimizer is not None:
        opt = mf.optimizer
        if args.lr is not None:
            opt = type(opt)(**{**opt.options(), "lr": args.lr})
    else:
        opt = optim.Adam(lr=args.lr if args.lr is not None else 1e-3)
    batch, source = batch_size_of(args, mf)
    check_batch_fits(mf, batch, source)
    try:
        return mlpc.compile(mf.model, mf.loss or nn.CrossEntropyLoss(), opt, batch_size=batch,
                            backend=args.backend or default_backend(), seed=args.seed, in_features=mf.in_features,
                            precision=getattr(args, "precision", None), **extra)
    except MemoryError:
        raise mlpc.MlpcError(f"out of memory compiling for batch size {batch} ({source}); "
                             "try a smaller --batch-size") from None
