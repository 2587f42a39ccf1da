"""Runtime hyperparameters: trainer.lr/.momentum/.betas/.weight_decay are inputs of the compiled step
(no recompile on any backend), refusals of structural changes, parameter groups, against torch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import mlpc
from mlpc import optim
from mlpc.errors import MlpcError
from tests.training.torchref import (
    assert_params_close,
    batches,
    compile_mlp,
    torch_copy,
    torch_groups,
    torch_params,
    torch_step,
)

torch = pytest.importorskip("torch", reason="torch is installed by the test extra")

if importlib.util.find_spec("triton") is not None:
    from runtime.triton_check import select_device

    select_device()  # before anything imports triton: its interpreter when there is no GPU

BACKENDS = ["numpy", "llvm", pytest.param("triton", marks=pytest.mark.filterwarnings("ignore::RuntimeWarning"))]


def _no_more_lowering(trainer: mlpc.Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the backend lowered a graph again")
    monkeypatch.setattr(trainer.backend, "lower", refuse)


@pytest.mark.parametrize("backend", BACKENDS)
def test_changing_hyperparameters_between_steps_never_recompiles(backend, monkeypatch):
    """Every setter on every backend; the run equals the numpy reference with the same changes (the
    llvm/triton kernels contract multiply-adds: 1e-6)."""
    data = batches(4)

    def run(backend: str, guard: bool) -> dict[str, np.ndarray]:
        t = compile_mlp(optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), backend, clip_grad_norm=0.5)
        t.step(*data[0])
        compiles = t.compiles
        if guard:
            _no_more_lowering(t, monkeypatch)
        t.lr = 0.05
        t.step(*data[1])
        t.momentum = 0.5
        t.weight_decay = 0.1
        t.step(*data[2])
        t.param_groups[0]["lr"] = 0.2
        t.step(*data[3])
        assert t.compiles == compiles
        assert (t.lr, t.momentum, t.weight_decay) == (0.2, 0.5, 0.1)
        assert type(t.lr) is float
        return t.parameters()

    assert_params_close(run(backend, True), run("numpy", False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_adam_betas_and_lr_runtime_match_torch(backend):
    """AdamW whose lr, betas and weight decay change every few steps, against torch changing the same."""
    data = batches(12)
    t = compile_mlp(optim.AdamW(lr=1e-2, weight_decay=0.05), backend)
    tm = torch_copy(t)
    opt = torch.optim.AdamW(tm.parameters(), lr=1e-2, weight_decay=0.05)
    for i, (x, y) in enumerate(data):
        if i % 3 == 2:
            lr, betas, wd = 1e-2 / (i + 1), (0.9 - 0.02 * i, 0.99), 0.01 * i
            t.lr, t.betas, t.weight_decay = lr, betas, wd
            opt.param_groups[0].update(lr=lr, betas=betas, weight_decay=wd)
        t.step(x, y)
        torch_step(tm, opt, x, y)
    assert_params_close(t.parameters(), torch_params(tm))


def test_nesterov_look_ahead_uses_the_runtime_lr():
    """Momentum(nesterov) evaluates the gradient at p - lr*u: with lr changed, numpy and llvm agree and
    differ from a run that kept the first lr."""
    data = batches(3)
    runs = []
    for backend, change in (("numpy", True), ("llvm", True), ("numpy", False)):
        t = compile_mlp(optim.Momentum(lr=0.1, beta=0.9, nesterov=True), backend)
        t.step(*data[0])
        if change:
            t.lr = 0.5
            t.momentum = 0.6  # Momentum's beta
        t.step(*data[1])
        t.step(*data[2])
        runs.append(t.parameters())
    assert_params_close(runs[1], runs[0])
    assert not np.allclose(runs[0]["0.weight"], runs[2]["0.weight"])


def test_structural_changes_are_refused():
    sgd = compile_mlp(optim.SGD(lr=0.1))
    with pytest.raises(MlpcError, match="compiled without momentum"):
        sgd.momentum = 0.9
    with pytest.raises(MlpcError, match="compiled without momentum"):
        sgd.param_groups[0]["momentum"] = 0.9
    nag = compile_mlp(optim.SGD(lr=0.1, momentum=0.9, nesterov=True))
    with pytest.raises(MlpcError, match="Nesterov SGD needs momentum > 0"):
        nag.momentum = 0.0
    adam = compile_mlp(optim.Adam())
    with pytest.raises(MlpcError, match=r"betas\[0\]"):
        adam.momentum = 0.9
    with pytest.raises(MlpcError, match="no runtime hyperparameter 'betas'"):
        sgd.betas = (0.9, 0.99)
    newton = mlpc.compile(mlpc.nn.Sequential(mlpc.nn.Linear(3, 2)), mlpc.nn.MSELoss(), optim.Newton(), batch_size=4,
                          backend="numpy")
    with pytest.raises(MlpcError, match="Newton has no runtime hyperparameter 'lr'"):
        newton.lr = 0.5
    with pytest.raises(MlpcError, match="parameters are compiled into the step"):
        sgd.param_groups[0]["params"] = ["0.weight"]


@pytest.mark.parametrize("key,value,match", [
    ("lr", -0.1, "lr must be >= 0"), ("lr", float("nan"), "finite"), ("lr", "0.1", "finite number"),
    ("weight_decay", -1.0, ">= 0"), ("betas", (0.9, 1.0), r"beta2 must be in \[0, 1\)"),
    ("betas", 0.9, "pair"),
])
def test_bad_values_are_refused_and_change_nothing(key, value, match):
    t = compile_mlp(optim.Adam(lr=1e-3))
    before = (t.lr, t.betas, t.weight_decay)
    with pytest.raises(ValueError, match=match):
        setattr(t, key, value)
    assert (t.lr, t.betas, t.weight_decay) == before


def test_param_groups_per_group_weight_decay_and_lr_match_torch():
    """No weight decay on biases, a larger lr for the last layer (torch param_groups), 20 AdamW steps."""
    groups = [["0.bias", "2.bias"], ["2.weight"]]
    t = compile_mlp(optim.AdamW(lr=1e-2, weight_decay=0.1), "llvm",
                    param_groups=[{"params": groups[0], "weight_decay": 0.0}, {"params": groups[1], "lr": 3e-2}])
    assert [g["params"] for g in t.param_groups] == groups + [["0.weight"]]
    assert [g["weight_decay"] for g in t.param_groups] == [0.0, 0.1, 0.1]
    assert [g["lr"] for g in t.param_groups] == [1e-2, 3e-2, 1e-2]
    tm = torch_copy(t)
    tg = torch_groups(tm, groups + [["0.weight"]])
    opt = torch.optim.AdamW([{"params": tg[0], "weight_decay": 0.0}, {"params": tg[1], "lr": 3e-2},
                             {"params": tg[2]}], lr=1e-2, weight_decay=0.1)
    for x, y in batches(20):
        t.step(x, y)
        torch_step(tm, opt, x, y)
    assert_params_close(t.parameters(), torch_params(tm))


@pytest.mark.parametrize("groups,error,match", [
    ([{"params": ["0.bias"], "eps": 1e-6}], ValueError, "unknown or unsupported option 'eps'"),
    ([{"params": ["0.bias"], "momentum": 0.9}], ValueError, "unknown or unsupported option 'momentum'"),
    ([{"params": ["nope"]}], MlpcError, "names 'nope', which is not a parameter"),
    ([{"params": ["0.bias"]}, {"params": ["0.bias"]}], MlpcError, "in groups 1 and 2"),
    ([{"lr": 0.1}], ValueError, "needs 'params'"),
    ([{"params": "0.bias"}], TypeError, "list of parameter names"),
    ([{"params": []}], ValueError, "no parameters"),
    (["0.bias"], TypeError, r"param_groups\[0\] must be a dict"),
])
def test_bad_param_groups_are_refused(groups, error, match):
    with pytest.raises(error, match=match):
        compile_mlp(optim.Adam(), param_groups=groups)


def test_bad_clip_values_are_refused():
    for bad in (0.0, -1.0, float("inf"), "1", True):
        with pytest.raises(ValueError, match="clip_grad_norm must be a positive number"):
            compile_mlp(optim.SGD(), clip_grad_norm=bad)
