"""Training-step implementations of the peers mlpc is compared with: NumPy by hand, PyTorch eager,
torch.compile and JAX jit. Each `make_*` returns step(x, y) -> float loss, or None if unavailable.

All peers compute the same thing as mlpc: an MLP with one hidden activation (`act`: "relu", "tanh", or
"gelu" in its tanh form), mean softmax cross-entropy, and Adam (PyTorch defaults, bias-corrected) or SGD
with momentum 0.9, reading the loss back every step. PyTorch can also run forward and loss under CPU
autocast to bfloat16 (`autocast=True`: bf16 matmuls, fp32 weights and optimizer)."""

from __future__ import annotations

from typing import Callable

import numpy as np

Step = Callable[[np.ndarray, np.ndarray], float]
ACTIVATIONS = ("relu", "tanh", "gelu")
GELU_C = float(np.sqrt(2.0 / np.pi))


def np_act(act: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(activation(z), its derivative at z) in NumPy."""
    if act == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if act == "tanh":
        h = np.tanh(z)
        return h, 1 - h * h
    if act == "gelu":  # 0.5 z (1 + tanh(c (z + 0.044715 z^3)))
        u = GELU_C * (z + 0.044715 * z ** 3)
        t = np.tanh(u)
        return 0.5 * z * (1 + t), 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * z * z)
    raise ValueError(f"unknown activation {act!r}; one of {ACTIVATIONS}")


def init_params(sizes: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32), np.zeros(b, np.float32))
            for a, b in zip(sizes[:-1], sizes[1:])]


def make_numpy(sizes: list[int], opt: str, lr: float, act: str = "relu") -> Step:
    params = [p for pair in init_params(sizes) for p in pair]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = [0]
    b1, b2, eps = 0.9, 0.999, 1e-8

    def step(x: np.ndarray, y: np.ndarray) -> float:
        hs, ds = [x], []
        for i in range(0, len(params), 2):
            z = hs[-1] @ params[i] + params[i + 1]
            if i + 2 < len(params):
                h, d = np_act(act, z)
                hs.append(h)
                ds.append(d)
            else:
                hs.append(z)
        logits = hs[-1]
        s = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(s)
        total = e.sum(axis=1, keepdims=True)
        p = e / total
        n = len(y)
        loss = float((np.log(total[:, 0]) - s[np.arange(n), y]).mean())
        g = p
        g[np.arange(n), y] -= 1
        g /= n
        grads: list[np.ndarray] = [np.empty(0)] * len(params)
        for i in range(len(params) - 2, -1, -2):
            grads[i] = hs[i // 2].T @ g
            grads[i + 1] = g.sum(axis=0)
            if i:
                g = (g @ params[i].T) * ds[i // 2 - 1]
        t[0] += 1
        for i, (w, gr) in enumerate(zip(params, grads)):
            if opt == "adam":
                m[i] *= b1
                m[i] += (1 - b1) * gr
                v[i] *= b2
                v[i] += (1 - b2) * gr * gr
                w -= lr * (m[i] / (1 - b1 ** t[0])) / (np.sqrt(v[i] / (1 - b2 ** t[0])) + eps)
            else:
                if t[0] == 1:
                    m[i][...] = gr
                else:
                    m[i] *= 0.9
                    m[i] += gr
                w -= lr * m[i]
        return loss
    return step


def _torch_act(act: str):
    import torch

    if act == "gelu":
        return torch.nn.GELU(approximate="tanh")
    return {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[act]()


def _torch_model(sizes: list[int], opt: str, lr: float, act: str = "relu"):
    import torch

    torch.manual_seed(0)
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(_torch_act(act))
    model = torch.nn.Sequential(*layers)
    optim = torch.optim.Adam(model.parameters(), lr=lr) if opt == "adam" else \
        torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return model, optim


def _autocast(enabled: bool):
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def make_torch(sizes: list[int], opt: str, lr: float, threads: int, act: str = "relu",
               autocast: bool = False) -> Step | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # like mlpc's kernels (FTZ/DAZ) and XLA: no subnormal slow paths
    model, optim = _torch_model(sizes, opt, lr, act)
    lossf = torch.nn.CrossEntropyLoss()

    def step(x: np.ndarray, y: np.ndarray) -> float:
        optim.zero_grad(set_to_none=True)
        with _autocast(autocast):
            loss = lossf(model(torch.from_numpy(x)), torch.from_numpy(y).long())
        loss.backward()
        optim.step()
        return float(loss.item())
    return step


def make_torch_compile(sizes: list[int], opt: str, lr: float, threads: int, act: str = "relu",
                       autocast: bool = False) -> Step | None:
    """The whole step (forward, backward, optimizer) under torch.compile."""
    try:
        import torch
        import torch._dynamo
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        torch._dynamo.config.trace_autograd_ops = True  # ~2x faster whole-step graphs (see notes)
    except AttributeError:
        pass
    model, optim = _torch_model(sizes, opt, lr, act)
    lossf = torch.nn.CrossEntropyLoss()

    @torch.compile
    def compiled(xt, yt):
        optim.zero_grad(set_to_none=True)
        with _autocast(autocast):
            loss = lossf(model(xt), yt)
        loss.backward()
        optim.step()
        return loss.detach()

    def step(x: np.ndarray, y: np.ndarray) -> float:
        return float(compiled(torch.from_numpy(x), torch.from_numpy(y).long()).item())
    return step


JAX_ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu-tanh", "gelu-erf", "silu", "elu", "softplus")


def make_jax(sizes: list[int], opt: str, lr: float, act: str = "relu") -> Step | None:
    """`act` between the hidden layers: one of JAX_ACTIVATIONS (PyTorch's definitions; "gelu" = "gelu-tanh")."""
    act = "gelu-tanh" if act == "gelu" else act
    if act not in JAX_ACTIVATIONS:
        raise ValueError(f"make_jax: act must be 'gelu' or one of {JAX_ACTIVATIONS}, got {act!r}")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    act_fn = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
           "gelu-tanh": lambda h: jax.nn.gelu(h, approximate=True),
           "gelu-erf": lambda h: jax.nn.gelu(h, approximate=False), "silu": jax.nn.silu, "elu": jax.nn.elu,
           "softplus": jax.nn.softplus}[act]
    params = [jnp.asarray(p) for pair in init_params(sizes) for p in pair]
    m = [jnp.zeros_like(p) for p in params]
    v = [jnp.zeros_like(p) for p in params]

    def loss_fn(ps, x, y):
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i + 2 < len(ps):
                h = act_fn(h)
        lsm = jax.nn.log_softmax(h)
        return -jnp.take_along_axis(lsm, y[:, None], axis=1).mean()

    def update(ps, ms, vs, t, x, y):
        loss, gs = jax.value_and_grad(loss_fn)(ps, x, y)
        t = t + 1
        if opt == "adam":
            ms = [0.9 * a + 0.1 * g for a, g in zip(ms, gs)]
            vs = [0.999 * a + 0.001 * g * g for a, g in zip(vs, gs)]
            c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
            ps = [p - lr * (a / c1) / (jnp.sqrt(b / c2) + 1e-8) for p, a, b in zip(ps, ms, vs)]
        else:
            ms = [jnp.where(t == 1, g, 0.9 * a + g) for a, g in zip(ms, gs)]
            ps = [p - lr * a for p, a in zip(ps, ms)]
        return ps, ms, vs, t, loss

    jitted = jax.jit(update, donate_argnums=(0, 1, 2))
    state = {"p": params, "m": m, "v": v, "t": jnp.asarray(0, jnp.int32)}

    def step(x: np.ndarray, y: np.ndarray) -> float:
        state["p"], state["m"], state["v"], state["t"], loss = jitted(state["p"], state["m"], state["v"],
                                                                      state["t"], x, y)
        return float(loss)
    return step
