"""`mlpc dump`: print the IR of a model at a named stage, or after every pass."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlpc.commands.argtypes import UsageError
from mlpc.commands.common import add_model_args, compile_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("dump", help="print the IR of a model at a stage")
    add_model_args(p)
    p.add_argument("--stage", default="simplified",
                   help="stage name (see --list-stages); predict is the forward-only inference graph")
    p.add_argument("--list-stages", action="store_true", help="list the stages in pipeline order")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--print-after-change", action="store_true", help="print the IR after passes that changed it")
    p.add_argument("--no-loc", action="store_true", help="omit source locations")
    p.add_argument("--timing", action="store_true",
                   help="compile again, cold, and report the time of every stage and pass on standard error")
    p.add_argument("--format", choices=("text", "dot", "svg", "png"), default="text",
                   help="text IR, or a picture of the graph (dot; svg/png need Graphviz's `dot`)")
    p.add_argument("-o", "--output", default=None, help="write here instead of standard output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mode = "all" if args.print_after_all else "change" if args.print_after_change else None
    from mlpc.inspection import Inspection

    if args.stage in ("ttir", "ptx") or args.list_stages:
        import os

        os.environ.setdefault("MLPC_TRITON_AOT_IR", "1")  # without a GPU these come from an sm_90 compile
    trainer = compile_from_args(args, print_after=mode, ir_stream=sys.stdout)
    view = Inspection(trainer)
    if args.timing:
        from mlpc.inspection.timing import compile_timings, timing_table

        print(timing_table(compile_timings(trainer), trainer), file=sys.stderr)
    stages = view.stages() + ([] if "predict" in view.stages() else ["predict"])
    if args.list_stages:
        print("\n".join(stages))
        return 0
    if mode is not None:
        return 0
    if args.stage not in stages:
        raise UsageError(f"argument --stage: no stage {args.stage!r}; stages: {', '.join(stages)}")
    if args.format in ("svg", "png"):
        return _write(args.output, view.render(args.stage, args.format), binary=args.format == "png")
    text = view.dot(args.stage) if args.format == "dot" else view.ir(args.stage)
    if args.no_loc:
        import re

        text = re.sub(r' loc\("[^"]*"\)', "", text)
    return _write(args.output, text.encode("utf-8"), binary=False)


def _write(path: str | None, data: bytes, binary: bool) -> int:
    if path is None or path == "-":
        if binary and sys.stdout.isatty():
            print("mlpc dump: error: PNG is binary; give -o FILE.png", file=sys.stderr)
            return 2
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    from mlpc.commands.report import write_file

    write_file(path, data)
    return 0
