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
    "GELU": lambda draw: torch.nn.GELU(approximate=draw(st.sampled_from(["none", "tanh"]))),
    "SiLU": lambda draw: torch.nn.SiLU(),
    "ELU": lambda draw: torch.nn.ELU(draw(st.sampled_from([1.0, 0.5, 2.0]))),
    # threshold 20 only: torch's TorchScript exporter drops the threshold (test_softplus_threshold covers it)
    "Softplus": lambda draw: torch.nn.Softplus(draw(st.sampled_from([1.0, 2.0, 0.5]))),
    "Identity": lambda draw: torch.nn.Identity(),
    "Flatten": lambda draw: torch.nn.Flatten(),
}
ACTIVATIONS = sorted(ACTIVATION_BUILDERS)
ODD_WIDTHS = st.integers(0, 7).map(lambda k: 2 * k + 1)  # 1, 3, ..., 15
OTHER_LAYERS = {"Linear", "LayerNorm", "Dropout"}  # drawn by `mlps` itself


def layer_norm(draw: Any, width: int) -> torch.nn.LayerNorm:
    ln = torch.nn.LayerNorm(width, eps=draw(st.sampled_from([1e-5, 1e-3])), elementwise_affine=draw(st.booleans()),
                            bias=draw(st.booleans()))
    with torch.no_grad():  # not the initial ones and zeros, so that a swapped weight and bias would show
        for p in ln.parameters():
            p.uniform_(0.5, 1.5)
    return ln


@st.composite
def mlps(draw: Any, max_depth: int = 6, nested: bool = True, dropout: bool = True) -> tuple[torch.nn.Sequential, int]:
    """(torch model, input width): depth 1-6 Linears with odd widths, each followed by a drawn activation and
    sometimes a LayerNorm (widths > 1: LayerNorm of one feature is constant) or a Dropout."""
    depth = draw(st.integers(1, max_depth))
    widths = [draw(ODD_WIDTHS) for _ in range(depth + 1)]
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    layers: list[torch.nn.Module] = []
    for i in range(depth):
        lin = torch.nn.Linear(widths[i], widths[i + 1], bias=draw(st.booleans()))
        block = [lin, ACTIVATION_BUILDERS[draw(st.sampled_from(ACTIVATIONS))](draw)]
        extra = draw(st.sampled_from(["none", "none", "layernorm", "dropout"]))
        if extra == "layernorm" and widths[i + 1] > 1:
            block.insert(1, layer_norm(draw, widths[i + 1]))
        if extra == "dropout" and dropout:
            block.append(torch.nn.Dropout(draw(st.sampled_from([0.1, 0.5]))))
        if nested and draw(st.booleans()):
            layers.append(torch.nn.Sequential(*block))
        else:
            layers.extend(block)
    return torch.nn.Sequential(*layers).eval(), widths[0]


def table_covered() -> set[str]:
    return set(table.BY_TORCH) - set(ACTIVATION_BUILDERS) - OTHER_LAYERS


def data(rows: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, width)).astype(np.float32)


def forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()
