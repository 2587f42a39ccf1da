"""The CLI on damaged files: a one-line `mlpc <cmd>: error: ...` and exit status 1, never a traceback."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlpc.cli import main

from .fuzzing import count, examples
from .mutate import mutated
from .test_parser_fuzz import HOSTILE, SEEDS


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("pipeline", [[], ["-p", "simplify"]])
def test_opt_on_hostile_ir(tmp_path, capsys: pytest.CaptureFixture[str], name: str, pipeline: list[str]) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text(HOSTILE[name], encoding="utf-8", errors="surrogateescape")
    code, err = run_cli(["opt", str(path), *pipeline], capsys)
    assert code == 1 and err.startswith("mlpc opt: error: "), err


@given(data=st.data())
@examples(40)
def test_opt_on_damaged_bytes(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    count("mlpc opt on damaged files")
    path = tmp_path_factory.mktemp("opt") / "f.mlir"
    path.write_bytes(data.draw(mutated(SEEDS[0])))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(["opt", str(path), "-p", "simplify", "-o", str(path) + ".out"])
    err = stderr.getvalue()
    assert (code, err) == (0, "") or (code == 1 and err.startswith("mlpc opt: error: ")), err


def test_opt_verifies_even_without_a_pipeline(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A graph that parses but breaks an invariant (two outputs named o) is an error, not echoed back."""
    path = tmp_path / "dup.mlir"
    path.write_text(HOSTILE["duplicate output names"])
    code, err = run_cli(["opt", str(path)], capsys)
    assert code == 1 and "used twice" in err


@pytest.mark.parametrize("blob", [b"", b"PK\x03\x04garbage", os.urandom(300)], ids=["empty", "zip-magic", "random"])
def test_train_on_damaged_npz(tmp_path, capsys: pytest.CaptureFixture[str], blob: bytes) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(blob)
    code, err = run_cli(["train", "--npz", str(path), "--epochs", "1", "--no-progress", "--backend", "numpy"], capsys)
    assert code == 1 and err.startswith("mlpc train: error: ") and "not a readable .npz" in err


def test_train_with_damaged_checkpoint_to_resume(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((20, 784)).astype(np.float32), y=rng.integers(0, 10, 20))
    ckpt = tmp_path / "c.safetensors"
    ckpt.write_bytes(b"\x08" + b"\0" * 7 + b"{}")
    code, err = run_cli(["train", "--npz", str(tmp_path / "d.npz"), "--epochs", "1", "--no-progress", "--backend",
                         "numpy", "--checkpoint", str(ckpt), "--resume"], capsys)
    assert code == 1 and err.startswith("mlpc train: error: ") and str(ckpt) in err
