"""Fuzzing the AOT library loader with the suite's byte mutations: a damaged library ends in an MlpcError
(never a crashed interpreter or a hang), or it is intact where it matters and computes what the original does."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlpc
from mlpc import nn
from mlpc.errors import MlpcError
from tests import aot_util

from .fuzzing import count, examples
from .mutate import mutated


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes, np.ndarray]:
    out = tmp_path_factory.mktemp("aot")
    tr = aot_util.trainer(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), batch=4)
    ex = aot_util.export(tr, out, "fuzz", threads=1)
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    with open(ex.library, "rb") as f:
        return str(ex.library), f.read(), mlpc.load_library(ex.library).predict(x)


@given(data=st.data())
@examples(10)
def test_damaged_library_is_refused_or_harmless(library: tuple[str, bytes, np.ndarray],
                                                tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    count("damaged AOT library")
    path, blob, want = library
    folder = tmp_path_factory.mktemp("bad")
    bad = os.path.join(str(folder), os.path.basename(path))
    shutil.copy(path, bad)
    with open(bad, "wb") as f:
        f.write(data.draw(mutated(blob)))
    try:
        lib = mlpc.load_library(bad)
    except MlpcError:
        return
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(lib.predict(x), want)  # loaded: the damage missed everything that matters
