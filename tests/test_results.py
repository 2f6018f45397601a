"""Recorded results: save with provenance, load back."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mixbook.chapters import results


def test_save_and_load_round_trip(tmp_path):
    frame = pd.DataFrame({"method": ["ERM", "mixup"], "accuracy": [0.9, 0.92]})
    path = results.save(tmp_path / "out" / "run.json", frame, {"epochs": 3, "name": "cifar10"}, device="cpu")
    record = json.loads(path.read_text())
    assert record["parameters"] == {"epochs": 3, "name": "cifar10"}
    prov = record["provenance"]
    assert {"device", "device_name", "date_utc", "git_commit", "git_dirty", "torch", "torchvision"} <= prov.keys()
    assert prov["device"] == "cpu" and prov["date_utc"].endswith("+00:00")
    # the commit is the checkout holding mixbook, although the file is written outside it
    here = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(results.__file__).parent,
                          capture_output=True, text=True)
    if here.returncode == 0 and prov["git_commit_source"] == "git":
        assert prov["git_commit"] == here.stdout.strip() and isinstance(prov["git_dirty"], bool)
    loaded = results.load(tmp_path / "out")
    assert list(loaded["method"]) == ["ERM", "mixup"] and list(loaded["accuracy"]) == [0.9, 0.92]
    assert set(loaded["file"]) == {"run.json"} and set(loaded["device"]) == {prov["device_name"]}
    assert set(loaded["commit"]) == {(prov["git_commit"] or "")[:10] + ("+dirty" if prov["git_dirty"] else "")}


def test_dirty_flag_follows_the_package_not_the_results(tmp_path):
    """A result file written inside the checkout does not make the package dirty."""
    pkg = Path(results.__file__).parent
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=pkg, capture_output=True).returncode != 0:
        pytest.skip("mixbook is not in a git checkout")
    before = results.provenance()["git_dirty"]
    extra = pkg / "_untracked_result_of_a_test.json"  # untracked, like a result a run writes
    try:
        extra.write_text("{}")
        assert results.provenance()["git_dirty"] == before
    finally:
        extra.unlink()


def test_numpy_values_are_stored_as_numbers_and_nan_as_null(tmp_path):
    rows = [{"method": "ERM", "accuracy": np.float32(0.5), "seed": np.int64(3)}]
    path = results.save(tmp_path / "ok.json", rows, {"epochs": np.int64(2), "lrs": [np.float64(0.1)]})
    record = json.loads(path.read_text())
    assert record["rows"] == [{"method": "ERM", "accuracy": 0.5, "seed": 3}]
    assert record["parameters"] == {"epochs": 2, "lrs": [0.1]} and isinstance(record["parameters"]["epochs"], int)
    path = results.save(tmp_path / "nan.json", [{"nll": float("nan"), "loss": np.float64("inf"), "acc": 0.1}], {})
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    back = results.load(tmp_path, "nan.json")
    assert back["nll"].isna().all() and back["loss"].isna().all() and list(back["acc"]) == [0.1]
    with pytest.raises(TypeError, match=r"parameters\.model must be"):
        results.save(tmp_path / "obj.json", [], {"model": object()})
    assert not (tmp_path / "obj.json").exists()


def test_load_of_nothing_is_empty(tmp_path):
    assert results.load(tmp_path / "missing").empty
    assert results.load(tmp_path).empty


def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match="rows"):
        results.save(tmp_path / "x.json", "not rows", {})
    with pytest.raises(TypeError, match="parameters"):
        results.save(tmp_path / "x.json", [{"a": 1}], [1, 2])
    with pytest.raises(TypeError, match="device"):
        results.provenance(3)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a mixbook result"):
        results.load(tmp_path)


# ---------------------------------------------------------------------- which commit is recorded
def _git_in(cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=mixbook test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false",
           "-c", "core.hooksPath=/dev/null", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _project_copy(parent: Path):
    """A minimal copy of the project layout (``pyproject.toml``, ``mixbook/__init__.py``,
    ``mixbook/chapters/results.py``) under ``parent``, without ``.git``; its ``results`` module,
    loaded from the copy."""
    project = parent / "mixbook-export"
    (project / "mixbook" / "chapters").mkdir(parents=True)
    (project / "mixbook" / "__init__.py").write_text('"""mixbook"""\n')
    shutil.copy(Path(results.__file__).resolve().parents[2] / "pyproject.toml", project / "pyproject.toml")
    shutil.copy(results.__file__, project / "mixbook" / "chapters" / "results.py")
    spec = importlib.util.spec_from_file_location("mixbook_export_results", project / "mixbook" / "chapters" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return project, module


@pytest.fixture
def no_commit_env(monkeypatch):
    monkeypatch.delenv("MIXBOOK_COMMIT", raising=False)


def test_the_checkout_records_its_own_head(no_commit_env):
    pkg = Path(results.__file__).parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pkg, capture_output=True, text=True)
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=pkg, capture_output=True, text=True)
    if head.returncode != 0 or Path(top.stdout.strip()).resolve() != results.PROJECT_ROOT:
        pytest.skip("mixbook is not in a git checkout of its own")
    prov = results.provenance()
    assert prov["git_commit"] == head.stdout.strip() and prov["git_commit_source"] == "git"
    assert isinstance(prov["git_dirty"], bool)


def test_a_copy_inside_another_repository_records_no_commit(tmp_path, no_commit_env, monkeypatch):
    """An export without .git, placed inside someone else's repository, must not record that
    repository's commit; MIXBOOK_COMMIT names the commit it came from."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    outer = tmp_path / "outer"
    outer.mkdir()
    _git_in(outer, "init", "-q")
    project, copy = _project_copy(outer)
    _git_in(outer, "add", "-A")
    _git_in(outer, "commit", "-q", "-m", "someone else's repository")
    outer_head = _git_in(outer, "rev-parse", "HEAD")
    assert copy.PROJECT_ROOT == project.resolve()
    prov = copy.provenance()
    assert prov["git_commit"] is None and prov["git_commit_source"] is None and prov["git_dirty"] is None
    assert outer_head not in json.dumps(prov)
    monkeypatch.setenv("MIXBOOK_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    prov = copy.provenance()
    assert prov["git_commit"] == "0123456789abcdef0123456789abcdef01234567" and prov["git_commit_source"] == "env"
    assert prov["git_dirty"] is None                      # nothing says whether the copy matches that commit


def test_a_copy_that_is_its_own_repository_records_its_head(tmp_path, no_commit_env, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    project, copy = _project_copy(tmp_path)
    _git_in(project, "init", "-q")
    _git_in(project, "add", "-A")
    _git_in(project, "commit", "-q", "-m", "the project")
    head = _git_in(project, "rev-parse", "HEAD")
    prov = copy.provenance()
    assert prov["git_commit"] == head and prov["git_commit_source"] == "git" and prov["git_dirty"] is False
    (project / "mixbook" / "chapters" / "new_result.json").write_text("{}")   # untracked: does not count
    assert copy.provenance()["git_dirty"] is False
    (project / "mixbook" / "__init__.py").write_text("# edited\n")   # a tracked file of the package, outside chapters/
    assert copy.provenance()["git_dirty"] is True
    monkeypatch.setenv("MIXBOOK_COMMIT", head)            # the same commit, given: the checkout's state still counts
    prov = copy.provenance()
    assert prov["git_commit"] == head and prov["git_commit_source"] == "env" and prov["git_dirty"] is True

