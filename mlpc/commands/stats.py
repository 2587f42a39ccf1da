"""`mlpc stats`: parameter count, FLOPs per step, arena size and kernel count of a compiled model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlpc.commands import argtypes
from mlpc.commands.common import add_model_args, compile_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="parameters, FLOPs per step, arena size, kernel count")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--no-fusion", action="store_true", help="count one kernel per op even when fusion exists")
    p.add_argument("--roofline", action="store_true",
                   help="also time every kernel and show its fraction of this machine's measured peak FLOP/s, "
                        "bandwidth and roof (the ceilings are measured once per host and cached)")
    p.add_argument("--repeats", type=argtypes.int_range(1, 100000), default=5,
                   help="timed runs per kernel with --roofline (median is shown)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlpc.inspection import Inspection

    view = Inspection(compile_from_args(args), repeats=args.repeats, use_fusion=not args.no_fusion)
    stats = view.stats()
    if args.json:
        data = stats.to_dict()
        if args.roofline:
            data["roofline"] = roofline_json(view)
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(stats.text())
        if args.roofline:
            sys.stdout.write("\n" + view.roofline_table())
    return 0


def roofline_json(view: Any) -> dict[str, Any]:
    """The ceilings and every timed kernel's fractions of them, for `--json --roofline`."""
    kernels = view.kernels()
    m = view.machine()
    rows = []
    for k in kernels:
        f = m.fractions(k)
        if f is not None:
            rows.append({"kernel": k.name, "seconds": k.seconds, "flops": k.cost.flops, "bytes": k.cost.bytes,
                         "fraction_of_peak": f.compute, "fraction_of_bandwidth": f.memory,
                         "fraction_of_roof": f.roof, "bound": f.bound})
    return {"peak_flops": m.peak_flops, "dram_bandwidth": m.bandwidth, "threads": m.threads,
            "precision": m.precision, "how": m.how, "time_source": view.time_source, "kernels": rows}
