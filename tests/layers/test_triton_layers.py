"""The new layers, losses and the dropout mask on the Triton backend (on the GPU when present, else under
TRITON_INTERPRET=1): training against torch, and masks bit-identical to the NumPy reference and llvm."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
    pytest.skip("triton/torch not installed (pip install -e .[gpu])", allow_module_level=True)

from runtime.triton_check import run_triton, select_device  # noqa: E402

DEVICE = select_device()

from tests.layers.test_dropout import mask_graph, reference_mask  # noqa: E402
from tests.layers.test_torch_training import TARGETS, run_against_torch  # noqa: E402

# the interpreter runs a step in seconds: two losses (one per target kind) cover the path; a GPU runs all
LOSSES = sorted(TARGETS) if DEVICE == "cuda" else ["bce", "ce"]


@pytest.mark.parametrize("loss", LOSSES)
def test_two_sgd_steps_match_torch(loss):
    run_against_torch("triton-ieee", loss)


@pytest.mark.parametrize("shape,p", [((5, 7), 0.3), ((64, 33), 0.7), ((3, 4), 0.0), ((2, 3), 1.0)])
def test_mask_bit_identical_to_reference(shape, p):
    g = mask_graph(shape, p, seed=(1 << 40) + 99, stream=2)
    for t in (0, 1, 12345):
        got, _ = run_triton(g, {"t": np.asarray(t, np.int32)})
        np.testing.assert_array_equal(got["mask"], reference_mask(g, t))
