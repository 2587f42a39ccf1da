"""`mlpc dump`: print the IR of a model at a named stage, or after every pass."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlpc.commands.common import add_model_args, compile_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("dump", help="print the IR of a model at a stage")
    add_model_args(p)
    p.add_argument("--stage", default="simplified", help="stage name (see --list-stages)")
    p.add_argument("--list-stages", action="store_true", help="list the stages in pipeline order")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--print-after-change", action="store_true", help="print the IR after passes that changed it")
    p.add_argument("--no-loc", action="store_true", help="omit source locations")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mode = "all" if args.print_after_all else "change" if args.print_after_change else None
    trainer = compile_from_args(args, print_after=mode, ir_stream=sys.stdout)
    if args.list_stages:
        print("\n".join(trainer.stages()))
        return 0
    if mode is not None:
        return 0
    text = trainer.ir(args.stage) if args.stage in trainer.stages() else None
    if text is None:
        print(f"mlpc dump: error: no stage {args.stage!r}; stages: {', '.join(trainer.stages())}", file=sys.stderr)
        return 2
    if args.no_loc:
        import re

        text = re.sub(r' loc\("[^"]*"\)', "", text)
    sys.stdout.write(text)
    return 0
