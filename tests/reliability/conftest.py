"""Hypothesis profiles for the reliability suite: `ci` (default, a few hundred cases) and `long` (thousands).

Select with `pytest --long` or `MLPC_FUZZ_PROFILE=long`. Each fuzz test scales its own base
example count by the profile's multiplier (see `examples`), so one switch moves the whole suite.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.filter_too_much], derandomize=False)
settings.register_profile("ci", max_examples=30, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)

SCALE = {"ci": 1, "long": 20}


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--long", action="store_true", default=False,
                         help="run the reliability fuzzers with the `long` hypothesis profile (thousands of cases)")
    except ValueError:  # another conftest registered it already
        pass


def pytest_configure(config: pytest.Config) -> None:
    profile = "long" if config.getoption("--long", default=False) else os.environ.get("MLPC_FUZZ_PROFILE", "ci")
    if profile not in SCALE:
        raise pytest.UsageError(f"MLPC_FUZZ_PROFILE must be one of {sorted(SCALE)}, got {profile!r}")
    os.environ["MLPC_FUZZ_PROFILE"] = profile
    settings.load_profile(profile)
