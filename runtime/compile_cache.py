"""On-disk compile cache: object code + metadata per (graph, shapes, target, version) key.

One file per entry: magic, a JSON header (with the payload's SHA-256) and the payload. Writes go to
a temporary file in the same directory and are renamed into place (atomic on POSIX). An entry that
fails any check (magic, header, length, hash, version) is treated as a miss, so it is rebuilt and
overwritten, never loaded; so is an entry that is not a regular file or that cannot be parsed at all.
MLPC_CACHE_DIR overrides the location (default ~/.cache/mlpc); MLPC_CACHE_DIR=off disables the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

from mlpc.safeio import read_regular

MAGIC = b"MLPCOBJ1"


def cache_dir() -> Path | None:
    env = os.environ.get("MLPC_CACHE_DIR")
    if env is not None and env.strip().lower() in ("off", "0", "none", ""):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlpc"


def make_key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str) -> Path | None:
    d = cache_dir()
    return None if d is None else d / f"{key[:2]}" / f"{key}.mlpcobj"


def _digest(key: str, meta: Any, obj_len: Any, payload: bytes) -> str:
    """SHA-256 over the key, the metadata (arena size, buffer offsets: damage there is as fatal as in the
    object code), the object length and the payload."""
    h = hashlib.sha256(json.dumps([key, meta, obj_len], sort_keys=True).encode())
    h.update(payload)
    return h.hexdigest()


def load(key: str) -> tuple[dict[str, Any], bytes, dict[str, str]] | None:
    """(metadata, object bytes, texts) for `key`, or None when missing or corrupt."""
    path = _path(key)
    if path is None:
        return None
    try:
        data = read_regular(path)  # a FIFO or device planted in the cache is a miss, never a hang
    except OSError:
        return None
    try:
        if data[:8] != MAGIC:
            return None
        (hlen,) = struct.unpack("<Q", data[8:16])
        header = json.loads(data[16:16 + hlen].decode())
        payload = data[16 + hlen:]
        if not isinstance(header, dict) or header.get("key") != key or len(payload) != header["payload_len"]:
            return None
        if _digest(key, header["meta"], header["obj_len"], payload) != header["sha256"]:
            return None  # the digest covers the header's metadata too: a damaged entry is never executed
        obj_len = header["obj_len"]
        obj = payload[:obj_len]
        texts = json.loads(zlib.decompress(payload[obj_len:]).decode()) if len(payload) > obj_len else {}
        return header["meta"], obj, texts
    except Exception:  # noqa: BLE001 - any unreadable entry (bad JSON, nesting deep enough for RecursionError,
        return None    # wrong types, ...) is a miss: the caller rebuilds and overwrites it


def store(key: str, meta: dict[str, Any], obj: bytes, texts: dict[str, str]) -> bool:
    """Write an entry atomically; returns False (and leaves no partial file) if that fails."""
    path = _path(key)
    if path is None:
        return False
    payload = obj + zlib.compress(json.dumps(texts).encode(), 3)
    header = json.dumps({"key": key, "meta": meta, "obj_len": len(obj), "payload_len": len(payload),
                         "sha256": _digest(key, meta, len(obj), payload)}).encode()
    blob = MAGIC + struct.pack("<Q", len(header)) + header + payload
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


def entry_path(key: str) -> Path | None:
    return _path(key)


_FINGERPRINTS: dict[tuple[str, ...], str] = {}


def source_fingerprint(*folders: str) -> str:
    """A hash of the .py sources under the given folders (relative to the project root), computed once.

    Part of every cache key, so editing the code generator can never serve objects built by older code.
    """
    if folders not in _FINGERPRINTS:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for folder in folders:
            base = root / folder
            files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
            for f in files:
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
        _FINGERPRINTS[folders] = h.hexdigest()[:16]
    return _FINGERPRINTS[folders]
