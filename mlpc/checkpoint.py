"""Checkpoints in safetensors: parameters, optimizer state, step count and the model description."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpc.errors import CheckpointError

if TYPE_CHECKING:
    from mlpc.api import Trainer

FORMAT = "mlpc-checkpoint-1"
MAX_HEADER = 100 * 1024 * 1024


def checksum(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write(path: str, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_arrays(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    from safetensors.numpy import save

    meta = dict(metadata)
    meta["mlpc.format"] = FORMAT
    meta["mlpc.checksum"] = checksum(tensors)
    atomic_write(path, save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=meta))


def load_arrays(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read and verify a checkpoint; any damage raises CheckpointError."""
    from safetensors.numpy import load

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    if len(data) < 8:
        raise CheckpointError(f"{path} is not a checkpoint: {len(data)} bytes")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > min(MAX_HEADER, len(data) - 8):
        raise CheckpointError(f"{path} is truncated or corrupt (header of {header_len} bytes)")
    try:
        header = json.loads(data[8:8 + header_len])
        metadata = header.get("__metadata__", {}) or {}
        tensors = load(data)
    except Exception as e:  # safetensors raises its own types for damaged files
        raise CheckpointError(f"{path} is corrupt: {e}") from None
    if metadata.get("mlpc.format") != FORMAT:
        raise CheckpointError(f"{path} is not an mlpc checkpoint (format {metadata.get('mlpc.format')!r})")
    if checksum(tensors) != metadata.get("mlpc.checksum"):
        raise CheckpointError(f"{path} failed its checksum: the file is damaged")
    return tensors, metadata


def save_trainer(trainer: "Trainer", path: str) -> None:
    tensors = {f"param/{k}": v for k, v in trainer.parameters().items()}
    tensors.update({f"state/{k}": v for k, v in trainer.optimizer_state().items()})
    try:
        model_spec: Any = trainer.model.spec()
    except TypeError:
        model_spec = None
    meta = {
        "mlpc.model": json.dumps(model_spec),
        "mlpc.loss": json.dumps(trainer.loss.spec()),
        "mlpc.optimizer": json.dumps(trainer.optimizer.spec()),
        "mlpc.batch_size": str(trainer.batch_size),
        "mlpc.in_features": str(trainer.in_features),
        "mlpc.backend": trainer.backend_name,
        "mlpc.seed": str(trainer.seed),
        "mlpc.steps": str(trainer.steps_taken),
    }
    save_arrays(path, tensors, meta)


def load_trainer(path: str, model: Any = None, backend: str | None = None) -> "Trainer":
    from mlpc import nn, optim
    from mlpc.api import Trainer

    tensors, meta = load_arrays(path)
    try:
        spec = json.loads(meta["mlpc.model"])
        if model is None:
            if spec is None:
                raise CheckpointError(f"{path} holds a custom model: pass model= to mlpc.load")
            model = nn.from_spec(spec)
        trainer = Trainer(model, nn.loss_from_spec(json.loads(meta["mlpc.loss"])),
                          optim.from_spec(json.loads(meta["mlpc.optimizer"])),
                          int(meta["mlpc.batch_size"]), backend or meta["mlpc.backend"],
                          int(meta["mlpc.seed"]), int(meta["mlpc.in_features"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad model description ({e})") from None
    arrays = {k.split("/", 1)[1]: v for k, v in tensors.items()}
    missing = set(trainer._state) - set(arrays)
    if missing:
        raise CheckpointError(f"{path} lacks {sorted(missing)} needed by the model")
    trainer.load_state(arrays)
    trainer.steps_taken = int(meta.get("mlpc.steps", trainer.steps_taken))
    return trainer
