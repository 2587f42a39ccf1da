"""An independent NumPy MLP (forward, backward, optimizers) written from docs/design.md, not from mlpc's ops."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715


def act(name: str, z: np.ndarray, alpha: float) -> np.ndarray:
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "gelu":
        return 0.5 * z * (1.0 + np.tanh(GELU_C * (z + GELU_K * z ** 3)))
    if name == "identity":
        return z
    raise ValueError(name)


def act_grad(name: str, z: np.ndarray, alpha: float) -> np.ndarray:
    """d act / dz, evaluated elementwise."""
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, alpha)
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "gelu":
        u = GELU_C * (z + GELU_K * z ** 3)
        t = np.tanh(u)
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * z * z)
    if name == "identity":
        return np.ones_like(z)
    raise ValueError(name)


@dataclass(frozen=True)
class Layer:
    """One Linear layer followed by an activation (the last layer's is `identity`)."""

    n_in: int
    n_out: int
    bias: bool
    activation: str
    alpha: float = 0.01


def loss_and_grads(layers: list[Layer], params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                   loss: str) -> tuple[float, dict[str, np.ndarray]]:
    """Mean loss and d loss / d param for a Sequential of Linear+activation (params named like mlpc's)."""
    names = [f"{2 * i}" for i in range(len(layers))]  # Sequential index of each Linear
    hs, zs = [x], []
    for name, layer in zip(names, layers):
        z = hs[-1] @ params[name + ".weight"]
        if layer.bias:
            z = z + params[name + ".bias"]
        zs.append(z)
        hs.append(act(layer.activation, z, layer.alpha))
    out = hs[-1]
    batch = x.shape[0]
    if loss == "ce":
        shifted = out - out.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        value = -logp[np.arange(batch), y].mean()
        d = np.exp(logp)
        d[np.arange(batch), y] -= 1.0
        d /= batch
    else:
        diff = out - y
        value = np.mean(diff * diff)
        d = 2.0 * diff / diff.size
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(len(layers))):
        layer, name = layers[i], names[i]
        dz = d * act_grad(layer.activation, zs[i], layer.alpha)
        grads[name + ".weight"] = hs[i].T @ dz
        if layer.bias:
            grads[name + ".bias"] = dz.sum(axis=0)
        d = dz @ params[name + ".weight"].T
    return float(value), grads


def optimizer_state_names(opt: dict[str, Any], params: list[str]) -> list[str]:
    """mlpc's names of the optimizer state for each parameter, plus the step count `t`."""
    kind = opt["type"]
    if kind == "SGD":
        per = ["sgd.buf"] if opt["momentum"] else []
    elif kind == "Momentum":
        per = ["momentum.u"]
    else:
        per = ["adam.m", "adam.v"]
    return [f"{s}.{p}" for p in params for s in per] + ["t"]


def train_step(layers: list[Layer], params: dict[str, np.ndarray], state: dict[str, np.ndarray],
               x: np.ndarray, y: np.ndarray, loss: str, opt: dict[str, Any]) -> float:
    """One optimizer step in place on `params`/`state` following docs/design.md's update rules; returns the loss."""
    point = gradient_point(params, state, opt)
    value, grads = loss_and_grads(layers, point, x, y, loss)
    if point is not params:  # the gradient is taken at the look-ahead point; the step reports the loss at theta
        value, _ = loss_and_grads(layers, params, x, y, loss)
    apply_update(params, state, grads, opt)
    return value


def gradient_point(params: dict[str, np.ndarray], state: dict[str, np.ndarray], opt: dict[str, Any]
                   ) -> dict[str, np.ndarray]:
    """Where the step takes the gradient: the parameters, or the look-ahead point of Nesterov Momentum."""
    if opt["type"] == "Momentum" and opt["nesterov"]:
        return {k: p - opt["lr"] * state[f"momentum.u.{k}"] for k, p in params.items()}
    return params


def apply_update(params: dict[str, np.ndarray], state: dict[str, np.ndarray], grads: dict[str, np.ndarray],
                 opt: dict[str, Any]) -> None:
    """The optimizer's update from `grads`, in place on `params`/`state` (t counts the step)."""
    t = int(state["t"])
    kind = opt["type"]
    for k in list(params):
        p, g = params[k], grads[k]
        if kind == "SGD":
            if opt["weight_decay"]:
                g = g + opt["weight_decay"] * p
            if opt["momentum"]:
                buf = state[f"sgd.buf.{k}"]
                buf = g if t == 0 else opt["momentum"] * buf + (1 - opt["dampening"]) * g
                state[f"sgd.buf.{k}"] = buf
                g = g + opt["momentum"] * buf if opt["nesterov"] else buf
            params[k] = p - opt["lr"] * g
        elif kind == "Momentum":
            u = opt["beta"] * state[f"momentum.u.{k}"] + (1 - opt["beta"]) * g
            state[f"momentum.u.{k}"] = u
            step = u / (1 - opt["beta"] ** (t + 1)) if opt["unbiased"] else u
            params[k] = p - opt["lr"] * step
        else:
            b1, b2 = opt["betas"]
            if opt["weight_decay"] and opt["decoupled"]:
                p = p - opt["lr"] * opt["weight_decay"] * p
            elif opt["weight_decay"]:
                g = g + opt["weight_decay"] * p
            m = b1 * state[f"adam.m.{k}"] + (1 - b1) * g
            v = b2 * state[f"adam.v.{k}"] + (1 - b2) * g * g
            state[f"adam.m.{k}"], state[f"adam.v.{k}"] = m, v
            if opt["bias_correction"]:
                m, v = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
            params[k] = p - opt["lr"] * m / (np.sqrt(v) + opt["eps"])
    state["t"] = np.asarray(t + 1, dtype=np.int32)


U32 = 2.0 ** -24  # float32 unit roundoff


def f32_gradient_error(layers: list[Layer], params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                       loss: str) -> dict[str, np.ndarray]:
    """First-order bound, per element, on how far float32 rounding moves each gradient (running error
    analysis with absolute values, so terms that cancel in the gradient still count).

    Every product-sum rounds to ~U32 of the sum of its terms' magnitudes; the loss gradient at the output
    carries an absolute error even where it is ~0 (softmax p rounds to 1.0, so p - 1 is 0 in float32 for a
    row whose exact gradient is -1e-8); errors are carried forward through |W| and |act'|, then backward.
    """
    names = [f"{2 * i}" for i in range(len(layers))]
    hs, zs, herr = [x], [], [np.zeros_like(x)]
    for name, layer in zip(names, layers):
        w = params[name + ".weight"]
        mag = np.abs(hs[-1]) @ np.abs(w)
        z = hs[-1] @ w
        if layer.bias:
            mag = mag + np.abs(params[name + ".bias"])
            z = z + params[name + ".bias"]
        zerr = U32 * mag + herr[-1] @ np.abs(w)
        zs.append(z)
        h = act(layer.activation, z, layer.alpha)
        hs.append(h)
        herr.append(np.abs(act_grad(layer.activation, z, layer.alpha)) * zerr + U32 * np.abs(h))
    out, oerr, batch = hs[-1], herr[-1], x.shape[0]
    if loss == "ce":
        shifted = out - out.max(axis=1, keepdims=True)
        prob = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        d = prob.copy()
        d[np.arange(batch), y] -= 1.0
        d /= batch
        hot = np.zeros_like(prob)
        hot[np.arange(batch), y] = 1.0
        spread = 2.0 * oerr.max(axis=1, keepdims=True)  # logit errors move p by up to p * that
        derr = (prob * (spread + 4 * U32) + U32 * hot) / batch
    else:
        diff = out - y
        d = 2.0 * diff / diff.size
        derr = 2.0 * (oerr + U32 * (np.abs(out) + np.abs(y))) / diff.size
    errs: dict[str, np.ndarray] = {}
    for i in reversed(range(len(layers))):
        layer, name = layers[i], names[i]
        ag = np.abs(act_grad(layer.activation, zs[i], layer.alpha))
        dz, dzerr = d * act_grad(layer.activation, zs[i], layer.alpha), derr * ag + U32 * np.abs(d) * ag
        h, w = np.abs(hs[i]), np.abs(params[name + ".weight"])
        errs[name + ".weight"] = h.T @ dzerr + herr[i].T @ np.abs(dz) + U32 * (h.T @ np.abs(dz))
        if layer.bias:
            errs[name + ".bias"] = dzerr.sum(axis=0) + U32 * np.abs(dz).sum(axis=0)
        d, derr = dz @ params[name + ".weight"].T, dzerr @ w.T + U32 * (np.abs(dz) @ w.T)
    return errs
