"""`mlpc report`: a self-contained HTML page with every stage, the kernels, a roofline and the memory plan."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlpc.commands import argtypes
from mlpc.commands.common import add_model_args, compile_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="write an HTML report: stages, kernels, roofline, memory plan")
    add_model_args(p)
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--repeats", type=argtypes.int_range(1, 100000), default=5,
                   help="timed runs per kernel, at least 1 (median is shown)")
    p.add_argument("--no-fusion", action="store_true", help="one kernel per op even when a fusion pass exists")
    p.add_argument("--refresh-roofline", action="store_true",
                   help="measure this machine's peak FLOP/s and bandwidth again instead of using the cache")
    p.set_defaults(func=run)


def write_file(path: str, data: bytes) -> None:
    """Atomic write with a clear error for a missing folder or no permission."""
    import os

    from mlpc.checkpoint import atomic_write
    from mlpc.errors import MlpcError

    try:
        atomic_write(path, data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)  # a normal file, not the temp file's 0600
    except OSError as e:
        raise MlpcError(f"cannot write {path}: {e.strerror or e}") from None


def run(args: argparse.Namespace) -> int:
    from mlpc.inspection import Inspection

    trainer = compile_from_args(args)
    view = Inspection(trainer, repeats=args.repeats, use_fusion=not args.no_fusion)
    if args.refresh_roofline:
        view.machine(refresh=True)
    html = view.report()
    write_file(args.output, html.encode("utf-8"))
    kernels = view.kernels()
    print(f"wrote {args.output} ({len(html) // 1024} KiB): {len(view.stages())} stages, {len(kernels)} kernels "
          f"({view.kernel_plan().grouping})", file=sys.stdout)
    return 0
