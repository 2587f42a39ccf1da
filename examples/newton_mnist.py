"""Damped Newton vs gradient descent on full-batch softmax regression (784-10) on an MNIST subset.

    python examples/newton_mnist.py -o out/newton              # 784-10 on 10 000 images: ~2 min a Newton step
    python examples/newton_mnist.py --pool 2 -o out/newton196  # 196-10 (images pooled 2x2): ~1.5 min in all

optim.Newton builds the exact 7850x7850 Hessian in the compiled step (second-order autodiff, vectorized
over all basis tangents) and solves (H + damping I) d = grad with an LU solve in float64. Gradient
descent gets 10x the iterations and the best of several step sizes. Each Newton step costs seconds to
minutes (the Hessian and its solve), each GD step a fraction of a second: compare iterations, not time.
Use more examples than parameters: with fewer the data is separable and the loss has no minimum.
"""

from __future__ import annotations

import argparse
import json
import os

from mlpc import datasets, optim
from mlpc.experiments.newton_study import newton_vs_gd, pool
from mlpc.experiments.plots import newton_figure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="out/newton")
    ap.add_argument("--examples", type=int, default=10000, help="training subset size (full batch)")
    ap.add_argument("--pool", type=int, default=1, help="average-pool images k x k first (1: 784 features)")
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--damping", type=float, default=1e-3)
    ap.add_argument("--newton-iters", type=int, default=10)
    ap.add_argument("--gd-iters", type=int, default=100)
    args = ap.parse_args()
    data = datasets.mnist()
    x, y = pool(data.x_train[:args.examples], args.pool), data.y_train[:args.examples]
    study = newton_vs_gd(x, y, optim.Newton(lr=args.lr, damping=args.damping), args.newton_iters, args.gd_iters)
    params = (x.shape[1] + 1) * 10
    best_lr, best = study.best_gd()
    print(f"softmax regression {x.shape[1]}-10 ({params} parameters) on {len(x)} MNIST examples, full batch")
    print(f"Newton lr={args.lr} damping={args.damping}: loss after {args.newton_iters} iterations "
          f"{study.newton[-1]:.4f} ({study.newton_seconds:.1f} s in all)")
    for lr, curve in study.gd.items():
        print(f"GD lr={lr:<5g}: loss after {args.gd_iters} iterations {curve[-1]:.4f}, "
              f"after {args.newton_iters}: {curve[args.newton_iters]:.4f}")
    verdict = "lower" if study.newton[-1] < best[-1] else "NOT lower"
    print(f"=> {args.newton_iters} Newton iterations reach a {verdict} training loss than {args.gd_iters} "
          f"GD iterations at the best step size ({best_lr:g})")
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "newton.json"), "w") as f:
        json.dump({"newton": study.newton, "gd": {str(k): v for k, v in study.gd.items()},
                   "newton_seconds": study.newton_seconds, "examples": len(x), "features": x.shape[1]}, f)
    curves = {f"Newton (lr={args.lr}, damping={args.damping})": study.newton,
              **{f"GD lr={lr:g}": c for lr, c in study.gd.items()}}
    print("wrote", newton_figure(curves, os.path.join(args.output, "newton.png"),
                                 f"softmax regression {x.shape[1]}-10 on {len(x)} MNIST digits"))


if __name__ == "__main__":
    main()
