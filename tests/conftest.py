"""Shared test configuration.

``built_book`` builds the book once per session (per xdist worker) from the committed outputs;
the book-build test and the browser test both read that build.

The markers ``gpu`` and ``notebook`` are declared in ``pyproject.toml``; nothing is
registered here. Hypothesis runs derandomized (the same examples on every machine, so a
CI failure reproduces locally), without a deadline (the first call of a torch kernel can be
slow) and without an example database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

from mixbook.core import _checks

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


ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BookBuild:
    returncode: int
    log: str
    html: Path


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BookBuild:
    """``jupyter-book build`` from the committed outputs (execute_notebooks: off), warnings as
    errors, nitpicky, keep going; into a temporary folder, never into the repository."""
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    cfg = out / "_config.yml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True))
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run(
        [jb, "build", str(ROOT), "--config", str(cfg), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True,
    )
    return BookBuild(proc.returncode, proc.stdout[-6000:] + proc.stderr[-3000:], out / "_build" / "html")


def pytest_collection_modifyitems(config, items):
    """The long tests (the chapters' executions and the book build, marked ``notebook``) first, the
    rest in their collected order: under ``make test``'s two xdist workers the short unit tests then
    fill in at the end instead of one worker finishing alone on the last chapter."""
    items.sort(key=lambda item: item.get_closest_marker("notebook") is None)
