"""mlpc.cost: FLOP and byte rules per op, kernel-boundary bytes for fused groups."""

from __future__ import annotations

import dataclasses

import pytest

from mlpc.cost import group_cost, op_bytes, op_cost, op_flops
from mlpc.ir import Value
from mlpc.ops import Builder, registry
from mlpc.types import DType, TensorType, f32


def test_every_registered_op_has_a_cost_rule_and_registration_refuses_none():
    assert all(d.flops is not None for d in registry.all_ops().values())
    relu = registry.get("relu")
    with pytest.raises(ValueError, match="cost rule"):
        registry.register(dataclasses.replace(relu, name="relu_without_cost", flops=None))


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_matmul_is_2mnk_with_transpose_flags(ta, tb):
    m, k, n = 17, 33, 5
    b = Builder()
    x = Value(f32(k, m) if ta else f32(m, k))
    w = Value(f32(n, k) if tb else f32(k, n))
    b.matmul(x, w, transpose_a=ta, transpose_b=tb)
    op = b.ops[0]
    assert op_flops(op) == 2 * m * n * k
    assert op_bytes(op) == 4 * (m * k + k * n + m * n)


def test_elementwise_counts_per_output_element_and_reads_each_operand_once():
    b = Builder()
    x = Value(f32(6, 4))
    b.add(x, x)
    b.gelu(x)
    add, gelu = b.ops
    assert op_cost(add).flops == 24 and op_cost(add).bytes == 2 * 96  # x read once, result written
    assert op_flops(gelu) == 8 * 24


def test_reductions_and_losses_scale_with_their_input():
    b = Builder()
    logits = Value(f32(8, 10))
    labels = Value(TensorType(DType.i32, (8,)))
    b.sum(logits, axes=(0,))
    b.softmax_cross_entropy(logits, labels)
    s, ce = b.ops
    assert op_flops(s) == 80
    assert op_flops(ce) == 5 * 80
    assert op_bytes(ce) == 320 + 32 + 4


def test_adam_options_change_the_count():
    b = Builder()
    p = Value(f32(3, 5))
    t = Value(TensorType(DType.i32, ()))
    h = [Value(f32()) for _ in range(4)]  # lr, beta1, beta2, weight_decay: runtime operands
    b.adam_update(p, p, p, p, t, *h)
    b.adam_update(p, p, p, p, t, *h, bias_correction=False)
    plain, uncorrected = b.ops
    assert op_flops(plain) - op_flops(uncorrected) == 2 * 15
    assert op_cost(plain).intensity == pytest.approx(op_flops(plain) / op_bytes(plain))


def test_fused_group_moves_only_boundary_values():
    b = Builder()
    x = Value(f32(16, 8))
    w = Value(f32(8, 4))
    bias = Value(f32(4))
    h = b.relu(b.add(b.matmul(x, w), bias))
    ops = b.ops
    fused = group_cost(ops, {id(h)})
    assert fused.flops == sum(op_flops(op) for op in ops)
    assert fused.bytes == 4 * (16 * 8 + 8 * 4 + 4 + 16 * 4)
    assert fused.bytes < sum(op_bytes(op) for op in ops)
