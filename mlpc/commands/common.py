"""Arguments shared by subcommands: the model file and how to compile it."""

from __future__ import annotations

import argparse
from typing import Any

from mlpc import nn, optim
from mlpc.modelfile import load_model_file


def register(sub: Any) -> None:
    """Not a subcommand: shared helpers only."""


def add_model_args(p: argparse.ArgumentParser, default_backend: str | None = None) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="Python file defining `model` (default: built-in 784-256-10 ReLU MLP)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 128)")
    p.add_argument("--optimizer", default=None,
                   help="sgd, sgd-momentum, momentum, momentum-unbiased, nesterov, adam, adam-nobc, adamw")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--backend", default=default_backend, help="numpy, llvm or triton")
    p.add_argument("--seed", type=int, default=0, help="initialization and shuffling seed")


def default_backend() -> str:
    return "llvm"  # llvmlite is a core dependency: the llvm backend is always there


def compile_from_args(args: argparse.Namespace, **extra: Any):  # -> Trainer
    import mlpc

    mf = load_model_file(args.model)
    if args.optimizer is not None:
        opt = optim.by_name(args.optimizer, args.lr)
    elif mf.optimizer is not None:
        opt = mf.optimizer
        if args.lr is not None:
            opt = type(opt)(**{**opt.options(), "lr": args.lr})
    else:
        opt = optim.Adam(lr=args.lr if args.lr is not None else 1e-3)
    batch = args.batch_size or mf.batch_size or 128
    return mlpc.compile(mf.model, mf.loss or nn.CrossEntropyLoss(), opt, batch_size=batch,
                        backend=args.backend or default_backend(), seed=args.seed, in_features=mf.in_features,
                        **extra)
