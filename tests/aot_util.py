"""Helpers for the ahead-of-time export tests: build trainers, export them, compile C programs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

import mlpc
from mlpc import nn, optim

ROOT = Path(__file__).resolve().parent.parent
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]


def trainer(model: nn.Module, loss: nn.Loss | None = None, optimizer: Any = None, batch: int = 7,
            backend: str = "llvm", seed: int = 0) -> mlpc.Trainer:
    return mlpc.compile(model, loss or nn.CrossEntropyLoss(), optimizer or optim.Adam(lr=1e-2), batch_size=batch,
                        backend=backend, seed=seed)


def ragged_model() -> nn.Module:
    return nn.Sequential(nn.Linear(33, 17), nn.ReLU(), nn.Linear(17, 5))


def export(tr: mlpc.Trainer, outdir: Path, name: str, **options: Any) -> Any:
    options.setdefault("cflags", ["-Werror"])
    return mlpc.export(tr, str(outdir), name, **options)


def data(rng: np.random.Generator, n: int, features: int, classes: int | None, outputs: int = 0
         ) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, features)).astype(np.float32)
    if classes is not None:
        return x, rng.integers(0, classes, n).astype(np.int32)
    return x, rng.standard_normal((n, outputs)).astype(np.float32)


def compile_c(sources: list[Path], out: Path, include: list[Path], libs: list[tuple[Path, str]],
              extra: list[str] | None = None, compiler: str = "cc") -> Path:
    """Compile and link a C (or C++) program against exported libraries (rpath set, so it runs as is)."""
    cmd = [compiler, *(extra if extra is not None else CFLAGS), *[f"-I{i}" for i in include], *map(str, sources),
           "-o", str(out)]
    for folder, name in libs:
        cmd += [f"-L{folder}", f"-l{name}", f"-Wl,-rpath,{folder}"]
    cmd.append("-lm")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return out


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "LC_ALL": "C"})


def dynamic_symbols(lib: Path) -> set[str]:
    r = run(["nm", "-D", "--defined-only", str(lib)])
    assert r.returncode == 0, r.stderr
    return {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}


def needed_libraries(lib: Path) -> set[str]:
    r = run(["readelf", "-d", str(lib)])
    assert r.returncode == 0, r.stderr
    return {line.split("[")[1].split("]")[0] for line in r.stdout.splitlines() if "(NEEDED)" in line}
