"""Running one random training problem every way mlpc can, against the hand-written NumPy reference."""

from __future__ import annotations

from typing import Any

import numpy as np

import mlpc
from mlpc.api import Trainer, trace_model
from mlpc.interpreter import interpret
from mlpc.ir import Graph
from mlpc.types import DType
from passes.manager import PassManager
from runtime.backend import get_backend

from . import npmlp
from .fuzzing import retype
from .strategies import Problem


def compile_problem(p: Problem, backend: str, **extra: Any) -> Trainer:
    return mlpc.compile(p.model(), p.loss_module(), p.optimizer(), batch_size=p.batch, backend=backend,
                        seed=p.seed, **extra)


def step_graph(trainer: Trainer, rows: int, dtype: DType = DType.f32) -> Graph:
    """The optimized step graph the trainer runs for a batch of `rows` rows, traced and optimized in `dtype`.

    Retyping happens before the passes, so constants folded by simplify are rounded in `dtype`. The
    trainer's runtime hyperparameters become constants of `dtype` (exact in f64).
    """
    from passes.optimizer import bind_hyper

    traced = trace_model(trainer.model, rows, trainer.in_features, trainer.loss, "step")
    if dtype != DType.f32:
        traced = retype(traced, dtype)
    return bind_hyper(PassManager().run(traced, trainer._pipeline()), trainer.hyper.feed())


def host_state(trainer: Trainer) -> dict[str, np.ndarray]:
    return {**trainer.parameters(), **trainer.optimizer_state()}


def run_graph(graph: Graph, state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
              backend: str | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """One step of `graph` (interpreter when backend is None); returns the loss and the new state."""
    if backend is None:
        out = interpret(graph, {**state, "x": x, "y": y})
        new = {k: out[k] for k in state}
        return float(out["loss"]), new
    be = get_backend(backend)
    compiled = be.lower(graph, lambda stage, text: None)
    dev = {k: be.to_device(v) for k, v in state.items()}
    out = compiled.run(dev, {"x": x, "y": y})
    return float(np.asarray(out["loss"])), {k: be.to_host(v) for k, v in dev.items()}


def reference_step(p: Problem, state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """One step of the hand-written f64 reference from `state` (params + optimizer state, mlpc's names)."""
    names = set(_param_names(p))
    params = {k: np.array(v, np.float64) for k, v in state.items() if k in names}
    opt_state = {k: np.array(v) for k, v in state.items() if k not in names}
    loss = npmlp.train_step(p.layers, params, opt_state, x.astype(np.float64),
                            y if p.loss == "ce" else y.astype(np.float64), p.loss, p.opt)
    return loss, {**params, **opt_state}


def _param_names(p: Problem) -> list[str]:
    names = []
    for i, layer in enumerate(p.layers):
        names.append(f"{2 * i}.weight")
        if layer.bias:
            names.append(f"{2 * i}.bias")
    return names


def to_f64(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in state.items()}


def check_steps_f64(p: Problem, trainer: Trainer, init: dict[str, np.ndarray], want_backend: str | None,
                    got_backend: str | None, handwritten: bool) -> None:
    """Step through the batches with the f64 step graph; before each step both sides start from the same
    state (so chaotic trajectories cannot amplify rounding), and each step's results must agree to f64 rounding.

    `got_backend` runs the graph (None = interpreter); the other side is the hand-written MLP when
    `handwritten`, else the graph on `want_backend`.
    """
    graphs: dict[int, Graph] = {}
    state = to_f64(init)
    for i, (x, y) in enumerate(p.batches):
        rows = len(x)
        if rows not in graphs:
            graphs[rows] = step_graph(trainer, rows, DType.f64)
        yy = y if p.loss == "ce" else y.astype(np.float64)
        got_loss, got = run_graph(graphs[rows], state, x.astype(np.float64), yy, got_backend)
        if handwritten:
            want_loss, want = reference_step(p, state, x, y)
        else:
            want_loss, want = run_graph(graphs[rows], state, x.astype(np.float64), yy, want_backend)
        what = f"step {i} ({'hand-written MLP' if handwritten else want_backend or 'interpreter'} vs " \
               f"{got_backend or 'interpreter'}) of {p.describe()}"
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-9, atol=1e-12, err_msg=what)
        assert_close_f64(got, want, what)
        state = got


def assert_close_f64(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    """Elementwise agreement of two f64 computations (only rounding-order differences allowed)."""
    assert set(got) == set(want), f"{what}: state names differ: {sorted(set(got) ^ set(want))}"
    for k in want:
        w, g = np.asarray(want[k]), np.asarray(got[k])
        assert g.shape == w.shape and g.dtype == w.dtype, f"{what}: {k} is {g.dtype}{g.shape}, want {w.dtype}{w.shape}"
        scale = float(np.abs(w).max()) if w.size else 0.0
        np.testing.assert_allclose(g, w, rtol=1e-7, atol=1e-9 * max(scale, 1e-3), err_msg=f"{what}: {k}")


# How many times gradient_floor an f32 step may differ from f64 by, elementwise, beyond the norm-wise bound.
# Measured (numpy and llvm): 400 random problems (problems(max_width=160, max_batch=129)) needed no floor;
# of 1,200 saturating Adam lr-0.3 cases (the SATURATED net, seeds 0-299, with and without bias
# correction) 8 needed one, at most 0.25x gradient_floor. 2.0 leaves 8x margin.
FLOOR_FACTOR = 2.0


# unit roundoff of a backend's matmul operands: the f32 error bounds scale by it (tf32: 10-bit mantissa,
# bf16: 7-bit), since every product-sum's rounding error is proportional to it
OPERAND_ROUNDOFF = {"ieee": 2.0 ** -24, "tf32": 2.0 ** -11, "bf16": 2.0 ** -8}


def gradient_floor(p: Problem, state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                   precision: str = "ieee") -> dict[str, np.ndarray]:
    """Per element of the new state, how far it moves when each gradient moves by its float32 error bound
    (npmlp.f32_gradient_error) either way: the absolute floor of the f32 error model.

    The norm-wise bound is relative to each tensor's size; where the gradient is ~0 relative to its terms
    (rows the model already predicts to 1e-8, units whose contributions cancel) float32 cannot get it to
    that relative accuracy, and neither can the Adam moments and updates built from it.
    """
    names = set(_param_names(p))
    params = {k: np.asarray(v, np.float64) for k, v in state.items() if k in names}
    opt_state = {k: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
                 for k, v in state.items() if k not in names}
    point = npmlp.gradient_point(params, opt_state, p.opt)
    x64, y64 = x.astype(np.float64), (y if p.loss == "ce" else y.astype(np.float64))
    _, grads = npmlp.loss_and_grads(p.layers, point, x64, y64, p.loss)
    scale = OPERAND_ROUNDOFF[precision] / OPERAND_ROUNDOFF["ieee"]
    errs = {k: scale * e for k, e in npmlp.f32_gradient_error(p.layers, point, x64, y64, p.loss).items()}

    def updated(g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        par, st = dict(params), dict(opt_state)
        npmlp.apply_update(par, st, g, p.opt)
        return {**par, **st}

    base = updated(grads)
    floor = {k: np.zeros(np.shape(v)) for k, v in base.items()}
    for sign in (1.0, -1.0):
        moved = updated({k: g + sign * errs[k] for k, g in grads.items()})
        for k in floor:
            floor[k] = np.maximum(floor[k], np.abs(np.asarray(moved[k], np.float64) - base[k]))
    return floor


def assert_step_close_f32(before: dict[str, np.ndarray], got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                          what: str, opt: dict[str, Any], rtol: float = 1e-3,
                          floor: dict[str, np.ndarray] | None = None) -> None:
    """Norm-wise agreement of an f32 step with the same step in f64: updates within `rtol` (0.1% for IEEE f32
    backends; looser for tf32/bf16 matmuls) of their size, beyond an absolute per-element allowance of
    FLOOR_FACTOR times `floor` (see gradient_floor; none when not given).

    Adam divides by sqrt(v): where v is tiny (its gradient history is at rounding-noise level: below 1e-5,
    or 1e-3 of the tensor's largest) the f32 update's direction is noise, so such elements are only held to
    the update's bound (|step| <= ~lr).
    """
    for k in want:
        w, g, b = (np.asarray(a, np.float64) for a in (want[k], got[k], before[k]))
        assert np.isfinite(g).all(), f"{what}: {k} has non-finite values"
        if k == "t":
            assert int(g) == int(w), f"{what}: step count {int(g)} != {int(w)}"
            continue
        d_want, d_got = w - b, g - b
        noisy = np.zeros(w.shape, bool)
        if opt["type"] == "Adam" and f"adam.v.{k}" in want:
            root_v = np.sqrt(np.asarray(want[f"adam.v.{k}"], np.float64))
            noisy = root_v < max(rtol * float(root_v.max()), 1e-2 * rtol) + opt["eps"]
            limit = opt["lr"] * (3.0 / np.sqrt(1 - opt["betas"][1]) + opt["weight_decay"] * np.abs(b) + 1.0)
            assert (np.abs(d_got - d_want)[noisy] <= limit[noisy] if limit.shape else limit).all(), \
                f"{what}: {k} steps beyond Adam's bound where v is at noise level"
        excess = np.abs(d_got - d_want)
        if floor is not None and k in floor:
            excess = np.maximum(excess - FLOOR_FACTOR * floor[k], 0.0)
        err = float(np.linalg.norm(excess[~noisy]))
        bound = rtol * float(np.linalg.norm(d_want[~noisy])) + 2e-4 * rtol * float(np.linalg.norm(w)) + 1e-30
        assert err <= bound, f"{what}: {k} differs from f64 by {err:.3g} (bound {bound:.3g})"


def signal_collapsed(p: Problem, state: dict[str, np.ndarray], x: np.ndarray, floor: float = 1e-4) -> bool:
    """True when some hidden layer's activations (in f64) are all below `floor`: the forward signal sits at
    f32 rounding level (e.g. tanh-GELU of large negative inputs cancels to ~1e-7), so an f32 step cannot be
    expected to match f64 to 0.1% and the f32-vs-f64 comparison is meaningless for this case."""
    h = x.astype(np.float64)
    for i, layer in enumerate(p.layers[:-1]):
        z = h @ np.asarray(state[f"{2 * i}.weight"], np.float64)
        if layer.bias:
            z = z + np.asarray(state[f"{2 * i}.bias"], np.float64)
        h = npmlp.act(layer.activation, z, layer.alpha)
        if float(np.abs(h).max()) < floor:
            return True
    return False
