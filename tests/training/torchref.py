"""Helpers: the same MLP and data in mlpc and torch 2.13 (CPU), for comparing training runs."""

from __future__ import annotations

from typing import Any

import numpy as np

import mlpc
from mlpc import nn

SIZES = (12, 16, 5)
BATCH = 8


def batches(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(BATCH, SIZES[0])).astype(np.float32),
             rng.integers(0, SIZES[-1], BATCH).astype(np.int32)) for _ in range(n)]


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(), nn.Linear(SIZES[1], SIZES[2]))


def compile_mlp(optimizer: Any, backend: str = "numpy", **kw: Any) -> mlpc.Trainer:
    return mlpc.compile(model(), nn.CrossEntropyLoss(), optimizer, batch_size=BATCH, backend=backend, seed=3, **kw)


def torch_copy(trainer: mlpc.Trainer) -> Any:
    """A float32 torch.nn.Sequential holding the trainer's current weights (torch stores W transposed)."""
    import torch

    tm = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(), torch.nn.Linear(SIZES[1], SIZES[2]))
    params = trainer.parameters()
    with torch.no_grad():
        for i in (0, 2):
            tm[i].weight.copy_(torch.from_numpy(params[f"{i}.weight"].T.copy()))
            tm[i].bias.copy_(torch.from_numpy(params[f"{i}.bias"].copy()))
    return tm


def torch_params(tm: Any) -> dict[str, np.ndarray]:
    return {f"{i}.weight": tm[i].weight.detach().numpy().T for i in (0, 2)} | \
        {f"{i}.bias": tm[i].bias.detach().numpy() for i in (0, 2)}


def torch_step(tm: Any, opt: Any, x: np.ndarray, y: np.ndarray, clip: float | None = None) -> float:
    import torch

    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y).long())
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(tm.parameters(), clip)
    opt.step()
    return float(loss.item())


def torch_groups(tm: Any, names: list[list[str]]) -> list[list[Any]]:
    """torch parameter lists for groups of mlpc parameter names."""
    by_name = {f"{i}.{k}": getattr(tm[i], k) for i in (0, 2) for k in ("weight", "bias")}
    return [[by_name[n] for n in group] for group in names]


def assert_params_close(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], rtol: float = 1e-5,
                        atol: float = 1e-6) -> None:
    for k, v in ours.items():
        np.testing.assert_allclose(v, theirs[k], rtol=rtol, atol=atol, err_msg=k)
