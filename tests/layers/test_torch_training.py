"""Two SGD steps of a model holding every new layer, for every new loss, on numpy and llvm (Triton:
test_triton_layers.py) against PyTorch 2.13 (CPU, float32) from the same weights: losses and parameters within 1e-5
(measured: at most ~1e-6 on llvm, where exp is Cephes' and fast-math reassociates)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is in the test extra")

import mlpc  # noqa: E402
from mlpc import nn, optim  # noqa: E402

TN = torch.nn
TOL = 1e-5


def models():
    mine = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 16), nn.SiLU(), nn.ELU(0.5),
                         nn.Linear(16, 12), nn.Softplus(2.0, 5.0), nn.LayerNorm(12, eps=1e-3, bias=False),
                         nn.GELU(approximate="tanh"), nn.Linear(12, 4))
    theirs = TN.Sequential(TN.Linear(6, 16), TN.LayerNorm(16), TN.GELU(), TN.Linear(16, 16), TN.SiLU(), TN.ELU(0.5),
                           TN.Linear(16, 12), TN.Softplus(2.0, 5.0), TN.LayerNorm(12, eps=1e-3, bias=False),
                           TN.GELU(approximate="tanh"), TN.Linear(12, 4)).double()
    return mine, theirs


def copy_weights(params: dict[str, np.ndarray], theirs) -> None:
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            v = params[name]
            p.copy_(torch.tensor(v.T if name.endswith("weight") and v.ndim == 2 else v, dtype=torch.float64))


def torch_params(theirs) -> dict[str, np.ndarray]:
    return {n: (p.detach().numpy().T if p.ndim == 2 else p.detach().numpy()) for n, p in theirs.named_parameters()}


RNG = np.random.default_rng(5)
X = RNG.normal(0, 1, (9, 6)).astype(np.float32)
TARGETS = {
    "ce": (lambda: nn.CrossEntropyLoss(label_smoothing=0.2), lambda: TN.CrossEntropyLoss(label_smoothing=0.2),
           RNG.integers(0, 4, 9).astype(np.int32)),
    "mse-sum": (lambda: nn.MSELoss(reduction="sum"), lambda: TN.MSELoss(reduction="sum"),
                RNG.normal(0, 1, (9, 4)).astype(np.float32)),
    "l1": (nn.L1Loss, TN.L1Loss, RNG.normal(0, 1, (9, 4)).astype(np.float32)),
    "huber": (lambda: nn.HuberLoss(delta=0.5), lambda: TN.HuberLoss(delta=0.5),
              RNG.normal(0, 1, (9, 4)).astype(np.float32)),
    "bce": (nn.BCEWithLogitsLoss, TN.BCEWithLogitsLoss, (RNG.random((9, 4)) > 0.5).astype(np.float32)),
}
BACKENDS = ["numpy", "llvm"]  # Triton: tests/layers/test_triton_layers.py


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", sorted(TARGETS))
def test_two_sgd_steps_match_torch(backend, loss):
    run_against_torch(backend, loss)


def run_against_torch(backend: str, loss: str) -> None:
    make_mine, make_theirs, y = TARGETS[loss]
    mine, theirs = models()
    tr = mlpc.compile(mine, make_mine(), optim.SGD(lr=0.1), batch_size=9, backend=backend, seed=3)
    copy_weights(tr.parameters(), theirs)
    opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    yt = torch.tensor(y, dtype=torch.long if y.dtype.kind == "i" else torch.float64)
    crit = make_theirs()
    for _ in range(2):
        got = tr.step(X, y)
        opt.zero_grad()
        want = crit(theirs(torch.tensor(X, dtype=torch.float64)), yt)
        want.backward()
        opt.step()
        assert abs(got - want.item()) <= TOL * max(1.0, abs(want.item()))
    want_p = torch_params(theirs)
    for name, v in tr.parameters().items():
        np.testing.assert_allclose(v, want_p[name], rtol=TOL, atol=TOL, err_msg=name)
