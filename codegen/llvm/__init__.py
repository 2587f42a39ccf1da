"""The LLVM CPU renderer: fused kernels and a one-call training step as an llvmlite module."""
