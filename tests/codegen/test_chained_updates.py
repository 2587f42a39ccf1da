"""Optimizer updates that read another update's result (found by the random-graph search): correct on llvm."""

import numpy as np
import pytest

from mlpc.interpreter import interpret
from mlpc.parser import parse
from runtime.llvm_backend import lower_graph

# Before the fix the optimizer kernel ran its updates last-first and kept no result of its own, so the
# first graph computed p - 0.1 * x from a stale buffer (silently wrong) and the others raised
# KeyError("kernel has no buffer for ...") in codegen.
CHAINED_UPDATE_GRAPHS = [
    """func @g(param %p: f32[5], state %t: i32[], data %x: f32[5]) -> (p2: f32[5], q: f32[5]) {
  %lr: f32[] = full {value = 0.1}
  %wd: f32[] = full {value = 0.0}
  %b1: f32[] = full {value = 0.9}
  %b2: f32[] = full {value = 0.999}
  %0: f32[5] = sgd_update %p, %x, %t, %lr, %wd
  %1: f32[5] = sgd_update %0, %x, %t, %lr, %wd
  %2: f32[5] = mul %0, %x
  return %1, %2
}""",
    """func @g(param %p: f32[5], state %t: i32[], data %x: f32[5]) -> (p2: f32[5]) {
  %lr: f32[] = full {value = 0.1}
  %wd: f32[] = full {value = 0.0}
  %b1: f32[] = full {value = 0.9}
  %b2: f32[] = full {value = 0.999}
  %0: f32[5] = sgd_update %p, %x, %t, %lr, %wd
  %1: f32[5] = sgd_update %0, %x, %t, %lr, %wd
  return %1
}""",
    """func @g(param %p: f32[5], state %m: f32[5], state %v: f32[5], state %t: i32[], data %x: f32[5])
    -> (a: f32[5], b: f32[5], c: f32[5]) {
  %lr: f32[] = full {value = 0.1}
  %wd: f32[] = full {value = 0.0}
  %b1: f32[] = full {value = 0.9}
  %b2: f32[] = full {value = 0.999}
  %0: f32[5], %1: f32[5], %2: f32[5] = adam_update %p, %x, %m, %v, %t, %lr, %b1, %b2, %wd
  %3: f32[5], %4: f32[5], %5: f32[5] = adam_update %1, %2, %0, %v, %t, %lr, %b1, %b2, %wd
  return %3, %4, %5
}""",
    """func @g(param %p: f32[5], state %u: f32[5], state %t: i32[], data %x: f32[5]) -> (a: f32[5], b: f32[5]) {
  %lr: f32[] = full {value = 0.1}
  %wd: f32[] = full {value = 0.0}
  %b1: f32[] = full {value = 0.9}
  %b2: f32[] = full {value = 0.999}
  %0: f32[5], %1: f32[5] = momentum_update %p, %x, %u, %t, %lr, %b1
  %2: f32[5] = exp %1
  %3: f32[5], %4: f32[5] = momentum_update %2, %0, %1, %t, %lr, %b1
  return %3, %2
}""",
]


@pytest.mark.parametrize("src", CHAINED_UPDATE_GRAPHS)
def test_chained_updates_match_the_interpreter(src):
    g = parse(src)
    rng = np.random.default_rng(0)
    d = {i.name: rng.standard_normal(i.value.type.shape).astype(np.float32) if i.value.type.dtype.is_float
         else np.zeros((), np.int32) for i in g.inputs}
    want = interpret(g, d)
    got = lower_graph(g, use_cache=False).run({i.name: d[i.name].copy() for i in g.inputs if i.role != "data"},
                                              {i.name: d[i.name] for i in g.inputs if i.role == "data"})
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-6, err_msg=k)
