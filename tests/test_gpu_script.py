"""`make gpu` (.ci/gpu.py): its plan, its verdict comparison, and its refusal without CUDA."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_script", ROOT / ".ci" / "gpu.py")
gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu)


def test_dry_run_lists_tests_bench_and_chapters_1_to_5():
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "gpu.py"), "--dry-run"], capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("gpu tests:") and "-m gpu" in lines[0]
    assert lines[1].startswith("bench:") and "--device cuda" in lines[1] and "bfloat16" in lines[1]
    assert "07_bench_" in lines[1] and "--compiled" in lines[1]
    chapters = [l for l in lines if l.startswith("chapter ")]
    assert [l.split(":")[0] for l in chapters] == [f"chapter {p.stem}" for p in sorted((ROOT / "book").glob("0[1-5]_*.ipynb"))]
    assert all("-p device cuda" in l for l in chapters)


def test_dry_run_refuses_an_unknown_chapter():
    proc = subprocess.run([sys.executable, str(ROOT / ".ci" / "gpu.py"), "--dry-run", "--chapters", "99"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "99" in proc.stderr


def _nb(path: Path, lines: list[str]) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["text"]},
             {"cell_type": "code", "metadata": {}, "source": ["# NBVAL_CHECK_OUTPUT\nprint()"], "execution_count": 1,
              "outputs": [{"output_type": "stream", "name": "stdout", "text": [l + "\n" for l in lines]}]},
             {"cell_type": "code", "metadata": {}, "source": ["print('not a check')"], "execution_count": 2,
              "outputs": [{"output_type": "stream", "name": "stdout", "text": ["ignored: True\n"]}]}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_verdict_comparison_finds_flipped_and_missing_lines(tmp_path):
    cpu = _nb(tmp_path / "cpu.ipynb", ["a holds: True", "b holds: False", "only on cpu: True", "no verdict here"])
    gpu_nb = _nb(tmp_path / "gpu.ipynb", ["a holds: True", "b holds: True", "only on gpu: False"])
    rows = {r["statement"]: r for r in gpu.compare_verdicts(cpu, gpu_nb)}
    assert rows["a holds"]["same"] and not rows["b holds"]["same"]
    assert rows["only on cpu"]["gpu"] is None and rows["only on gpu"]["cpu"] is None
    assert "ignored" not in rows and "no verdict here" not in rows


def test_committed_chapters_have_verdicts_to_compare():
    for path in sorted((ROOT / "book").glob("0[1-5]_*.ipynb")):
        assert gpu.verdicts(path), f"{path.name} has no check-cell verdict lines"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: make gpu would really run")
def test_without_cuda_it_stops_before_running_anything():
    proc = subprocess.run([sys.executable, str(ROOT / ".ci" / "gpu.py"), "--skip-tests", "--skip-bench", "--chapters", "01"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
