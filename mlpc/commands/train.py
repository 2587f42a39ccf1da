"""`mlpc train`: train a model on MNIST (or a user .npz) with a progress bar, report test accuracy."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from mlpc.commands import argtypes
from mlpc.commands.common import add_model_args, batch_size_of, check_batch_data, compile_from_args
from mlpc.commands.schedule import add_schedule_args, build_schedule


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train an MLP and report test accuracy")
    add_model_args(p)
    p.add_argument("--epochs", type=argtypes.positive_int, default=5, help="passes over the data, at least 1")
    p.add_argument("--data", default=None, help="folder with MNIST IDX files (default: the shipped copy)")
    p.add_argument("--npz", default=None,
                   help="train on a .npz with x_train/y_train/x_test/y_test, or with x/y only: then a seeded "
                        "random 10%% of the rows is held out as the test set (the output says so)")
    p.add_argument("--limit", type=argtypes.positive_int, default=None,
                   help="use only the first N training examples (N >= 1)")
    p.add_argument("--save", default=None, help="write a checkpoint (safetensors) here at the end")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="keep the run's latest checkpoint here (written atomically; see --checkpoint-every)")
    p.add_argument("--checkpoint-every", type=argtypes.count, default=0, metavar="N",
                   help="also checkpoint every N steps (default: only at the end)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists; the result is bit-identical to an "
                        "uninterrupted run with the same arguments")
    p.add_argument("--nan-guard", action="store_true",
                   help="stop with an error at the first step whose loss or gradients are NaN/Inf, "
                        "before it changes any weight")
    add_schedule_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (implied when started by mpiexec with more than one rank); "
                        "--batch-size is the global batch")
    p.set_defaults(func=run)


def load_data(args: argparse.Namespace):  # -> Dataset
    from mlpc import datasets

    data = datasets.load_npz(args.npz) if args.npz else datasets.mnist(args.data)
    if args.limit is not None:
        data.x_train, data.y_train = data.x_train[:args.limit], data.y_train[:args.limit]
    return data


def held_out_note(path: str, n_test: int) -> str | None:
    """The line that says a .npz without x_test/y_test had a test set split off (None when it has one)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = {n[:-4] if n.endswith(".npy") else n for n in z.namelist()}
    except (OSError, zipfile.BadZipFile):
        return None
    if {"x_train", "y_train", "x_test", "y_test"} <= names:
        return None
    return (f"{path} has only x/y: holding out a seeded random 10% ({n_test} rows) as the test set; "
            "give x_train/y_train/x_test/y_test to choose it")


class Progress:
    """A tqdm bar over one epoch showing the running loss and samples/s."""

    def __init__(self, total: int, desc: str, disable: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="ex", file=sys.stderr, disable=disable, leave=False,
                        dynamic_ncols=True)
        self.start, self.seen, self.losses = time.perf_counter(), 0, []  # type: tuple[float, int, list[float]]

    def update(self, batch: int, loss: float) -> None:
        self.seen += batch
        self.losses.append(loss)
        self.bar.update(batch)
        if len(self.losses) % 20 == 0:
            rate = self.seen / (time.perf_counter() - self.start)
            self.bar.set_postfix(loss=f"{np.mean(self.losses[-20:]):.4f}", samples_s=f"{rate:.0f}")

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.start


def run(args: argparse.Namespace) -> int:
    from mlpc import data_parallel, distributed

    if not (args.distributed or distributed.launched_ranks() > 1):
        return _run(args, None)
    comm = distributed.resolve(True)
    if comm is not None and comm.rank != 0:  # logs and the progress bar come from rank 0 only
        args.no_progress = True
    return int(data_parallel.guard(comm, lambda: _run(args, comm)))


def _run(args: argparse.Namespace, comm: Any) -> int:
    from mlpc import resume
    from mlpc.modelfile import load_model_file

    def say(*parts: Any, **kw: Any) -> None:
        if comm is None or comm.rank == 0:
            print(*parts, **kw)

    if (args.resume or args.checkpoint_every) and not args.checkpoint:
        raise argtypes.UsageError("--resume and --checkpoint-every need --checkpoint PATH")
    data = load_data(args)
    mf = load_model_file(args.model)
    if args.batch_size is not None:  # a model file's or the default batch may exceed a small data set
        check_batch_data(*batch_size_of(args, mf), len(data.x_train))
    note = held_out_note(args.npz, len(data.x_test)) if args.npz else None
    if note:
        say(note, flush=True)
    start = time.perf_counter()
    trainer = compile_from_args(args, mf, nan_guard=args.nan_guard,
                                **({"distributed": comm.comm} if comm is not None else {}))
    where_ranks = f", {comm.size} ranks" if comm is not None else ""
    prec = f", {trainer.precision}" if trainer.precision != "fp32" else ""
    say(f"compiled for backend {trainer.backend_name}{prec} in {time.perf_counter() - start:.2f} s "
        f"(batch {trainer.batch_size}{where_ranks}, {trainer.optimizer.pipeline_text()}, lr {trainer.lr:g})")
    fit_targets(trainer, data)
    n = len(data.x_train)
    per_epoch = -(-n // trainer.batch_size)
    build_schedule(trainer, args.schedule, args.warmup, per_epoch * args.epochs, per_epoch)
    if args.resume:
        where = resume.resume(trainer, args.checkpoint, data.x_train, data.y_train)
        if where is None:
            say(f"no checkpoint at {args.checkpoint} yet: starting a new run")
        else:
            say(f"resumed from {args.checkpoint} at step {where.step} (epoch {where.epoch + 1}, "
                  f"batch {where.batch})", flush=True)
    progress: Progress | None = None

    def on_step(batch: int, loss: float) -> None:
        nonlocal progress
        if progress is None:
            epoch = resume.position(trainer.steps_taken - 1, n, trainer.batch_size).epoch
            progress = Progress(n, f"epoch {epoch + 1}/{args.epochs}", args.no_progress)
        progress.update(batch, loss)

    def on_epoch(epoch: int, losses: list[float]) -> None:
        nonlocal progress
        elapsed, seen = (progress.close(), progress.seen) if progress is not None else (1.0, 0)
        progress = None
        mean = f"{np.mean(losses):.4f}" if losses else "n/a"
        line = f"epoch {epoch + 1}/{args.epochs}: loss {mean}, {seen / max(elapsed, 1e-9):.0f} samples/s"
        if trainer.num_classes is not None:
            line += f", test accuracy {100 * trainer.evaluate(data.x_test, data.y_test):.2f}%"
        else:
            line += f", test loss {trainer.evaluate(data.x_test, data.y_test, metrics=['loss'])['loss']:.6f}"
        say(line, flush=True)

    # batches come from mlpc.resume.epoch_order(seed, epoch): a killed run resumed with --resume sees the
    # same batches in the same order, so it ends bit-identical to an uninterrupted one
    resume.train(trainer, data.x_train, data.y_train, args.epochs, checkpoint=args.checkpoint,
                 every=args.checkpoint_every, on_step=on_step, on_epoch=on_epoch)
    if args.save:
        trainer.save(args.save)
        say(f"saved checkpoint to {args.save}")
    if trainer.num_classes is not None:
        acc = trainer.evaluate(data.x_test, data.y_test)
        correct = int(round(acc * len(data.y_test)))
        say(f"test accuracy: {100 * acc:.2f}% ({correct}/{len(data.y_test)})")
    else:
        say(test_report(trainer, data.x_test, data.y_test))
    return 0


def fit_targets(trainer: Any, data: Any) -> None:
    """Float targets for float-target losses (0/1 integer labels for BCE, say), and a column [n, 1] for a
    single-output model given a vector y."""
    if trainer.num_classes is not None:
        return
    for split in ("train", "test"):
        y = getattr(data, f"y_{split}").astype(np.float32)
        if y.ndim == 1 and trainer.out_features == 1:
            y = y[:, None]
        setattr(data, f"y_{split}", y)


def test_report(trainer: Any, x: np.ndarray, y: np.ndarray) -> str:
    """The final line for a non-classification loss: the loss, and R^2 or element-wise accuracy."""
    extra = "elementwise_accuracy" if trainer.loss.metric == "elementwise_accuracy" else "r2"
    v = trainer.evaluate(x, y, metrics=["loss", extra])
    shown = f"R^2 {v['r2']:.4f}" if extra == "r2" else f"element-wise accuracy {100 * v[extra]:.2f}%"
    return f"test loss ({type(trainer.loss).__name__}): {v['loss']:.6f}, {shown}"
