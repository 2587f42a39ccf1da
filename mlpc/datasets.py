"""Datasets: MNIST from IDX files (shipped copy or a folder the user names) and user .npz files."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np

from mlpc.errors import DatasetError

PACKAGE_MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist")
MNIST_FILES = {
    "x_train": ("train-images-idx3-ubyte", 2051, (60000, 28, 28)),
    "y_train": ("train-labels-idx1-ubyte", 2049, (60000,)),
    "x_test": ("t10k-images-idx3-ubyte", 2051, (10000, 28, 28)),
    "y_test": ("t10k-labels-idx1-ubyte", 2049, (10000,)),
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MAX_IDX_BYTES = 1 << 30


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


def read_idx(path: str, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or .gz), checking magic number, dimensions and size."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if len(data) < 4:
        raise DatasetError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    if len(data) > MAX_IDX_BYTES:
        raise DatasetError(f"{path} is larger than {MAX_IDX_BYTES} bytes")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    found_magic = int.from_bytes(data[:4], "big")
    if magic is not None and found_magic != magic:
        raise DatasetError(f"{path} has magic {found_magic}, expected {magic}")
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is truncated inside its header")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(dims, dtype=np.int64)) if dims else 0
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


def load_npz(path: str, test_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """A user's .npz with x_train/y_train/x_test/y_test, or x/y (split off `test_fraction` for testing)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path}") from None
    except Exception as e:  # zipfile/pickle/format errors of a damaged file
        raise DatasetError(f"{path} is not a readable .npz file: {e}") from None
    if {"x_train", "y_train", "x_test", "y_test"} <= set(data):
        parts = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    elif {"x", "y"} <= set(data):
        x, y = data["x"], data["y"]
        if len(x) != len(y):
            raise DatasetError(f"{path}: x has {len(x)} rows but y has {len(y)}")
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, int(len(x) * test_fraction))
        parts = [x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]]
    else:
        raise DatasetError(f"{path} must contain arrays x and y (or x_train, y_train, x_test, y_test); "
                           f"found {sorted(data)}")
    xs = []
    for x in (parts[0], parts[2]):
        if x.dtype.kind not in "fiu":
            raise DatasetError(f"{path}: x must be numeric, got {x.dtype}")
        xs.append(np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32))
    ys = [y.astype(np.int32) if y.dtype.kind in "iu" else y.astype(np.float32) for y in (parts[1], parts[3])]
    return Dataset(xs[0], ys[0], xs[1], ys[1])
