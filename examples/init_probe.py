"""The lecture's initialization figure: per-layer activation and gradient norms of a depth-50 ReLU MLP.

    python examples/init_probe.py -o out/probe

Writes lecture.png (sigma^2 = 1/n, 2/n, 3/n), uniform.png (Xavier and Kaiming uniform, 2/n for reference)
and zeros.png (zero initialization), each with a .txt table and a .json of all numbers.
"""

from __future__ import annotations

import argparse
import json
import os

from mlpc import datasets
from mlpc.experiments.init_probe import probe_init, table
from mlpc.experiments.plots import probe_figure

GROUPS = {
    "lecture": ["1/n", "2/n", "3/n"],
    "uniform": ["xavier_uniform", "kaiming_uniform", "2/n"],
    "zeros": ["zeros", "2/n"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="out/probe")
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = datasets.mnist()
    x, y = data.x_train[:args.batch], data.y_train[:args.batch]
    os.makedirs(args.output, exist_ok=True)
    for group, inits in GROUPS.items():
        results = [probe_init(name, x, y, args.depth, args.width, args.seed) for name in inits]
        text = table(results)
        print(f"== {group} ==\n{text}\n")
        with open(os.path.join(args.output, f"{group}.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.output, f"{group}.json"), "w") as f:
            json.dump([vars(r) for r in results], f)
        title = f"depth-{args.depth}, width-{args.width} ReLU MLP on MNIST at initialization"
        print("wrote", probe_figure(results, os.path.join(args.output, f"{group}.png"), title))
    zero = probe_init("zeros", x, y, args.depth, args.width, args.seed, bias=True)
    nonzero = [i + 1 for i, g in enumerate(zero.bias_grad) if g != 0]
    print(f"zero init with biases: every weight gradient is {max(zero.grad)}; the only nonzero bias gradients "
          f"are in layers {nonzero} (the output layer)")


if __name__ == "__main__":
    main()
