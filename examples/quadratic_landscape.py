"""Optimizer paths on the lecture's 2-D quadratic f(theta) = 1/2 theta'P theta + q'theta, over its contours.

    python examples/quadratic_landscape.py -o out/quadratic

Every path is produced by the compiler: the quadratic is written with DSL ops, traced, differentiated,
and given the optimizer's update pass (SGD, momentum, Nesterov, Adam, Newton), then run step by step.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from mlpc.experiments.plots import trajectories_figure
from mlpc.experiments.quadratic import Quadratic, lecture_optimizers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="out/quadratic")
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    quad = Quadratic()
    paths = {}
    print(f"P = {quad.p.tolist()}, q = {quad.q.tolist()}, minimum {quad.minimum().round(4).tolist()}, "
          f"eigenvalues {np.linalg.eigvalsh(quad.p).round(3).tolist()}")
    print(f"{'optimizer':<24} {'f(theta_T) - f*':>16} {'|theta_T - theta*|':>19}")
    for name, opt in lecture_optimizers(quad).items():
        steps = 1 if name.startswith("Newton") else args.steps
        paths[name] = quad.path(opt, steps)
        gap = quad.value(paths[name][-1]) - quad.value(quad.minimum())
        dist = np.linalg.norm(paths[name][-1] - quad.minimum())
        print(f"{name:<24} {gap:16.3e} {dist:19.3e}")
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "paths.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in paths.items()}, f)
    print("wrote", trajectories_figure(quad, paths, os.path.join(args.output, "trajectories.png")))


if __name__ == "__main__":
    main()
