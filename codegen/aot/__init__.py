"""Ahead-of-time export: C header, C glue and the kernels object of a shared library."""
