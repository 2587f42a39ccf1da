"""What the Triton backend tells the planner (its FusionPolicy) and how it splits and tiles kernels."""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen import triton_config as cfg
from passes.plan import FusionPolicy

SM_COUNT = 132


@dataclass(frozen=True)
class TritonPolicy(FusionPolicy):
    """Reshapes, broadcasts, transposes and constants are strided views (no kernel); elementwise
    chains absorb unrelated ops on the same tile; column sums ride on matmuls only; one optimizer
    launch per update kind over flat arenas. Split-K and reduction splits fill `sm_count` SMs."""

    name: str = "triton"
    view_ops: frozenset[str] = frozenset({"reshape", "broadcast_to", "transpose", "full"})
    colsum_hosts: frozenset[str] = frozenset({"gemm"})
    fuse_siblings: bool = True
    rank_k_max: int = 0
    inline_constants: bool = False
    optimizer_by_key: bool = True
    rewrites: tuple[str, ...] = field(default=("gpu-reuse-relu",))
    placement: str = "first"
    sm_count: int = SM_COUNT
    precision: str = "tf32"

    def split_k(self, m: int, n: int, k: int) -> int:
        """Split the K loop when the output has too few tiles to fill the GPU (two programs per SM)
        and K is long (at least 8 blocks of K per program)."""
        bm, bn, bk = cfg.matmul_blocks(m, n, k, self.precision)[:3]
        tiles = -(-m // bm) * -(-n // bn)
        if tiles >= self.sm_count or k < 8 * bk * 4:
            return 1
        split = min(-(-2 * self.sm_count // tiles), k // (bk * 8), 512)
        return max(split, 1)

    def matmul_row_block(self, m: int, n: int, k: int) -> int:
        """BLOCK_M of an m x n x k matmul (the epilogue's column-sum partials have one row per block)."""
        return cfg.matmul_blocks(m, n, k, self.precision)[0]

    def reduce_splits(self, rows: int, cols: int) -> int:
        """Row chunks of a long column reduction, reduced again by a second small launch."""
        br, bc = cfg.reduce_blocks(rows, cols)
        colblocks = -(-cols // bc)
        if rows < 8 * br:
            return 1
        return max(1, min(-(-rows // (4 * br)), -(-2 * self.sm_count // colblocks)))

    def rows_per_program(self, rows: int, cols: int) -> int:
        """Rows each program of a row-wise (softmax cross-entropy, softmax, one_hot) kernel handles."""
        return cfg.sce_blocks(rows, cols)[0]
