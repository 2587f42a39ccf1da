"""The `mlpc` command line: each subcommand lives in mlpc/commands/<name>.py and registers itself."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mlpc.errors import MlpcError


def build_parser() -> argparse.ArgumentParser:
    import mlpc
    import mlpc.commands as commands
    from mlpc.commands.argtypes import Parser

    parser = Parser(prog="mlpc", description="A compiler for training multi-layer perceptrons.")
    parser.add_argument("--version", action="version", version=f"mlpc {mlpc.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"mlpc.commands.{info.name}")
        register = getattr(module, "register", None)  # helper modules (common, argtypes) have none
        if register is not None:
            register(sub)
    parser.set_defaults(subcommands=sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mlpc.commands.argtypes import UsageError

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the subcommand's parser: `mlpc train: error: unrecognized arguments: ...`
            args.subcommands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, --version, or a bad argument (already reported on one line)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"mlpc {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MlpcError as e:
        print(f"mlpc {args.command}: error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"mlpc {args.command}: error: out of memory (a smaller --batch-size or --limit may fit)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mlpc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
