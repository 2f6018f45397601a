"""Recorded results: save with provenance, load back."""

from __future__ import annotations

import json
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
    if here.returncode == 0:
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
