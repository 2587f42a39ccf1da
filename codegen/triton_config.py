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

    Operands stay fp32 in memory (bf16 is converted in registers), so a stage of shared memory is
    (BM + BN) * BK * 4 bytes; the deepest configurations (128x128x32 with 4 stages, 256x128x32 with
    3) take 128 and 144 KiB, under the 227 KiB limit. Chosen from H200 sweeps
    (benchmarks/results/run2_*.json): 4 warps beat 8 for bf16 128x128 tiles; 256-row tiles
    beat 128 for long-K tf32 products with many rows."""
    bn = clamp(pow2(n), 16, 128)
    bm = 128 if m > 64 else 64
    bk = clamp(pow2(k), 16, 32)
    if precision == "tf32" and m >= 1 << 15 and n >= 128 and k >= 512:
        return 256, bn, bk, 8, 3
    warps = 8 if bm * bn >= 128 * 128 and precision != "bf16" else 4
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
