"""Kernel sharing and on-demand assembly in the llvm backend: structure, not timing.

Kernels of one signature share one LLVM function (codegen/llvm/sharing.py), so the number of distinct
kernel functions does not grow with depth; sharing changes no result bit; assembly is generated only
when the `asm` stage is read (dump, report), never by compiling or running a step.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import mlpc
from codegen.llvm import compile as llvm_compile
from codegen.llvm import module as llvm_module
from codegen.llvm.compile import split_functions_ir
from codegen.llvm.policy import MEMORY, POLICY
from codegen.llvm.sharing import kernel_signature
from codegen.llvm.target import generic_target
from mlpc import nn, optim
from passes.fusion import fuse
from passes.memory import plan_memory
from runtime import compile_cache
from runtime.llvm_backend import lower_graph
from tests.handgraphs import init_state, mlp_train_graph, random_data

# a fixed target: the module's structure must not depend on the host's vector width or thread count
TARGET = replace(generic_target(lanes=16, threads=2), cpu="skylake-avx512", features="+avx512f")


def deep(depth: int, width: int = 100, batch: int = 128) -> list[int]:
    return [784] + [width] * (depth - 1) + [10]


def build(sizes: list[int], batch: int, share: bool = True):
    g = mlp_train_graph(sizes, batch, "relu", "ce", "adam")
    plan = fuse(g, POLICY)
    mem = plan_memory(plan, llvm_module.scratch_needs(plan, TARGET), MEMORY)
    return g, plan, mem, llvm_module.build_module(plan, mem, TARGET, share=share)


def kernel_functions(step) -> set[str]:
    return {k.code for k in step.kernels}


def test_distinct_kernel_functions_do_not_grow_with_depth():
    _, _, _, s10 = build(deep(10), 128)
    _, _, _, s50 = build(deep(50), 128)
    assert len(s50.kernels) == 152 and len(s10.kernels) == 32  # one kernel per layer and pass, as before
    # forward (first, hidden, last), softmax_ce, backward data/weight gemms per distinct shape, optimizer, t += 1
    assert kernel_functions(s50) == kernel_functions(s10) or len(kernel_functions(s50)) == len(kernel_functions(s10))
    assert len(kernel_functions(s50)) <= 12
    defined = split_functions_ir(str(s50.module))
    assert set(kernel_functions(s50)) <= set(defined)
    assert not set(k.name for k in s50.kernels if k.code != k.name) & set(defined)  # shared ones: no copy
    # the optimizer's 100 updates: one loop per distinct (shape, rule): W 784x100, 100x100, 100x10, b 100, b 10
    assert len([n for n in defined if "_update" in n]) == 5


def test_equal_signatures_mean_identical_code():
    """Without sharing every kernel gets its own function; those sharing code when sharing is on
    are then identical up to their name (so sharing can only remove duplicates)."""
    _, _, _, shared = build(deep(6, 24), 16)
    _, _, _, alone = build(deep(6, 24), 16, share=False)
    funcs = split_functions_ir(str(alone.module))
    groups: dict[str, list[str]] = {}
    for k in shared.kernels:
        groups.setdefault(k.code, []).append(k.name)
    assert any(len(names) > 1 for names in groups.values())
    for code, names in groups.items():
        want = funcs[code]
        for n in names[1:]:
            assert funcs[n].replace(f'@"{n}"', f'@"{code}"') == want, n


def test_signature_tells_apart_what_the_body_depends_on():
    g, plan, mem, step = build(deep(5, 24), 16)
    k = next(k for k in plan.kernels if k.kind == "gemm")
    ops = [g.ops[i] for i in k.ops]
    keys, key_of = llvm_module._kernel_keys(k, mem)

    def sig(**kw):
        args = dict(kind=k.kind, ops=ops, outputs=k.outputs, colsums=k.colsums, key_of=key_of, nkeys=len(keys),
                    consts=plan.constants, threading=(False, "none"), nt=1, has_scratch=False)
        args.update(kw)
        return kernel_signature(**args)
    base = sig()
    assert sig() == base
    assert sig(threading=(True, "n"), nt=2) != base
    assert sig(consts={**plan.constants, ops[0].operands[0]: 1.0}) != base
    swapped = dict(key_of)
    a, b = ops[0].operands
    swapped[a], swapped[b] = key_of[b], key_of[a]
    assert sig(key_of=swapped) != base


def test_sharing_changes_no_bit(monkeypatch):
    g = mlp_train_graph([12, 9, 9, 9, 9, 5], 6, "relu", "ce", "adam")
    data = [random_data(g, seed=s) for s in range(3)]
    build_module = llvm_module.build_module

    def run(share: bool):
        monkeypatch.setattr(llvm_module, "build_module", lambda *a, **kw: build_module(*a, **kw, share=share))
        c = lower_graph(g, use_cache=False)
        state = init_state(g)
        outs = [c.run(state, d) for d in data]
        shared_fns = sum(1 for k in c.meta["listing"]["kernels"] if k[1] != k[2])
        return outs, state, shared_fns
    a, sa, shared_a = run(True)
    b, sb, shared_b = run(False)
    assert shared_a > 0 and shared_b == 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    assert all(sa[k].tobytes() == sb[k].tobytes() for k in sa)


def test_assembly_is_made_only_when_read():
    g = mlp_train_graph([10, 8, 8, 8, 3], 4, "relu", "ce", "sgd", {"lr": 0.1})
    before = llvm_compile.ASM_EMITS[0]
    stages: dict = {}
    c = lower_graph(g, stages.__setitem__, use_cache=False)
    c.run(init_state(g), random_data(g))
    assert llvm_compile.ASM_EMITS[0] == before and "asm" not in c.texts
    assert callable(stages["asm"]) and callable(stages["llvm"])
    asm = stages["asm"]()
    assert llvm_compile.ASM_EMITS[0] == before + 1
    assert stages["asm"]() is asm and llvm_compile.ASM_EMITS[0] == before + 1  # made once
    shared = [(name, code) for _, name, code in c.meta["listing"]["kernels"] if name != code]
    assert shared
    name, code = shared[0]
    assert f"# ---- kernel {name}:" in asm and f"# the code of {code}:" in asm
    assert re.search(rf"^{name}:", asm, re.M) and re.search(rf"^{code}:", asm, re.M)
    assert re.search(r"^# ---- k\d+_optimizer_update: called by k\d+_optimizer$", asm, re.M)  # its loops
    ir_text = stages["llvm"]()
    assert f"; the code of {code}:" in ir_text and re.search(rf'^define [^@]*@"?{name}"?\(', ir_text, re.M)


def test_trainer_compiles_and_steps_without_assembly_and_shows_it_on_request():
    before = llvm_compile.ASM_EMITS[0]
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    tr = mlpc.compile(model, nn.CrossEntropyLoss(), optim.Adam(), batch_size=8, backend="llvm")
    rng = np.random.default_rng(0)
    tr.step(rng.standard_normal((8, 20)).astype(np.float32), rng.integers(0, 4, 8))
    assert llvm_compile.ASM_EMITS[0] == before and "asm" in tr.stages()
    asm = tr.ir("asm")
    assert llvm_compile.ASM_EMITS[0] <= before + 1  # +1 unless the entry came from the compile cache
    assert "# ---- kernel k0_gemm" in asm and re.search(r"^k0_gemm:", asm, re.M)


def test_cache_entry_without_the_module_ir_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    g = mlp_train_graph([6, 5, 2], 3, "relu", "ce", "sgd", {"lr": 0.1})
    lower_graph(g)
    (path,) = list(tmp_path.rglob("*.mlpcobj"))
    meta, obj, texts = compile_cache.load(path.stem)
    assert "module" in texts and "asm" not in texts and "llvm" not in texts  # made from `module` when read
    compile_cache.store(path.stem, meta, obj, {k: v for k, v in texts.items() if k != "module"})
    assert not lower_graph(g).from_cache   # an entry from before on-demand assembly: rebuilt
    assert lower_graph(g).from_cache


@pytest.mark.parametrize("stage", ["asm", "llvm"])
def test_dump_shows_the_code_stages(tmp_path, stage):
    (tmp_path / "model.py").write_text("from mlpc import nn, optim\n"
                                       "model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 16), "
                                       "nn.ReLU(), nn.Linear(16, 10))\n"
                                       "optimizer = optim.SGD(lr=0.1)\nbatch_size = 8\n")
    r = subprocess.run([sys.executable, "-m", "mlpc.cli", "dump", "model.py", "--stage", stage, "--backend", "llvm"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    mark = "#" if stage == "asm" else ";"
    assert f"{mark} ---- kernel k0_gemm" in r.stdout and f"{mark} ---- mlpc_step" in r.stdout
    assert re.search(r"^k0_gemm:" if stage == "asm" else r'^define [^@]*@"?k0_gemm"?\(', r.stdout, re.M)
