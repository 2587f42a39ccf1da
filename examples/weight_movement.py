"""How far do the weights move? ||W_t - W_0|| / ||W_0|| per layer while training a ReLU MLP on MNIST.

    python examples/weight_movement.py -o out/movement

The lecture's key idea #2: weights stay close to their initialization (relative movement well below 1),
much closer than to the end point of the same training started from another initialization (seed 1).
"""

from __future__ import annotations

import argparse
import json
import os

import mlpc
from mlpc import datasets, init, nn, optim
from mlpc.experiments.init_probe import deep_mlp
from mlpc.experiments.movement import distance_between, track
from mlpc.experiments.plots import movement_figure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="out/movement")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=20000, help="training examples used")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--backend", default="numpy")
    args = ap.parse_args()
    data = datasets.mnist()
    x, y = data.x_train[:args.limit], data.y_train[:args.limit]
    runs = []
    for seed in (0, 1):
        model = deep_mlp(init.kaiming_normal(), args.depth, args.width, bias=True)
        trainer = mlpc.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=args.lr), batch_size=128,
                               backend=args.backend, seed=seed)
        w0 = trainer.parameters()
        moved = track(trainer, x, y, epochs=args.epochs, every=10)
        runs.append((w0, trainer.parameters(), moved, trainer.evaluate(data.x_test, data.y_test)))
    (w0, w_end, moved, acc), (_, w_other, _, acc1) = runs
    other = distance_between(w_end, w_other, w0, list(moved.relative))
    print(f"depth {args.depth}, width {args.width}, SGD lr {args.lr}, {args.epochs} epochs on {len(x)} examples: "
          f"test accuracy {100 * acc:.2f}% (seed 0), {100 * acc1:.2f}% (seed 1)")
    print(f"{'layer':<12} {'||W_T - W_0|| / ||W_0||':>24} {'||W_T - W_T(seed 1)|| / ||W_0||':>33}")
    for name, v in moved.final().items():
        print(f"{name:<12} {v:24.4f} {other[name]:33.4f}")
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "movement.json"), "w") as f:
        json.dump({"steps": moved.steps, "relative": moved.relative, "to_other_seed": other,
                   "test_accuracy": acc}, f)
    title = f"depth-{args.depth} ReLU MLP, SGD lr={args.lr}, {args.epochs} epochs (test acc {100 * acc:.1f}%)"
    print("wrote", movement_figure(moved.steps, moved.relative, os.path.join(args.output, "movement.png"), title))


if __name__ == "__main__":
    main()
