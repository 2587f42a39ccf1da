"""Suite-wide pytest setup: hypothesis profiles `ci` (default) and `long` (`--long` or MLPC_FUZZ_PROFILE=long).

`ci` is derandomized: each test's examples are seeded from the test itself (same examples on every run and
host, for a given hypothesis version, pinned in pyproject's `test` extra) and no example database is read or
written, so a CI verdict depends only on the commit. `long` is the open-ended random search (with the
database); every failure it finds is pinned with `@example` in the test, so `ci` keeps checking it.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.filter_too_much])
# hypothesis's default count for tests without their own; derandomize=True implies database=None
settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=2000, **_COMMON)
PROFILES = ("ci", "long")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the fuzzers with the `long` hypothesis profile (thousands of cases, see "
                          "docs/reliability.md)")


def pytest_configure(config: pytest.Config) -> None:
    profile = "long" if config.getoption("--long") else os.environ.get("MLPC_FUZZ_PROFILE", "ci")
    if profile not in PROFILES:
        raise pytest.UsageError(f"MLPC_FUZZ_PROFILE must be one of {PROFILES}, got {profile!r}")
    os.environ["MLPC_FUZZ_PROFILE"] = profile  # read by tests.reliability.fuzzing.examples at import
    settings.load_profile(profile)
