"""`mlpc opt`: run a pass pipeline over a textual IR file, like mlir-opt."""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from typing import Any

from mlpc.commands.argtypes import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("opt", help="run a pass pipeline over textual IR (mlir-opt style)")
    p.add_argument("file", nargs="?", default=None, help="textual IR file, or - for standard input")
    p.add_argument("-p", "--pipeline", default="", help="passes, e.g. 'autodiff,adam{decoupled=true},simplify'")
    p.add_argument("-o", "--output", default=None, help="write the result here instead of stdout")
    p.add_argument("--print-after-all", action="store_true")
    p.add_argument("--print-after-change", action="store_true")
    p.add_argument("--list-passes", action="store_true", help="list registered passes (no file needed)")
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
    if args.file is None:
        raise UsageError("the following arguments are required: file (or give --list-passes)")
    steps = checked_pipeline(args.pipeline) if args.pipeline else []
    text = sys.stdin.read() if args.file == "-" else _read(args.file)
    graph = parse(text)
    pm = PassManager(verify_each=not args.no_verify, print_after_all=args.print_after_all,
                     print_after_change=args.print_after_change, stream=sys.stdout)
    if steps:
        graph = pm.run(graph, steps)
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


def checked_pipeline(text: str) -> list[Any]:
    """Parse -p and check every pass name and option against the pass's signature before running anything."""
    from mlpc.errors import MlpcError
    from passes.manager import get_pass, parse_pipeline

    try:
        steps = parse_pipeline(text)
        for step in steps:
            check_options(step.name, get_pass(step.name), step.options)
    except MlpcError as e:
        raise UsageError(f"argument -p/--pipeline: {e}") from None
    return steps


def check_options(name: str, fn: Any, options: dict[str, Any]) -> None:
    """Each option must be a parameter of the pass, of the same kind as its default (a list as long)."""
    params = {k: p for k, p in list(inspect.signature(fn).parameters.items())[1:]
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_more = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    for key, value in options.items():
        if key not in params and takes_more:
            continue  # the pass explains its own refusals (optimizers: "lr is a runtime input ...")
        if key not in params:
            raise UsageError(f"pass {name} has no option {key!r}; options: {', '.join(params) or 'none'}")
        default = params[key].default
        if default is inspect.Parameter.empty or default is None:
            continue
        problem = _mismatch(default, value)
        if problem:
            raise UsageError(f"pass {name}: option {key} must be {problem}, got {_show(value)}")


def _mismatch(default: Any, value: Any) -> str | None:
    """What `value` should be when it is not of the default's kind, else None."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        return None if ok else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, (tuple, list)):
        kinds = {_mismatch(d, v) for d, v in zip(default, value)} if isinstance(value, (list, tuple)) else {"x"}
        if not isinstance(value, (list, tuple)) or len(value) != len(default) or kinds != {None}:
            what = "numbers" if all(isinstance(d, float) for d in default) else "values"
            return f"a list of {len(default)} {what}, like {list(default)}"
    return None


def _show(value: Any) -> str:
    from mlpc.printer import format_attr

    try:
        return format_attr(value)
    except Exception:  # noqa: BLE001 - only for the message
        return repr(value)


def _read(path: str) -> str:
    from mlpc.errors import MlpcError

    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise MlpcError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise MlpcError(f"{path} is not UTF-8 text") from None
