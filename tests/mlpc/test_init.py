"""Initialization schemes: seeded, reproducible, with the variances docs/design.md states."""

import math

import numpy as np
import pytest

from mlpc import init, nn


@pytest.mark.parametrize("scheme, var", [
    (init.normal_fan_in(1.0), 1 / 400), (init.normal_fan_in(2.0), 2 / 400), (init.kaiming_normal(), 2 / 400),
    (init.kaiming_uniform(), 2 / 400), (init.xavier_normal(), 2 / 700), (init.xavier_uniform(), 2 / 700),
    (init.normal(0.0, 0.1), 0.01), (init.uniform(-1, 1), 1 / 3), (init.default_weight(), 1 / (3 * 400)),
])
def test_variance(scheme, var):
    w = scheme((400, 300), np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == (400, 300)
    assert abs(w.mean()) < 0.05 * math.sqrt(var) * 10
    assert w.var() == pytest.approx(var, rel=0.03)


def test_zeros_and_constant():
    rng = np.random.default_rng(0)
    assert not init.zeros()((3, 2), rng).any()
    assert (init.constant(0.5)((3,), rng) == 0.5).all()


def test_seeded_and_reproducible():
    def build():
        m = nn.Sequential(nn.Linear(5, 4, init="kaiming_normal"), nn.ReLU(),
                          nn.Linear(4, 2, init=init.xavier_uniform()))
        m.initialize(seed=7)
        return {k: p.data for k, p in m.parameters().items()}

    a, b = build(), build()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_spec_round_trip():
    for scheme in (init.kaiming_normal("leaky_relu", 0.1), init.normal(1.0, 2.0), init.normal_fan_in(3.0)):
        again = init.from_spec(scheme.spec())
        rng1, rng2 = np.random.default_rng(1), np.random.default_rng(1)
        np.testing.assert_array_equal(scheme((4, 3), rng1), again((4, 3), rng2))
    with pytest.raises(ValueError, match="unknown initializer"):
        init.from_spec("glorot")
