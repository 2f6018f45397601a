"""mixbook.chapters.cifar_grid: chapter 6's CIFAR grid as a script, split by method and seed over machines
and merged with mixbook.chapters.results.load; the command line under torchrun (2 gloo ranks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from _cifar import _write_cifar10

from mixbook.chapters import cifar_grid, results
from mixbook.training import models

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(cifar_epochs=1, cifar_batch=10, multimix_n=6)


def _small(num_classes: int) -> torch.nn.Module:
    return models.SmallCNN(in_channels=3, num_classes=num_classes, width=4)


def test_defaults_are_the_chapters_full_scale_parameters():
    full = yaml.safe_load((ROOT / "book/params/06_comparison/full.yaml").read_text())
    assert {k: full[k] for k in cifar_grid.DEFAULTS} == cifar_grid.DEFAULTS


def test_methods_are_the_chapters_labels_and_bad_names_are_refused():
    grid = cifar_grid.methods()
    assert list(grid) == list(cifar_grid.METHODS.values())
    assert "n=1000" in repr(grid["MultiMix"]) and "layers" in repr(grid["manifold mixup"])
    with pytest.raises(ValueError, match="methods must be"):
        cifar_grid.methods(["mixup", "fmix"])
    with pytest.raises(ValueError, match="dense_multimix"):
        cifar_grid.methods(["dense_multimix"], global_mixing=True)
    wrapped = cifar_grid.methods(["mixup"], global_mixing=True)
    assert type(wrapped["mixup"]).__name__ == "GlobalBatch"


def test_result_names_keep_the_parts_of_a_grid_apart():
    names = {cifar_grid.result_name("cifar10", m, s) for m in (None, ["mixup"], ["erm", "cutmix"]) for s in ([0], [1, 2])}
    assert len(names) == 6
    assert cifar_grid.result_name("cifar100", ["erm", "cutmix"], [0, 1]) == "06_comparison_cifar100_erm-cutmix_seeds0-1.json"
    assert cifar_grid.result_name("cifar10", list(cifar_grid.METHODS), [0]) == "06_comparison_cifar10_all_seeds0.json"


def test_a_grid_split_over_two_machines_merges_into_the_whole_grid(tmp_path):
    """Two parts (by method) written to one folder load as the table a single run of both writes."""
    _write_cifar10(tmp_path / "data")
    kw = dict(seeds=[0, 1], device="cpu", model=_small, **TINY)
    _, p1 = cifar_grid.run(tmp_path / "data", "cifar10", names=["erm"], out=tmp_path / "parts", **kw)
    _, p2 = cifar_grid.run(tmp_path / "data", "cifar10", names=["mixup"], out=tmp_path / "parts", **kw)
    whole, _ = cifar_grid.run(tmp_path / "data", "cifar10", names=["erm", "mixup"], out=tmp_path / "whole", **kw)
    assert p1 != p2 and p1.parent == p2.parent
    merged = results.load(tmp_path / "parts", "06_comparison_*.json", unique=cifar_grid.UNIQUE)
    assert len(merged) == 4 and set(merged.method) == {"ERM", "mixup"} and set(merged.file) == {p1.name, p2.name}
    key = list(cifar_grid.UNIQUE)
    a = merged.sort_values(key).reset_index(drop=True)
    b = whole.sort_values(key).reset_index(drop=True)
    for col in ("accuracy", "nll", "train_loss"):
        assert a[col].tolist() == pytest.approx(b[col].tolist(), abs=1e-6), col
    record = results.load(tmp_path / "parts", p1.name)
    assert record.dataset.unique().tolist() == ["cifar10"]


def test_a_part_recorded_twice_is_refused_when_merging(tmp_path):
    _write_cifar10(tmp_path / "data")
    kw = dict(names=["erm"], seeds=[0], device="cpu", model=_small, **TINY)
    _, first = cifar_grid.run(tmp_path / "data", "cifar10", out=tmp_path / "a", **kw)
    _, again = cifar_grid.run(tmp_path / "data", "cifar10", out=tmp_path / "b", **kw)
    again.rename(tmp_path / "a" / "06_comparison_cifar10_erm_seeds0_rerun.json")
    with pytest.raises(ValueError, match=r"more than once.*ERM.*06_comparison_cifar10_erm_seeds0"):
        results.load(tmp_path / "a", unique=cifar_grid.UNIQUE)
    assert len(results.load(tmp_path / "a")) == 2                 # without unique: both rows
    with pytest.raises(ValueError, match="columns"):
        results.load(tmp_path / "a", unique=("dataset", "optimizer"))
    with pytest.raises(TypeError, match="unique"):
        results.load(tmp_path / "a", unique="method")


def test_bad_arguments(tmp_path):
    _write_cifar10(tmp_path / "data")
    with pytest.raises(TypeError, match="cifar_momentum"):
        cifar_grid.run(tmp_path / "data", cifar_momentum=0.9)
    with pytest.raises(ValueError, match="seeds"):
        cifar_grid.run(tmp_path / "data", seeds=[])
    with pytest.raises(FileNotFoundError):
        cifar_grid.run(tmp_path / "empty", names=["erm"], device="cpu", **TINY)


def test_the_command_line_under_torchrun_writes_one_file_from_rank_0(tmp_path):
    """``torchrun --nproc_per_node=2 -m mixbook.chapters.cifar_grid`` (gloo): every rank trains, rank 0 saves;
    the global batch is split over the ranks and recorded with the world size."""
    _write_cifar10(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "mixbook.chapters.cifar_grid", "--root", str(tmp_path / "data"), "--methods", "erm", "mixup", "--seeds", "0",
           "--epochs", "1", "--batch-size", "10", "--device", "cpu", "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun ran past 240 s:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-4000:]
    assert out.count("saved ") == 1, out[-4000:]
    files = list((tmp_path / "out").glob("*.json"))
    assert [f.name for f in files] == ["06_comparison_cifar10_erm-mixup_seeds0.json"]
    import json

    record = json.loads(files[0].read_text())
    assert record["parameters"]["world_size"] == 2 and record["parameters"]["cifar_batch"] == 10
    assert {r["method"] for r in record["rows"]} == {"ERM", "mixup"}
