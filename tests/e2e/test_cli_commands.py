"""What the README promises about the commands: dump --timing and --stage predict, locations from the dumped
model (not the compile cache's first filler), probe without matplotlib, the .npz hold-out note, the progress
bar on stderr, aot names next to system libraries, and the C example run from another directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = "from mlpc import nn\nmodel = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))\nbatch_size = 8\n"


def mlpc(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, pre: str = ""
         ) -> subprocess.CompletedProcess[str]:
    """`python -m mlpc.cli ARGS`, or with `pre` run first in the same interpreter (e.g. to hide a module)."""
    code = f"{pre}\nimport sys\nfrom mlpc.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = dict(env or os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_dump_stage_predict_is_the_inference_graph(tmp_path) -> None:
    (tmp_path / "m.py").write_text(SMALL)
    r = mlpc("dump", "m.py", "--backend", "numpy", "--list-stages", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.split()[-1] == "predict"
    r = mlpc("dump", "m.py", "--backend", "numpy", "--stage", "predict", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("func @predict(") and "logits: f32[8,10]" in r.stdout
    assert "softmax_cross_entropy" not in r.stdout and 'loc("m.py:2")' in r.stdout
    import mlpc as api

    api.parse(r.stdout)  # the text is valid IR
    r = mlpc("dump", "m.py", "--backend", "numpy", "--stage", "predict", "--format", "dot", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("digraph mlpc {") and "@predict after predict" in r.stdout


@pytest.mark.parametrize("backend, lowering", [("numpy", "numpy lower"), ("llvm", "llvm codegen + load")])
def test_dump_timing_reports_every_stage_on_stderr(tmp_path, backend, lowering) -> None:
    (tmp_path / "m.py").write_text(SMALL)
    r = mlpc("dump", "m.py", "--backend", backend, "--timing", "--stage", "traced", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("func @step(")  # standard output is still just the IR
    names = [line.split("  ")[0].strip() for line in r.stderr.splitlines()[1:]]
    assert names[0] == "trace" and names[1] == "autodiff" and names[2].startswith("adam{") and names[3] == "simplify"
    assert lowering in names and "total" in names
    if backend == "llvm":
        assert names[4:7] == ["fusion", "memory plan", "llvm codegen + load"]
        assert "this run's backend lowering took" in r.stderr
    for line in r.stderr.splitlines()[1:]:
        if not line.startswith("this run"):
            assert re.search(r"\s\d+\.\d\d\s+\d+\.\d(\s|$)", line), line  # ms and % columns


FILE_A = "from mlpc import nn\nmodel = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))\n"
FILE_B = ("\n\n\n\nfrom mlpc import nn\nmodel = nn.Sequential(\n    nn.Linear(784, 16),\n    nn.ReLU(),\n"
          "    nn.Linear(16, 10),\n)\n")


@pytest.mark.parametrize("stage", ["fused", "planned"])
def test_cached_stages_show_the_dumped_models_locations(tmp_path, stage) -> None:
    """b.py has the same structure as a.py (so the same compile-cache entry) on other lines."""
    (tmp_path / "a.py").write_text(FILE_A)
    (tmp_path / "b.py").write_text(FILE_B)
    env = dict(os.environ, MLPC_CACHE_DIR=str(tmp_path / "cache"))
    a = mlpc("dump", "a.py", "--backend", "llvm", "--stage", stage, cwd=tmp_path, env=env)
    b = mlpc("dump", "b.py", "--backend", "llvm", "--stage", stage, cwd=tmp_path, env=env)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert os.listdir(tmp_path / "cache")  # b's lowering came from the entry a filled
    assert 'loc("a.py:2")' in a.stdout and "b.py" not in a.stdout
    assert "a.py" not in b.stdout
    locs = re.findall(r'loc\("b\.py:(\d+)"\)', b.stdout)
    assert {"7", "8", "9"} <= set(locs)
    uncached = mlpc("dump", "b.py", "--backend", "llvm", "--stage", stage, cwd=tmp_path,
                    env=dict(os.environ, MLPC_CACHE_DIR="off"))
    strip = re.compile(r"^; target .*$|^// arena.*$", re.M)
    assert strip.sub("", b.stdout) == strip.sub("", uncached.stdout)


def test_probe_without_matplotlib_writes_table_and_json(tmp_path) -> None:
    out = tmp_path / "p"
    r = mlpc("probe", "--init", "2/n", "--depth", "4", "--width", "10", "--batch", "32", "-o", str(out),
             pre="import sys; sys.modules['matplotlib'] = None")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["probe.json", "probe.txt"]
    assert "probe.png not drawn: the figure needs matplotlib (pip install 'mlpc[plot]')" in r.stdout


def test_npz_with_only_x_y_says_it_holds_out_a_test_set(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 784)).astype(np.float32)
    np.savez(tmp_path / "xy.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    np.savez(tmp_path / "split.npz", x_train=x[:150], y_train=(x[:150, 0] > 0).astype(np.int64), x_test=x[150:],
             y_test=(x[150:, 0] > 0).astype(np.int64))
    r = mlpc("train", "--npz", str(tmp_path / "xy.npz"), "--epochs", "1", "--batch-size", "32", "--no-progress",
             "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    assert f"{tmp_path / 'xy.npz'} has only x/y: holding out a seeded random 10% (20 rows) as the test set" in r.stdout
    assert re.search(r"test accuracy: .*\(\d+/20\)", r.stdout)
    r = mlpc("train", "--npz", str(tmp_path / "split.npz"), "--epochs", "1", "--batch-size", "32", "--no-progress",
             "--backend", "numpy")
    assert r.returncode == 0 and "holding out" not in r.stdout and re.search(r"\(\d+/50\)", r.stdout)


def test_progress_bar_goes_to_stderr(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 784)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    r = mlpc("train", "--npz", str(tmp_path / "d.npz"), "--epochs", "2", "--batch-size", "16", "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    assert "ex/s" in r.stderr or "ex]" in r.stderr  # tqdm's bar, unit "ex"
    assert "\r" not in r.stdout and "ex/s" not in r.stdout
    prefixes = [f"{tmp_path / 'd.npz'} has only x/y", "compiled for backend numpy in ", "epoch 1/2: loss ",
                "epoch 2/2: loss ", "test accuracy: "]
    lines = r.stdout.splitlines()
    assert len(lines) == len(prefixes) and all(line.startswith(p) for line, p in zip(lines, prefixes)), r.stdout


def test_aot_model_file_named_like_a_system_library_is_prefixed(tmp_path) -> None:
    (tmp_path / "m.py").write_text(SMALL)
    r = mlpc("aot", "m.py", "-o", "out", "--inference", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "note: libm.so would shadow the system library libm; naming the library model_m" in r.stdout
    assert (tmp_path / "out" / "libmodel_m.so").exists() and not (tmp_path / "out" / "libm.so").exists()
    assert "-lmodel_m " in r.stdout


def _readme_block(after: str, lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(f"```{lang}\n")
    return text[start:text.index("```", start)]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_readme_c_example_runs_from_another_directory(tmp_path) -> None:
    """The README's main.c and its cc line, run as ./main and from an unrelated directory."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.c").write_text(_readme_block("## Ahead-of-time export", "c"))
    cc_line = _readme_block("```c\n#include <stdio.h>", "bash").strip()
    assert "'$ORIGIN/build'" in cc_line
    r = mlpc("aot", str(ROOT / "examples" / "models" / "mnist_mlp.py"), "-o", "build", "--name", "mnist_mlp",
             cwd=proj)
    assert r.returncode == 0, r.stderr
    build = cc_line.split(" && ")[0]
    r2 = subprocess.run(["bash", "-c", build], cwd=proj, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr
    here = subprocess.run(["./main"], cwd=proj, capture_output=True, text=True, timeout=300)
    elsewhere_dir = tmp_path / "elsewhere"
    elsewhere_dir.mkdir()
    elsewhere = subprocess.run([str(proj / "main")], cwd=elsewhere_dir, capture_output=True, text=True, timeout=300)
    assert here.returncode == 0 and elsewhere.returncode == 0, here.stderr + elsewhere.stderr
    assert here.stdout.startswith("loss ") and here.stdout == elsewhere.stdout
    assert (elsewhere_dir / "trained.safetensors").exists()
