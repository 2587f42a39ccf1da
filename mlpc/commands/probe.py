"""`mlpc probe`: activation and gradient norms per layer at initialization, as a figure and a table."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("probe", help="plot per-layer activation/gradient norms of a deep ReLU MLP at initialization")
    p.add_argument("--init", nargs="+", default=["1/n", "2/n", "3/n"],
                   help="initializations: c/n for N(0, c/n), or an mlpc.init name such as xavier_uniform, "
                        "kaiming_uniform, zeros (default: 1/n 2/n 3/n, the lecture's figure)")
    p.add_argument("--depth", type=int, default=50, help="number of Linear layers (default 50)")
    p.add_argument("--width", type=int, default=100, help="hidden width (default 100)")
    p.add_argument("--batch", type=int, default=1000, help="MNIST training examples to probe with (default 1000)")
    p.add_argument("--bias", action="store_true", help="give the layers biases (initialized to 0)")
    p.add_argument("--seed", type=int, default=0, help="initialization seed")
    p.add_argument("--backend", default="numpy", help="backend that runs the probed step (default numpy)")
    p.add_argument("--data", default=None, help="folder with MNIST IDX files (default: the shipped copy)")
    p.add_argument("--every", type=int, default=5, help="print every n-th layer in the table (default 5)")
    p.add_argument("-o", "--output", required=True, help="folder for probe.png, probe.txt and probe.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlpc import datasets
    from mlpc.errors import MlpcError
    from mlpc.experiments.init_probe import probe_init, table
    from mlpc.experiments.plots import probe_figure

    if args.batch <= 0 or args.every <= 0:
        raise MlpcError("--batch and --every must be positive")
    data = datasets.mnist(args.data)
    x, y = data.x_train[:args.batch], data.y_train[:args.batch]
    results = [probe_init(name, x, y, args.depth, args.width, args.seed, args.bias, args.backend)
               for name in args.init]
    os.makedirs(args.output, exist_ok=True)
    text = table(results, args.every)
    with open(os.path.join(args.output, "probe.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.output, "probe.json"), "w") as f:
        json.dump({"depth": args.depth, "width": args.width, "batch": len(x), "seed": args.seed, "bias": args.bias,
                   "results": [vars(r) for r in results]}, f, indent=1)
    title = f"depth-{args.depth}, width-{args.width} ReLU MLP on MNIST at initialization ({len(x)} examples)"
    png = probe_figure(results, os.path.join(args.output, "probe.png"), title)
    print(text)
    for r in results:
        hidden = r.act[1:args.depth]
        if hidden and min(hidden) > 0:
            print(f"{r.name}: activation norm changes by x{hidden[-1] / hidden[0]:.3g} from layer 1 to "
                  f"layer {args.depth - 1}")
        elif all(g == 0 for g in r.grad):
            print(f"{r.name}: every weight gradient is exactly 0")
    print(f"wrote {png}, probe.txt and probe.json")
    return 0
