"""The llvm backend keeps the IEEE results the NumPy reference produces: signed zeros, infinities, overflow."""

import numpy as np
import pytest

from mlpc.interpreter import interpret
from mlpc.parser import parse
from mlpc.printer import print_graph
from runtime.llvm_backend import lower_graph

# Each output is one rewrite a fast-math flag allows and IEEE arithmetic does not: `nsz` turns 0 - (+-0)
# into -(+-0) and drops -0.0 (d, f); `reassoc` turns (x / y) * y into x although x / y overflows or
# underflows (e); `arcp` turns x / y into x * (1 / y), which rounds differently (g).
GRAPH = """func @g(state %s: f32[6], param %p: f32[6]) -> (a: f32[6], b: f32[6], c: f32[6], d: f32[6], e: f32[6],
                                                      f: f32[6], g: f32[6]) {
  %z: f32[6] = full {value = 0.0, shape = [6]}
  %nz: f32[6] = full {value = -0.0, shape = [6]}
  %one: f32[6] = full {value = 1.0, shape = [6]}
  %a: f32[6] = div %s, %z
  %b: f32[6] = div %s, %nz
  %m: f32[6] = mul %s, %z
  %c: f32[6] = div %one, %m
  %n: f32[6] = sub %z, %m
  %d: f32[6] = div %one, %n
  %q: f32[6] = div %s, %p
  %e: f32[6] = mul %q, %p
  %ad: f32[6] = add %m, %nz
  %f: f32[6] = div %one, %ad
  %g: f32[6] = div %p, %s
  return %a, %b, %c, %d, %e, %f, %g
}"""
S = np.array([1.0, -2.0, 0.0, -0.0, 3e38, 1e-30], np.float32)
P = np.array([3.0, 7.0, 1e-30, 0.1, 1e38, 1e30], np.float32)


def bits(a):
    return np.asarray(a, np.float32).view(np.int32)


def test_special_values_are_bit_identical_to_the_interpreter():
    g = parse(GRAPH)
    want = interpret(g, {"s": S, "p": P})
    got = lower_graph(g, use_cache=False).run({"s": S.copy(), "p": P.copy()}, {})
    for k, w in want.items():
        np.testing.assert_array_equal(bits(got[k]), bits(w), err_msg=f"{k}: got {got[k]}, want {w}")


@pytest.mark.parametrize("zero", ["0.0", "-0.0"])
def test_signed_zero_constants_keep_their_sign_through_print_and_cache(zero, tmp_path, monkeypatch):
    """Found by the random-graph search: `full {value = -0.0}` printed like +0.0, so both graphs shared one
    compile-cache entry and div(state, full) got the other graph's sign of infinity."""
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    src = """func @g(state %s: f32[2]) -> (out: f32[2]) {
  %0: f32[2] = full {value = ZERO, shape = [2]}
  %1: f32[2] = div %s, %0
  return %1
}"""
    s = np.array([1.0, -1.0], np.float32)
    for first in ("0.0", "-0.0"):  # fill the cache with the other sign first, then with this one
        g = parse(src.replace("ZERO", first))
        assert ("-0.0" in print_graph(g)) == first.startswith("-")
        got = lower_graph(g).run({"s": s.copy()}, {})["out"]
        np.testing.assert_array_equal(got, interpret(g, {"s": s})["out"])
    g = parse(src.replace("ZERO", zero))
    with np.errstate(divide="ignore"):
        want = s / np.float32(float(zero))
    np.testing.assert_array_equal(lower_graph(g).run({"s": s.copy()}, {})["out"], want)
