"""SGD, momentum (plain and unbiased), Nesterov and Adam (with and without bias correction) on MNIST.

    python examples/optimizer_study.py -o out/optimizers

Same MLP, same initialization and same batches for every optimizer; one plot of the loss curves and a
table of final training loss and test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os

from mlpc import datasets
from mlpc.experiments.optimizer_study import lecture_optimizers, run_study
from mlpc.experiments.plots import loss_curves_figure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="out/optimizers")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training examples")
    ap.add_argument("--test-limit", type=int, default=None, help="evaluate on only the first N test examples")
    ap.add_argument("--lr", type=float, default=0.1, help="step size of SGD/momentum/Nesterov")
    ap.add_argument("--adam-lr", type=float, default=1e-3)
    ap.add_argument("--backend", default="numpy")
    args = ap.parse_args()
    data = datasets.mnist()
    x, y = data.x_train[:args.limit], data.y_train[:args.limit]
    xt, yt = data.x_test[:args.test_limit], data.y_test[:args.test_limit]
    res = run_study(x, y, xt, yt, lecture_optimizers(args.lr, args.adam_lr), epochs=args.epochs,
                    backend=args.backend)
    print(f"784-100-10 ReLU MLP, batch 128, {args.epochs} epochs on {len(x)} examples ({args.backend} backend)")
    print(res.table())
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "study.json"), "w") as f:
        json.dump({"losses": res.losses, "test_accuracy": res.test_accuracy, "seconds": res.seconds}, f)
    with open(os.path.join(args.output, "study.txt"), "w") as f:
        f.write(res.table() + "\n")
    print("wrote", loss_curves_figure(res.losses, os.path.join(args.output, "losses.png"),
                                      title=f"784-100-10 MLP on MNIST, {args.epochs} epochs"))


if __name__ == "__main__":
    main()
