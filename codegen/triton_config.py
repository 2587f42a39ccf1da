"""Block sizes, warps and pipeline depth per kernel shape: the only tuning knobs the codegen emits."""

from __future__ import annotations


def pow2(x: int) -> int:
    p = 1
    while p < x:
        p *= 2
    return p


def clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, x))


def matmul_blocks(m: int, n: int, k: int, precision: str) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) for an m x n x k product.

    Shared memory per stage is (BM + BN) * BK * itemsize; fp32 operands use BK=32, 16-bit ones 64,
    so the deepest configuration (128x128, 4 stages fp32) stays at 128 KiB, under the 227 KiB limit."""
    bn = clamp(pow2(n), 16, 128)
    bm = 128 if m > 64 else 64
    wide = precision == "bf16"
    bk = clamp(pow2(k), 16, 64 if wide else 32)
    warps = 8 if bm * bn >= 128 * 128 else 4
    stages = 4 if k > 2 * bk else 2
    return bm, bn, bk, warps, stages


def reduce_blocks(rows: int, cols: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_C) of the column reduction."""
    bc = clamp(pow2(cols), 16, 128)
    br = clamp(pow2(rows), 1, 4096 // bc)
    return br, bc


def ewise_block(numel: int) -> tuple[int, int]:
    """(BLOCK, num_warps) of a flat elementwise kernel."""
    block = clamp(pow2(numel), 16, 1024)
    return block, 4 if block >= 512 else 1


def sce_blocks(batch: int, classes: int) -> tuple[int, int, int]:
    """(rows per program, BLOCK_C, num_warps) of the softmax cross-entropy kernel."""
    bc = clamp(pow2(classes), 16, 8192)
    rows = clamp(4096 // bc, 1, 64)
    rows = min(rows, pow2(batch))
    return rows, bc, 4


def optimizer_block(n: int) -> tuple[int, int]:
    block = clamp(pow2(n), 16, 1024)
    return block, 4 if block >= 512 else 1
