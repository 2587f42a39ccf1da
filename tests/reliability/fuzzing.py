"""Shared helpers for the reliability tests: example budgets, case counters, graph retyping."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from hypothesis import settings

from mlpc.ir import Graph, Input, Op, Output, Value
from mlpc.types import DType, TensorType

COUNTS: Counter[str] = Counter()


LONG_SCALE = 20


def examples(base: int) -> settings:
    """Settings with `base` examples under the ci profile, LONG_SCALE times that under --long."""
    scale = LONG_SCALE if os.environ.get("MLPC_FUZZ_PROFILE") == "long" else 1
    return settings(max_examples=base * scale)


def count(name: str) -> None:
    """Count one tried case under `name` (reported at the end of the session, see conftest)."""
    COUNTS[name] += 1


def write_counts(path: str) -> None:
    with open(path, "w") as f:
        json.dump(dict(sorted(COUNTS.items())), f, indent=1)


def retype(graph: Graph, dtype: DType) -> Graph:
    """A copy of `graph` with every float tensor (and float dtype attribute) moved to `dtype`."""
    def t(tt: TensorType) -> TensorType:
        return tt.with_dtype(dtype) if tt.dtype.is_float else tt

    vmap: dict[Value, Value] = {}
    inputs = []
    for i in graph.inputs:
        v = Value(t(i.value.type), i.value.hint)
        vmap[i.value] = v
        inputs.append(Input(i.name, v, i.role))
    ops = []
    for op in graph.ops:
        attrs: dict[str, Any] = dict(op.attrs)
        if isinstance(attrs.get("dtype"), str) and DType(attrs["dtype"]).is_float:
            attrs["dtype"] = dtype.value
        results = [Value(t(r.type), r.hint) for r in op.results]
        new = Op(op.name, [vmap[v] for v in op.operands], results, attrs, op.loc)
        for old, r in zip(op.results, results):
            r.producer = new
            vmap[old] = r
        ops.append(new)
    return Graph(graph.name, inputs, ops, [Output(o.name, vmap[o.value]) for o in graph.outputs])
