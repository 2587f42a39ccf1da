"""`mlpc train --schedule/--warmup`: the lr schedule of a CLI run, built from mlpc.optim.lr_scheduler."""

from __future__ import annotations

import argparse
from typing import Any

from mlpc.commands import argtypes
from mlpc.errors import MlpcError

SCHEDULES = ("none", "cosine", "step", "onecycle")


def register(sub: Any) -> None:
    """Not a subcommand: shared helpers only."""


def add_schedule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", choices=SCHEDULES, default="none",
                   help="lr schedule, stepped after every training step (default: none, a constant lr). "
                        "cosine: CosineAnnealingLR to 0 over the run; step: StepLR x0.1 every epoch; "
                        "onecycle: OneCycleLR with max_lr = --lr (its warm-up is --warmup steps, default 30%% "
                        "of the run), cycling momentum/beta1")
    p.add_argument("--warmup", type=argtypes.count, default=0, metavar="N",
                   help="linear lr warm-up over the first N training steps, from lr/(N+1) to lr "
                        "(LinearLR, then the schedule via SequentialLR; default 0: none)")


def build_schedule(trainer: Any, schedule: str, warmup: int, total_steps: int, steps_per_epoch: int) -> list[Any]:
    """The schedulers for a run of `total_steps` steps, constructed on (and attached to) `trainer`."""
    from mlpc.optim import lr_scheduler as L

    if schedule not in SCHEDULES:
        raise MlpcError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if warmup < 0:
        raise MlpcError(f"--warmup must be >= 0 steps, got {warmup}")
    if warmup and warmup >= total_steps:
        raise MlpcError(f"--warmup {warmup} is not shorter than the run ({total_steps} steps)")
    if schedule == "onecycle":
        cycle = "betas" in trainer.param_groups[0] or "momentum" in trainer.param_groups[0]
        pct = warmup / total_steps if warmup else 0.3
        return [L.OneCycleLR(trainer, max_lr=trainer.lr, total_steps=total_steps, pct_start=float(pct),
                             cycle_momentum=cycle)]
    main: Any = None
    if schedule == "cosine":
        main = L.CosineAnnealingLR(trainer, T_max=max(1, total_steps - warmup))
    elif schedule == "step":
        main = L.StepLR(trainer, step_size=steps_per_epoch, gamma=0.1)
    if not warmup:
        return [main] if main is not None else []
    warm = L.LinearLR(trainer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    if main is None:
        return [warm]
    return [L.SequentialLR(trainer, [warm, main], milestones=[warmup])]
