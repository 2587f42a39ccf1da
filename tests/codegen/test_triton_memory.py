"""The Triton step's pool of temporaries: planned by passes/memory.py's packer over launch order."""

from __future__ import annotations

import pytest

from codegen.kernel_plan import plan_graph
from codegen.triton_memory import GPU_MEMORY, reads, writes
from tests.handgraphs import mlp_train_graph


@pytest.mark.parametrize("args", [([784, 256, 256, 10], 1024, "relu", "ce", "sgd", {"momentum": 0.9}),
                                  ([33, 17, 17, 5], 9, "tanh", "mse", "adam"),
                                  ([12, 16, 6], 1100, "gelu", "ce", "adam")])
def test_live_temporaries_never_share_bytes(args) -> None:
    plan = plan_graph(mlp_train_graph(*args), sm_count=4)
    n = len(plan.kernels)
    live: dict[str, set[int]] = {}
    for i, k in enumerate(plan.kernels):
        for v in reads(k) + writes(k):
            if v.buf is not None:
                live.setdefault(v.buf, set()).add(i)
    for v in list(plan.outputs.values()) + [src for src, _ in plan.copies]:
        if v.buf is not None:
            live.setdefault(v.buf, set()).add(n)
    temps = [b for b in plan.buffers.values() if b.kind == "temp"]
    assert temps and all(b.offset is not None and b.offset % GPU_MEMORY.align == 0 for b in temps)
    span = {b.name: (min(live[b.name]), max(live[b.name])) for b in temps}
    for a in temps:
        for b in temps:
            if a.name >= b.name:
                continue
            (alo, ahi), (blo, bhi) = span[a.name], span[b.name]
            if ahi < blo or bhi < alo:
                continue  # never live together: may share
            a0, b0 = a.offset or 0, b.offset or 0
            assert a0 + a.numel * a.dtype.itemsize <= b0 or b0 + b.numel * b.dtype.itemsize <= a0, (a, b)
        assert (a.offset or 0) + a.numel * a.dtype.itemsize <= plan.pool_bytes


def test_pool_reuses_memory_on_a_large_step() -> None:
    plan = plan_graph(mlp_train_graph([784, 256, 256, 10], 1024, "relu", "ce", "sgd", {"momentum": 0.9}))
    unshared = sum(b.numel * b.dtype.itemsize for b in plan.buffers.values() if b.kind == "temp")
    assert plan.pool_bytes < 0.6 * unshared
