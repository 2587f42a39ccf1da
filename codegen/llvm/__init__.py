"""The LLVM CPU renderer: fused kernels and a one-call training step as an llvmlite module."""

import os

# bump when generated code changes meaning or layout: part of every compile-cache key
VERSION = "llvm-codegen-5"
# MLPC_PROFILE_KERNELS=1 builds steps that count cycles per kernel (global `mlpc_prof`)
PROFILE = bool(os.environ.get("MLPC_PROFILE_KERNELS"))
