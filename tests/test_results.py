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


def test_numpy_values_are_stored_as_numbers_and_a_missing_value_as_null(tmp_path):
    rows = [{"method": "ERM", "accuracy": np.float32(0.5), "seed": np.int64(3)}]
    path = results.save(tmp_path / "ok.json", rows, {"epochs": np.int64(2), "lrs": [np.float64(0.1)]})
    record = json.loads(path.read_text())
    assert record["rows"] == [{"method": "ERM", "accuracy": 0.5, "seed": 3}]
    assert record["parameters"] == {"epochs": 2, "lrs": [0.1]} and isinstance(record["parameters"]["epochs"], int)
    path = results.save(tmp_path / "nan.json", [{"nll": float("nan"), "acc": 0.1}], {})
    assert "NaN" not in path.read_text()
    back = results.load(tmp_path, "nan.json")
    assert back["nll"].isna().all() and list(back["acc"]) == [0.1]
    with pytest.raises(ValueError, match=r"rows\[0\]\.loss is inf"):
        results.save(tmp_path / "inf.json", [{"loss": np.float64("inf")}], {})
    with pytest.raises(ValueError, match=r"parameters\.weight_decay is inf"):
        results.save(tmp_path / "inf.json", [], {"weight_decay": float("inf")})
    with pytest.raises(ValueError, match=r"parameters\.lr is nan"):
        results.save(tmp_path / "inf.json", [], {"lr": float("nan")})
    assert not (tmp_path / "inf.json").exists()
    with pytest.raises(TypeError, match=r"parameters\.model must be"):
        results.save(tmp_path / "obj.json", [], {"model": object()})
    assert not (tmp_path / "obj.json").exists()


def test_load_of_an_empty_folder_is_empty_and_of_a_missing_one_an_error(tmp_path):
    assert results.load(tmp_path).empty
    with pytest.raises(FileNotFoundError, match="no results folder"):
        results.load(tmp_path / "missing")


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



# ---------------------------------------------------------------------- issue 31: atomic, checked files
def test_a_save_that_dies_before_the_rename_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = results.save(tmp_path / "r.json", [{"method": "ERM", "accuracy": 0.9}], {})
    before = path.read_text()

    def killed(fd):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(results.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        results.save(path, [{"method": "ERM", "accuracy": 0.1}], {})
    assert path.read_text() == before                                  # the good result survives
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]          # and no temporary file is left


def _save_many(path, value, count):
    for _ in range(count):
        results.save(path, [{"method": f"m{value}", "accuracy": value / 10}], {"writer": value})


def test_concurrent_saves_and_reads_never_see_a_partial_file(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "shared.json"
    results.save(path, [{"method": "m0", "accuracy": 0.0}], {})
    ctx = mp.get_context("fork")
    writers = [ctx.Process(target=_save_many, args=(path, v, 150)) for v in (1, 2)]
    for w in writers:
        w.start()
    reads = 0
    while any(w.is_alive() for w in writers) or reads < 50:
        frame = results.load(tmp_path, "shared.json")                  # every read parses
        assert len(frame) == 1 and frame.method[0] in ("m0", "m1", "m2")
        reads += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert reads >= 50 and not list(tmp_path.glob(".shared.json.*"))


def test_load_checks_every_file_and_names_it(tmp_path):
    good = results.save(tmp_path / "good.json", [{"method": "ERM", "seed": 0, "accuracy": 0.5}], {})
    cases = {
        "truncated.json": good.read_text()[:40],
        "schema.json": json.dumps({"provenance": {}, "rows": {"a": 1}}),
        "nan.json": good.read_text().replace("0.5", "NaN"),
        "percent.json": good.read_text().replace("0.5", "57.0"),
        "nested.json": good.read_text().replace("0.5", "[0.5]"),
    }
    messages = {"truncated.json": "not a readable mixbook result file", "schema.json": "'rows' list",
                "nan.json": "NaN", "percent.json": r"'accuracy'\] = 57.0 is outside \[0.0, 1.0\]",
                "nested.json": "must be a number"}
    for name, text in cases.items():
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_text(text)
        with pytest.raises(ValueError, match=messages[name]) as err:
            results.load(folder)
        assert name in str(err.value)


def test_unique_keys_are_normalised(tmp_path):
    results.save(tmp_path / "a.json", [{"dataset": "c10", "method": "ERM", "seed": 0, "accuracy": 0.5}], {})
    results.save(tmp_path / "b.json", [{"dataset": "c10", "method": "ERM ", "seed": "0", "accuracy": 0.6}], {})
    with pytest.raises(ValueError, match=r"recorded more than once .*\('c10', 'ERM', 0\): \['a.json', 'b.json'\]"):
        results.load(tmp_path, unique=("dataset", "method", "seed"))
    (tmp_path / "b.json").unlink()
    results.save(tmp_path / "b.json", [{"dataset": "c10", "method": "ERM ", "seed": "1", "accuracy": 0.6}], {})
    frame = results.load(tmp_path, unique=("dataset", "method", "seed"))
    assert sorted(frame.seed) == [0, 1] and set(frame.method) == {"ERM"}


def test_the_committed_results_pass_the_checks():
    frame = results.load(Path(results.__file__).resolve().parents[2] / "book" / "results")
    assert len(frame) > 0
