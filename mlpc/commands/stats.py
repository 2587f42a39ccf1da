"""`mlpc stats`: parameter count, FLOPs per step, arena size and kernel count of a compiled model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlpc.commands.common import add_model_args, compile_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="parameters, FLOPs per step, arena size, kernel count")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--no-fusion", action="store_true", help="count one kernel per op even when fusion exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlpc.inspection import Inspection

    view = Inspection(compile_from_args(args), use_fusion=not args.no_fusion)
    stats = view.stats()
    if args.json:
        json.dump(stats.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(stats.text())
    return 0
