"""SiLU, exact GELU and erf: NumPy references against torch 2.13, and forward and gradient finite in
float32 for every finite input (the derivatives saturate instead of computing inf * 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: E402  the test extra installs torch

from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, get
from mlpc.types import f32
from passes.autodiff import autodiff

X = np.concatenate([np.linspace(-12, 12, 481), [-3e38, -7e12, -1e5, 1e5, 7e12, 3e38]]).astype(np.float32)


@pytest.mark.parametrize("op,fn", [("silu", lambda t: torch.nn.functional.silu(t)),
                                   ("gelu_erf", lambda t: torch.nn.functional.gelu(t)),
                                   ("erf", lambda t: torch.erf(t))])
def test_reference_matches_torch_value_and_gradient(op, fn):
    t = torch.tensor(X.astype(np.float64), requires_grad=True)
    y = fn(t)
    y.sum().backward()
    np.testing.assert_allclose(get(op).reference(X.astype(np.float64)), y.detach().numpy(), rtol=1e-12, atol=1e-300)
    b = Builder()
    x = Value(f32(X.size), "x")
    loss = b.sum(b.op(op, x), axes=[0])
    g = Graph("f", [Input("x", x, "param")], b.ops, [Output("loss", loss)])
    grad = interpret(autodiff(g), {"x": X})["grad.x"]
    assert np.all(np.isfinite(grad)), X[~np.isfinite(grad)]
    # float32 arithmetic in the derivative: within 2e-6 of torch's float64 gradient
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=2e-6, atol=2e-6)
