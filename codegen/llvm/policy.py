"""What the LLVM CPU backend tells the planners: its fusion policy and its memory policy."""

from passes.memory import CPU_MEMORY, MemoryPolicy
from passes.plan import FusionPolicy

# Every reshape/broadcast/transpose is a loop (no strided views); column sums ride on gemm and
# softmax-CE kernels; a tiny-batch weight gradient is recomputed inside the optimizer kernel; activation
# derivatives (with the chains computing them from forward values) run in the gemm epilogues.
POLICY = FusionPolicy("llvm", colsum_hosts=frozenset({"gemm", "softmax_ce"}), fuse_siblings=False,
                      rank_k_max=4, inline_constants=True, optimizer_by_key=False, merge_epilogues=True)

# One 64-byte aligned arena; a new parameter/state value is written over its input when safe.
MEMORY: MemoryPolicy = CPU_MEMORY
