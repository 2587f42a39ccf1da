"""The experiment library: quadratic paths, weight movement, optimizer study, figures and the probe CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mlpc
from mlpc import optim
from mlpc.errors import MlpcError
from mlpc.experiments import plots
from mlpc.experiments.init_probe import deep_mlp, probe_init
from mlpc.experiments.movement import distance_between, relative_movement, track
from mlpc.experiments.objective import CompiledObjective
from mlpc.experiments.optimizer_study import default_model, lecture_optimizers, run_study
from mlpc.experiments.quadratic import Quadratic, quadratic_loss
from mlpc.experiments.quadratic import lecture_optimizers as quad_optimizers


def test_quadratic_paths_follow_the_update_rules() -> None:
    quad = Quadratic()
    lr = 0.3
    path = quad.path(optim.SGD(lr=lr), 5)
    theta = quad.start.copy()
    for k in range(5):
        theta = theta - lr * (quad.p @ theta + quad.q)
        np.testing.assert_allclose(path[k + 1], theta, rtol=1e-12)
    # the lecture's momentum: u = b u + (1 - b) g, theta -= lr u; Nesterov takes g at theta - lr u
    for nesterov in (False, True):
        path = quad.path(optim.Momentum(lr=lr, beta=0.8, nesterov=nesterov), 4)
        theta, u = quad.start.copy(), np.zeros(2)
        for k in range(4):
            at = theta - lr * u if nesterov else theta
            u = 0.8 * u + 0.2 * (quad.p @ at + quad.q)
            theta = theta - lr * u
            np.testing.assert_allclose(path[k + 1], theta, rtol=1e-12)
    newton = quad.path(optim.Newton(lr=1.0), 1)
    np.testing.assert_allclose(newton[1], quad.minimum(), atol=1e-10)


def test_quadratic_optimizers_approach_the_minimum() -> None:
    quad = Quadratic()
    for name, opt in quad_optimizers(quad).items():
        end = quad.path(opt, 200)[-1]
        assert np.linalg.norm(end - quad.minimum()) < 0.05, name
    with pytest.raises(ValueError, match="positive definite"):
        Quadratic(p=np.array([[1.0, 0.0], [0.0, -1.0]]))


def test_objective_must_be_scalar() -> None:
    with pytest.raises(MlpcError, match="scalar"):
        CompiledObjective(lambda t: t * 2.0, np.ones(2), optim.SGD())
    obj = CompiledObjective(quadratic_loss, np.zeros(2), optim.SGD(lr=0.1), {"p": np.eye(2), "q": np.ones(2)})
    assert obj.step() == 0.0 and obj.step() < 0


def test_weight_movement_is_measured_against_initialization(mnist_batch) -> None:
    x, y = mnist_batch
    trainer = mlpc.compile(deep_mlp(mlpc.init.kaiming_normal(), 4, 32, bias=True), optimizer=optim.SGD(lr=0.05),
                           batch_size=100)
    w0 = trainer.parameters()
    moved = track(trainer, x, y, epochs=1, every=3)
    assert moved.steps == [0, 3, 6, 9, 10] and len(moved.losses) == 10
    assert list(moved.relative) == ["0.weight", "2.weight", "4.weight", "6.weight"]
    expect = relative_movement(w0, trainer.parameters(), list(moved.relative))
    assert moved.final() == pytest.approx(expect, rel=1e-6)
    for k, v in expect.items():
        np.testing.assert_allclose(v, np.linalg.norm(trainer.parameters()[k] - w0[k]) / np.linalg.norm(w0[k]),
                                   rtol=1e-5)
        assert 0 < v < 1  # the lecture: weights don't move that much
    other = {k: w0[k] + 1.0 for k in expect}
    np.testing.assert_allclose(distance_between(w0, other, w0, ["0.weight"])["0.weight"],
                               np.sqrt(w0["0.weight"].size) / np.linalg.norm(w0["0.weight"]), rtol=1e-6)
    with pytest.raises(MlpcError, match="starts at zero"):
        relative_movement({"w": np.zeros((2, 2))}, {"w": np.ones((2, 2))}, ["w"])


def test_optimizer_study_runs_each_optimizer_on_the_same_batches(mnist_batch) -> None:
    x, y = mnist_batch
    opts = lecture_optimizers()
    assert set(opts) == {"SGD", "momentum", "momentum (unbiased)", "Nesterov", "Adam", "Adam (no bias correction)"}
    res = run_study(x[:600], y[:600], x[600:], y[600:], opts, lambda: default_model(32), batch_size=100)
    for name in opts:
        assert len(res.losses[name]) == 6
        assert res.losses[name][-1] < res.losses[name][0]
        assert 0.15 < res.test_accuracy[name] <= 1.0  # better than chance after 6 small steps
    # identical initialization: every optimizer sees the same first loss
    assert len({round(v[0], 6) for v in res.losses.values()}) == 1
    assert "Nesterov" in res.table()


def test_figures_are_written(tmp_path, mnist_batch) -> None:
    x, y = mnist_batch
    results = [probe_init(c, x[:100], y[:100], depth=6, width=16) for c in ("2/n", "zeros")]
    quad = Quadratic()
    paths = {name: quad.path(opt, 3) for name, opt in list(quad_optimizers(quad).items())[:2]}
    files = [
        plots.probe_figure(results, str(tmp_path / "probe.png"), "t"),
        plots.movement_figure([0, 1], {"a": [0.0, 0.1], "b": [0.0, 0.2]}, str(tmp_path / "m.png")),
        plots.trajectories_figure(quad, paths, str(tmp_path / "q.png")),
        plots.loss_curves_figure({"a": [2.0, 1.0, 0.5]}, str(tmp_path / "l.png"), smooth=2),
        plots.newton_figure({"a": [2.0, 1.0]}, str(tmp_path / "n" / "n.png")),
    ]
    for f in files:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_probe_command_writes_figure_table_and_json(tmp_path, capsys) -> None:
    from mlpc.cli import main

    out = tmp_path / "probe"
    assert main(["probe", "--init", "1/n", "2/n", "zeros", "--depth", "8", "--width", "20", "--batch", "64",
                 "-o", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["probe.json", "probe.png", "probe.txt"]
    data = json.loads((out / "probe.json").read_text())
    assert [r["name"] for r in data["results"]] == ["1/n", "2/n", "zeros"]
    assert len(data["results"][0]["act"]) == 9 and len(data["results"][0]["grad"]) == 8
    assert data["results"][2]["grad"] == [0.0] * 8
    text = capsys.readouterr().out
    assert "act 2/n" in text and "zeros: every weight gradient is exactly 0" in text
    assert main(["probe", "--init", "bogus", "--depth", "2", "-o", str(out)]) == 2  # a bad argument
    assert capsys.readouterr().err.startswith("mlpc probe: error: argument --init: bad initialization 'bogus'")
