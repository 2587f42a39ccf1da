"""Subcommands of the `mlpc` CLI, one module each with a `register(subparsers)` function."""
