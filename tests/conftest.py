"""Shared test configuration.

The markers ``gpu`` and ``notebook`` are declared in ``pyproject.toml``; nothing is
registered here. Hypothesis runs derandomized (the same examples on every machine, so a
CI failure reproduces locally), without a deadline (the first call of a torch kernel can be
slow) and without an example database.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from mixbook import _checks

settings.register_profile(
    "mixbook",
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# A longer, still reproducible run: HYPOTHESIS_PROFILE=thorough pytest ...
settings.register_profile("thorough", parent=settings.get_profile("mixbook"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mixbook"))


@pytest.fixture(autouse=True)
def _restore_value_checks():
    """Every test starts in the default value-check mode and cannot leak another."""
    old = _checks.set_value_checks("auto")
    yield
    _checks.set_value_checks(old)
