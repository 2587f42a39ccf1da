"""Checkpoints of models with the new layers and losses, of users' own Module/Loss classes, and of the
previous description version (GELU without a stored form means tanh)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.checkpoint import DESCRIPTION_KEY, load_arrays, save_arrays
from mlpc.errors import CheckpointError

RNG = np.random.default_rng(3)
X = RNG.normal(size=(8, 5)).astype(np.float32)


class ScaledMSE(nn.Loss):
    """A user's loss with a constructor argument."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, prediction, target):
        return mlpc.F.mse_loss(prediction, target) * self.scale


class Gate(nn.Module):
    """A user's module: x * sigmoid(x W)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.lin = nn.Linear(width, width)

    def forward(self, x):
        return x * mlpc.F.sigmoid(self.lin(x))


def every_layer() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 12), nn.LayerNorm(12), nn.GELU(), nn.Dropout(0.25), nn.Linear(12, 12),
                         nn.SiLU(), nn.ELU(0.7), nn.Softplus(1.5, 10.0), nn.LeakyReLU(0.05),
                         nn.LayerNorm(12, elementwise_affine=False), nn.GELU(approximate="tanh"),
                         nn.Residual(nn.Sequential(nn.Linear(12, 12), nn.Sigmoid())), nn.Linear(12, 3))


LOSSES = {"ce": (lambda: nn.CrossEntropyLoss(label_smoothing=0.05, reduction="sum"), RNG.integers(0, 3, 8)),
          "mse": (lambda: nn.MSELoss(reduction="sum"), RNG.normal(size=(8, 3)).astype(np.float32)),
          "l1": (nn.L1Loss, RNG.normal(size=(8, 3)).astype(np.float32)),
          "huber": (lambda: nn.HuberLoss(delta=0.3), RNG.normal(size=(8, 3)).astype(np.float32)),
          "bce": (nn.BCEWithLogitsLoss, (RNG.random((8, 3)) > 0.5).astype(np.float32))}


def _roundtrip(tmp_path, tr, y, **load_args):
    tr.step(X, y)
    path = str(tmp_path / "ck.safetensors")
    tr.save(path)
    back = mlpc.load(path, **load_args)
    np.testing.assert_array_equal(back.predict(X), tr.predict(X))
    assert back.step(X, y) == tr.step(X, y)  # same step count t: the same dropout masks
    return back


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_layer_and_loss_reloads(tmp_path, loss):
    make, y = LOSSES[loss]
    tr = mlpc.compile(every_layer(), make(), optim.Adam(lr=1e-2), batch_size=8, backend="numpy")
    back = _roundtrip(tmp_path, tr, y)
    assert back.loss.spec() == tr.loss.spec() and back.model.spec() == tr.model.spec()


def test_user_classes_reload_by_import_path(tmp_path):
    y = RNG.normal(size=(8, 5)).astype(np.float32)
    tr = mlpc.compile(nn.Sequential(Gate(5), nn.Linear(5, 5)), ScaledMSE(2.5), batch_size=8, backend="llvm")
    back = _roundtrip(tmp_path, tr, y)
    assert type(back.loss) is ScaledMSE and back.loss.scale == 2.5
    assert type(back.model[0]) is Gate


def _rewrite(src: str, dst: str, edit) -> None:
    tensors, meta = load_arrays(src)
    meta = {k: v for k, v in meta.items() if k not in ("mlpc.checksum", "mlpc.meta_checksum", "mlpc.format")}
    edit(meta)
    save_arrays(dst, tensors, meta)


def test_a_class_from_a_module_not_imported_needs_an_override(tmp_path):
    y = RNG.normal(size=(8, 5)).astype(np.float32)
    tr = mlpc.compile(nn.Linear(5, 5), ScaledMSE(2.0), batch_size=8, backend="numpy")
    tr.save(str(tmp_path / "a.safetensors"))

    def elsewhere(meta):
        spec = json.loads(meta["mlpc.loss"])
        spec["class"] = "some_user_package_never_imported:ScaledMSE"
        meta["mlpc.loss"] = json.dumps(spec)
    _rewrite(str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), elsewhere)
    with pytest.raises(CheckpointError, match="loss="):
        mlpc.load(str(tmp_path / "b.safetensors"))
    back = mlpc.load(str(tmp_path / "b.safetensors"), loss=ScaledMSE(2.0))
    assert back.step(X, y) == tr.step(X, y)
    with pytest.raises(TypeError, match="loss="):
        mlpc.load(str(tmp_path / "b.safetensors"), loss="mse")


def test_a_class_path_must_name_a_subclass(tmp_path):
    tr = mlpc.compile(nn.Linear(5, 5), ScaledMSE(), batch_size=8, backend="numpy")
    tr.save(str(tmp_path / "a.safetensors"))

    def hostile(meta):
        meta["mlpc.loss"] = json.dumps({"type": "x", "class": "os:system", "args": {"command": "true"}})
    _rewrite(str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), hostile)
    with pytest.raises(CheckpointError, match="not an mlpc Loss subclass"):
        mlpc.load(str(tmp_path / "b.safetensors"))


def _as_version_1(meta):
    """What mlpc wrote before descriptions were versioned: no version key, GELU without its form."""
    del meta[DESCRIPTION_KEY]
    meta["mlpc.model"] = meta["mlpc.model"].replace(', "approximate": "tanh"', "")


def test_version_1_gelu_reloads_as_tanh(tmp_path):
    model = nn.Sequential(nn.Linear(5, 6), nn.GELU(approximate="tanh"), nn.Linear(6, 2))
    tr = mlpc.compile(model, nn.CrossEntropyLoss(), batch_size=8, backend="numpy")
    tr.save(str(tmp_path / "new.safetensors"))
    _rewrite(str(tmp_path / "new.safetensors"), str(tmp_path / "old.safetensors"), _as_version_1)
    assert '"GELU"}' in load_arrays(str(tmp_path / "old.safetensors"))[1]["mlpc.model"]
    back = mlpc.load(str(tmp_path / "old.safetensors"))
    assert back.model[1].approximate == "tanh"
    np.testing.assert_array_equal(back.predict(X), tr.predict(X))
    # and a run started before the change resumes: the old description compares as the new one
    from mlpc import resume

    y = RNG.integers(0, 2, 8)
    fresh = mlpc.compile(nn.Sequential(nn.Linear(5, 6), nn.GELU(approximate="tanh"), nn.Linear(6, 2)),
                         nn.CrossEntropyLoss(), batch_size=8, backend="numpy")
    assert resume.resume(fresh, str(tmp_path / "old.safetensors"), X, y) is not None


def test_a_newer_description_version_is_refused(tmp_path):
    tr = mlpc.compile(nn.Linear(5, 2), nn.CrossEntropyLoss(), batch_size=8, backend="numpy")
    tr.save(str(tmp_path / "a.safetensors"))
    _rewrite(str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
             lambda meta: meta.update({DESCRIPTION_KEY: "99"}))
    with pytest.raises(CheckpointError, match="version 99"):
        mlpc.load(str(tmp_path / "b.safetensors"))
