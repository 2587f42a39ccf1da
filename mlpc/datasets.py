"""Datasets: MNIST from IDX files (shipped copy or a folder the user names) and user .npz files."""

from __future__ import annotations

import gzip
import io
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpc.errors import DatasetError
from mlpc.safeio import open_regular

PACKAGE_MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist")
MNIST_FILES = {
    "x_train": ("train-images-idx3-ubyte", 2051, (60000, 28, 28)),
    "y_train": ("train-labels-idx1-ubyte", 2049, (60000,)),
    "x_test": ("t10k-images-idx3-ubyte", 2051, (10000, 28, 28)),
    "y_test": ("t10k-labels-idx1-ubyte", 2049, (10000,)),
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MAX_IDX_BYTES = 1 << 30
MAX_NPZ_BYTES = 1 << 33  # per array, decompressed


@dataclass
class Dataset:
    """Train and test splits: x float32 [n, features], y int32 labels (or float targets)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _read_limited(f: Any, limit: int, path: str) -> bytes:
    """Read a stream in chunks, refusing more than `limit` bytes (no up-front buffer of `limit` bytes)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise DatasetError(f"{path} is larger than the {limit}-byte limit")
        chunks.append(chunk)


def read_idx(path: str, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or .gz), checking magic number, dimensions and size."""
    try:
        with open_regular(path) as raw:
            f: Any = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw
            data = _read_limited(f, MAX_IDX_BYTES, path)
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path}") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"cannot read {path}: {e}") from None
    if len(data) < 4:
        raise DatasetError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    found_magic = int.from_bytes(data[:4], "big")
    if magic is not None and found_magic != magic:
        raise DatasetError(f"{path} has magic {found_magic}, expected {magic}")
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is truncated inside its header")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    count = math.prod(dims) if dims else 0  # Python ints: a forged header cannot wrap around
    body = len(data) - 4 - 4 * ndim
    if body != count:
        raise DatasetError(f"{path} should hold {count} bytes of data for dimensions {list(dims)}, has {body}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: str, stem: str) -> str:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    raise DatasetError(f"MNIST file {stem}(.gz) not found in {folder}")


def mnist(path: str | None = None, normalize: bool = True) -> Dataset:
    """MNIST as float32 [n, 784] (standardized when `normalize`) and int32 labels."""
    folder = path or os.environ.get("MLPC_MNIST_DIR") or PACKAGE_MNIST
    if not os.path.isdir(folder):
        raise DatasetError(f"MNIST folder {folder} does not exist")
    arrays = {}
    for key, (stem, magic, shape) in MNIST_FILES.items():
        a = read_idx(_find(folder, stem), magic)
        if a.shape != shape:
            raise DatasetError(f"{stem}: expected shape {list(shape)}, found {list(a.shape)}")
        arrays[key] = a
    def feats(a: np.ndarray) -> np.ndarray:
        x = a.reshape(len(a), -1).astype(np.float32) / 255.0
        return (x - MNIST_MEAN) / MNIST_STD if normalize else x
    for key in ("y_train", "y_test"):
        if arrays[key].max() > 9:
            raise DatasetError(f"MNIST {key} holds label {arrays[key].max()} outside 0..9")
    return Dataset(feats(arrays["x_train"]), arrays["y_train"].astype(np.int32),
                   feats(arrays["x_test"]), arrays["y_test"].astype(np.int32))


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of a .npz, each member decompressed (up to MAX_NPZ_BYTES) and its .npy header checked
    against the bytes really present before NumPy allocates anything."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as z:
            for info in z.infolist():
                if info.file_size > MAX_NPZ_BYTES:
                    raise DatasetError(f"{path}: member {info.filename} declares {info.file_size} bytes, over the "
                                       f"{MAX_NPZ_BYTES}-byte limit")
                with z.open(info) as m:
                    raw = _read_limited(m, MAX_NPZ_BYTES, f"{path}:{info.filename}")
                fp = io.BytesIO(raw)
                version = np.lib.format.read_magic(fp)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(fp)
                if dtype.hasobject:
                    raise DatasetError(f"{path}: {info.filename} holds Python objects, which mlpc does not load")
                if math.prod(shape) * dtype.itemsize != len(raw) - fp.tell():
                    raise DatasetError(f"{path}: {info.filename} declares shape {list(shape)} of {dtype} but holds "
                                       f"{len(raw) - fp.tell()} bytes")
                fp.seek(0)
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                arrays[name] = np.lib.format.read_array(fp, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path}") from None
    except DatasetError:
        raise
    except Exception as e:  # zipfile, zlib and .npy format errors of a damaged file
        raise DatasetError(f"{path} is not a readable .npz file: {e}") from None
    return arrays


def load_npz(path: str, test_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """A user's .npz with x_train/y_train/x_test/y_test, or x/y (split off `test_fraction` for testing)."""
    data = _read_npz(path)
    for k, a in data.items():
        if k in ("x", "y", "x_train", "y_train", "x_test", "y_test") and a.ndim == 0:
            raise DatasetError(f"{path}: {k} is a single number, not an array of examples")
    if {"x_train", "y_train", "x_test", "y_test"} <= set(data):
        parts = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    elif {"x", "y"} <= set(data):
        x, y = data["x"], data["y"]
        if len(x) != len(y):
            raise DatasetError(f"{path}: x has {len(x)} rows but y has {len(y)}")
        if len(x) < 2:
            raise DatasetError(f"{path}: x has {len(x)} rows; at least 2 are needed to split off a test set")
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = min(len(x) - 1, max(1, int(len(x) * test_fraction)))
        parts = [x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]]
    else:
        raise DatasetError(f"{path} must contain arrays x and y (or x_train, y_train, x_test, y_test); "
                           f"found {sorted(data)}")
    xs, ys = [], []
    for split, x, y in (("train", parts[0], parts[1]), ("test", parts[2], parts[3])):
        if len(x) == 0:
            raise DatasetError(f"{path}: the {split} split has no examples")
        if len(x) != len(y):
            raise DatasetError(f"{path}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if x.dtype.kind not in "fiub":
            raise DatasetError(f"{path}: x_{split} must be numeric, got {x.dtype}")
        if y.dtype.kind not in "fiub":
            raise DatasetError(f"{path}: y_{split} must be integer labels or float targets, got {y.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            xf = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
            yf = y.astype(np.int32) if y.dtype.kind in "iub" else y.astype(np.float32)
        if not np.isfinite(xf).all():
            raise DatasetError(f"{path}: x_{split} holds NaN, Inf or values too large for float32")
        if yf.dtype.kind == "f" and not np.isfinite(yf).all():
            raise DatasetError(f"{path}: y_{split} holds NaN, Inf or values too large for float32")
        if yf.dtype.kind == "i" and (np.any(y < 0) or np.any(y > np.iinfo(np.int32).max)):
            raise DatasetError(f"{path}: y_{split} holds labels outside 0..{np.iinfo(np.int32).max}")
        xs.append(xf)
        ys.append(yf)
    if xs[0].shape[1] != xs[1].shape[1]:
        raise DatasetError(f"{path}: train examples have {xs[0].shape[1]} features, test examples {xs[1].shape[1]}")
    return Dataset(xs[0], ys[0], xs[1], ys[1])
