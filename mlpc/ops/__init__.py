"""The op set: registry plus one module per family of ops."""

from mlpc.ops.registry import Builder, OpDef, all_ops, get, register

__all__ = ["Builder", "OpDef", "all_ops", "get", "register"]
