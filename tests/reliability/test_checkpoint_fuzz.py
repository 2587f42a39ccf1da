"""Fuzzing the safetensors checkpoint loader: damage is always detected (CheckpointError), never loaded silently."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpc
from mlpc import nn, optim
from mlpc.checkpoint import load_arrays
from mlpc.errors import CheckpointError

from .fuzzing import count, examples
from .mutate import bounded, mutated


def _trainer() -> mlpc.Trainer:
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    tr = mlpc.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=0.01), batch_size=4, seed=3)
    rng = np.random.default_rng(0)
    tr.step(rng.standard_normal((4, 6)).astype(np.float32), np.array([0, 1, 2, 1]))
    return tr


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, np.ndarray], dict[str, str]]:
    path = str(tmp_path_factory.mktemp("ckpt") / "good.safetensors")
    _trainer().save(path)
    tensors, meta = load_arrays(path)
    with open(path, "rb") as f:
        return f.read(), tensors, meta


def _write(tmp: str, data: bytes) -> str:
    path = os.path.join(tmp, "c.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    return path


@given(data=st.data())
@examples(200)
def test_damaged_checkpoint_is_detected(good: tuple, tmp_path_factory: pytest.TempPathFactory,
                                        data: st.DataObject) -> None:
    """Any mutation either raises CheckpointError or leaves the loaded tensors and metadata exactly as saved."""
    count("damaged checkpoint bytes")
    blob, tensors, meta = good
    bad = data.draw(mutated(blob))
    path = _write(str(tmp_path_factory.mktemp("fuzz")), bad)
    with bounded(max_seconds=30.0, max_bytes=16 << 20):
        try:
            got_t, got_m = load_arrays(path)
        except CheckpointError:
            return
    assert got_m == meta, "metadata changed without the checksum noticing"
    assert sorted(got_t) == sorted(tensors)
    for k in tensors:
        assert got_t[k].dtype == tensors[k].dtype and np.array_equal(got_t[k], tensors[k]), k


@given(data=st.data())
@examples(60)
def test_damaged_checkpoint_never_half_loads_a_trainer(good: tuple, tmp_path_factory: pytest.TempPathFactory,
                                                      data: st.DataObject) -> None:
    count("damaged checkpoint via mlpc.load")
    blob, tensors, _ = good
    path = _write(str(tmp_path_factory.mktemp("fuzz")), data.draw(mutated(blob)))
    with bounded(max_seconds=30.0, max_bytes=32 << 20):
        try:
            tr = mlpc.load(path)
        except CheckpointError:
            return
    state = {**{f"param/{k}": v for k, v in tr.parameters().items()},
             **{f"state/{k}": v for k, v in tr.optimizer_state().items()},
             **{f"hyper/{k}": v for k, v in tr.hyper_arrays().items()}}
    assert all(np.array_equal(state[k], tensors[k]) for k in tensors)


def _forge(header: dict, body: bytes, declared_len: int | None = None) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if declared_len is None else declared_len) + h + body


def _resign(header: dict, tensors: dict[str, np.ndarray]) -> dict:
    """Recompute mlpc's checksum so a forged file gets past it (the checksum is not a signature)."""
    from mlpc.checkpoint import checksum, meta_checksum

    header["__metadata__"]["mlpc.checksum"] = checksum(tensors)
    header["__metadata__"]["mlpc.meta_checksum"] = meta_checksum(header["__metadata__"])
    return header


FORGED = ["header length 2**64-1", "header length past the end", "tensor claims 2**40 elements",
          "offsets past the end", "negative-looking offsets", "metadata not a dict", "header is a list",
          "model spec with 10**9 units", "batch size 10**12", "unknown dtype", "shape mismatch with the model"]


@pytest.mark.parametrize("case", FORGED)
def test_forged_header_raises_without_allocating(case: str, good: tuple, tmp_path: str) -> None:
    blob, tensors, meta = good
    hlen = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + hlen])
    body = blob[8 + hlen:]
    name = next(k for k in header if k != "__metadata__")
    if case == "header length 2**64-1":
        bad = struct.pack("<Q", 2 ** 64 - 1) + blob[8:]
    elif case == "header length past the end":
        bad = struct.pack("<Q", len(blob)) + blob[8:]
    elif case == "tensor claims 2**40 elements":
        header[name]["shape"] = [2 ** 20, 2 ** 20]
        bad = _forge(header, body)
    elif case == "offsets past the end":
        header[name]["data_offsets"] = [0, 2 ** 40]
        bad = _forge(header, body)
    elif case == "negative-looking offsets":
        header[name]["data_offsets"] = [2 ** 64 - 8, 2 ** 64 - 4]
        bad = _forge(header, body)
    elif case == "metadata not a dict":
        header["__metadata__"] = ["mlpc-checkpoint-1"]
        bad = _forge(header, body)
    elif case == "header is a list":
        bad = _forge([1, 2, 3], body)  # type: ignore[arg-type]
    elif case == "unknown dtype":
        header[name]["dtype"] = "Q99"
        bad = _forge(header, body)
    else:
        model = json.loads(meta["mlpc.model"])
        if case == "model spec with 10**9 units":
            model["modules"][0]["out"] = 10 ** 9
            model["modules"][2]["in"] = 10 ** 9
            header["__metadata__"]["mlpc.model"] = json.dumps(model)
        elif case == "batch size 10**12":
            header["__metadata__"]["mlpc.batch_size"] = str(10 ** 12)
        else:
            model["modules"][0]["out"] = 4
            model["modules"][2]["in"] = 4
            header["__metadata__"]["mlpc.model"] = json.dumps(model)
        bad = _forge(_resign(header, tensors), body)
    path = _write(str(tmp_path), bad)
    with bounded(max_seconds=30.0, max_bytes=16 << 20):
        with pytest.raises(CheckpointError):
            mlpc.load(path)


def test_missing_file_and_directory(tmp_path: str) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        mlpc.load(os.path.join(str(tmp_path), "nope.safetensors"))
    with pytest.raises(CheckpointError):
        mlpc.load(str(tmp_path))


def test_save_load_round_trip_keeps_scalar_state(tmp_path) -> None:
    """Found by fuzzing: np.ascontiguousarray saved the 0-d step count as shape [1], so mlpc.load always failed."""
    tr = _trainer()
    path = str(tmp_path / "c.safetensors")
    tr.save(path)
    back = mlpc.load(path)
    assert back.steps_taken == tr.steps_taken == 1
    for k, v in {**tr.parameters(), **tr.optimizer_state()}.items():
        got = {**back.parameters(), **back.optimizer_state()}[k]
        assert got.shape == v.shape and got.dtype == v.dtype and np.array_equal(got, v), k
