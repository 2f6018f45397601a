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
    assert [p.name for p in p1] == ["06_comparison_cifar10_erm_seeds0.json", "06_comparison_cifar10_erm_seeds1.json"]
    assert not set(p1) & set(p2) and {p.parent for p in p1 + p2} == {tmp_path / "parts"}
    merged = results.load(tmp_path / "parts", "06_comparison_*.json", unique=cifar_grid.UNIQUE)
    assert len(merged) == 4 and set(merged.method) == {"ERM", "mixup"} and set(merged.file) == {p.name for p in p1 + p2}
    assert not list((tmp_path / "parts" / "checkpoints").iterdir())          # a saved part leaves no checkpoint
    key = list(cifar_grid.UNIQUE)
    a = merged.sort_values(key).reset_index(drop=True)
    b = whole.sort_values(key).reset_index(drop=True)
    for col in ("accuracy", "nll", "train_loss"):
        assert a[col].tolist() == pytest.approx(b[col].tolist(), abs=1e-6), col
    record = results.load(tmp_path / "parts", p1[0].name)
    assert record.dataset.unique().tolist() == ["cifar10"]


def test_a_part_recorded_twice_is_refused_when_merging(tmp_path):
    _write_cifar10(tmp_path / "data")
    kw = dict(names=["erm"], seeds=[0], device="cpu", model=_small, **TINY)
    _, first = cifar_grid.run(tmp_path / "data", "cifar10", out=tmp_path / "a", **kw)
    _, again = cifar_grid.run(tmp_path / "data", "cifar10", out=tmp_path / "b", **kw)
    again[0].rename(tmp_path / "a" / "06_comparison_cifar10_erm_seeds0_rerun.json")
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
    assert out.count("saved ") == 2, out[-4000:]                        # rank 0 only, one file a part
    files = sorted(f.name for f in (tmp_path / "out").glob("*.json"))
    assert files == ["06_comparison_cifar10_erm_seeds0.json", "06_comparison_cifar10_mixup_seeds0.json"]
    import json

    record = json.loads((tmp_path / "out" / files[0]).read_text())
    assert record["parameters"]["world_size"] == 2 and record["parameters"]["cifar_batch"] == 10
    assert [r["method"] for r in record["rows"]] == ["ERM"]


# ---------------------------------------------------------------------- issue 31: a grid that survives
def test_bad_settings_and_an_unwritable_out_are_found_before_any_training(tmp_path, monkeypatch):
    _write_cifar10(tmp_path / "data")
    trained = []
    monkeypatch.setattr(cifar_grid.train, "fit", lambda *a, **k: trained.append(1))
    for bad in (dict(cifar_weight_decay=float("inf")), dict(cifar_lr=float("nan")), dict(cifar_weight_decay=-1.0)):
        with pytest.raises(ValueError, match="cifar_weight_decay|cifar_lr"):
            cifar_grid.run(tmp_path / "data", names=["erm"], out=tmp_path / "out", device="cpu", **{**TINY, **bad})
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="out: cannot write results to"):
        cifar_grid.run(tmp_path / "data", names=["erm"], out=tmp_path / "file" / "sub", device="cpu", **TINY)
    assert not trained


def test_rerun_is_refused_resumed_or_overwritten(tmp_path):
    _write_cifar10(tmp_path / "data")
    kw = dict(names=["erm"], seeds=[0], device="cpu", model=_small, out=tmp_path / "out", **TINY)
    _, (path,) = cifar_grid.run(tmp_path / "data", "cifar10", **kw)
    before = path.read_text()
    with pytest.raises(FileExistsError, match=r"already holds parts .*06_comparison_cifar10_erm_seeds0.json.*--resume"):
        cifar_grid.run(tmp_path / "data", "cifar10", **kw)
    table, written = cifar_grid.run(tmp_path / "data", "cifar10", resume=True, **kw)
    assert written == [] and path.read_text() == before and list(table.method) == ["ERM"]   # skipped, read back
    _, (again,) = cifar_grid.run(tmp_path / "data", "cifar10", overwrite=True, **kw)
    assert again == path and path.read_text() != before                                     # replaced
    with pytest.raises(ValueError, match="exclude each other"):
        cifar_grid.run(tmp_path / "data", "cifar10", resume=True, overwrite=True, **kw)


def _grid_command(tmp_path, out, *extra):
    return [sys.executable, "-m", "mixbook.chapters.cifar_grid", "--root", str(tmp_path / "data"), "--methods", "erm",
            "mixup", "--seeds", "0", "--epochs", "3", "--batch-size", "10", "--device", "cpu", "--out", str(out), *extra]


def test_a_killed_grid_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL after the first part is saved (the second mid-training), then ``--resume``: the saved part is
    kept, the interrupted one resumes from its checkpoint, and every row equals an uninterrupted run's."""
    import time

    _write_cifar10(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(_grid_command(tmp_path, tmp_path / "whole"), env=env, check=True, capture_output=True, timeout=300)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_grid_command(tmp_path, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "06_comparison_cifar10_erm_seeds0.json"
    ckpt = out / "checkpoints" / "06_comparison_cifar10_mixup_seeds0.pt"
    deadline = time.monotonic() + 300
    while not (first.exists() and ckpt.exists()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert first.exists()
    saved = first.read_text()
    res = subprocess.run(_grid_command(tmp_path, out), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "--resume" in res.stderr                          # refused without --resume
    subprocess.run(_grid_command(tmp_path, out, "--resume"), env=env, check=True, capture_output=True, timeout=300)
    assert first.read_text() == saved
    whole = results.load(tmp_path / "whole", unique=cifar_grid.UNIQUE).sort_values("method").reset_index(drop=True)
    resumed = results.load(out, unique=cifar_grid.UNIQUE).sort_values("method").reset_index(drop=True)
    for col in ("accuracy", "nll", "ece", "train_loss"):
        assert resumed[col].tolist() == whole[col].tolist(), col
