"""Matplotlib figures (Agg backend, PNG files) for the lecture's experiments."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlpc.experiments.init_probe import ProbeResult
    from mlpc.experiments.quadratic import Quadratic


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        from mlpc.errors import MlpcError

        raise MlpcError("plots need matplotlib: pip install 'mlpc[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _floor(values: list[list[float]]) -> float:
    """A point below every positive value: where exact zeros are drawn on a log axis."""
    pos = [v for vs in values for v in vs if v > 0]
    return min(pos) / 30 if pos else 1e-12


def _with_floor(values: list[float], floor: float) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return np.where(a > 0, a, floor)


def probe_figure(results: list[ProbeResult], path: str, title: str = "") -> str:
    """Activation norm ||Z_k|| vs layer and gradient norm ||grad W_i|| vs layer, one line per init.

    Exact zeros (zero initialization) cannot sit on a log axis: they are drawn dashed at the bottom."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    act_floor = _floor([r.act for r in results])
    grad_floor = _floor([r.grad for r in results])
    for r in results:
        label = f"$\\sigma^2={r.name}$" if r.name.endswith("/n") else r.name
        style = "-"
        if any(v == 0 for v in r.act + r.grad):
            label += " (exact zeros drawn at the bottom)"
            style = "--"
        line, = ax1.plot(range(len(r.act)), _with_floor(r.act, act_floor), style, label=label)
        ax2.plot(range(1, len(r.grad) + 1), _with_floor(r.grad, grad_floor), style, label=label,
                 color=line.get_color())
    ax1.set(yscale="log", xlabel="layer k (0 = input)", ylabel="activation norm $\\|Z_k\\|$",
            title="Forward activation norm")
    ax2.set(yscale="log", xlabel="layer i", ylabel="gradient norm $\\|\\nabla_{W_i} \\ell\\|$", title="Gradient norm")
    for ax in (ax1, ax2):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def movement_figure(steps: list[int], movement: dict[str, list[float]], path: str, title: str = "") -> str:
    """||W_t - W_0|| / ||W_0|| per layer over training (left) and at the end vs layer (right)."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(movement)
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(names):
        ax1.plot(steps, movement[name], color=cmap(i / max(len(names) - 1, 1)), lw=1)
    ax1.set(xlabel="training step", ylabel="$\\|W_t - W_0\\| / \\|W_0\\|$", title="Relative weight movement per layer")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(1, len(names)))
    fig.colorbar(sm, ax=ax1, label="layer")
    ax2.bar(range(1, len(names) + 1), [movement[n][-1] for n in names])
    ax2.set(xlabel="layer", ylabel="$\\|W_T - W_0\\| / \\|W_0\\|$", title="At the end of training")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def trajectories_figure(quad: Quadratic, paths: dict[str, np.ndarray], path: str, cols: int = 4) -> str:
    """One contour plot of the quadratic per optimizer, with its iterates drawn over it."""
    plt = _pyplot()
    rows = (len(paths) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    lo = np.minimum(quad.start, quad.minimum()) - 1.5
    hi = np.maximum(quad.start, quad.minimum()) + 1.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    z = quad.value(np.stack([gx, gy], axis=-1))
    levels = np.quantile(z, np.linspace(0.0, 0.9, 14) ** 2)
    for ax, (name, pts) in zip(axes.ravel(), paths.items(), strict=False):
        ax.contour(gx, gy, z, levels=np.unique(levels), cmap="Blues", linewidths=0.8)
        ax.plot(pts[:, 0], pts[:, 1], "o-", color="tab:red", ms=2.5, lw=1)
        ax.plot(*quad.minimum(), "k*", ms=10)
        steps = len(pts) - 1
        ax.set(title=f"{name}\n{steps} step{'' if steps == 1 else 's'}", xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(paths):]:
        ax.axis("off")
    return _save(fig, path)


def loss_curves_figure(curves: dict[str, list[float]], path: str, smooth: int = 20, title: str = "") -> str:
    """Training loss per step (moving average over `smooth` steps), one line per optimizer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, losses in curves.items():
        a = np.asarray(losses, dtype=float)
        k = max(1, min(smooth, len(a)))
        avg = np.convolve(a, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k - 1, len(a)), avg, label=name, lw=1.2)
    ax.set(yscale="log", xlabel="training step", ylabel=f"training loss ({smooth}-step average)",
           title=title or "Optimizers on MNIST")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def newton_figure(curves: dict[str, list[float]], path: str, title: str = "") -> str:
    """Training loss vs iteration for Newton and gradient descent."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, losses in curves.items():
        ax.plot(range(len(losses)), losses, "o-" if len(losses) < 30 else "-", ms=3, label=name)
    ax.set(yscale="log", xlabel="iteration", ylabel="full-batch training loss", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
