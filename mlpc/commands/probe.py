"""`mlpc probe`: activation and gradient norms per layer at initialization, as a figure and a table."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from mlpc.commands import argtypes
from mlpc.commands.common import check_batch_data


def register(sub: Any) -> None:
    p = sub.add_parser("probe", help="plot per-layer activation/gradient norms of a deep ReLU MLP at initialization")
    p.add_argument("--init", nargs="+", default=["1/n", "2/n", "3/n"],
                   help="initializations: c/n for N(0, c/n), or an mlpc.init name such as xavier_uniform, "
                        "kaiming_uniform, zeros (default: 1/n 2/n 3/n, the lecture's figure)")
    p.add_argument("--depth", type=argtypes.int_range(1, 10000), default=50,
                   help="number of Linear layers, 1 to 10000 (default 50)")
    p.add_argument("--width", type=argtypes.int_range(1, 65536), default=100,
                   help="hidden width, 1 to 65536 (default 100)")
    p.add_argument("--batch", type=argtypes.positive_int, default=1000,
                   help="MNIST training examples to probe with (default 1000)")
    p.add_argument("--bias", action="store_true", help="give the layers biases (initialized to 0)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="initialization seed")
    p.add_argument("--backend", type=argtypes.backend_name, default="numpy",
                   help="backend that runs the probed step (default numpy)")
    p.add_argument("--data", default=None, help="folder with MNIST IDX files (default: the shipped copy)")
    p.add_argument("--every", type=argtypes.positive_int, default=5,
                   help="print every n-th layer in the table (default 5)")
    p.add_argument("-o", "--output", required=True,
                   help="folder for probe.txt, probe.json and probe.png (the PNG needs the plot extra: "
                        "pip install 'mlpc[plot]')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlpc import datasets
    from mlpc.commands.report import write_file
    from mlpc.errors import MlpcError
    from mlpc.experiments.init_probe import probe_init, table

    for name in args.init:  # a bad name fails here, before any probing
        _check_init(name)
    data = datasets.mnist(args.data)
    check_batch_data(args.batch, "argument --batch", len(data.x_train))
    x, y = data.x_train[:args.batch], data.y_train[:args.batch]
    results = [probe_init(name, x, y, args.depth, args.width, args.seed, args.bias, args.backend)
               for name in args.init]
    text = table(results, args.every)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        raise MlpcError(f"cannot create the folder {args.output}: {e.strerror or e}") from None
    write_file(os.path.join(args.output, "probe.txt"), (text + "\n").encode())
    meta = {"depth": args.depth, "width": args.width, "batch": len(x), "seed": args.seed, "bias": args.bias,
            "results": [vars(r) for r in results]}
    write_file(os.path.join(args.output, "probe.json"), json.dumps(meta, indent=1).encode())
    print(text)
    for r in results:
        hidden = r.act[1:args.depth]
        if hidden and min(hidden) > 0:
            print(f"{r.name}: activation norm changes by x{hidden[-1] / hidden[0]:.3g} from layer 1 to "
                  f"layer {args.depth - 1}")
        elif all(g == 0 for g in r.grad):
            print(f"{r.name}: every weight gradient is exactly 0")
    written = [os.path.join(args.output, f) for f in ("probe.txt", "probe.json")]
    if not _has_matplotlib():
        print(f"wrote {', '.join(written)}; probe.png not drawn: the figure needs matplotlib "
              "(pip install 'mlpc[plot]')")
        return 0
    from mlpc.experiments.plots import probe_figure

    title = f"depth-{args.depth}, width-{args.width} ReLU MLP on MNIST at initialization ({len(x)} examples)"
    png = probe_figure(results, os.path.join(args.output, "probe.png"), title)
    print(f"wrote {', '.join([*written, png])}")
    return 0


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _check_init(name: str) -> None:
    from mlpc.errors import MlpcError
    from mlpc.experiments.init_probe import initializer

    try:
        initializer(name)
    except (MlpcError, ValueError, KeyError) as e:
        raise argtypes.UsageError(f"argument --init: {e}") from None
