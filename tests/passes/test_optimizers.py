"""Optimizer passes against hand-written NumPy versions of docs/design.md's formulas, and against torch.optim."""

import numpy as np
import pytest

from mlpc import nn, optim
from mlpc.api import compile
from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import DType, TensorType
from passes.manager import PassManager

C = np.array([0.5, -1.0, 2.0, 0.1], dtype=np.float64)
D = np.array([1.0, 2.0, 0.5, 3.0], dtype=np.float64)


def quadratic_graph() -> Graph:
    """loss = sum(c p) + 1/2 sum(d p^2), so grad = c + d p."""
    b = Builder()
    t = TensorType(DType.f64, (4,))
    p = Input("p", Value(t, "p"), "param")
    c = Input("c", Value(t, "c"))
    d = Input("d", Value(t, "d"))
    lin = b.sum(b.mul(c.value, p.value), axes=[0])
    quad = b.mul(b.sum(b.mul(d.value, b.square(p.value)), axes=[0]), b.scalar(0.5, lin))
    return Graph("f", [c, d, p], b.ops, [Output("loss", b.add(lin, quad))])


def grad(p):
    return C + D * p


def run_mlpc(opt: optim.Optimizer, steps: int) -> list[np.ndarray]:
    g = PassManager().run(quadratic_graph(), f"autodiff,{opt.pipeline_text()},simplify")
    state = {i.name: np.zeros(i.value.shape, i.value.dtype.numpy) for i in g.inputs if i.role == "state"}
    hyper = optim.hyper_feed(g, [opt.hyper_values()])
    p = np.array([1.0, -2.0, 0.5, 0.3])
    trail = []
    for _ in range(steps):
        out = interpret(g, {"c": C, "d": D, "p": p, **state, **hyper})
        p = out["p"]
        state = {k: out[k] for k in state}
        trail.append(p)
    assert int(state["t"]) == steps
    return trail


def reference_sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, steps=6):
    p = np.array([1.0, -2.0, 0.5, 0.3])
    buf = None
    trail = []
    for _ in range(steps):
        g = grad(p) + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            d = g + momentum * buf if nesterov else buf
        else:
            d = g
        p = p - lr * d
        trail.append(p)
    return trail


def reference_momentum(lr, beta, unbiased=False, nesterov=False, steps=6):
    p = np.array([1.0, -2.0, 0.5, 0.3])
    u = np.zeros(4)
    trail = []
    for t in range(steps):
        g = grad(p - lr * u) if nesterov else grad(p)
        u = beta * u + (1 - beta) * g
        p = p - lr * (u / (1 - beta ** (t + 1)) if unbiased else u)
        trail.append(p)
    return trail


def reference_adam(lr, betas, eps, bias_correction=True, weight_decay=0.0, decoupled=False, steps=6):
    p = np.array([1.0, -2.0, 0.5, 0.3])
    m = np.zeros(4)
    v = np.zeros(4)
    trail = []
    for t in range(steps):
        g = grad(p)
        if weight_decay and decoupled:
            p = p - lr * weight_decay * p
        elif weight_decay:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        mh, vh = (m / (1 - betas[0] ** (t + 1)), v / (1 - betas[1] ** (t + 1))) if bias_correction else (m, v)
        p = p - lr * mh / (np.sqrt(vh) + eps)
        trail.append(p)
    return trail


CASES = [
    (optim.SGD(lr=0.1), reference_sgd(0.1)),
    (optim.SGD(lr=0.1, weight_decay=0.01), reference_sgd(0.1, weight_decay=0.01)),
    (optim.SGD(lr=0.05, momentum=0.9), reference_sgd(0.05, 0.9)),
    (optim.SGD(lr=0.05, momentum=0.8, dampening=0.3), reference_sgd(0.05, 0.8, 0.3)),
    (optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
     reference_sgd(0.05, 0.9, nesterov=True, weight_decay=0.1)),
    (optim.Momentum(lr=0.1, beta=0.9), reference_momentum(0.1, 0.9)),
    (optim.Momentum(lr=0.1, beta=0.9, unbiased=True), reference_momentum(0.1, 0.9, unbiased=True)),
    (optim.Momentum(lr=0.1, beta=0.8, nesterov=True), reference_momentum(0.1, 0.8, nesterov=True)),
    (optim.Momentum(lr=0.1, beta=0.8, unbiased=True, nesterov=True),
     reference_momentum(0.1, 0.8, unbiased=True, nesterov=True)),
    (optim.Adam(lr=0.1), reference_adam(0.1, (0.9, 0.999), 1e-8)),
    (optim.Adam(lr=0.1, eps=1e-6, bias_correction=False), reference_adam(0.1, (0.9, 0.999), 1e-6, False)),
    (optim.Adam(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1), reference_adam(0.05, (0.8, 0.99), 1e-8, True, 0.1)),
    (optim.AdamW(lr=0.05, weight_decay=0.1), reference_adam(0.05, (0.9, 0.999), 1e-8, True, 0.1, True)),
]


@pytest.mark.parametrize("opt, expected", CASES, ids=[c[0].pipeline_text() for c in CASES])
def test_optimizer_pass_matches_design_formula(opt, expected):
    got = run_mlpc(opt, len(expected))
    for step, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"step {step + 1}")


# --- against torch.optim on a real MLP -----------------------------------------------------

import torch  # noqa: E402  the test extra installs torch


def torch_run(model, opt_factory, batches):
    tm = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5)).double()
    params = model.parameters()
    with torch.no_grad():
        for i in (0, 2):
            tm[i].weight.copy_(torch.from_numpy(params[f"{i}.weight"].data.T.astype(np.float64)))
            tm[i].bias.copy_(torch.from_numpy(params[f"{i}.bias"].data.astype(np.float64)))
    opt = opt_factory(tm.parameters())
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x).double()), torch.from_numpy(y).long())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {f"{i}.weight": tm[i].weight.detach().numpy().T for i in (0, 2)} | \
        {f"{i}.bias": tm[i].bias.detach().numpy() for i in (0, 2)}, losses


TORCH_CASES = [
    ("sgd", optim.SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd-momentum-wd", optim.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("sgd-nesterov", optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("adam", optim.Adam(lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    ("adam-wd", optim.Adam(lr=1e-2, weight_decay=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2)),
    ("adamw", optim.AdamW(lr=1e-2, weight_decay=0.05), lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05)),
]


@pytest.mark.parametrize("name, ours, theirs", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_torch_optim_for_20_steps(name, ours, theirs):
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(8, 12)).astype(np.float32), rng.integers(0, 5, 8).astype(np.int32))
               for _ in range(20)]
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))
    trainer = compile(model, nn.CrossEntropyLoss(), ours, batch_size=8, backend="numpy", seed=3)
    expected, torch_losses = torch_run(model, theirs, batches)
    losses = [trainer.step(x, y) for x, y in batches]
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-5)
    for k, v in trainer.parameters().items():
        np.testing.assert_allclose(v, expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
