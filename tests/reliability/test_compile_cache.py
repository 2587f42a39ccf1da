"""The on-disk compile cache: concurrent writers, damaged entries (rebuilt, never executed), fuzzed bytes.

Targets runtime/compile_cache.py (cache_dir/make_key/load/store/entry_path), which arrives with the llvm backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import compile_cache as cc

from .fuzzing import count, examples
from .mutate import bounded, mutated

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
META = {"arena": 4096, "inputs": [["x", "data", "f32", [8, 3]]], "outputs": [["loss", False, ["arena", 64], "f32", []]]}
OBJ = bytes(range(256)) * 8
TEXTS = {"llvm": "; some IR\n", "asm": "# some asm\n"}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_round_trip_and_disable(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = cc.make_key("graph", "target", "v1")
    assert cc.load(key) is None
    assert cc.store(key, META, OBJ, TEXTS)
    assert cc.load(key) == (META, OBJ, TEXTS)
    monkeypatch.setenv("MLPC_CACHE_DIR", "off")
    assert cc.load(key) is None and not cc.store(key, META, OBJ, TEXTS)


@given(data=st.data())
@examples(150)
def test_damaged_entry_is_a_miss(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any damage to an entry makes `load` return None, or the exact original (meta, object, texts)."""
    count("damaged compile-cache entry")
    folder = tmp_path_factory.mktemp("cc")
    os.environ["MLPC_CACHE_DIR"] = str(folder)
    try:
        key = cc.make_key("graph", "fuzz")
        assert cc.store(key, META, OBJ, TEXTS)
        path = cc.entry_path(key)
        good = path.read_bytes()
        path.write_bytes(data.draw(mutated(good)))
        with bounded(max_seconds=30.0, max_bytes=16 << 20):
            got = cc.load(key)
        assert got is None or got == (META, OBJ, TEXTS), f"a damaged entry loaded as {got!r:.200}"
    finally:
        del os.environ["MLPC_CACHE_DIR"]


@pytest.mark.parametrize("where", ["meta digit", "object byte", "texts byte", "header is a list", "truncated"])
def test_targeted_damage(cache: Path, where: str) -> None:
    key = cc.make_key("graph", where)
    assert cc.store(key, META, OBJ, TEXTS)
    path = cc.entry_path(key)
    blob = bytearray(path.read_bytes())
    if where == "meta digit":  # 4096 -> 5096: still valid JSON, a different arena size
        i = blob.index(b"4096")
        blob[i] = ord("5")
    elif where == "object byte":
        blob[blob.index(OBJ[:64]) + 100] ^= 0x01
    elif where == "texts byte":
        blob[-3] ^= 0x40
    elif where == "header is a list":
        import json
        import struct

        header = json.dumps([1, 2]).encode()
        blob = bytearray(cc.MAGIC + struct.pack("<Q", len(header)) + header)
    else:
        blob = blob[: len(blob) // 2]
    path.write_bytes(bytes(blob))
    assert cc.load(key) is None


WRITER = """
import os, sys
from runtime import compile_cache as cc
key = cc.make_key("graph", "race")
obj = bytes([int(sys.argv[1]) % 251]) * (1 << 20)  # each writer stores its own (valid) 1 MiB object
for _ in range(20):
    cc.store(key, {"writer": int(sys.argv[1])}, obj, {"llvm": "x"})
    hit = cc.load(key)
    assert hit is not None, "a reader saw a missing or torn entry while writers raced"
    meta, got, texts = hit
    assert got == bytes([meta["writer"] % 251]) * (1 << 20), "torn entry: object from one writer, meta from another"
"""


def test_concurrent_writers_never_tear_an_entry(cache: Path) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(i)], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                              text=True) for i in range(6)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp")], "temp files left behind"


COMPILER = """
import sys, numpy as np, mlpc
from mlpc import nn, optim
model = nn.Sequential(nn.Linear(12, 33), nn.ReLU(), nn.Linear(33, 5))
tr = mlpc.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=0.01), batch_size=16, backend="llvm", seed=5)
rng = np.random.default_rng(0)
losses = [tr.step(rng.standard_normal((16, 12)).astype(np.float32), rng.integers(0, 5, 16)) for _ in range(3)]
print(repr(losses), tr._compiled[("step", 16)].from_cache)
"""


def _compile_in(n: int, env: dict[str, str]) -> list[tuple[str, str]]:
    procs = [subprocess.Popen([sys.executable, "-c", COMPILER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    return [tuple(o.strip().rsplit(" ", 1)) for o, _ in outs]  # type: ignore[misc]


def test_processes_compiling_the_same_model_share_the_cache(cache: Path) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT)
    first = _compile_in(4, env)
    assert len({losses for losses, _ in first}) == 1, first  # every process computed the same thing
    second = _compile_in(2, env)
    assert all(hit == "True" for _, hit in second), second
    assert {losses for losses, _ in second} == {first[0][0]}


@pytest.mark.parametrize("where", ["object byte", "meta digit"])
def test_corrupted_entry_is_rebuilt_not_executed(cache: Path, where: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT)
    (want, hit), = _compile_in(1, env)
    assert hit == "False"
    entries = [p for p in cache.rglob("*.mlpcobj")]
    assert entries
    for p in entries:
        blob = bytearray(p.read_bytes())
        if where == "object byte":
            blob[len(blob) // 2] ^= 0xFF
        else:
            i = blob.index(b'"arena": ') + len(b'"arena": ')
            blob[i] = ord("1") if blob[i] != ord("1") else ord("2")
        p.write_bytes(bytes(blob))
    (got, hit), = _compile_in(1, env)
    assert hit == "False" and got == want
    (again, hit), = _compile_in(1, env)
    assert hit == "True" and again == want  # the rebuilt entry replaced the damaged one


def test_numpy_results_are_unaffected_by_the_cache(cache: Path) -> None:
    """Sanity: the reference backend never touches the cache folder."""
    import mlpc
    from mlpc import nn, optim

    tr = mlpc.compile(nn.Sequential(nn.Linear(3, 2)), nn.CrossEntropyLoss(), optim.SGD(), batch_size=2, backend="numpy")
    tr.step(np.zeros((2, 3), np.float32), [0, 1])
    assert not cache.exists()
