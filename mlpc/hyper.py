"""Runtime hyperparameters of a trainer: parameter groups, their values, and the step's scalar inputs."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from mlpc.errors import MlpcError
from mlpc.optim import Adam, Momentum, Optimizer
from passes.optimizer import hyper_input

# values lr schedulers keep per group (torch keeps them in optimizer.param_groups too)
SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _hyper_of(opt: Optimizer, key: str) -> list[str]:
    """The runtime hyperparameters behind a torch-style group option."""
    if key == "betas":
        return ["beta1", "beta2"] if isinstance(opt, Adam) else []
    if key == "momentum" and isinstance(opt, Momentum):
        return ["beta"]
    return [key] if key in opt.hyper_keys() else []


class HyperParams:
    """Parameter groups (torch order: the user's groups, then one for the parameters no group lists)
    and each group's runtime values. Internal group k is the graph's hyper.g<k>.* (group 0: the rest)."""

    def __init__(self, optimizer: Optimizer, param_names: Sequence[str],
                 param_groups: Sequence[dict[str, Any]] | None) -> None:
        self.optimizer = optimizer
        self.user_groups: list[list[str]] = []
        overrides: list[dict[str, Any]] = []
        if param_groups and not optimizer.hyper_keys():
            raise ValueError(f"param_groups are not supported with {type(optimizer).__name__} (it has no runtime "
                             "hyperparameters)")
        for i, group in enumerate(param_groups or []):
            if not isinstance(group, dict):
                raise TypeError(f"param_groups[{i}] must be a dict like {{'params': [...], 'lr': ...}}, "
                                f"got {type(group).__name__}")
            allowed = ("params",) + optimizer.group_keys()
            unknown = sorted(set(group) - set(allowed))
            if unknown:
                raise ValueError(f"param_groups[{i}]: unknown or unsupported option {unknown[0]!r} for "
                                 f"{type(optimizer).__name__} (allowed: {', '.join(allowed)})")
            if "params" not in group:
                raise ValueError(f"param_groups[{i}] needs 'params', a list of parameter names")
            params = group["params"]
            if isinstance(params, str) or not all(isinstance(p, str) for p in params):
                raise TypeError(f"param_groups[{i}]['params'] must be a list of parameter names "
                                f"(model.named_parameters()), got {params!r}")
            if not params:
                raise ValueError(f"param_groups[{i}] has no parameters")
            self.user_groups.append(list(params))
            overrides.append({k: v for k, v in group.items() if k != "params"})
        from passes.optimizer import group_of_params

        where = group_of_params(list(param_names), self.user_groups)
        self.rest = [n for n in param_names if where[n] == 0]
        # public index -> internal index
        self.internal = [k + 1 for k in range(len(self.user_groups))] + ([0] if self.rest else [])
        base = optimizer.hyper_values()
        self.values: dict[int, dict[str, float]] = {k: dict(base) for k in self.internal}
        self.extras: dict[int, dict[str, float]] = {k: {} for k in self.internal}
        for k, ov in enumerate(overrides):
            for key, v in ov.items():
                self.set(key, v, k)

    # --- groups --------------------------------------------------------------------------
    def pass_groups(self) -> list[list[str]]:
        return self.user_groups

    def __len__(self) -> int:
        return len(self.internal)

    def params_of(self, group: int) -> list[str]:
        k = self.internal[group]
        return list(self.rest) if k == 0 else list(self.user_groups[k - 1])

    def _check_group(self, group: int) -> int:
        if not isinstance(group, int) or not 0 <= group < len(self.internal):
            raise IndexError(f"no parameter group {group!r} (there are {len(self.internal)})")
        return self.internal[group]

    # --- values --------------------------------------------------------------------------
    def get(self, key: str, group: int = 0) -> Any:
        k = self._check_group(group)
        names = _hyper_of(self.optimizer, key)
        if not names:
            raise self._no_key(key)
        vals = [self.values[k][n] for n in names]
        return tuple(vals) if key == "betas" else vals[0]

    def set(self, key: str, value: Any, group: int | None = None) -> None:
        """Set a torch-style option on one group (all groups when `group` is None); validated first."""
        names = _hyper_of(self.optimizer, key)
        if not names:
            raise self._no_key(key)
        if key == "betas":
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"betas must be a pair (beta1, beta2), got {value!r}")
            parts = list(value)
        else:
            parts = [value]
        checked = [self.optimizer.check_hyper(n, v) for n, v in zip(names, parts)]
        targets = list(range(len(self.internal))) if group is None else [group]
        for g in targets:
            k = self._check_group(g)
            for n, v in zip(names, checked):
                self.values[k][n] = v

    def _no_key(self, key: str) -> MlpcError:
        opt = type(self.optimizer).__name__
        if key == "momentum" and isinstance(self.optimizer, Adam):
            return MlpcError(f"{opt} has no momentum: its first moment decay is betas[0] (trainer.betas)")
        if key == "momentum":
            return MlpcError(f"this step was compiled without momentum ({opt}(momentum=0)): momentum changes the "
                             f"graph's structure; compile with {opt}(momentum=...) to set it")
        keys = ", ".join(self.optimizer.group_keys()) or "none"
        return MlpcError(f"{opt} has no runtime hyperparameter {key!r} (settable: {keys})")

    # --- the step's inputs ---------------------------------------------------------------
    def set_input(self, name: str, value: float) -> None:
        """Set a value by its graph input name (hyper.lr, hyper.g1.weight_decay, ...)."""
        for k, vals in self.values.items():
            for n in vals:
                if hyper_input(n, k) == name:
                    vals[n] = self.optimizer.check_hyper(n, value)
                    return
        raise MlpcError(f"unknown hyperparameter input {name!r}")

    def feed(self) -> dict[str, float]:
        """{graph input name: value} for every hyper input of the step."""
        return {hyper_input(n, k): v for k, vals in self.values.items() for n, v in vals.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "groups": [dict(self.values[k]) for k in self.internal],
                "extras": [dict(self.extras[k]) for k in self.internal]}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        groups = sd.get("groups")
        if sd.get("version") != 1 or not isinstance(groups, list) or len(groups) != len(self.internal):
            raise MlpcError(f"hyperparameter state does not fit this trainer ({len(self.internal)} groups): {sd!r}")
        for g, vals in enumerate(groups):
            k = self.internal[g]
            for n, v in vals.items():
                if n not in self.values[k]:
                    raise MlpcError(f"hyperparameter state names {n!r}, which this step does not have")
                self.values[k][n] = self.optimizer.check_hyper(n, v)
        for g, extra in enumerate(sd.get("extras") or []):
            self.extras[self.internal[g]] = {n: float(v) for n, v in extra.items() if n in SCHEDULER_KEYS}


class ParamGroup:
    """A live view of one parameter group, like an entry of torch's optimizer.param_groups:
    group["lr"] reads, group["lr"] = x sets (the next step uses it, no recompile)."""

    def __init__(self, hyper: HyperParams, index: int, on_change: Callable[[], None] | None = None) -> None:
        self._h, self._i, self._on_change = hyper, index, on_change

    def keys(self) -> list[str]:
        return ["params"] + list(self._h.optimizer.group_keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys() or key in self._extras()

    def _extras(self) -> dict[str, float]:
        return self._h.extras[self._h.internal[self._i]]

    def __getitem__(self, key: str) -> Any:
        if key == "params":
            return self._h.params_of(self._i)
        if key in SCHEDULER_KEYS:
            try:
                return self._extras()[key]
            except KeyError:
                raise KeyError(key) from None
        return self._h.get(key, self._i)

    def setdefault(self, key: str, value: Any) -> Any:
        if key not in self:
            self[key] = value
        return self[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            raise MlpcError("a group's parameters are compiled into the step: pass param_groups= to mlpc.compile")
        if key in SCHEDULER_KEYS:
            self._extras()[key] = float(value)
            return
        self._h.set(key, value, self._i)
        if self._on_change is not None:
            self._on_change()

    def __repr__(self) -> str:
        return "ParamGroup(" + ", ".join(f"{k}={self[k]!r}" for k in self.keys()) + ")"


def write_scalar(backend: Any, buf: Any, value: float, dtype: np.dtype) -> Any:
    """Store `value` into a scalar device buffer in place (CUDA graphs keep their addresses); returns it."""
    if isinstance(buf, np.ndarray) and buf.flags.writeable:
        buf[...] = value
        return buf
    fill = getattr(buf, "fill_", None)
    if fill is not None:
        fill(value)
        return buf
    return backend.to_device(np.asarray(value, dtype=dtype))
