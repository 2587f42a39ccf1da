"""The host target: LLVM CPU name and features, the vector width kernels use, target machines."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cache

import llvmlite.binding as llvm

from mlpc.errors import MlpcError


@cache
def init_llvm() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@dataclass(frozen=True)
class Target:
    """What code is generated for: `lanes` f32 lanes per vector register (16 AVX-512, 8 AVX2, 4 SSE,
    1 for the scalar fallback), `threads` worker threads for large kernels, flush-to-zero on or off,
    and the matmul `precision` ("fp32", or "bf16": bf16 operands, fp32 accumulation; mlpc.precision)."""

    triple: str
    cpu: str
    features: str
    lanes: int
    threads: int
    ftz: bool = True
    precision: str = "fp32"

    @property
    def bf16_native(self) -> bool:
        """bf16 dot products in hardware (AVX512-BF16's VDPBF16PS on 16-lane kernels); else widened FMAs."""
        return self.lanes == 16 and "+avx512bf16" in self.features.split(",")

    @property
    def is_x86(self) -> bool:
        return self.triple.startswith(("x86_64", "i686", "i386"))

    @property
    def key(self) -> str:
        return f"{self.triple}|{self.cpu}|{self.features}|{self.lanes}|{self.threads}|{self.ftz}|{self.precision}"

    def machine(self) -> llvm.TargetMachine:
        """A fresh target machine (MCJIT takes ownership of the one it is given)."""
        init_llvm()
        t = llvm.Target.from_triple(self.triple)
        features = self.features
        if self.lanes == 16 and "+avx512f" in features:
            features += ",-prefer-256-bit"  # let the loop vectorizer use zmm like the gemm does
        return t.create_target_machine(cpu=self.cpu, features=features, opt=3, reloc="pic",
                                       codemodel="jitdefault")


def lanes_for(features: str) -> int:
    flags = set(features.split(","))
    if "+avx512f" in flags:
        return 16
    if "+avx2" in flags or "+avx" in flags:
        return 8
    if "+sse2" in flags or "+neon" in flags:
        return 4
    return 1


MAX_THREADS = 1024  # threads of a step's worker pool (MLPC_NUM_THREADS)


def host_threads() -> int:
    """MLPC_NUM_THREADS if set (an integer, or `auto`); auto = the CPUs in this process's affinity
    mask, but 1 when the 1-minute load average already exceeds them: on an oversubscribed machine a
    second thread mostly waits at barriers for a descheduled partner (measured slower than one)."""
    env = os.environ.get("MLPC_NUM_THREADS", "auto").strip().lower()
    if env not in ("", "auto"):
        try:
            n = int(env)
        except ValueError:
            n = 0
        if not 1 <= n <= MAX_THREADS:
            raise MlpcError(f"MLPC_NUM_THREADS must be an integer in [1, {MAX_THREADS}] or 'auto', got {env!r}")
        return n
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = max(1, os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0] > cpus + 0.5
    except OSError:  # pragma: no cover - no load average
        busy = False
    return 1 if busy else cpus


def without_features(features: str, names: list[str] | tuple[str, ...]) -> str:
    """An LLVM feature string with each of `names` (e.g. "avx512bf16") switched off."""
    off = {n.strip().lstrip("+-") for n in names if n.strip()}
    kept = [f for f in features.split(",") if f and f.lstrip("+-") not in off]
    return ",".join(kept + [f"-{n}" for n in sorted(off)])


@cache
def _host_target(threads: int | None, disabled: str) -> Target:
    init_llvm()
    features = llvm.get_host_cpu_features().flatten()
    if disabled.strip():
        features = without_features(features, disabled.split(","))
    return Target(llvm.get_process_triple(), llvm.get_host_cpu_name(), features, lanes_for(features),
                  threads if threads is not None else host_threads())


def host_target(threads: int | None = None) -> Target:
    """The machine we run on, from LLVM's host CPU name and feature list, less the features named in
    MLPC_DISABLE_CPU_FEATURES (comma-separated LLVM names, e.g. `avx512bf16` to test the bf16 fallback)."""
    return _host_target(threads, os.environ.get("MLPC_DISABLE_CPU_FEATURES", ""))


host_target.cache_clear = _host_target.cache_clear  # type: ignore[attr-defined]


def with_precision(target: Target, precision: str) -> Target:
    return target if target.precision == precision else replace(target, precision=precision)


def generic_target(lanes: int = 1, threads: int = 1) -> Target:
    """Baseline x86-64 (SSE2 only) with `lanes`-wide kernels: the portable, scalar-correct fallback."""
    init_llvm()
    return Target(llvm.get_process_triple(), "generic", "", lanes, threads)
