"""Random torch MLPs for the interop tests: depth, odd widths, an activation per layer, bias or not."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from hypothesis import strategies as st

from mlpc.interop import table

# one torch instance per table activation (its options drawn); a new table entry needs a builder here
ACTIVATION_BUILDERS: dict[str, Callable[[Any], torch.nn.Module]] = {
    "ReLU": lambda draw: torch.nn.ReLU(),
    "Sigmoid": lambda draw: torch.nn.Sigmoid(),
    "Tanh": lambda draw: torch.nn.Tanh(),
    "LeakyReLU": lambda draw: torch.nn.LeakyReLU(draw(st.sampled_from([0.01, 0.2, 0.5]))),
    "GELU": lambda draw: torch.nn.GELU(approximate="tanh"),
    "Identity": lambda draw: torch.nn.Identity(),
    "Flatten": lambda draw: torch.nn.Flatten(),
}
ACTIVATIONS = sorted(ACTIVATION_BUILDERS)
ODD_WIDTHS = st.integers(0, 7).map(lambda k: 2 * k + 1)  # 1, 3, ..., 15


@st.composite
def mlps(draw: Any, max_depth: int = 6, nested: bool = True) -> tuple[torch.nn.Sequential, int]:
    """(torch model, input width): depth 1-6 Linears with odd widths, each followed by a drawn activation."""
    depth = draw(st.integers(1, max_depth))
    widths = [draw(ODD_WIDTHS) for _ in range(depth + 1)]
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    layers: list[torch.nn.Module] = []
    for i in range(depth):
        lin = torch.nn.Linear(widths[i], widths[i + 1], bias=draw(st.booleans()))
        act = ACTIVATION_BUILDERS[draw(st.sampled_from(ACTIVATIONS))](draw)
        if nested and draw(st.booleans()):
            layers.append(torch.nn.Sequential(lin, act))
        else:
            layers.extend([lin, act])
    return torch.nn.Sequential(*layers).eval(), widths[0]


def table_covered() -> set[str]:
    return {e.torch for e in table.ACTIVATIONS} - set(ACTIVATION_BUILDERS)


def data(rows: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, width)).astype(np.float32)


def forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()
