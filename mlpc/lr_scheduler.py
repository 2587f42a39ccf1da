"""Learning-rate schedulers with PyTorch's names and semantics (`mlpc.optim.lr_scheduler`).

Each is constructed on a compiled trainer and drives its runtime hyperparameters (no recompile):
the constructor sets the initial lr as torch's does, `step()` advances one step, `get_last_lr()`
returns the per-group lrs. The update rules are torch 2.13's (chainable forms included), so the lr
sequences are equal to torch's as floats. Schedulers constructed on a trainer are attached to it
(`trainer.schedulers`) and saved in its checkpoints; `mlpc.load` rebuilds them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from typing import Any, Iterable

from mlpc.errors import MlpcError


def _trainer_of(obj: Any, who: str) -> Any:
    from mlpc.api import Trainer

    if not isinstance(obj, Trainer):
        hint = (" (an optimizer description: compile first, then pass the trainer)"
                if type(obj).__module__ == "mlpc.optim" else "")
        raise TypeError(f"{who} must be constructed on a trainer (the result of mlpc.compile or mlpc.load), "
                        f"got {type(obj).__name__}{hint}: pass the trainer, e.g. {who}(trainer, ...)")
    return obj


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


def _last_epoch(v: int) -> None:
    if v != -1:
        raise ValueError(f"last_epoch={v}: to resume a schedule, load its state (load_state_dict, or mlpc.load "
                         "of a checkpoint saved with it) instead")


class LRScheduler:
    """Base class: torch.optim.lr_scheduler.LRScheduler over a trainer's parameter groups."""

    _is_initial = False

    def __init__(self, trainer: Any, last_epoch: int = -1) -> None:
        self.trainer = _trainer_of(trainer, type(self).__name__)
        _last_epoch(last_epoch)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float] = [g["initial_lr"] for g in self.optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()
        self._attach()  # only a scheduler whose first step worked drives the trainer

    @property
    def optimizer(self) -> Any:
        """The trainer (its `param_groups` play torch's optimizer.param_groups)."""
        return self.trainer

    def _attach(self) -> None:
        if self not in self.trainer.schedulers:
            self.trainer.schedulers.append(self)

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """Each scheduler class defines its rule; the base class is abstract, as torch's LRScheduler."""
        raise NotImplementedError(f"{type(self).__name__} must define get_lr() (subclass a concrete scheduler)")

    def get_last_lr(self) -> list[float]:
        """The lrs the latest step set, one per parameter group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance the schedule by one step (call after trainer.step)."""
        self._step_count += 1
        self._update_lr(None)

    def _update_lr(self, epoch: int | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        groups = self.optimizer.param_groups
        for group, lr in zip(groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in groups]

    # --- state ---------------------------------------------------------------------------
    _SKIP = ("trainer", "_is_initial")

    def state_dict(self) -> dict[str, Any]:
        """Everything but the trainer, JSON-serializable, with the class name under "type"."""
        sd = {k: v for k, v in self.__dict__.items() if k not in self._SKIP}
        sd["type"] = type(self).__name__
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        kind = sd.pop("type", type(self).__name__)
        if kind != type(self).__name__:
            raise MlpcError(f"cannot load a {kind} state into a {type(self).__name__}")
        self.__dict__.update(sd)


class StepLR(LRScheduler):
    """lr * gamma every step_size steps."""

    def __init__(self, trainer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = _positive_int("step_size", step_size)
        self.gamma = float(gamma)
        super().__init__(trainer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr * gamma at each milestone."""

    def __init__(self, trainer: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1) -> None:
        ms = list(milestones)
        if not all(isinstance(m, int) and not isinstance(m, bool) for m in ms):
            raise ValueError(f"milestones must be integers, got {ms!r}")
        self.milestones = sorted(ms)
        self.gamma = float(gamma)
        super().__init__(trainer, last_epoch)

    def get_lr(self) -> list[float]:
        counts = Counter(self.milestones)
        if self.last_epoch not in counts:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma ** counts[self.last_epoch] for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [b * self.gamma ** bisect_right(self.milestones, self.last_epoch) for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear warm-up: lr factor from start_factor to end_factor over total_iters steps."""

    def __init__(self, trainer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = _positive_int("total_iters", total_iters)
        super().__init__(trainer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [g["lr"] * self.start_factor for g in groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return [g["lr"] for g in groups]
        d = self.end_factor - self.start_factor
        return [g["lr"] * (1.0 + d / (self.total_iters * self.start_factor + (self.last_epoch - 1) * d))
                for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        d = self.end_factor - self.start_factor
        return [b * (self.start_factor + d * min(self.total_iters, self.last_epoch) / self.total_iters)
                for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """lr * gamma every step."""

    def __init__(self, trainer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = float(gamma)
        super().__init__(trainer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [b * self.gamma ** self.last_epoch for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine from the initial lr down to eta_min over T_max steps (torch's chainable form)."""

    def __init__(self, trainer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = _positive_int("T_max", T_max)
        self.eta_min = float(eta_min)
        super().__init__(trainer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self._is_initial:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and self.last_epoch > 0:
            return [self.eta_min + (b - self.eta_min) * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                    for b in self.base_lrs]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [g["lr"] + (b - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for b, g in zip(self.base_lrs, groups, strict=True)]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max)) * (g["lr"] - self.eta_min)
                + self.eta_min for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [self.eta_min + (b - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for b in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy; with cycle_momentum (default) it also cycles SGD's momentum or Adam's beta1
    between max_momentum and base_momentum, as torch does."""

    def __init__(self, trainer: Any, max_lr: float | list[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | list[float] = 0.85, max_momentum: float | list[float] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        self.trainer = _trainer_of(trainer, "OneCycleLR")
        _last_epoch(last_epoch)
        if total_steps is not None:
            self.total_steps = _positive_int("total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = _positive_int("epochs", epochs) * _positive_int("steps_per_epoch", steps_per_epoch)
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self.anneal_strategy = anneal_strategy
        n = self.total_steps
        self._schedule_phases: list[list[Any]]
        if three_phase:
            self._schedule_phases = [
                [float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                [float(2 * pct_start * n) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"],
                [n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"]]
        else:
            self._schedule_phases = [
                [float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                [n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"]]
        groups = self.optimizer.param_groups
        max_lrs = _per_group("max_lr", groups, max_lr)
        for lr, group in zip(max_lrs, groups):
            group["initial_lr"] = lr / div_factor
            group["max_lr"] = lr
            group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            keys = list(groups[0].keys())
            if "betas" not in keys and "momentum" not in keys:
                raise MlpcError(f"OneCycleLR cycles momentum, but this {type(trainer.optimizer).__name__} step has "
                                "no runtime momentum (compiled without it): pass cycle_momentum=False, or compile "
                                "with a momentum optimizer")
            self.use_beta1 = "betas" in keys
            maxs = _per_group("max_momentum", groups, max_momentum)
            bases = _per_group("base_momentum", groups, base_momentum)
            for mx, base, group in zip(maxs, bases, groups):
                if self.use_beta1:
                    group["betas"] = (mx, *group["betas"][1:])
                else:
                    group["momentum"] = mx
                group["max_momentum"] = mx
                group["base_momentum"] = base
        super().__init__(trainer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"Tried to step {step_num} times. The specified number of total steps is "
                             f"{self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr0, lr1, m0, m1) in enumerate(self._schedule_phases):
                if step_num <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    lr = self._anneal(group[lr0], group[lr1], pct)
                    mom = self._anneal(group[m0], group[m1], pct) if self.cycle_momentum else 0.0
                    break
                start_step = end_step
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (mom, *group["betas"][1:])
                else:
                    group["momentum"] = mom
        return lrs


def _per_group(name: str, groups: list[Any], value: Any) -> list[float]:
    if isinstance(value, (list, tuple)):
        if len(value) != len(groups):
            raise ValueError(f"expected {len(groups)} values for {name}, got {len(value)}")
        return [float(v) for v in value]
    return [float(value)] * len(groups)


class SequentialLR(LRScheduler):
    """Runs `schedulers` one after another, switching at `milestones` (torch's semantics)."""

    def __init__(self, trainer: Any, schedulers: list[LRScheduler], milestones: list[int],
                 last_epoch: int = -1) -> None:
        self.trainer = _trainer_of(trainer, "SequentialLR")
        _last_epoch(last_epoch)
        if len(schedulers) < 1:
            raise ValueError("SequentialLR expects at least one scheduler, but got no scheduler.")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler):
                raise TypeError(f"SequentialLR: schedulers[{i}] is a {type(s).__name__}, not an mlpc scheduler")
            if s.trainer is not self.trainer:
                raise ValueError(f"SequentialLR expects all schedulers to belong to the same trainer, but "
                                 f"schedulers[{i}] ({type(s).__name__}) drives another one")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("Sequential Schedulers expects number of schedulers provided to be one more than the "
                             f"number of milestone points, but got number of schedulers {len(schedulers)} and the "
                             f"number of milestones to be equal to {len(milestones)}")
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for s in self._schedulers:  # the children are driven through this one, not on their own
            if s in self.trainer.schedulers:
                self.trainer.schedulers.remove(s)
            s.last_epoch -= 1
        self._attach()
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        sd = {k: v for k, v in self.__dict__.items() if k not in self._SKIP + ("_schedulers",)}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        sd["type"] = "SequentialLR"
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        children = sd.pop("_schedulers")
        if len(children) != len(self._schedulers):
            raise MlpcError(f"SequentialLR state has {len(children)} schedulers, this one {len(self._schedulers)}")
        super().load_state_dict(sd)
        for s, c in zip(self._schedulers, children):
            s.load_state_dict(c)


_CLASSES = {c.__name__: c for c in (StepLR, MultiStepLR, LinearLR, ExponentialLR, CosineAnnealingLR,
                                     OneCycleLR, SequentialLR)}


def from_state_dict(trainer: Any, state: dict[str, Any], attach: bool = True) -> LRScheduler:
    """Rebuild a scheduler from its state_dict (as saved in a checkpoint) without re-running its
    constructor, so the trainer's current hyperparameters are kept."""
    kind = state.get("type") if isinstance(state, dict) else None
    if kind not in _CLASSES:
        raise MlpcError(f"unknown lr scheduler {kind!r} in the saved state (known: {', '.join(_CLASSES)})")
    s: Any = _CLASSES[kind].__new__(_CLASSES[kind])
    s.trainer = _trainer_of(trainer, kind)
    if kind == "SequentialLR":
        s._schedulers = [from_state_dict(trainer, c, attach=False) for c in state["_schedulers"]]
    s.load_state_dict(state)
    if attach:
        s._attach()
    return s


__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "LinearLR", "ExponentialLR", "CosineAnnealingLR",
           "OneCycleLR", "SequentialLR", "from_state_dict"]
