"""Shared fixtures: a small compiled MLP, and a private roofline cache per test session."""

from __future__ import annotations

import sys

import pytest

import mlpc
from mlpc import nn, optim


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mlpc-cache"))


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(13, 7), nn.ReLU(), nn.Linear(7, 3))


@pytest.fixture
def no_fusion(monkeypatch):
    """Hide passes.fusion / passes.memory (present once the LLVM backend lands) for tests of the fallback."""
    monkeypatch.setitem(sys.modules, "passes.fusion", None)
    monkeypatch.setitem(sys.modules, "passes.memory", None)


@pytest.fixture
def trainer():
    return mlpc.compile(small_model(), nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=5, backend="numpy")
