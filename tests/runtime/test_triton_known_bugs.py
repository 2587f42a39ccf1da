"""Triton backend bugs found by the reliability fuzzers, fixed and pinned (in Triton's interpreter when
there is no GPU): f64 graphs refused, constant outputs in their declared type, inf/nan attributes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
    pytest.skip("triton/torch not installed (pip install -e .[gpu])", allow_module_level=True)

from runtime.triton_check import select_device  # noqa: E402

select_device()

from mlpc.errors import MlpcError  # noqa: E402
from mlpc.interpreter import interpret  # noqa: E402
from mlpc.parser import parse  # noqa: E402
from runtime.backend import get_backend  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:no CUDA GPU:RuntimeWarning"),  # inf * 0 in the interpreter:
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]


def run(src: str, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    g = parse(src)
    be = get_backend("triton-ieee")
    compiled = be.lower(g, lambda stage, text: None)
    state = {i.name: be.to_device(inputs[i.name]) for i in g.inputs if i.role != "data"}
    got = compiled.run(state, {i.name: inputs[i.name] for i in g.inputs if i.role == "data"})
    return {k: np.asarray(v) for k, v in got.items()}, interpret(g, inputs)


def test_f64_graphs_are_refused_naming_f64():
    """It used to run them at f32 precision (5e-9 relative error on a 1x1 linear model)."""
    g = parse("""func @g(data %x: f64[2, 3], param %w: f64[3, 4]) -> (y: f64[2, 4]) {
  %0: f64[2, 4] = matmul %x, %w
  return %0
}""")
    with pytest.raises(MlpcError, match="f64"):
        get_backend("triton").lower(g, lambda stage, text: None)


def test_constant_outputs_keep_their_declared_shape_and_dtype():
    """Constant outputs came back as float32 with the planner's (1, n) broadcast view."""
    got, want = run("""func @g(data %x: f32[3, 4]) -> (ones: f32[4], idx: i32[2, 3], y: f32[3, 4]) {
  %0: f32[4] = full {value = 1.0, shape = [4]}
  %1: i32[2, 3] = full {value = 7.0, dtype = "i32", shape = [2, 3]}
  %2: f32[3, 4] = exp %x
  return %0, %1, %2
}""", {"x": np.zeros((3, 4), np.float32)})
    for k, w in want.items():
        assert got[k].shape == w.shape and got[k].dtype == w.dtype, (k, got[k].dtype, got[k].shape)
        np.testing.assert_array_equal(got[k], w, err_msg=k)


@pytest.mark.parametrize("alpha", ["inf", "-inf", "nan"])
def test_infinite_and_nan_attributes_render_as_floats(alpha):
    """leaky_relu {alpha = inf} was written into the kernel as a bare `inf`: NameError when it ran."""
    x = np.array([[-2.0, -0.5, 0.0, 3.0]], np.float32)
    got, want = run(f"""func @g(data %x: f32[1, 4]) -> (y: f32[1, 4]) {{
  %0: f32[1, 4] = leaky_relu %x {{alpha = {alpha}}}
  return %0
}}""", {"x": x})
    np.testing.assert_array_equal(got["y"], want["y"])
