"""Recorded results: save with provenance, load back."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mixbook import results


def test_save_and_load_round_trip(tmp_path):
    frame = pd.DataFrame({"method": ["ERM", "mixup"], "accuracy": [0.9, 0.92]})
    path = results.save(tmp_path / "out" / "run.json", frame, {"epochs": 3, "name": "cifar10"}, device="cpu")
    record = json.loads(path.read_text())
    assert record["parameters"] == {"epochs": 3, "name": "cifar10"}
    prov = record["provenance"]
    assert {"device", "date_utc", "commit", "torch", "torchvision"} <= prov.keys()
    assert prov["device"].startswith("CPU") and prov["date_utc"].endswith("Z")
    loaded = results.load(tmp_path / "out")
    assert list(loaded["method"]) == ["ERM", "mixup"] and list(loaded["accuracy"]) == [0.9, 0.92]
    assert set(loaded["file"]) == {"run.json"}


def test_load_of_nothing_is_empty(tmp_path):
    assert results.load(tmp_path / "missing").empty
    assert results.load(tmp_path).empty


def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match="rows"):
        results.save(tmp_path / "x.json", "not rows", {})
    with pytest.raises(TypeError, match="parameters"):
        results.save(tmp_path / "x.json", [{"a": 1}], [1, 2])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a mixbook result"):
        results.load(tmp_path)
