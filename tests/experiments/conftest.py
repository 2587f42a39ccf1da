"""Shared fixtures: a fixed batch of MNIST."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_batch() -> tuple[np.ndarray, np.ndarray]:
    from mlpc import datasets

    d = datasets.mnist()
    return d.x_train[:1000], d.y_train[:1000]
