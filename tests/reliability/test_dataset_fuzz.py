"""Fuzzing the IDX and .npz loaders: damaged files raise DatasetError, forged headers allocate nothing big."""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlpc.datasets import load_npz, read_idx
from mlpc.errors import DatasetError

from .fuzzing import count, examples
from .mutate import bounded, mutated


def idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape) + a.astype(np.uint8).tobytes()


IDX_SEED = idx_bytes(np.arange(3 * 4 * 5).reshape(3, 4, 5) % 256)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


NPZ_SEED = npz_bytes(x=np.arange(24, dtype=np.float32).reshape(6, 4), y=np.arange(6) % 2)


def _write(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@given(data=st.data(), gz=st.booleans())
@examples(150)
def test_damaged_idx_raises_dataset_error(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject,
                                         gz: bool) -> None:
    count("damaged IDX file")
    blob = data.draw(mutated(gzip.compress(IDX_SEED) if gz else IDX_SEED))
    path = _write(str(tmp_path_factory.mktemp("idx")), "f.gz" if gz else "f", blob)
    with bounded(max_seconds=30.0, max_bytes=16 << 20):
        try:
            a = read_idx(path)
        except DatasetError:
            return
    assert a.dtype == np.uint8 and a.size == len(gzip.decompress(blob) if gz else blob) - 4 - 4 * a.ndim


@pytest.mark.parametrize("dims", [(2 ** 32 - 1,) * 3, (2 ** 31, 2 ** 31, 4), (2 ** 16, 2 ** 16, 2 ** 16, 2 ** 16),
                                  (0,) * 255])
def test_forged_idx_dimensions(tmp_path: str, dims: tuple[int, ...]) -> None:
    """Dimensions whose product overflows int64 (or wraps to the real body size) must not reach reshape."""
    body = b"\x01" * 16
    blob = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body
    with bounded(max_seconds=30.0, max_bytes=16 << 20):
        try:
            a = read_idx(_write(str(tmp_path), "f", blob))
        except DatasetError:
            return
    assert a.size == 0 and len(body) == 0


def test_idx_wrapping_product_is_rejected(tmp_path: str) -> None:
    """2**32 * 2**32 wraps to 0 in int64 arithmetic: with an empty body the old check passed and reshape crashed."""
    blob = bytes([0, 0, 8, 3]) + struct.pack(">III", 2 ** 31, 2 ** 31, 4)
    with pytest.raises(DatasetError):
        read_idx(_write(str(tmp_path), "f", blob))


def test_corrupt_gzip_stream(tmp_path: str) -> None:
    """A bit flip inside the deflate stream raised zlib.error, not DatasetError."""
    comp = bytearray(gzip.compress(os.urandom(4000)))
    comp[len(comp) // 2] ^= 0xFF
    with pytest.raises(DatasetError):
        read_idx(_write(str(tmp_path), "f.gz", bytes(comp)))


@given(data=st.data())
@examples(150)
def test_damaged_npz_raises_dataset_error(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    count("damaged .npz file")
    blob = data.draw(mutated(NPZ_SEED))
    path = _write(str(tmp_path_factory.mktemp("npz")), "d.npz", blob)
    with bounded(max_seconds=30.0, max_bytes=16 << 20):
        try:
            ds = load_npz(path)
        except DatasetError:
            return
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.float32 and x.ndim == 2 and np.isfinite(x).all()
    assert len(ds.x_train) == len(ds.y_train) and len(ds.x_test) == len(ds.y_test)


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


FORGED_NPZ = {
    "x claims 2**40 doubles": {"x.npy": _npy_header((2 ** 20, 2 ** 20)) + b"\0" * 64,
                               "y.npy": _npy_header((2,), "<i8") + b"\0" * 16},
    "x claims 10 GiB": {"x.npy": _npy_header((2 ** 20, 1280)) + b"\0" * 64,
                        "y.npy": _npy_header((2,), "<i8") + b"\0" * 16},
    "object dtype": {"x.npy": _npy_header((2, 2), "|O") + b"\0" * 64, "y.npy": _npy_header((2,), "<i8") + b"\0" * 16},
}
BAD_NPZ: dict[str, dict[str, np.ndarray]] = {
    "0-d x": dict(x=np.asarray(np.float32(1.0)), y=np.asarray(np.int32(0))),
    "x without rows": dict(x_train=np.zeros((0, 3), np.float32), y_train=np.zeros(0, np.int32),
                           x_test=np.zeros((2, 3), np.float32), y_test=np.zeros(2, np.int32)),
    "train labels shorter than x": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(3, np.int32),
                                        x_test=np.zeros((2, 3)), y_test=np.zeros(2, np.int32)),
    "test width differs": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, np.int32),
                               x_test=np.zeros((2, 5)), y_test=np.zeros(2, np.int32)),
    "string labels": dict(x=np.zeros((4, 3)), y=np.array(["a", "b", "c", "d"])),
    "complex x": dict(x=np.zeros((4, 3), np.complex64), y=np.zeros(4, np.int32)),
    "NaN in x": dict(x=np.full((4, 3), np.nan), y=np.zeros(4, np.int32)),
    "negative labels": dict(x=np.zeros((4, 3)), y=np.array([0, -1, 1, 0])),
    "one example": dict(x=np.zeros((1, 3)), y=np.zeros(1, np.int32)),
    "no arrays": dict(z=np.zeros(3)),
}


@pytest.mark.parametrize("case", sorted(FORGED_NPZ) + sorted(BAD_NPZ))
def test_bad_npz_contents(tmp_path: str, case: str) -> None:
    blob = _zip(FORGED_NPZ[case]) if case in FORGED_NPZ else npz_bytes(**BAD_NPZ[case])
    path = _write(str(tmp_path), "d.npz", blob)
    with bounded(max_seconds=30.0, max_bytes=16 << 20):
        with pytest.raises(DatasetError):
            load_npz(path)


def test_zip_bomb_member_is_refused(tmp_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member whose declared array is larger than the limit is refused before decompression."""
    import mlpc.datasets as ds

    monkeypatch.setattr(ds, "MAX_NPZ_BYTES", 1 << 20)
    blob = npz_bytes(x=np.zeros((512, 1024), np.float32), y=np.zeros(512, np.int32))  # 2 MiB, compresses to ~2 KiB
    with pytest.raises(DatasetError, match="limit"):
        load_npz(_write(str(tmp_path), "d.npz", blob))


def test_good_npz_round_trip(tmp_path: str) -> None:
    x = np.random.default_rng(0).standard_normal((50, 2, 3))
    y = np.arange(50) % 4
    ds = load_npz(_write(str(tmp_path), "d.npz", npz_bytes(x=x, y=y)), test_fraction=0.2)
    assert ds.x_train.shape == (40, 6) and ds.x_test.shape == (10, 6) and ds.y_train.dtype == np.int32
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == sorted(y.tolist())
