"""Gradient clipping by global norm (compile(..., clip_grad_norm=)) against torch.nn.utils.clip_grad_norm_."""

from __future__ import annotations

import numpy as np
import pytest

from mlpc import optim
from passes.fusion import fuse
from tests.training.torchref import assert_params_close, batches, compile_mlp, torch_copy, torch_params, torch_step

torch = pytest.importorskip("torch", reason="torch is installed by the test extra")


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("max_norm", [0.05, 100.0])  # always clipping / never clipping
def test_sgd_momentum_with_clipping_matches_torch_for_20_steps(backend, max_norm):
    t = compile_mlp(optim.SGD(lr=0.1, momentum=0.9), backend, clip_grad_norm=max_norm)
    tm = torch_copy(t)
    opt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches(20):
        np.testing.assert_allclose(t.step(x, y), torch_step(tm, opt, x, y, clip=max_norm), rtol=1e-5)
    assert_params_close(t.parameters(), torch_params(tm))


def test_adam_with_clipping_matches_torch():
    t = compile_mlp(optim.Adam(lr=1e-2), "llvm", clip_grad_norm=0.1)
    tm = torch_copy(t)
    opt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    for x, y in batches(20):
        t.step(x, y)
        torch_step(tm, opt, x, y, clip=0.1)
    assert_params_close(t.parameters(), torch_params(tm))


def test_clip_scale_is_the_formula_of_torch():
    """The in-graph scale is min(1, max_norm / (norm + 1e-6)) of the global norm (measured with torch)."""
    t = compile_mlp(optim.SGD(lr=1.0), "numpy", clip_grad_norm=0.3)
    tm = torch_copy(t)
    x, y = batches(1)[0]
    torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y).long()).backward()
    norm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in tm.parameters())))
    scale = min(1.0, 0.3 / (norm + 1e-6))
    before = t.parameters()
    t.step(x, y)  # plain SGD, lr 1: p' = p - scale * g
    grads = {f"{i}.weight": tm[i].weight.grad.numpy().T for i in (0, 2)} | \
        {f"{i}.bias": tm[i].bias.grad.numpy() for i in (0, 2)}
    for k, p in t.parameters().items():
        np.testing.assert_allclose(before[k] - p, scale * grads[k], rtol=1e-5, atol=1e-8, err_msg=k)


def test_clipping_is_in_the_ir_and_read_by_the_optimizer_kernel():
    """One norm for all gradients in the graph; its scale is a scalar operand of every update op, so it
    is applied inside the optimizer kernel (no separate pass over the gradients)."""
    t = compile_mlp(optim.Adam(), "llvm", clip_grad_norm=1.0)
    g = t.graph("simplified")
    updates = [op for op in g.ops if op.name == "adam_update"]
    assert len(updates) == 4 and all(op.attrs["clip"] for op in updates)
    scale = {op.operands[-1] for op in updates}
    assert len(scale) == 1 and next(iter(scale)).producer.name == "minimum"
    assert sum(op.name == "sqrt" for op in g.ops) == 1
    plan = fuse(g)
    kernel_of = plan.kernel_of()
    kinds = {kernel_of[g.ops.index(op)].kind for op in updates}
    assert kinds == {"optimizer"}
    assert not any(op.name == "mul" and op.operands[0] in {u.operands[1] for u in updates} for op in g.ops)
