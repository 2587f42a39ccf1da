"""`mlpc opt`: run a pass pipeline over a textual IR file, like mlir-opt."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("opt", help="run a pass pipeline over textual IR (mlir-opt style)")
    p.add_argument("file", help="textual IR file, or - for standard input")
    p.add_argument("-p", "--pipeline", default="", help="passes, e.g. 'autodiff,adam{decoupled=true},simplify'")
    p.add_argument("-o", "--output", default=None, help="write the result here instead of stdout")
    p.add_argument("--print-after-all", action="store_true")
    p.add_argument("--print-after-change", action="store_true")
    p.add_argument("--list-passes", action="store_true", help="list registered passes")
    p.add_argument("--timing", action="store_true", help="report time per pass on stderr")
    p.add_argument("--no-verify", action="store_true", help="skip the verifier between passes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlpc.parser import parse
    from mlpc.printer import print_graph
    from passes.manager import PassManager, registered_passes

    if args.list_passes:
        for name, doc in registered_passes().items():
            print(f"{name:<12} {doc}")
        return 0
    text = sys.stdin.read() if args.file == "-" else _read(args.file)
    graph = parse(text)
    pm = PassManager(verify_each=not args.no_verify, print_after_all=args.print_after_all,
                     print_after_change=args.print_after_change, stream=sys.stdout)
    if args.pipeline:
        graph = pm.run(graph, args.pipeline)
    elif not args.no_verify:
        from mlpc.verifier import verify

        verify(graph, after="parse")  # with no passes to run, still refuse to echo a broken graph
    out = print_graph(graph)
    if args.output:
        from mlpc.checkpoint import atomic_write

        atomic_write(args.output, out.encode())
    else:
        sys.stdout.write(out)
    if args.timing:
        print(pm.timing_report(), file=sys.stderr)
    return 0


def _read(path: str) -> str:
    from mlpc.errors import MlpcError

    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise MlpcError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise MlpcError(f"{path} is not UTF-8 text") from None
