"""Bad command-line arguments: one line `mlpc CMD: error: argument --flag: ...` naming the accepted range,
exit status 2, no traceback, before any work; bad model-file values: one line naming the variable, status 1."""

from __future__ import annotations

import numpy as np
import pytest

from mlpc.cli import main

TINY = "from mlpc import nn\nmodel = nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


TRAIN = ["train", "--no-progress", "--backend", "numpy", "--epochs", "1", "--limit", "64"]

BAD_TRAIN = [
    (["--batch-size", "-5"], "--batch-size", "expected an integer in [1, 2147483647], got -5"),
    (["--batch-size", "0"], "--batch-size", "expected an integer in [1, 2147483647], got 0"),
    (["--batch-size", "abc"], "--batch-size", "expected an integer in [1, 2147483647], got 'abc'"),
    (["--lr", "-1"], "--lr", "expected a finite number > 0.0, got '-1'"),
    (["--lr", "0"], "--lr", "expected a finite number > 0.0, got '0'"),
    (["--lr", "nan"], "--lr", "expected a finite number > 0.0, got 'nan'"),
    (["--lr", "inf"], "--lr", "expected a finite number > 0.0, got 'inf'"),
    (["--lr", "1e400"], "--lr", "expected a finite number > 0.0, got '1e400'"),
    (["--seed", "-1"], "--seed", "expected an integer in [0, 4294967295], got -1"),
    (["--seed", "4294967296"], "--seed", "expected an integer in [0, 4294967295], got 4294967296"),
    (["--optimizer", "bogus"], "--optimizer", "unknown optimizer 'bogus'; choose from sgd, sgd-momentum"),
    (["--backend", "bogus"], "--backend", "unknown backend 'bogus'; choose from llvm, numpy, triton"),
    (["--limit", "0"], "--limit", "expected an integer in [1, 2147483647], got 0"),
    (["--limit", "-1"], "--limit", "expected an integer in [1, 2147483647], got -1"),
    (["--epochs", "-1"], "--epochs", "expected an integer in [1, 2147483647], got -1"),
    (["--epochs", "0"], "--epochs", "expected an integer in [1, 2147483647], got 0"),
    (["--checkpoint-every", "-2"], "--checkpoint-every", "expected an integer in [0, 2147483647], got -2"),
]


@pytest.mark.parametrize("extra, flag, message", BAD_TRAIN, ids=[" ".join(a) for a, _, _ in BAD_TRAIN])
def test_bad_train_argument_is_one_line_and_status_2(capsys, extra, flag, message) -> None:
    code, out, err = run([*TRAIN, *extra], capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith(f"mlpc train: error: argument {flag}: ") and message in line, line


@pytest.mark.parametrize("command", ["dump", "stats", "report", "aot"])
def test_every_model_command_checks_the_shared_arguments(capsys, tmp_path, command) -> None:
    extra = ["-o", str(tmp_path / "out")] if command == "aot" else []
    code, _, err = run([command, "--lr", "nan", *extra], capsys)
    assert code == 2 and one_line(err).startswith(f"mlpc {command}: error: argument --lr: expected a finite")


def test_triton_backend_without_triton_names_the_gpu_extra(capsys, monkeypatch) -> None:
    import runtime.backend

    monkeypatch.setattr(runtime.backend, "available_backends", lambda: ["llvm", "numpy"])
    for name in ("triton", "triton-bf16"):
        code, _, err = run([*TRAIN, "--backend", name], capsys)
        assert code == 2
        assert one_line(err).startswith(f"mlpc train: error: argument --backend: backend {name!r} needs Triton, "
                                        "which is not installed: pip install 'mlpc[gpu]'")


def test_batch_size_larger_than_the_data_is_refused(capsys) -> None:
    code, _, err = run([*TRAIN, "--batch-size", "100"], capsys)  # --limit 64
    assert code == 2
    assert one_line(err) == ("mlpc train: error: argument --batch-size: expected an integer in [1, 64] "
                             "(the number of training examples), got 100")


def test_batch_size_beyond_memory_is_refused_before_allocating(capsys) -> None:
    """2^31-1 rows of 784 floats are 5.8 TiB for x alone: more than any host this runs on has."""
    code, _, err = run(["stats", "--backend", "llvm", "--batch-size", str(2 ** 31 - 1)], capsys)
    assert code == 2
    line = one_line(err)
    assert line.startswith("mlpc stats: error: argument --batch-size: 2147483647 rows need at least ")
    assert "GiB for the activations alone and this machine has" in line and "expected an integer in [1, " in line


def test_model_file_batch_size_beyond_memory_names_the_file(capsys, tmp_path) -> None:
    (tmp_path / "m.py").write_text(TINY + "batch_size = 2 ** 31 - 1\n")
    code, _, err = run(["stats", str(tmp_path / "m.py"), "--backend", "numpy"], capsys)
    assert code == 2 and f"batch_size in {tmp_path / 'm.py'}: 2147483647 rows need at least" in one_line(err)


BAD_MODEL_VALUES = [
    ('batch_size = "abc"', "`batch_size` must be an integer in [1, 2147483647] (or left out), got 'abc' (str)"),
    ("batch_size = True", "`batch_size` must be an integer in [1, 2147483647] (or left out), got True (bool)"),
    ("batch_size = 0", "`batch_size` must be an integer in [1, 2147483647] (or left out), got 0 (int)"),
    ("batch_size = 2 ** 40",
     "`batch_size` must be an integer in [1, 2147483647] (or left out), got 1099511627776 (int)"),
    ("in_features = -3", "`in_features` must be an integer in [1, 2147483647] (or left out), got -3 (int)"),
    ('loss = "mse"', "`loss` must be a loss object such as nn.CrossEntropyLoss() (or left out), got 'mse' (str)"),
    ('optimizer = "adam"', "`optimizer` must be an optimizer object such as optim.Adam(lr=1e-3) (or left out), "
                           "got 'adam' (str)"),
]


@pytest.mark.parametrize("line, message", BAD_MODEL_VALUES, ids=[a for a, _ in BAD_MODEL_VALUES])
def test_bad_model_file_values_name_the_variable(capsys, tmp_path, line, message) -> None:
    path = tmp_path / "m.py"
    path.write_text(TINY + line + "\n")
    code, _, err = run(["stats", str(path), "--backend", "numpy"], capsys)
    assert code == 1 and one_line(err) == f"mlpc stats: error: {path}: {message}"


def test_numpy_integer_batch_size_in_a_model_file_is_fine(capsys, tmp_path) -> None:
    (tmp_path / "m.py").write_text(TINY + "import numpy as np\nbatch_size = np.int64(16)\n")
    code, out, _ = run(["stats", str(tmp_path / "m.py"), "--backend", "numpy"], capsys)
    assert code == 0 and "batch size             16" in out


def test_version(capsys) -> None:
    import mlpc

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out == f"mlpc {mlpc.__version__}\n"


def test_unknown_flag_and_missing_command_are_one_line(capsys) -> None:
    code, _, err = run(["train", "--no-such-flag"], capsys)
    assert code == 2 and one_line(err) == ("mlpc train: error: unrecognized arguments: --no-such-flag "
                                           "(see mlpc train --help)")
    code, _, err = run([], capsys)
    assert code == 2 and one_line(err).startswith("mlpc: error: the following arguments are required: COMMAND")


def test_resume_without_checkpoint_is_a_usage_error(capsys) -> None:
    code, _, err = run([*TRAIN, "--resume"], capsys)
    assert code == 2 and one_line(err) == "mlpc train: error: --resume and --checkpoint-every need --checkpoint PATH"


BAD_PIPELINES = [
    ("autodiff,adam{betas=[0.9]}", "pass adam: option betas must be a list of 2 numbers, like [0.9, 0.999], got [0.9]"),
    ("autodiff,adam{betas=[0.9, true]}", "pass adam: option betas must be a list of 2 numbers"),
    ("autodiff,adam{betas=0.9}", "pass adam: option betas must be a list of 2 numbers"),
    ('autodiff,adam{lr="fast"}', 'pass adam: option lr must be a number, got "fast"'),
    ("autodiff,adam{bias_correction=1}", "pass adam: option bias_correction must be true or false, got 1"),
    ("autodiff,sgd{nope=1}", "pass sgd has no option 'nope'; options: lr, momentum"),
    ("simplify{max_rounds=2.5}", "pass simplify: option max_rounds must be an integer, got 2.5"),
    ("autodiff,nosuchpass", "unknown pass 'nosuchpass'"),
    ("autodiff,adam{", "line 1, column 15: expected an option name"),
]


@pytest.mark.parametrize("pipeline, message", BAD_PIPELINES, ids=[p for p, _ in BAD_PIPELINES])
def test_opt_refuses_bad_pipelines_before_running(capsys, tmp_path, pipeline, message) -> None:
    path = tmp_path / "f.mlir"
    path.write_text("func @f(%x: f32[2]) -> (o: f32[2]) {\n  return %x\n}\n")
    code, out, err = run(["opt", str(path), "-p", pipeline], capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith("mlpc opt: error: argument -p/--pipeline: ") and message in line, line


def test_opt_list_passes_needs_no_file_and_a_missing_file_is_status_2(capsys) -> None:
    code, out, _ = run(["opt", "--list-passes"], capsys)
    assert code == 0 and out.startswith("adam ") and "\nsimplify " in out
    code, _, err = run(["opt"], capsys)
    assert code == 2 and "the following arguments are required: file" in one_line(err)


@pytest.mark.parametrize("argv, message", [
    (["--depth", "0"], "argument --depth: expected an integer in [1, 10000], got 0"),
    (["--batch", "0"], "argument --batch: expected an integer in [1, 2147483647], got 0"),
    (["--batch", "70000"], "argument --batch: expected an integer in [1, 60000] (the number of training examples)"),
    (["--every", "-1"], "argument --every: expected an integer in [1, 2147483647], got -1"),
    (["--init", "nan/n"], "argument --init: bad initialization 'nan/n': the variance must be a finite number >= 0"),
])
def test_probe_arguments(capsys, tmp_path, argv, message) -> None:
    code, _, err = run(["probe", "--depth", "2", "-o", str(tmp_path), *argv], capsys)
    assert code == 2 and message in one_line(err)


def test_aot_refuses_a_system_library_name(capsys, tmp_path) -> None:
    for name in ("m", "c", "pthread", "dl", "rt"):
        code, _, err = run(["aot", "-o", str(tmp_path), "--name", name], capsys)
        assert code == 2
        assert one_line(err).startswith(f"mlpc aot: error: argument --name: {name!r} would write lib{name}.so, "
                                        f"which shadows the system library lib{name}")
    assert list(tmp_path.iterdir()) == []
    for argv, message in ((["--threads", "0"], "argument --threads: expected an integer in [1, 1024], got 0"),
                          (["--train-batch", "-1"], "argument --train-batch: expected an integer in [1, "),
                          (["--predict-batch", "0"], "argument --predict-batch: expected an integer in [1, ")):
        code, _, err = run(["aot", "-o", str(tmp_path), *argv], capsys)
        assert code == 2 and message in one_line(err)


def test_train_npz_batch_bound_uses_the_npz_rows(capsys, tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.standard_normal((30, 784)).astype(np.float32),
             y_train=rng.integers(0, 10, 30), x_test=rng.standard_normal((5, 784)).astype(np.float32),
             y_test=rng.integers(0, 10, 5))
    code, _, err = run(["train", "--npz", str(tmp_path / "d.npz"), "--backend", "numpy", "--batch-size", "31"],
                       capsys)
    assert code == 2 and "expected an integer in [1, 30] (the number of training examples), got 31" in one_line(err)


@pytest.mark.parametrize("source, message", [
    ("from mlpc import nn\nmodel = nn.Sequential(nn.Linear(784, 8)\n", ":2: SyntaxError: '(' was never closed"),
    ("from mlpc import nn\n\nx = 1 / 0\n", ":3: ZeroDivisionError: division by zero"),
    ("def build():\n    return {}['missing']\n", ":2: build() raised KeyError: 'missing'"),
])
def test_a_model_file_that_fails_names_its_line(capsys, tmp_path, source, message) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    code, _, err = run(["stats", str(path), "--backend", "numpy"], capsys)
    assert code == 1 and one_line(err) == f"mlpc stats: error: {path}{message}"
