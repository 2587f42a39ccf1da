"""Training steps of activation MLPs on the llvm backend: no libm call in their code, activation derivatives
fused into the backward gemm epilogues as relu_grad is, results as the NumPy reference's."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim

ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": lambda: nn.GELU("tanh"),
        "gelu_erf": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "softplus": nn.Softplus}
# float32 libm functions (and the double ones they would widen to); `pow` (double) stays: Adam's bias
# correction beta^t, once per step on one scalar, not per element
LIBM = re.compile(r"\b(tanhf?|expf?|exp2f?|expm1f?|logf?|log1pf?|log2f?|erff?|erfcf?|powf|sinhf?|coshf?)(@\w+)?\b")
# activations whose derivative is elementwise in f32 (no i1 `where` masks): fused into the gemm epilogue
FUSED = ("relu", "tanh", "sigmoid", "gelu", "gelu_erf", "silu")


def _trainer(act: str, backend: str = "llvm"):
    a = ACTS[act]
    model = nn.Sequential(nn.Linear(12, 24), a(), nn.Linear(24, 24), a(), nn.Linear(24, 5))
    return mlpc.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=1e-2), batch_size=16, backend=backend, seed=3)


@pytest.fixture(scope="module")
def trainers():
    return {a: _trainer(a) for a in ACTS}


@pytest.mark.parametrize("act", list(ACTS))
def test_step_assembly_calls_no_libm(trainers, act):
    asm = trainers[act].ir("asm")
    code = "\n".join(line.split("#")[0] for line in asm.splitlines())
    assert not sorted(set(m.group(0) for m in LIBM.finditer(code))), act
    assert "mlpc_step" in asm


def _kernels(tr) -> list[str]:
    return [line for line in tr.ir("fused").splitlines() if line.startswith("//   k")]


@pytest.mark.parametrize("act", FUSED)
def test_activation_and_derivative_live_in_gemm_epilogues(trainers, act):
    """As many kernels as the ReLU step: forward activation and backward derivative (with the column sum
    of the bias gradient) ride on gemms, no elementwise pass over a hidden layer of their own."""
    ks = _kernels(trainers[act])
    assert len(ks) == len(_kernels(trainers["relu"])), "\n".join(ks)
    hidden = [k for k in ks if "_elementwise" in k or "_reduce" in k]
    assert all("(%t)" in k for k in hidden), "\n".join(hidden)  # only the step counter's increment
    assert sum(" sum]" in k for k in ks if "_gemm" in k) == 2


@pytest.mark.parametrize("act", list(ACTS))
def test_steps_match_the_numpy_reference(trainers, act):
    rng = np.random.default_rng(0)
    ref = _trainer(act, "numpy")
    tr = _trainer(act)
    for _ in range(3):
        x = rng.standard_normal((16, 12)).astype(np.float32) * 3
        y = rng.integers(0, 5, 16)
        want, got = ref.step(x, y), tr.step(x, y)
        assert abs(got - want) <= 2e-6 * max(1.0, abs(want)), (act, got, want)
    for (name, w), (_, g) in zip(ref.state_dict().items(), tr.state_dict().items()):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{act}: {name}")
