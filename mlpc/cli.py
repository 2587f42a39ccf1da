"""The `mlpc` command line: each subcommand lives in mlpc/commands/<name>.py and registers itself."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mlpc.errors import MlpcError


def build_parser() -> argparse.ArgumentParser:
    import mlpc.commands as commands

    parser = argparse.ArgumentParser(prog="mlpc", description="A compiler for training multi-layer perceptrons.")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"mlpc.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MlpcError as e:
        print(f"mlpc {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mlpc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
