"""`make gpu` (.ci/gpu.py): its plan (also on a bare Python without .venv, torch or papermill), its time
limits, its summary of ok / failed / timed-out / skipped steps, its verdict comparison, its refusal
without CUDA, and the Makefile's fallback to the installed torch."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_script", ROOT / ".ci" / "gpu.py")
gpu = importlib.util.module_from_spec(spec)
sys.modules["gpu_script"] = gpu          # its dataclass looks its module up while it is defined
spec.loader.exec_module(gpu)


def dry_run(*args: str, python: list[str] | None = None, cwd: Path | None = None) -> list[str]:
    out = subprocess.run([*(python or [sys.executable]), str(ROOT / ".ci" / "gpu.py"), "--dry-run", *args],
                         capture_output=True, text=True, check=True, timeout=60, cwd=cwd).stdout
    return out.splitlines()


def line(lines: list[str], name: str) -> str:
    found = [l for l in lines if l.startswith(name + ":")]
    assert len(found) == 1, (name, lines)
    return found[0]


def test_dry_run_lists_tests_bench_and_chapters_1_to_5():
    lines = dry_run()
    assert lines[0].startswith("make gpu plan") and sys.executable in lines[0]
    tests = line(lines, "gpu tests")
    assert "-m gpu" in tests and f"[limit {gpu.TESTS_TIMEOUT_S:.0f} s]" in tests and "tests/test_gpu_zeta.py" in tests
    assert "test_notebooks.py" not in tests and "test_gpu_script.py" not in tests   # only files with GPU tests
    bench = line(lines, "bench")
    assert "--device cuda" in bench and "bfloat16" in bench and "--no-compiled" in bench and f"[limit {gpu.BENCH_TIMEOUT_S:.0f} s]" in bench
    assert "07_bench_" in bench and "_eager.json" in bench
    compiled = line(lines, "bench compiled")
    assert "--compiled" in compiled and "--batch 1024" in compiled and "_compiled.json" in compiled
    cost = line(lines, "step cost")
    assert "mixbook.bench.stepcost" in cost and "--device cuda" in cost and "07_stepcost_" in cost
    chapters = [l for l in lines if l.startswith("chapter ")]
    assert [l.split(":")[0] for l in chapters] == [f"chapter {p.stem}" for p in sorted((ROOT / "book").glob("0[1-5]_*.ipynb"))]
    assert all("-p device cuda" in l and "papermill" in l and "[limit its share of the rest]" in l for l in chapters)
    assert not any("skipped" in l for l in lines)
    assert lines[-1].startswith("then: compare check-cell verdicts")


def test_dry_run_without_papermill_skips_the_chapters_saying_why():
    lines = dry_run("--assume-missing", "papermill")
    assert "[limit" in line(lines, "gpu tests") and "[limit" in line(lines, "bench")
    chapters = [l for l in lines if l.startswith("chapter ")]
    assert len(chapters) == 5
    assert all(l.endswith(f"skipped — not importable with {sys.executable}: papermill") for l in chapters), chapters
    advice = line(lines, "chapters")
    assert "wheels" in advice and "pip download" in advice and "--no-index --find-links wheels papermill" in advice
    assert not any(l.startswith("then:") for l in lines)


def test_dry_run_without_pytest_skips_the_tests_saying_why():
    lines = dry_run("--assume-missing", "pytest", "scipy", "--chapters", "01")
    assert line(lines, "gpu tests") == (f"gpu tests: skipped — not importable with {sys.executable}: pytest; "
                                        + gpu.wheel_advice(["pytest"]))
    # scipy alone: the test files that import it are left out, the others run
    gpu.ASSUMED_MISSING.update({"scipy"})
    try:
        step = gpu.tests_step(sys.executable)
    finally:
        gpu.ASSUMED_MISSING.clear()
    assert step.cmd and "tests/test_gpu_zeta.py" not in step.cmd and "tests/test_gpu_graphs.py" in step.cmd
    assert "test_gpu_zeta.py (needs scipy)" in step.note


def test_dry_run_on_a_bare_python_without_venv_torch_or_cuda(tmp_path):
    """``python -S`` sees no site-packages: no torch, pytest, papermill or mixbook installed, as on a
    machine without .venv. The plan still prints, from another folder, and says what is missing."""
    lines = dry_run(python=[sys.executable, "-S"], cwd=tmp_path)
    assert lines[0].startswith("make gpu plan") and f"mixbook from {ROOT}" in lines[0]
    assert any(l.startswith("torch: not importable") and "exit 2" in l for l in lines)
    assert "skipped" in line(lines, "gpu tests") and "skipped" in line(lines, "bench")
    chapters = [l for l in lines if l.startswith("chapter ")]
    assert chapters and all("skipped — not importable" in l and "papermill" in l for l in chapters)


def test_dry_run_says_which_commit_results_record():
    assert line(dry_run("--commit", "abc1234", "--chapters", "01"), "commit recorded") == \
        "commit recorded: abc1234 (given: MIXBOOK_COMMIT)"


def test_every_step_has_a_time_limit_within_the_budget(monkeypatch):
    monkeypatch.setattr(gpu, "importable", lambda module: True)
    args = SimpleNamespace(chapters=list(gpu.DEFAULT_CHAPTERS), skip_tests=False, skip_bench=False, skip_chapters=False)
    steps, advice = gpu.plan(args, Path("/tmp/out"), "dev_2026-01-01")
    assert advice == "" and not any(s.skip for s in steps)
    fixed = [s for s in steps if not s.name.startswith("chapter ")]
    assert [s.name for s in fixed] == ["gpu tests", "bench", "bench compiled", "step cost"]
    assert all(s.timeout and s.timeout > 0 for s in fixed)
    # the chapters share what is left: at least two minutes of the 8-minute budget
    assert sum(s.timeout for s in fixed) <= gpu.BUDGET_S - 120 and gpu.BUDGET_S == 480
    assert all(s.timeout is None for s in steps if s.name.startswith("chapter "))


def test_steps_run_with_the_checkout_on_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = gpu.step_env("abc")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"] and env["MIXBOOK_COMMIT"] == "abc"
    found = subprocess.run([sys.executable, "-S", "-c", "import mixbook.bench as b; print(b.__file__)"],
                           env=env, cwd="/", capture_output=True, text=True)
    assert str(ROOT / "mixbook") in found.stdout + found.stderr     # found from the checkout (torch may be absent under -S)


def test_execute_reports_ok_failed_timed_out_and_skipped(tmp_path):
    py = sys.executable
    pidfile = tmp_path / "grandchild.pid"
    sleeper = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
               f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    steps = [gpu.Step("fine", [py, "-c", "pass"], 30),
             gpu.Step("broken", [py, "-c", "raise SystemExit(3)"], 30, note="a note"),
             gpu.Step("asleep", [py, "-c", sleeper], 11),
             gpu.Step("absent", skip="pytest is not importable"),
             gpu.Step("late", [py, "-c", "pass"], 30)]
    summary, failed, comparisons = gpu.execute(steps, 20, dict(os.environ), tmp_path)   # < 10 s left after "asleep"
    assert failed and comparisons == {}
    assert summary[0].startswith("fine: ok in ")
    assert summary[1].startswith("broken: FAILED (exit 3) in ") and summary[1].endswith("; a note")
    assert summary[2].startswith("asleep: TIMED OUT after ") and "(limit 11 s)" in summary[2]
    assert summary[3] == "absent: skipped — pytest is not importable"
    assert summary[4].startswith("late: skipped — ") and "left of the 20 s budget" in summary[4]
    pid = int(pidfile.read_text())                 # the step's own child was stopped with it
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a timed-out step left its child process running")


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


@pytest.mark.skipif(subprocess.run(["make", "--version"], capture_output=True).returncode != 0, reason="needs make")
def test_make_gpu_falls_back_to_the_installed_torch_without_a_venv(tmp_path):
    venv = tmp_path / "no-venv"
    plan = subprocess.run(["make", "--no-print-directory", "-n", "gpu", f"VENV={venv}", "PYTHON=python3"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert "PIP_RETRIES=0" in plan and "install" in plan                  # tries .venv first, failing fast
    assert f"py={venv}/bin/python;" in plan and "$py -c 'import torch'" in plan and "py=python3;" in plan
    assert f'PYTHONPATH="{ROOT}' in plan and ".ci/gpu.py" in plan
    dry = subprocess.run(["make", "--no-print-directory", "-n", "gpu", f"VENV={venv}", "GPU_ARGS=--dry-run"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "pip" not in dry and "--dry-run" in dry                         # a dry run installs nothing
    direct = subprocess.run(["make", "--no-print-directory", "-n", "gpu", "GPU_PYTHON=python3"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    assert direct.strip() == f'PYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" python3 .ci/gpu.py'
