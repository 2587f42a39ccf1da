"""`mlpc train`: train a model on MNIST (or a user .npz) with a progress bar, report test accuracy."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from mlpc.commands.common import add_model_args, compile_from_args
from mlpc.errors import MlpcError


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train an MLP and report test accuracy")
    add_model_args(p)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--data", default=None, help="folder with MNIST IDX files (default: the shipped copy)")
    p.add_argument("--npz", default=None, help="train on a .npz with x/y (or x_train/y_train/x_test/y_test)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training examples")
    p.add_argument("--save", default=None, help="write a checkpoint (safetensors) here at the end")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="keep the run's latest checkpoint here (written atomically; see --checkpoint-every)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="also checkpoint every N steps (default: only at the end)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists; the result is bit-identical to an "
                        "uninterrupted run with the same arguments")
    p.add_argument("--nan-guard", action="store_true",
                   help="stop with an error at the first step whose loss or gradients are NaN/Inf, "
                        "before it changes any weight")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (implied when started by mpiexec with more than one rank); "
                        "--batch-size is the global batch")
    p.set_defaults(func=run)


def load_data(args: argparse.Namespace):  # -> Dataset
    from mlpc import datasets

    data = datasets.load_npz(args.npz) if args.npz else datasets.mnist(args.data)
    if args.limit:
        data.x_train, data.y_train = data.x_train[:args.limit], data.y_train[:args.limit]
    return data


class Progress:
    """A tqdm bar over one epoch showing the running loss and samples/s."""

    def __init__(self, total: int, desc: str, disable: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="ex", file=sys.stdout, disable=disable, leave=False,
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

    def say(*parts: Any, **kw: Any) -> None:
        if comm is None or comm.rank == 0:
            print(*parts, **kw)

    if args.checkpoint_every < 0:
        raise MlpcError("--checkpoint-every must be >= 0")
    if (args.resume or args.checkpoint_every) and not args.checkpoint:
        raise MlpcError("--resume and --checkpoint-every need --checkpoint PATH")
    data = load_data(args)
    start = time.perf_counter()
    trainer = compile_from_args(args, nan_guard=args.nan_guard,
                                **({"distributed": comm.comm} if comm is not None else {}))
    where_ranks = f", {comm.size} ranks" if comm is not None else ""
    say(f"compiled for backend {trainer.backend_name} in {time.perf_counter() - start:.2f} s "
          f"(batch {trainer.batch_size}{where_ranks}, {trainer.optimizer.pipeline_text()})")
    n = len(data.x_train)
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
        mse = float(np.mean((trainer.predict(data.x_test) - data.y_test) ** 2))
        say(f"test mse: {mse:.6f}")
    return 0
