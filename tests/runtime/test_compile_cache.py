"""The on-disk compile cache: hits skip LLVM, corrupt entries are rebuilt, MLPC_CACHE_DIR is honoured."""

import os

import numpy as np
import pytest

from runtime import compile_cache
from runtime.llvm_backend import lower_graph
from tests.handgraphs import init_state, mlp_train_graph, random_data


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    return tmp_path


def entries(path):
    return [p for p in path.rglob("*.mlpcobj")]


def run_once(c, g):
    st = init_state(g)
    return c.run(st, random_data(g))["loss"], st


def test_second_lower_loads_from_cache_and_matches(cache):
    g = mlp_train_graph([9, 7, 3], 4, "relu", "ce", "adam")
    stages = {}
    a = lower_graph(g, lambda s, t: stages.__setitem__(s, t))
    assert not a.from_cache and len(entries(cache)) == 1
    stages2 = {}
    b = lower_graph(g, lambda s, t: stages2.__setitem__(s, t))
    assert b.from_cache
    assert stages2["llvm"]() == stages["llvm"]() and stages2["asm"]() == stages["asm"]()  # made when read
    la, sa = run_once(a, g)
    lb, sb = run_once(b, g)
    assert la == lb and all(np.array_equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_entry_is_rebuilt_not_loaded(cache, damage):
    g = mlp_train_graph([6, 5, 2], 3, "tanh", "ce", "sgd", {"lr": 0.1})
    lower_graph(g)
    (path,) = entries(cache)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:
        path.write_bytes(b"")
    c = lower_graph(g)
    assert not c.from_cache
    assert path.read_bytes() == data or compile_cache.load(path.stem) is not None
    assert lower_graph(g).from_cache
    loss, _ = run_once(c, g)
    assert np.isfinite(loss)


def test_key_depends_on_shapes_and_cache_can_be_disabled(cache, monkeypatch):
    lower_graph(mlp_train_graph([6, 5, 2], 3, "relu", "ce", "adam"))
    lower_graph(mlp_train_graph([6, 5, 2], 4, "relu", "ce", "adam"))
    assert len(entries(cache)) == 2
    monkeypatch.setenv("MLPC_CACHE_DIR", "off")
    assert not lower_graph(mlp_train_graph([6, 5, 2], 3, "relu", "ce", "adam")).from_cache


def test_atomic_store_leaves_no_temporary_files(cache):
    assert compile_cache.store("ab" * 32, {"x": 1}, b"obj", {"llvm": "text"})
    assert compile_cache.load("ab" * 32) == ({"x": 1}, b"obj", {"llvm": "text"})
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]
