"""`mlpc.load_library`: drive an exported libNAME.so through ctypes like a Trainer (step/predict/parameters).

Loading is defensive, because a shared library runs code as soon as it is opened: the file is read
once and checked as ELF (complete, this machine's architecture); a private copy is opened first in a
throwaway process (runtime/aot_probe.py) that reads the ABI version symbol before anything else, then
calls every entry point once; only if that process reports success is the same copy opened here. A damaged or
foreign file therefore ends in an MlpcError, not in a crashed interpreter.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any, Callable

import numpy as np

from codegen.aot.abi import ABI_SYMBOL, ABI_VERSION, DTYPES, NAME_SYMBOL, ROLES, STATUS
from mlpc import validate
from mlpc.errors import CheckpointError, InputError, MlpcError, NumericalError
from mlpc.locking import ObjectLock, locked
from mlpc.safeio import read_regular
from mlpc.types import DType, TensorType
from runtime.aot_stamp import verify as verify_stamp
from runtime.elfcheck import check_shared_object

PROBE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aot_probe.py")

_ERRORS: dict[int, type[MlpcError]] = {
    STATUS["MLPC_E_INPUT"]: InputError, STATUS["MLPC_E_ARGUMENT"]: InputError,
    STATUS["MLPC_E_NUMERIC"]: NumericalError, STATUS["MLPC_E_IO"]: CheckpointError,
    STATUS["MLPC_E_FORMAT"]: CheckpointError, STATUS["MLPC_E_MISMATCH"]: CheckpointError,
}


class _BufferInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("role", ctypes.c_int32), ("dtype", ctypes.c_int32),
                ("ndim", ctypes.c_int32), ("shape", ctypes.POINTER(ctypes.c_int64)), ("numel", ctypes.c_int64)]


def _c_string(lib: ctypes.CDLL, symbol: str) -> bytes:
    """The NUL-terminated bytes at a data symbol (ValueError when the symbol is missing)."""
    return ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, symbol)))


_ALLREDUCE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)  # mlpc_allreduce_fn


def _manifest(text: bytes, damaged: str) -> dict[str, Any]:
    """The library's JSON manifest, with every field the loader relies on type-checked."""
    def ints(v: Any, positive: bool = True) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)

    try:
        m = json.loads(text)
        ok = (isinstance(m, dict) and isinstance(m["ir_hash"], str) and isinstance(m["target"], dict)
              and isinstance(m["inference_only"], bool) and m["loss"] in ("cross_entropy", "mse")
              and all(ints(m[k]) for k in ("in_features", "out_features", "batch_size", "predict_batch"))
              and isinstance(m["train_batches"], list) and all(ints(b) for b in m["train_batches"])
              and isinstance(m["buffers"], list)
              and all(isinstance(b, dict) and isinstance(b["name"], str) and b["role"] in ROLES
                      and b["dtype"] in DTYPES and isinstance(b["shape"], list)
                      and all(ints(d, False) for d in b["shape"]) for b in m["buffers"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise MlpcError(f"{damaged}: its manifest is unreadable")
    return m


def _abi_mismatch(path: str, found: int) -> MlpcError:
    return MlpcError(f"{path} was built for mlpc library ABI version {found}, but this mlpc loads ABI version "
                     f"{ABI_VERSION} only; re-export the model with this mlpc (`mlpc aot` or mlpc.export)")


def _probe(copy: str, path: str) -> dict[str, Any]:
    scratch = os.path.dirname(copy)
    try:
        r = subprocess.run([sys.executable, "-I", PROBE_SCRIPT, copy, str(ABI_VERSION), ABI_SYMBOL, NAME_SYMBOL,
                            scratch], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise MlpcError(f"{path}: loading the library did not finish within 120 s in a test process") from None
    if r.returncode != 0:
        how = (f"signal {signal.Signals(-r.returncode).name}" if r.returncode < 0 and
               -r.returncode in signal.valid_signals() else f"exit status {r.returncode}")
        raise MlpcError(f"{path} is damaged: opening it crashed a test process ({how})")
    try:
        report = json.loads(r.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise MlpcError(f"{path}: the test process that opened it printed no report") from None
    return report


class ExportedModel:
    """A loaded exported library: `step`, `predict`, `evaluate`, `parameters`, `optimizer_state`,
    `load_state`, `save`, `load`, like a Trainer, with all computation in the library.

    Safe to share between threads: every call that touches the C state runs under one re-entrant lock
    per object (mlpc/locking.py; the C state itself must not be used by two threads at once)."""

    def __init__(self, path: str | os.PathLike[str], probe: bool = True) -> None:
        self.path = str(path)
        self._lock = ObjectLock()
        self._state = ctypes.c_void_p()
        self._lib: ctypes.CDLL | None = None
        try:
            data = read_regular(self.path)
        except OSError as e:
            raise MlpcError(f"cannot read library {self.path}: {e.strerror or e}") from None
        check_shared_object(data, self.path)
        stamped = verify_stamp(data, self.path)
        tmpdir = tempfile.mkdtemp(prefix="mlpc-lib-")
        try:
            copy = os.path.join(tmpdir, os.path.basename(self.path) or "lib.so")
            with open(copy, "wb") as f:
                f.write(data)
            if not stamped:  # foreign, another ABI version, or damaged: the probe tells which
                self._check_report(_probe(copy, self.path))
                raise MlpcError(f"{self.path} is damaged: it has no integrity stamp")
            if probe:
                self._check_report(_probe(copy, self.path))
            self._open(copy)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    # --- loading -----------------------------------------------------------------------------
    def _check_report(self, report: dict[str, Any]) -> None:
        stage = report.get("stage")
        if stage == "dlopen":
            raise MlpcError(f"{self.path} cannot be loaded: {report.get('error')}")
        if stage == "abi":
            raise MlpcError(f"{self.path} is not a library exported by mlpc (it has no {ABI_SYMBOL} symbol)")
        if report.get("abi") != ABI_VERSION:
            raise _abi_mismatch(self.path, int(report.get("abi", -1)))
        if stage == "symbols":
            raise MlpcError(f"{self.path} is damaged: it lacks part of the mlpc API ({report.get('error')})")
        if stage is not None or not report.get("ok"):
            raise MlpcError(f"{self.path}: a test call ({stage}) failed: {report.get('error')}")

    def _open(self, copy: str) -> None:
        try:
            lib = ctypes.CDLL(copy)
        except OSError as e:
            raise MlpcError(f"{self.path} cannot be loaded: {e}") from None
        try:
            abi = ctypes.c_uint32.in_dll(lib, ABI_SYMBOL).value
        except ValueError:
            raise MlpcError(f"{self.path} is not a library exported by mlpc (it has no {ABI_SYMBOL} symbol)") from None
        if abi != ABI_VERSION:
            raise _abi_mismatch(self.path, abi)
        damaged = f"{self.path} is damaged"
        try:
            self.name = _c_string(lib, NAME_SYMBOL).decode()
            text = _c_string(lib, f"{self.name}_manifest")
            digest = _c_string(lib, f"{self.name}_manifest_sha256").decode()
        except (ValueError, UnicodeDecodeError) as e:
            raise MlpcError(f"{damaged}: it lacks part of the mlpc API ({e})") from None
        if hashlib.sha256(text).hexdigest() != digest:
            raise MlpcError(f"{damaged}: its manifest does not match the manifest's checksum")
        m = self.manifest = _manifest(text, damaged)
        try:
            fns = {k: getattr(lib, f"{self.name}_{k}") for k in (
                "create", "destroy", "last_error", "predict_n", "buffer", "load", "save", "steps", "num_buffers",
                "buffer_info")}
            if not m["inference_only"]:
                for k in ("train_step_n", "set_hyper", "get_hyper"):
                    fns[k] = getattr(lib, f"{self.name}_{k}")
        except AttributeError as e:
            raise MlpcError(f"{damaged}: it lacks part of the mlpc API ({e})") from None
        vp, i64 = ctypes.c_void_p, ctypes.c_int64
        fns["create"].argtypes = [ctypes.POINTER(vp)]
        fns["destroy"].argtypes, fns["destroy"].restype = [vp], None
        fns["last_error"].argtypes, fns["last_error"].restype = [], ctypes.c_char_p
        fns["predict_n"].argtypes = [vp, i64, vp, vp]
        fns["buffer"].argtypes, fns["buffer"].restype = [vp, ctypes.c_char_p], vp
        fns["load"].argtypes = fns["save"].argtypes = [vp, ctypes.c_char_p]
        fns["steps"].argtypes, fns["steps"].restype = [vp], i64
        fns["num_buffers"].argtypes = []
        fns["buffer_info"].argtypes = [ctypes.c_int, ctypes.POINTER(_BufferInfo)]
        if "train_step_n" in fns:
            fns["train_step_n"].argtypes = [vp, i64, vp, vp, ctypes.POINTER(ctypes.c_float)]
            fns["set_hyper"].argtypes = [vp, ctypes.c_char_p, ctypes.c_double]
            fns["get_hyper"].argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_double)]
        self._fns = fns
        self._lib = lib
        self._check_buffer_table(m["buffers"], damaged)
        self._check(fns["create"](ctypes.byref(self._state)), "create")
        self.abi_version = abi
        self.ir_hash: str = m["ir_hash"]
        self.target: dict[str, Any] = m["target"]
        self.inference_only: bool = m["inference_only"]
        self.in_features: int = m["in_features"]
        self.out_features: int = m["out_features"]
        self.batch_size: int = m["batch_size"]
        self.train_batches: list[int] = m["train_batches"]
        self.predict_batch: int = m["predict_batch"]
        self.loss: str = m["loss"]
        self.num_classes = self.out_features if self.loss == "cross_entropy" else None
        self._buffers: dict[str, tuple[str, np.ndarray]] = {}
        for b in m["buffers"]:
            ptr = fns["buffer"](self._state, b["name"].encode())
            if not ptr:
                raise MlpcError(f"{damaged}: buffer {b['name']!r} is missing")
            dt = DType(b["dtype"]).numpy
            shape = tuple(b["shape"])
            n = int(np.prod(shape)) if shape else 1
            ctype = ctypes.c_float if dt == np.float32 else ctypes.c_int32
            view = np.ctypeslib.as_array((ctype * n).from_address(ptr)).reshape(shape)
            self._buffers[b["name"]] = (b["role"], view)

    def _check_buffer_table(self, buffers: list[dict[str, Any]], damaged: str) -> None:
        """The C buffer table must describe exactly the manifest's buffers."""
        if self._fns["num_buffers"]() != len(buffers):
            raise MlpcError(f"{damaged}: its buffer table and manifest disagree")
        info = _BufferInfo()
        for i, b in enumerate(buffers):
            if self._fns["buffer_info"](i, ctypes.byref(info)) != 0 or not info.name or not 0 <= info.ndim <= 8:
                raise MlpcError(f"{damaged}: its buffer table is unreadable")
            shape = [info.shape[d] for d in range(info.ndim)]
            if (info.name.decode("utf-8", "replace"), info.role, info.dtype, shape, info.numel) != (
                    b["name"], ROLES[b["role"]], DTYPES[b["dtype"]], b["shape"], int(np.prod(b["shape"])) if
                    b["shape"] else 1):
                raise MlpcError(f"{damaged}: buffer {i} of its table does not match the manifest")

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            msg = (self._fns["last_error"]() or b"").decode("utf-8", "replace")
            raise _ERRORS.get(rc, MlpcError)(f"{self.name} {what}: {msg or 'error code ' + str(rc)}")

    def _live(self) -> None:
        if self._lib is None or not self._state:
            raise MlpcError(f"{self.path}: the library has been closed")

    # --- running -------------------------------------------------------------------------------
    @locked
    def step(self, x: Any, y: Any) -> float:
        """One training step; the number of rows must be one the library was exported for."""
        self._live()
        if self.inference_only:
            raise MlpcError(f"{self.path} is an inference-only library: it cannot train")
        xs = validate.features(x, self.in_features, None)
        if xs.shape[0] not in self.train_batches:
            raise InputError(f"a batch of {xs.shape[0]} rows: {self.path} was exported for training batches of "
                             f"{', '.join(map(str, self.train_batches))} rows (export with --train-batch)")
        target = (TensorType(DType.i32, (xs.shape[0],)) if self.loss == "cross_entropy"
                  else TensorType(DType.f32, (xs.shape[0], self.out_features)))
        ys = validate.targets(y, target, self.num_classes, xs.shape[0])
        loss = ctypes.c_float()
        self._hook_error: BaseException | None = None
        rc = self._fns["train_step_n"](self._state, xs.shape[0], xs.ctypes.data, ys.ctypes.data, ctypes.byref(loss))
        if self._hook_error is not None:
            raise self._hook_error
        self._check(rc, "train_step")
        return float(loss.value)

    @locked
    def predict(self, x: Any) -> np.ndarray:
        """Model outputs (logits) for any number of rows."""
        self._live()
        xs = validate.features(x, self.in_features, None)
        out = np.empty((xs.shape[0], self.out_features), np.float32)
        self._check(self._fns["predict_n"](self._state, xs.shape[0], xs.ctypes.data, out.ctypes.data), "predict")
        return out

    @locked
    def evaluate(self, x: Any, y: Any) -> float:
        """Classification accuracy of predict(x) against integer labels y (one per row, in [0, outputs))."""
        xs = validate.features(x, self.in_features, None)
        ys = validate.labels(y, xs.shape[0], self.out_features)
        return float((self.predict(xs).argmax(axis=1) == ys).mean())

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 1, shuffle: bool = True, seed: int = 0,
            drop_last: bool = False) -> list[float]:
        """Train for whole epochs in batches of batch_size; returns the mean loss per epoch. A last
        partial batch needs a training step of its size in the library (export with --train-batch),
        or drop_last=True."""
        x, y = validate.rows(x, y)
        n = len(x)
        tail = n % self.batch_size
        if tail and not drop_last and tail not in self.train_batches:
            raise InputError(f"{n} rows leave a last batch of {tail}, which {self.path} has no training step for; "
                             f"export with --train-batch {tail} or pass drop_last=True")
        history = []
        for epoch in range(epochs):
            order = np.random.default_rng(seed + epoch).permutation(n) if shuffle else np.arange(n)
            losses = []
            for lo in range(0, n, self.batch_size):
                idx = order[lo:lo + self.batch_size]
                if len(idx) < self.batch_size and (drop_last or len(idx) not in self.train_batches):
                    break
                losses.append(self.step(x[idx], y[idx]))
            history.append(float(np.mean(losses)) if losses else float("nan"))
        return history

    # --- state ---------------------------------------------------------------------------------
    @property  # type: ignore[misc]
    @locked
    def steps_taken(self) -> int:
        self._live()
        return int(self._fns["steps"](self._state))

    @locked
    def parameters(self) -> dict[str, np.ndarray]:
        self._live()
        return {k: v.copy() for k, (role, v) in self._buffers.items() if role == "param"}

    @locked
    def optimizer_state(self) -> dict[str, np.ndarray]:
        self._live()
        return {k: v.copy() for k, (role, v) in self._buffers.items() if role == "state"}

    def hyperparameters(self) -> dict[str, float]:
        """The runtime hyperparameter buffers (hyper.lr, ...) and their values."""
        self._live()
        return {k: float(v) for k, (role, v) in self._buffers.items() if role == "hyper"}

    # --- data parallelism (NAME_set_allreduce: libraries exported with the allreduce hook) ---------
    @locked
    def set_allreduce(self, fn: Callable[[np.ndarray], None] | None) -> None:
        """Have every train step call fn(buf) between its backward pass and its update: buf is a float32
        view of the loss and gradients (each times this process's rows) and the row count last; fn must
        sum it over the ranks in place (e.g. comm.Allreduce(MPI.IN_PLACE, buf)). None removes it."""
        self._live()
        setter = getattr(self._lib, f"{self.name}_set_allreduce", None)
        if setter is None:
            raise MlpcError(f"{self.path} was exported by an mlpc without the allreduce hook "
                            f"({self.name}_set_allreduce); re-export it with allreduce_hook=True")
        setter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        hook = None
        if fn is not None:
            def call(buf: int, n: int, _ctx: int) -> None:
                view = np.ctypeslib.as_array((ctypes.c_float * n).from_address(buf))
                try:
                    fn(view)
                except BaseException as e:  # noqa: BLE001 - re-raised by step(); the row count 0 stops the step
                    self._hook_error = e
                    view[-1] = 0.0
            hook = _ALLREDUCE_FN(call)
        self._check(setter(self._state, ctypes.cast(hook, ctypes.c_void_p) if hook else None, None),
                    "set_allreduce")
        self._allreduce = hook  # the library calls it on every step: keep it alive

    # --- runtime hyperparameters (NAME_set_hyper / NAME_get_hyper, ABI 2) -------------------------
    @locked
    def set_hyper(self, name: str, value: float) -> None:
        """Set "lr", "momentum", "beta", "beta1", "beta2" or "weight_decay" (every group's), or one buffer
        ("hyper.g1.lr"); the next step uses it."""
        self._live()
        if self.inference_only:
            raise MlpcError(f"{self.path} is an inference-only library: it has no hyperparameters")
        self._check(self._fns["set_hyper"](self._state, name.encode(), float(value)), "set_hyper")

    @locked
    def get_hyper(self, name: str) -> float:
        self._live()
        if self.inference_only:
            raise MlpcError(f"{self.path} is an inference-only library: it has no hyperparameters")
        out = ctypes.c_double()
        self._check(self._fns["get_hyper"](self._state, name.encode(), ctypes.byref(out)), "get_hyper")
        return float(out.value)

    @property
    def lr(self) -> float:
        return self.get_hyper("lr")

    @lr.setter
    def lr(self, value: float) -> None:
        self.set_hyper("lr", value)

    @locked
    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace parameters/optimizer state by name; shapes must match (values are converted)."""
        self._live()
        checked = {}
        for k, v in arrays.items():
            if k not in self._buffers:
                raise MlpcError(f"unknown parameter or state {k!r}")
            checked[k] = validate.state_value(k, v, self._buffers[k][1])
        for k, a in checked.items():
            np.copyto(self._buffers[k][1], a)

    @locked
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an mlpc checkpoint (the library's own writer; mlpc.load reads it)."""
        self._live()
        self._check(self._fns["save"](self._state, os.fsencode(path)), "save")

    @locked
    def load(self, path: str | os.PathLike[str]) -> None:
        """Read weights from an mlpc checkpoint (the library's own reader)."""
        self._live()
        self._check(self._fns["load"](self._state, os.fsencode(path)), "load")

    @locked
    def close(self) -> None:
        """Free the state (the library stays mapped: its code may still be referenced)."""
        if self._lib is not None and self._state:
            self._fns["destroy"](self._state)
            self._state = ctypes.c_void_p()
            self._buffers = {}

    def __enter__(self) -> "ExportedModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if hasattr(self, "_lock"):
                self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        kind = "inference" if getattr(self, "inference_only", True) else "training"
        return f"<ExportedModel {getattr(self, 'name', '?')} ({kind}) from {self.path}>"


def load_library(path: str | os.PathLike[str], probe: bool = True) -> ExportedModel:
    """Open a library written by `mlpc aot` / `mlpc.export`; refuses other ABI versions clearly."""
    return ExportedModel(path, probe=probe)
