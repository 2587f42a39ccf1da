"""The probe pass: exact norms on small nets, no change when off, and the lecture's theory at depth 50."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlpc
from mlpc import init, nn, optim
from mlpc.errors import MlpcError
from mlpc.experiments.init_probe import deep_mlp, initializer, probe_init, table, theory_ratio
from mlpc.interpreter import interpret
from mlpc.ir import Graph, structurally_equal
from passes.manager import PassManager
from passes.probe import linear_layers
from passes.simplify import dce


def _small_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def _torch_norms(trainer: mlpc.Trainer, x: np.ndarray, y: np.ndarray) -> tuple[list[float], dict[str, float]]:
    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in trainer.parameters().items()}
    z = torch.tensor(x, dtype=torch.float64)
    acts = [z]
    z = torch.tanh(z @ params["0.weight"] + params["0.bias"])
    acts.append(z)
    z = torch.relu(z @ params["2.weight"] + params["2.bias"])
    acts.append(z)
    z = z @ params["4.weight"] + params["4.bias"]
    acts.append(z)
    torch.nn.functional.cross_entropy(z, torch.tensor(y, dtype=torch.long)).backward()
    return ([float(a.detach().norm()) for a in acts], {k: float(p.grad.norm()) for k, p in params.items()})


def test_probe_matches_torch_on_ragged_net() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(13, 7)).astype(np.float32)
    y = rng.integers(0, 3, 13).astype(np.int32)
    trainer = mlpc.compile(_small_model(), optimizer=optim.Adam(), batch_size=13, seed=3, probe=True)
    acts, grads = _torch_norms(trainer, x, y)
    trainer.step(x, y)
    got = trainer.last_probe
    assert sorted(got) == sorted([f"probe.act.{k}" for k in range(4)] + [f"probe.grad.{k}" for k in grads])
    np.testing.assert_allclose([got[f"probe.act.{k}"] for k in range(4)], acts, rtol=1e-5)
    for k, g in grads.items():
        np.testing.assert_allclose(got[f"probe.grad.{k}"], g, rtol=1e-4, atol=1e-7)


def test_probe_off_leaves_graph_unchanged() -> None:
    from mlpc.api import trace_model

    model = _small_model()
    model.initialize(0)
    traced = trace_model(model, 9, 7, nn.CrossEntropyLoss(), "step")
    plain = PassManager().run(traced, "autodiff,momentum,simplify")
    probed = PassManager().run(traced, "autodiff,probe,momentum,simplify")
    assert any(o.name.startswith("probe.") for o in probed.outputs)
    stripped = dce(probed.replace(outputs=[o for o in probed.outputs if not o.name.startswith("probe.")]))
    assert structurally_equal(stripped, plain)
    trainer = mlpc.compile(_small_model(), optimizer=optim.Momentum(lr=0.1), batch_size=9)
    assert not any(o.name.startswith("probe.") for o in trainer.graph().outputs)
    assert "probe.act" not in trainer.ir("simplified")
    x = np.ones((9, 7), np.float32)
    trainer.step(x, np.zeros(9, np.int32))
    assert trainer.last_probe == {}


def test_probe_before_autodiff_differentiates_itself() -> None:
    from mlpc.api import trace_model

    model = _small_model()
    model.initialize(0)
    traced = trace_model(model, 6, 7, nn.CrossEntropyLoss(), "step")
    early = PassManager().run(traced, "probe")
    late = PassManager().run(traced, "autodiff,probe")
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(6, 7)), "y": rng.integers(0, 3, 6)}
    feeds.update({k: p.data for k, p in model.parameters().items()})
    a, b = interpret(early, feeds), interpret(late, feeds)
    for k in a:
        if k.startswith("probe."):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6)


def test_linear_layers_follow_bias_and_activation() -> None:
    trainer = mlpc.compile(_small_model(), batch_size=4)
    layers = linear_layers(trainer.graph("autodiff"))
    assert [la.weight for la in layers] == ["0.weight", "2.weight", "4.weight"]
    assert [la.output.producer.name for la in layers] == ["tanh", "relu", "add"]  # type: ignore[union-attr]


def test_probe_without_linear_layers_is_a_clear_error() -> None:
    g = mlpc.trace(lambda x: (x * x).sum(), {"x": mlpc.types.f32(3)})
    g = Graph(g.name, g.inputs, g.ops, [g.outputs[0].__class__("loss", g.outputs[0].value)])
    with pytest.raises(MlpcError, match="no linear layers"):
        PassManager().run(g, "probe")


@pytest.mark.parametrize("seed", [0, 1])
def test_depth50_activation_norms_follow_theory(mnist_batch, seed: int) -> None:
    x, y = mnist_batch
    res = {c: probe_init(c, x, y, seed=seed) for c in ("1/n", "2/n", "3/n")}
    hidden = {c: np.array(r.act[1:50]) for c, r in res.items()}  # after layers 1..49 (all post-ReLU)
    assert hidden["1/n"][0] / hidden["1/n"][-1] > 1000
    assert hidden["2/n"].max() / hidden["2/n"].min() < 4
    assert hidden["3/n"][-1] / hidden["3/n"][0] > 1000
    # and the size of the effect is the predicted (c/2)^(48/2), within a factor of 10
    for c in (1.0, 3.0):
        got = hidden[f"{c:g}/n"][-1] / hidden[f"{c:g}/n"][0]
        assert 0.1 < got / theory_ratio(c, 48) < 10
    # gradients: vanishing for 1/n, exploding for 3/n, healthy for 2/n
    assert max(res["1/n"].grad) < 1e-4 < min(res["2/n"].grad)
    assert max(res["2/n"].grad) < 100 < min(res["3/n"].grad)
    assert "act 2/n" in table(list(res.values()))


def test_zero_init_gives_exactly_zero_gradients(mnist_batch) -> None:
    x, y = mnist_batch
    r = probe_init("zeros", x[:200], y[:200], depth=50)
    assert r.grad == [0.0] * 50
    assert r.act[1:] == [0.0] * 50
    with_bias = probe_init("zeros", x[:200], y[:200], depth=10, bias=True)
    assert with_bias.grad == [0.0] * 10 and with_bias.bias_grad[:9] == [0.0] * 9
    assert with_bias.bias_grad[9] > 0  # only the output bias can learn: W = 0 is a (bad) stationary point


def test_uniform_inits_probe(mnist_batch) -> None:
    x, y = mnist_batch
    xavier = probe_init("xavier_uniform", x[:200], y[:200])
    kaiming = probe_init("kaiming_uniform", x[:200], y[:200])
    # Xavier's variance 2/(n+m) = 1/n here ignores the ReLU: it shrinks like 1/n; Kaiming keeps the scale
    assert xavier.act[1] / xavier.act[49] > 1000
    # (a product of 49 random layer gains: with width 100 its spread is a few x, not orders of magnitude)
    assert 1 / 8 < kaiming.act[49] / kaiming.act[1] < 8


def test_bad_init_names_are_clear_errors() -> None:
    with pytest.raises(MlpcError, match="c/n"):
        initializer("x/n")
    with pytest.raises(MlpcError, match="bad initialization"):
        initializer("no_such_init")
    with pytest.raises(MlpcError, match="depth"):
        deep_mlp(init.zeros(), depth=0)
