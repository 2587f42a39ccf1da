"""Checkpoints in safetensors: parameters, optimizer state, step count and the model description."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpc.errors import CheckpointError, MlpcError
from mlpc.safeio import read_regular

if TYPE_CHECKING:
    from mlpc.api import Trainer

FORMAT = "mlpc-checkpoint-1"  # also read and written by exported libraries (codegen/aot/safetensors.c)
# version of the optional "mlpc.train_state" metadata (runtime hyperparameters, parameter groups, gradient
# clipping, lr schedulers); checkpoints without it (written before it existed) load with the optimizer's values
TRAIN_STATE_VERSION = 1
MAX_HEADER = 100 * 1024 * 1024
MAX_BATCH = 1 << 24
# the matmul precision the trainer computed in (mlpc.precision); checkpoints written before it existed: fp32
PRECISION_KEY = "mlpc.precision"
DESCRIPTION_KEY = "mlpc.description"  # version of the model/loss descriptions (mlpc.nn.SPEC_VERSION)


def checksum(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes (`mlpc.checksum`; the C side computes the same,
    including np.ascontiguousarray's view of a scalar as shape (1,))."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def meta_checksum(metadata: dict[str, str]) -> str:
    """SHA-256 over the metadata (`mlpc.meta_checksum`): a flipped digit in a learning rate or step count is
    damage too. Checkpoints written by exported libraries (they carry `mlpc.library`) have only the tensor one."""
    items = sorted((k, v) for k, v in metadata.items() if k not in ("mlpc.checksum", "mlpc.meta_checksum"))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.tmp-"


def atomic_write(path: str, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path` (and fsync the folder).
    A symlink at `path` is followed: its target is replaced, the link stays."""
    path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".part", dir=folder)
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


def remove_stale_temps(path: str) -> list[str]:
    """Delete temp files that a killed writer of `path` left behind; returns their names."""
    path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    prefix = temp_prefix(path)
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if name.startswith(prefix) and name.endswith(".part"):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def save_arrays(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    from safetensors.numpy import save

    meta = dict(metadata)
    meta["mlpc.format"] = FORMAT
    meta["mlpc.checksum"] = checksum(tensors)
    meta["mlpc.meta_checksum"] = meta_checksum(meta)
    # np.ascontiguousarray would turn 0-d arrays (the step count t) into shape [1]; np.require keeps them 0-d
    blob = save({k: np.require(v, requirements="C") for k, v in tensors.items()}, metadata=meta)
    try:
        atomic_write(path, blob)
    except OSError as e:  # disk full, read-only folder, ...: the previous checkpoint at `path` is untouched
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def load_arrays(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read and verify a checkpoint; any damage raises CheckpointError."""
    from safetensors.numpy import load

    try:
        data = read_regular(path)
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
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("the metadata is not a map of strings")
        tensors = load(data)
    except Exception as e:  # safetensors raises its own types for damaged files
        raise CheckpointError(f"{path} is corrupt: {e}") from None
    fmt = metadata.get("mlpc.format")
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is not an mlpc checkpoint (format {fmt!r})")
    if "mlpc.library" not in metadata and metadata.get("mlpc.meta_checksum") != meta_checksum(metadata):
        raise CheckpointError(f"{path} failed its metadata checksum: the file is damaged")
    if checksum(tensors) != metadata.get("mlpc.checksum"):
        raise CheckpointError(f"{path} failed its checksum: the file is damaged")
    return tensors, metadata


def description_version(meta: dict[str, str], path: str = "checkpoint") -> int:
    """The version of the model/loss descriptions: 1 when absent (GELU then meant its tanh form)."""
    from mlpc.nn import SPEC_VERSION

    try:
        version = int(meta.get(DESCRIPTION_KEY, "1"))
    except ValueError:
        raise CheckpointError(f"{path}: bad {DESCRIPTION_KEY} {meta.get(DESCRIPTION_KEY)!r}") from None
    if not 1 <= version <= SPEC_VERSION:
        raise CheckpointError(f"{path} holds model descriptions of version {version}; this mlpc reads versions "
                              f"1 to {SPEC_VERSION}: upgrade mlpc")
    return version


def model_description(meta: dict[str, str], path: str = "checkpoint") -> str:
    """The stored model description as the current version writes it (a version-1 GELU gains its tanh form)."""
    spec = json.loads(meta["mlpc.model"])
    if description_version(meta, path) == 1:
        spec = _upgrade_v1(spec)
    return json.dumps(spec)


def _upgrade_v1(spec: Any) -> Any:
    if isinstance(spec, dict):
        spec = {k: _upgrade_v1(v) for k, v in spec.items()}
        if spec.get("type") == "GELU":
            spec.setdefault("approximate", "tanh")
    elif isinstance(spec, list):
        spec = [_upgrade_v1(v) for v in spec]
    return spec


def trainer_metadata(trainer: "Trainer") -> dict[str, str]:
    """The metadata that describes a trainer (model, loss, optimizer, sizes, seed, steps)."""
    from mlpc.nn import SPEC_VERSION

    try:
        model_spec: Any = trainer.model.spec()
    except TypeError:
        model_spec = None
    return {
        DESCRIPTION_KEY: str(SPEC_VERSION),
        "mlpc.model": json.dumps(model_spec),
        "mlpc.loss": json.dumps(trainer.loss.spec()),
        "mlpc.optimizer": json.dumps(trainer.optimizer.spec()),
        "mlpc.batch_size": str(trainer.batch_size),
        "mlpc.in_features": str(trainer.in_features),
        "mlpc.backend": trainer.backend_name,
        PRECISION_KEY: getattr(trainer, "precision", "fp32"),
        "mlpc.seed": str(trainer.seed),
        "mlpc.steps": str(trainer.steps_taken),
        "mlpc.nan_guard": "1" if getattr(trainer, "nan_guard", False) else "0",
    }


def train_state(trainer: "Trainer", schedulers: list[Any]) -> dict[str, Any]:
    """Runtime hyperparameters, parameter groups, clipping and scheduler states (JSON)."""
    h = trainer.hyper
    groups = [{"params": h.params_of(i)} for i in range(len(h))][:len(h.user_groups)]
    return {"version": TRAIN_STATE_VERSION, "hyper": h.state_dict(), "param_groups": groups,
            "clip_grad_norm": trainer.clip_grad_norm, "schedulers": [s.state_dict() for s in schedulers]}


def save_trainer(trainer: "Trainer", path: str, extra_metadata: dict[str, str] | None = None,
                 schedulers: list[Any] | None = None) -> None:
    """Atomically write parameters, optimizer state, the runtime hyperparameters (tensors hyper/<input>
    as exported libraries keep them, and exactly in `train_state`) and `trainer_metadata` (plus
    `extra_metadata`). They are read under the trainer's lock, so a step on another thread never tears them."""
    with trainer._lock:
        tensors = {f"param/{k}": v for k, v in trainer.parameters().items()}
        tensors.update({f"state/{k}": v for k, v in trainer.optimizer_state().items()})
        tensors.update({f"hyper/{k}": v for k, v in trainer.hyper_arrays().items()})
        meta = trainer_metadata(trainer)
        scheds = trainer.schedulers if schedulers is None else schedulers
        meta["mlpc.train_state"] = json.dumps(train_state(trainer, list(scheds)))
    meta.update(extra_metadata or {})
    save_arrays(path, tensors, meta)


def stored_precision(meta: dict[str, str]) -> str:
    """The checkpoint's precision ("fp32" when it predates the key), checked against the known names."""
    from mlpc.precision import canonical

    return canonical(meta.get(PRECISION_KEY, "fp32"))


def load_precision(meta: dict[str, str], backend: str | None, precision: str | None) -> str | None:
    """The precision a loaded trainer computes in: the caller's, else the stored one, except that a tf32
    checkpoint (Triton's default) loaded onto another backend (backend=) takes that backend's default."""
    if precision is not None:
        return precision
    stored = stored_precision(meta)
    if stored == "tf32" and backend is not None and not backend.startswith("triton"):
        return None
    return stored


def load_trainer(path: str, model: Any = None, backend: str | None = None, loss: Any = None,
                 precision: str | None = None) -> "Trainer":
    from mlpc import nn, optim
    from mlpc.api import Trainer

    if loss is not None and not isinstance(loss, nn.Loss):
        raise TypeError(f"loss= must be an mlpc.nn.Loss, got {type(loss).__name__}")
    tensors, meta = load_arrays(path)
    arrays = {k.split("/", 1)[1]: v for k, v in tensors.items() if "/" in k and not k.startswith("hyper/")}
    hyper_arrays = split_hyper(tensors)
    ts = train_state_of(path, meta)
    try:
        spec = json.loads(model_description(meta, path))
        if model is None:
            if spec is None:
                raise CheckpointError(f"{path} holds a custom model: pass model= to mlpc.load")
            model = nn.from_spec(spec)
        else:
            _check_model_spec(path, model, spec)
        _check_shapes(path, model, arrays)
        batch_size = int(meta["mlpc.batch_size"])
        if not 0 < batch_size <= MAX_BATCH:
            raise CheckpointError(f"{path}: batch size {batch_size} is out of range")
        if loss is None:
            loss = nn.loss_from_spec(json.loads(meta["mlpc.loss"]))
        trainer = Trainer(model, loss,
                          optim.from_spec(json.loads(meta["mlpc.optimizer"])),
                          batch_size, backend or meta["mlpc.backend"],
                          int(meta["mlpc.seed"]), int(meta["mlpc.in_features"]),
                          nan_guard=meta.get("mlpc.nan_guard") == "1",
                          param_groups=ts.get("param_groups") or None, clip_grad_norm=ts.get("clip_grad_norm"),
                          precision=load_precision(meta, backend, precision))
        steps = int(meta.get("mlpc.steps", 0))
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, MlpcError) as e:
        raise CheckpointError(f"{path}: bad model description ({e})") from None
    missing = set(trainer._state) - set(arrays) - set(trainer.hyper_arrays())
    if missing:
        raise CheckpointError(f"{path} lacks {sorted(missing)} needed by the model")
    try:
        trainer.load_state(arrays)
    except MlpcError as e:
        raise CheckpointError(f"{path} does not fit the model: {e}") from None
    trainer.steps_taken = steps
    restore_train_state(path, trainer, ts, hyper_arrays, rebuild=True)
    return trainer


def split_hyper(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("hyper/")}


def train_state_of(path: str, meta: dict[str, str]) -> dict[str, Any]:
    text = meta.get("mlpc.train_state")
    if text is None:
        return {}
    try:
        ts = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{path}: its training state is not valid JSON") from None
    if not isinstance(ts, dict) or ts.get("version") != TRAIN_STATE_VERSION:
        version = ts.get("version") if isinstance(ts, dict) else None
        raise CheckpointError(f"{path} holds training state version {version!r}; this mlpc reads version "
                              f"{TRAIN_STATE_VERSION} (and checkpoints without one)")
    return ts


def restore_train_state(path: str, trainer: "Trainer", ts: dict[str, Any], hyper_arrays: dict[str, Any],
                        rebuild: bool) -> None:
    """Hyperparameters: the exact values of the metadata, unless a tensor hyper/<input> differs from
    them (an exported library set it); then lr schedulers: rebuilt and attached to the trainer
    (`rebuild`), or loaded into the trainer's own schedulers (resuming a run that constructed them)."""
    from mlpc import lr_scheduler

    saved = ts.get("schedulers", [])
    try:
        if "hyper" in ts:
            trainer.hyper.load_state_dict(ts["hyper"])
        trainer.load_hyper_arrays(hyper_arrays)
        if rebuild:
            trainer.schedulers = [lr_scheduler.from_state_dict(trainer, s, attach=False) for s in saved]
        elif ts:
            if len(saved) != len(trainer.schedulers):
                raise MlpcError(f"it holds {len(saved)} lr schedulers, the run has {len(trainer.schedulers)}")
            for sched, state in zip(trainer.schedulers, saved):
                sched.load_state_dict(state)
    except (KeyError, ValueError, TypeError, AttributeError, MlpcError) as e:
        raise CheckpointError(f"{path}: bad training state ({e})") from None


def _check_shapes(path: str, model: Any, arrays: dict[str, np.ndarray]) -> None:
    """Compare the model's parameter shapes with the file before anything is allocated for the model."""
    for name, p in model.named_parameters():
        if name not in arrays:
            raise CheckpointError(f"{path} lacks parameter {name!r} of the model")
        if tuple(arrays[name].shape) != tuple(p.shape):
            raise CheckpointError(f"{path}: parameter {name!r} has shape {list(arrays[name].shape)}, "
                                  f"the model expects {list(p.shape)}")


def _check_model_spec(path: str, model: Any, stored: Any) -> None:
    """A model passed to mlpc.load must be the one the checkpoint describes (when both have a description)."""
    try:
        given = json.loads(json.dumps(model.spec()))
    except (TypeError, AttributeError):
        return  # a custom model without a description: only the parameter shapes can be compared
    if stored is not None and _architecture(given) != _architecture(stored):
        raise CheckpointError(f"{path} was saved from a different model: the file describes {json.dumps(stored)}, "
                              f"the model passed is {json.dumps(given)}")


def _architecture(spec: Any) -> Any:
    """A model description without initializers (the loaded weights replace what they would draw) and without
    a user class's import path (the same class may be imported from elsewhere when passed as model=)."""
    if isinstance(spec, dict):
        return {k: _architecture(v) for k, v in spec.items() if k not in ("init", "bias_init", "class")}
    if isinstance(spec, list):
        return [_architecture(v) for v in spec]
    return spec
