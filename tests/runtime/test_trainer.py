"""Trainer behaviour on the reference backend: partial batches, predict, state, save/load, bad input."""

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.errors import CheckpointError, InputError, MlpcError


def make(batch=8, opt=None, loss=None, out=3):
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, out))
    return mlpc.compile(model, loss or nn.CrossEntropyLoss(), opt or optim.Adam(lr=1e-2), batch_size=batch, seed=1)


def data(n=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def test_loss_decreases_on_a_fixed_problem():
    trainer = make()
    x, y = data(64)
    first = np.mean([trainer.step(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)])
    for _ in range(150):
        last = np.mean([trainer.step(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)])
    assert last < 0.5 * first


def test_partial_batch_compiles_a_second_shape_and_shares_state():
    trainer = make()
    x, y = data(8)
    trainer.step(x, y)
    before = trainer.parameters()
    trainer.step(x[:3], y[:3])
    after = trainer.parameters()
    assert ("step", 3) in trainer._compiled
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert int(trainer.optimizer_state()["t"]) == 2


def test_partial_batch_equals_mean_loss_of_those_rows():
    trainer = make()
    x, y = data(8)
    params = trainer.parameters()
    logits = np.maximum(x[:5] @ params["0.weight"] + params["0.bias"], 0) @ params["2.weight"] + params["2.bias"]
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    expected = np.mean(lse - logits[np.arange(5), y[:5]])
    assert trainer.step(x[:5], y[:5]) == pytest.approx(expected, rel=1e-5)


def test_predict_any_number_of_rows():
    trainer = make()
    x, _ = data(21)
    out = trainer.predict(x)
    assert out.shape == (21, 3)
    np.testing.assert_allclose(out[:8], trainer.predict(x[:8]), rtol=1e-6)


def test_mse_regression():
    trainer = make(loss=nn.MSELoss(), out=2, opt=optim.SGD(lr=0.05, momentum=0.9))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = (x[:, :2] * 0.5).astype(np.float32)
    losses = trainer.fit(x, y, epochs=20)
    assert losses[-1] < 0.2 * losses[0]


def test_save_and_load_resume_identically(tmp_path):
    trainer = make(opt=optim.Adam(lr=1e-2))
    x, y = data(16)
    trainer.step(x[:8], y[:8])
    path = str(tmp_path / "ckpt.safetensors")
    trainer.save(path)
    loaded = mlpc.load(path)
    assert loaded.steps_taken == 1
    for k, v in trainer.parameters().items():
        np.testing.assert_array_equal(v, loaded.parameters()[k])
    for k, v in trainer.optimizer_state().items():
        np.testing.assert_array_equal(v, loaded.optimizer_state()[k])
    assert trainer.step(x[8:], y[8:]) == loaded.step(x[8:], y[8:])
    for k, v in trainer.parameters().items():
        np.testing.assert_array_equal(v, loaded.parameters()[k])


def test_damaged_checkpoint_is_refused(tmp_path):
    trainer = make()
    path = tmp_path / "ckpt.safetensors"
    trainer.save(str(path))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        mlpc.load(str(path))
    path.write_bytes(bytes(raw[:50]))
    with pytest.raises(CheckpointError):
        mlpc.load(str(path))
    with pytest.raises(CheckpointError, match="cannot read"):
        mlpc.load(str(tmp_path / "missing.safetensors"))


def test_custom_model_checkpoint_needs_the_model(tmp_path):
    class Custom(nn.Module):
        def __init__(self):
            self.lin = nn.Linear(6, 3)

        def forward(self, x):
            return self.lin(x) * 2.0

    trainer = mlpc.compile(Custom(), batch_size=4)
    path = str(tmp_path / "c.safetensors")
    trainer.save(path)
    with pytest.raises(CheckpointError, match="pass model="):
        mlpc.load(path)
    loaded = mlpc.load(path, model=Custom())
    x, _ = data(4)
    np.testing.assert_array_equal(loaded.predict(x), trainer.predict(x))


@pytest.mark.parametrize("x, y, words", [
    (np.zeros((8, 5), np.float32), np.zeros(8, np.int32), "shape [batch, 6]"),
    (np.zeros((9, 6), np.float32), np.zeros(9, np.int32), "at most 8"),
    (np.zeros((8, 6), np.float32), np.zeros(7, np.int32), "y must have shape [8]"),
    (np.zeros((8, 6), np.float32), np.full(8, 3, np.int32), "label 3 is out of range"),
    (np.zeros((8, 6), np.float32), np.full(8, -1, np.int64), "label -1 is out of range"),
    (np.zeros((8, 6), np.float32), np.zeros(8, np.float32), "labels must be integers"),
    (np.full((8, 6), np.nan, np.float32), np.zeros(8, np.int32), "NaN or Inf"),
    (np.zeros((8, 6), np.complex64), np.zeros(8, np.int32), "real numbers"),
    (np.zeros((0, 6), np.float32), np.zeros(0, np.int32), "empty"),
    ("not an array", np.zeros(8, np.int32), "NumPy array"),
])
def test_bad_input_gets_a_clear_error(x, y, words):
    trainer = make()
    with pytest.raises(InputError) as e:
        trainer.step(x, y)
    assert words in str(e.value)


def test_float64_and_noncontiguous_inputs_are_converted():
    trainer = make()
    x, y = data(16)
    a = trainer.step(x[::2].astype(np.float64), y[::2].astype(np.int64))
    assert np.isfinite(a)


def test_unknown_backend_and_bad_batch():
    with pytest.raises(ValueError, match="unknown backend"):
        mlpc.compile(nn.Sequential(nn.Linear(2, 2)), backend="tpu")
    with pytest.raises(ValueError, match="batch_size"):
        mlpc.compile(nn.Sequential(nn.Linear(2, 2)), batch_size=0)
    with pytest.raises(MlpcError, match="in_features"):
        mlpc.compile(nn.Sequential(nn.ReLU()))
