"""MNIST IDX reading (shipped copy, user folder, damaged files) and user .npz datasets."""

import gzip
import os
import shutil

import numpy as np
import pytest

from mlpc import datasets
from mlpc.errors import DatasetError


def test_shipped_mnist_loads_with_known_statistics():
    d = datasets.mnist(normalize=False)
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert np.bincount(d.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert d.x_train.mean() == pytest.approx(0.1307, abs=1e-4)
    assert d.num_classes == 10


def test_shipped_copy_keeps_its_attribution():
    with open(os.path.join(datasets.PACKAGE_MNIST, "README.md")) as f:
        assert "CC BY-SA 3.0" in f.read()


@pytest.fixture
def mnist_copy(tmp_path):
    for name in os.listdir(datasets.PACKAGE_MNIST):
        shutil.copy(os.path.join(datasets.PACKAGE_MNIST, name), tmp_path / name)
    return tmp_path


def test_user_folder_with_raw_files(mnist_copy):
    gz = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    (mnist_copy / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    d = datasets.mnist(str(mnist_copy))
    assert len(d.y_test) == 10000


def test_missing_file(mnist_copy):
    (mnist_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        datasets.mnist(str(mnist_copy))


def test_truncated_file(mnist_copy):
    p = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DatasetError, match="should hold 10000 bytes"):
        datasets.mnist(str(mnist_copy))


def test_wrong_magic_and_garbage(mnist_copy):
    p = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[3] = 3
    p.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DatasetError, match="magic"):
        datasets.mnist(str(mnist_copy))
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read"):
        datasets.mnist(str(mnist_copy))


def test_missing_folder():
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.mnist("/nonexistent/mnist")


def test_npz_with_x_and_y(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(100, 3, 2)), y=rng.integers(0, 4, 100))
    d = datasets.load_npz(str(path))
    assert d.x_train.shape == (90, 6) and d.x_test.shape == (10, 6) and d.y_train.dtype == np.int32


def test_npz_errors(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(DatasetError, match="must contain arrays x and y"):
        datasets.load_npz(str(path))
    path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        datasets.load_npz(str(path))
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(DatasetError, match="x has 3 rows but y has 4"):
        datasets.load_npz(str(path))
