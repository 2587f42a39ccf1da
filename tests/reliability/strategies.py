"""Hypothesis strategies for random MLP training problems (architecture, loss, optimizer, data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from mlpc import nn, optim

from .npmlp import Layer

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "identity")
# widths that stress remainder loops of vectorized kernels: primes, powers of two and their neighbours
SPECIAL_WIDTHS = (1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 32, 33, 61, 64, 65, 97, 127, 128, 129, 251, 256, 257, 293, 300)


def widths(max_width: int = 300) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([w for w in SPECIAL_WIDTHS if w <= max_width]), st.integers(1, max_width))


@dataclass
class Problem:
    """One random training problem: the model, its loss/optimizer and a few batches of data."""

    layers: list[Layer]
    loss: str  # "ce" | "mse"
    opt: dict[str, Any]
    batch: int
    batches: list[tuple[np.ndarray, np.ndarray]]
    seed: int

    def model(self) -> nn.Module:
        mods: list[nn.Module] = []
        for i, layer in enumerate(self.layers):
            mods.append(nn.Linear(layer.n_in, layer.n_out, bias=layer.bias))
            if i + 1 < len(self.layers):
                mods.append(_activation(layer.activation, layer.alpha))
        return nn.Sequential(*mods)

    def loss_module(self) -> nn.Loss:
        return nn.CrossEntropyLoss() if self.loss == "ce" else nn.MSELoss()

    def optimizer(self) -> optim.Optimizer:
        kw = {k: v for k, v in self.opt.items() if k != "type"}
        return {"SGD": optim.SGD, "Momentum": optim.Momentum, "Adam": optim.Adam}[self.opt["type"]](**kw)

    def describe(self) -> str:
        arch = " -> ".join([str(self.layers[0].n_in)] + [f"{lay.n_out}{'' if lay.bias else '(nobias)'}"
                                                         f"[{lay.activation}]" for lay in self.layers])
        rows = [len(x) for x, _ in self.batches]
        return f"{arch} loss={self.loss} opt={self.opt} batch={self.batch} rows={rows} seed={self.seed}"


def _activation(name: str, alpha: float) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(alpha)
    if name == "gelu":
        return nn.GELU(approximate="tanh")  # the form npmlp.py's hand-written MLP computes
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}[name]()


def optimizers() -> st.SearchStrategy[dict[str, Any]]:
    lr = st.sampled_from([1e-3, 0.01, 0.05, 0.1, 0.3])
    sgd = st.fixed_dictionaries({
        "type": st.just("SGD"), "lr": lr, "momentum": st.sampled_from([0.0, 0.5, 0.9]),
        "dampening": st.sampled_from([0.0, 0.1]), "nesterov": st.booleans(),
        "weight_decay": st.sampled_from([0.0, 1e-3, 0.05])})
    sgd = sgd.map(_fix_nesterov)
    momentum = st.fixed_dictionaries({
        "type": st.just("Momentum"), "lr": lr, "beta": st.sampled_from([0.0, 0.5, 0.9, 0.99]),
        "unbiased": st.booleans(), "nesterov": st.booleans()})
    adam = st.fixed_dictionaries({
        "type": st.just("Adam"), "lr": lr, "betas": st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)]),
        "eps": st.sampled_from([1e-8, 1e-6, 1e-3]), "bias_correction": st.booleans(),
        "weight_decay": st.sampled_from([0.0, 0.01, 0.1]), "decoupled": st.booleans()})
    return st.one_of(sgd, momentum, adam)


def _fix_nesterov(o: dict[str, Any]) -> dict[str, Any]:
    if o["nesterov"] and (o["momentum"] == 0 or o["dampening"] != 0):
        o = dict(o, nesterov=False)
    return o


@st.composite
def problems(draw: Any, max_width: int = 300, max_batch: int = 257, max_depth: int = 6) -> Problem:
    depth = draw(st.integers(1, max_depth))
    sizes = [draw(widths(max_width)) for _ in range(depth + 1)]
    layers = [Layer(sizes[i], sizes[i + 1], draw(st.booleans()), draw(st.sampled_from(ACTIVATIONS)),
                    draw(st.sampled_from([0.01, 0.2])))
              for i in range(depth)]
    layers[-1] = Layer(layers[-1].n_in, layers[-1].n_out, layers[-1].bias, "identity")
    loss = draw(st.sampled_from(["ce", "mse"]))
    batch = draw(st.one_of(st.sampled_from([1, 2, 3, 7, 8, 16, 17, 64, 127, 128, 129, 256, 257]),
                           st.integers(1, max_batch)).filter(lambda b: b <= max_batch))
    steps = draw(st.integers(2, 4))
    last_rows = draw(st.one_of(st.just(batch), st.integers(1, batch)))
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    batches = []
    for s in range(steps):
        rows = last_rows if s == steps - 1 else batch
        x = rng.standard_normal((rows, sizes[0])).astype(np.float32)
        if loss == "ce":
            y = rng.integers(0, sizes[-1], rows).astype(np.int32)
        else:
            y = rng.standard_normal((rows, sizes[-1])).astype(np.float32)
        batches.append((x, y))
    return Problem(layers, loss, draw(optimizers()), batch, batches, seed)
