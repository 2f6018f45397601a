#!/usr/bin/env python3
"""`make gpu`: the one prepared command for a machine with a CUDA device.

Runs, in this order, each step under a time limit, and prints a summary at the end that lists
every step as ok, FAILED, TIMED OUT or skipped (with the reason):

1. ``gpu tests``: ``pytest -m gpu`` on the test files that hold GPU tests (no host syncs, CPU/CUDA
   agreement, dtypes, NCCL); limit 150 s (about 90 s on an H200);
2. ``bench``: the benchmark at GPU sizes, eager: b = 32 and 1024, 32² and 224² images and the
   MultiMix embeddings, fp32 and bf16, to ``book/results/07_bench_<device>_<date>_eager.json``;
   limit 80 s;
3. ``bench compiled``: every mixbook op under ``torch.compile`` at the size where bandwidth counts
   (b = 1024, 224² images, bf16), to ``book/results/07_bench_<device>_<date>_compiled.json``;
   limit 70 s (each compiled case compiles every op afresh: all sizes compiled would not fit the
   budget). The two files of a run share its date and commit (chapter 7 shows them side by side);
4. ``step cost``: one CIFAR ResNet-18 training step (b = 128, SGD, channels_last) with every
   training method against ERM's, fp32 and bf16 (``python -m mixbook.bench.stepcost``; pairwise
   methods' target ≤ 1.03× ERM), to ``book/results/07_stepcost_<device>_<date>.json``; limit 50 s;
5. ``chapter NN_slug``: chapters 1–5 with their default parameters and ``device=cuda`` through
   papermill (outputs in a temporary folder, not over the committed notebooks), comparing every
   check-cell verdict line (``...: True`` / ``...: False``) with the committed CPU run's; the
   comparison is written to ``book/results/gpu_check_<device>.json``. The chapters share what
   is left of the budget: each gets the rest divided by the chapters still to run.

The whole run fits ``--budget`` seconds (default 480: 8 minutes on one H100/H200): no step starts
with less than 10 s left, and a step that reaches its limit is killed with its child processes
and reported as timed out.

It runs with the Python that runs it (``sys.executable``) and the torch installed there; it needs
no ``.venv`` and no installed mixbook: every step runs with the checkout on ``PYTHONPATH``. A step
whose tools cannot be imported with that Python is skipped, saying which: the tests without
pytest (or the test suite's hypothesis and pyyaml); a test file without an import it needs is left
out of the run; the chapters without papermill, ipykernel or a library the chapters import
(myst-nb, IPython, matplotlib, seaborn, scipy, scikit-learn, ...). A GPU machine often has CUDA
torch and pytest but no package index and no Jupyter stack: the plan then says how to bring
those packages as wheels.

Exits 0 when every step that ran passed (skipped steps are listed, not failures), 1 if a step
failed or timed out or a verdict differs from the CPU's, 2 without torch or a CUDA device (before
running anything). Note that CUDA's random streams differ from the CPU's (see DESIGN.md), so a
training verdict near its threshold may legitimately differ; the summary lists every differing line
so that a reader can tell which.

Results record the git commit of the checkout (:func:`mixbook.chapters.results.provenance`). A copy
without ``.git`` (an export) records none; ``--commit SHA`` records the commit it was exported from
(it sets ``MIXBOOK_COMMIT`` for every step).

Options: ``--dry-run`` prints the plan (the Python, every command with its time limit, which steps
would be skipped and why) and runs nothing, on any machine (no CUDA, no ``.venv`` needed);
``--chapters`` picks the chapters; ``--skip-tests`` / ``--skip-bench`` / ``--skip-chapters`` drop
steps; ``--budget`` sets the total seconds; ``--assume-missing MODULE ...`` plans as if those
modules could not be imported (to see what a bare machine would do).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
RESULTS = BOOK / "results"
TESTS = ROOT / "tests"
DEFAULT_CHAPTERS = ("01", "02", "03", "04", "05")
VERDICT = re.compile(r"^(.*):\s*(True|False)\s*$")
GPU_TEST = re.compile(r"pytest\.mark\.gpu\b")

BUDGET_S = 480.0
"""The whole run, in seconds: 8 minutes on one H100/H200."""
TESTS_TIMEOUT_S = 150.0
BENCH_TIMEOUT_S = 80.0
BENCH_COMPILED_TIMEOUT_S = 70.0
STEPCOST_TIMEOUT_S = 50.0
MIN_STEP_S = 10.0
"""No step starts with less than this left of the budget."""

CHAPTER_RUNNER = ("papermill", "ipykernel")
"""What runs a chapter, besides the chapters' own imports."""
PIP_NAMES = {"myst_nb": "myst-nb", "IPython": "ipython", "sklearn": "scikit-learn", "yaml": "pyyaml"}
"""Import names whose pip package is named otherwise."""

if str(ROOT) not in sys.path:     # `import mixbook` from this checkout, with or without an installed one
    sys.path.insert(0, str(ROOT))


@dataclass
class Step:
    """One step of the plan: its command and time limit, or why it is skipped."""

    name: str
    cmd: list[str] | None = None
    timeout: float | None = None    # seconds; None for a chapter: its share of what is left
    skip: str | None = None
    note: str = ""                  # said in the plan and the summary (e.g. test files left out)


# ---------------------------------------------------------------------- what this Python can import
ASSUMED_MISSING: set[str] = set()


def importable(module: str) -> bool:
    """Whether this Python (the one every step runs with) can import top-level ``module``, without
    importing it; ``--assume-missing`` names modules to treat as absent."""
    if module in ASSUMED_MISSING:
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _local(module: str) -> bool:
    return module == "mixbook" or (ROOT / module).is_dir() or (TESTS / f"{module}.py").is_file()


def _imports_of_source(source: str) -> set[str]:
    """Top-level module names that ``source`` imports unconditionally at module level (imports
    inside functions or ``try`` blocks are optional: not counted)."""
    lines = [l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))]   # notebook magics
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    """``names`` less the standard library and this project's own modules."""
    return {n for n in names if n not in sys.stdlib_module_names and not _local(n)}


def needs_of_file(path: Path) -> set[str]:
    """Third-party modules a test file (``.py``) or a chapter (``.ipynb``: every code cell) imports."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        names = set().union(*(_imports_of_source("".join(c["source"])) for c in cells if c["cell_type"] == "code"))
    else:
        names = _imports_of_source(path.read_text())
    return third_party(names)


def missing(modules) -> list[str]:
    return sorted((m for m in set(modules) if not importable(m)), key=str.lower)


def pip_names(modules) -> str:
    return " ".join(PIP_NAMES.get(m, m) for m in modules)


def wheel_advice(modules: list[str]) -> str:
    """How to bring ``modules`` to a machine without a package index, as wheels."""
    names = pip_names(modules)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    arch = platform.machine() or "x86_64"
    return (f"to run them here, bring them as wheels: on a machine with a package index, `python3 -m pip download "
            f"-d wheels --only-binary=:all: --python-version {ver} --platform manylinux_2_28_{arch} "
            f"--platform manylinux2014_{arch} {names}` (add -c constraints.txt for the book's versions, and "
            f"--platform manylinux_2_N_{arch} for a package it does not find); copy wheels/ here, then "
            f"`{shlex.quote(sys.executable)} -m pip install --no-index --find-links wheels {names}`")


# ---------------------------------------------------------------------- the steps
def device_slug() -> str:
    """A file-name-safe name of CUDA device 0, e.g. ``nvidia-h200``; ``"cuda"`` without torch's help."""
    try:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-cuda"
    except Exception:  # noqa: BLE001 - a name for a file, nothing depends on it
        name = "cuda"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cuda"


def chapter_paths(chapters: list[str]) -> list[Path]:
    paths = []
    for prefix in chapters:
        found = sorted(BOOK.glob(f"{prefix}_*.ipynb"))
        if len(found) != 1:
            raise SystemExit(f"--chapters: no single chapter book/{prefix}_*.ipynb (found {len(found)})")
        paths.append(found[0])
    return paths


def gpu_test_files() -> list[Path]:
    """The test files that hold GPU-marked tests (collecting only these keeps the notebook tests'
    imports, papermill and nbval, out of the GPU run)."""
    return [p for p in sorted(TESTS.glob("test_*.py")) if GPU_TEST.search(p.read_text())]


def tests_step(py: str) -> Step:
    need = {"pytest"} | needs_of_file(TESTS / "conftest.py")
    absent = missing(need)
    if absent:
        return Step("gpu tests", skip=f"not importable with {py}: {', '.join(absent)}; {wheel_advice(absent)}")
    files, left_out = [], []
    for path in gpu_test_files():
        gone = missing(needs_of_file(path))
        (left_out.append(f"{path.name} (needs {', '.join(gone)})") if gone else files.append(path))
    if not files:
        return Step("gpu tests", skip="no GPU test file can be imported here: " + "; ".join(left_out))
    cmd = [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *(str(p.relative_to(ROOT)) for p in files)]
    note = ("left out: " + "; ".join(left_out)) if left_out else ""
    return Step("gpu tests", cmd, TESTS_TIMEOUT_S, note=note)


def bench_steps(py: str, slug: str) -> list[Step]:
    need = third_party(set().union(*(_imports_of_source(f.read_text()) for f in (ROOT / "mixbook" / "bench").glob("*.py"))))
    absent = missing(need)
    if absent:
        why = f"not importable with {py}: {', '.join(absent)}"
        return [Step("bench", skip=why), Step("bench compiled", skip=why), Step("step cost", skip=why)]
    bench = [py, "-m", "mixbook.bench", "--device", "cuda"]
    # eager at every GPU size: per-call cost (b = 32) and bandwidth (b = 1024), small and large images
    eager = Step("bench", bench + ["--dtype", "float32", "bfloat16", "--batch", "32", "1024", "--image-size", "32", "224",
                                   "--no-compiled", "--json", str(RESULTS / f"07_bench_{slug}_eager.json")], BENCH_TIMEOUT_S)
    # compiled where bandwidth counts: every compiled case compiles each op afresh (~20 s a case)
    compiled = Step("bench compiled", bench + ["--dtype", "bfloat16", "--batch", "1024", "--image-size", "224",
                                               "--compiled", "--json", str(RESULTS / f"07_bench_{slug}_compiled.json")],
                    BENCH_COMPILED_TIMEOUT_S)
    # a CIFAR ResNet-18 training step with every method against ERM's (pairwise target <= 1.03x)
    stepcost = Step("step cost", [py, "-m", "mixbook.bench.stepcost", "--device", "cuda",
                                  "--json", str(RESULTS / f"07_stepcost_{slug}.json")], STEPCOST_TIMEOUT_S)
    return [eager, compiled, stepcost]


def chapter_steps(py: str, paths: list[Path], out_dir: Path) -> tuple[list[Step], str]:
    """One step a chapter, and (when they are skipped for missing modules) how to bring those."""
    need = set(CHAPTER_RUNNER).union(*(needs_of_file(p) for p in paths))
    absent = missing(need)
    steps = []
    for path in paths:
        if absent:
            steps.append(Step(f"chapter {path.stem}", skip=f"not importable with {py}: {', '.join(absent)}"))
        else:
            steps.append(Step(f"chapter {path.stem}", [py, "-m", "papermill", str(path), str(out_dir / path.name),
                                                       "-p", "device", "cuda", "--cwd", str(BOOK), "--no-progress-bar"]))
    return steps, (wheel_advice(absent) if absent else "")


def plan(args: argparse.Namespace, out_dir: Path, slug: str) -> tuple[list[Step], str]:
    """The steps, in order, and advice for skipped chapters (empty when none are skipped)."""
    py = sys.executable
    steps: list[Step] = []
    advice = ""
    paths = chapter_paths(args.chapters)      # an unknown chapter is refused even when chapters are skipped
    if not args.skip_tests:
        steps.append(tests_step(py))
    if not args.skip_bench:
        steps += bench_steps(py, slug)
    if not args.skip_chapters:
        chapter, advice = chapter_steps(py, paths, out_dir)
        steps += chapter
    return steps, advice


def step_env(commit: str | None) -> dict[str, str]:
    """The environment of every step: the checkout first on ``PYTHONPATH`` (``import mixbook`` works
    without an installed mixbook, and never picks another one), unbuffered output, the commit."""
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *rest])
    env["PYTHONUNBUFFERED"] = "1"
    if commit:
        env["MIXBOOK_COMMIT"] = commit
    return env


def commit_note(commit: str | None) -> str:
    """What the results will record as the commit, without importing torch."""
    if commit or os.environ.get("MIXBOOK_COMMIT"):
        return f"{commit or os.environ['MIXBOOK_COMMIT']} (given: MIXBOOK_COMMIT)"
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        top = head = None
    if top is not None and top.returncode == 0 and head.returncode == 0 and Path(top.stdout.strip()).resolve() == ROOT:
        return f"{head.stdout.strip()} (git)"
    return "none: this copy is not a git checkout of its own (pass --commit SHA to record the commit it came from)"


def run_step(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[int | None, float]:
    """Run ``cmd`` in its own process group; ``(exit status or None if it timed out, seconds)``.
    On the time limit the whole group is killed (pytest's distributed ranks, papermill's kernel)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    rc: int | None = None
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:                          # leave nothing of the step behind (ranks, kernels), whatever happened
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    return rc, time.perf_counter() - t0


# ---------------------------------------------------------------------- the verdicts
def verdicts(notebook: Path) -> list[tuple[int, str, str]]:
    """``(cell index, statement, "True"/"False")`` for every verdict line of every check cell."""
    nb = json.loads(Path(notebook).read_text())
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if not source.startswith("# NBVAL_CHECK_OUTPUT"):
            continue
        for o in cell.get("outputs", []):
            for line in "".join(o.get("text", "")).splitlines():
                m = VERDICT.match(line)
                if m:
                    out.append((i, m.group(1).strip(), m.group(2)))
    return out


def compare_verdicts(cpu: Path, gpu: Path) -> list[dict]:
    """Every verdict line, with the CPU's and the GPU's value (``None`` where one run lacks the line)."""
    a = {(i, s): v for i, s, v in verdicts(cpu)}
    b = {(i, s): v for i, s, v in verdicts(gpu)}
    rows = []
    for key in sorted(set(a) | set(b)):
        rows.append({"cell": key[0], "statement": key[1], "cpu": a.get(key), "gpu": b.get(key),
                     "same": a.get(key) == b.get(key)})
    return rows


def execute(steps: list[Step], budget: float, env: dict[str, str], out_dir: Path,
            ) -> tuple[list[str], bool, dict[str, list[dict]]]:
    """Run ``steps`` in order within ``budget`` seconds: ``(summary lines, whether any failed,
    verdict comparisons by chapter)``. A step runs under the smaller of its limit and what is left
    (a chapter: what is left divided by the chapters still to run); one that would start with
    less than :data:`MIN_STEP_S` left is skipped, saying so."""
    deadline = time.monotonic() + budget
    summary, failed, comparisons = [], False, {}
    chapters_left = sum(1 for s in steps if s.name.startswith("chapter ") and not s.skip)
    for step in steps:
        if step.skip:
            summary.append(f"{step.name}: skipped — {step.skip}")
            continue
        left = deadline - time.monotonic()
        is_chapter = step.name.startswith("chapter ")
        limit = left / max(chapters_left, 1) if is_chapter else min(step.timeout, left)
        chapters_left -= is_chapter
        if limit < MIN_STEP_S:
            summary.append(f"{step.name}: skipped — {max(left, 0):.0f} s left of the {budget:.0f} s budget")
            continue
        print(f"== {step.name} (limit {limit:.0f} s): {shlex.join(step.cmd)}", flush=True)
        rc, seconds = run_step(step.cmd, limit, env)
        if rc is None:
            line = f"{step.name}: TIMED OUT after {seconds:.0f} s (limit {limit:.0f} s), stopped"
        else:
            line = f"{step.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s"
        if step.note:
            line += f"; {step.note}"
        if is_chapter and rc == 0:
            stem = step.name.split(" ", 1)[1]
            rows = compare_verdicts(BOOK / f"{stem}.ipynb", out_dir / f"{stem}.ipynb")
            comparisons[stem] = rows
            differ = [r for r in rows if not r["same"]]
            line += f"; verdicts: {len(rows) - len(differ)} of {len(rows)} as on the CPU"
            for r in differ:
                line += f"\n    differs: [cell {r['cell']}] {r['statement']}: cpu {r['cpu']}, gpu {r['gpu']}"
            rc = 1 if differ else 0
        failed |= rc != 0
        summary.append(line)
        print(line, flush=True)
    return summary, failed, comparisons


# ---------------------------------------------------------------------- main
def print_plan(steps: list[Step], advice: str, args: argparse.Namespace) -> None:
    print(f"make gpu plan (--dry-run: nothing is run); python: {sys.executable} ({platform.python_version()}); "
          f"mixbook from {ROOT} (PYTHONPATH)")
    print(f"commit recorded: {commit_note(args.commit)}")
    if not importable("torch"):
        print(f"torch: not importable with {sys.executable}: make gpu would stop here (exit 2)")
    print(f"budget: {args.budget:.0f} s in all; no step starts with less than {MIN_STEP_S:.0f} s left; "
          "the chapters share what the steps before them leave")
    for s in steps:
        if s.skip:
            print(f"{s.name}: skipped — {s.skip}")
            continue
        limit = f"{s.timeout:.0f} s" if s.timeout is not None else "its share of the rest"
        print(f"{s.name}: [limit {limit}] {shlex.join(s.cmd)}")
        if s.note:
            print(f"    {s.note}")
    if advice:
        print(f"chapters: {advice}")
    if any(s.name.startswith("chapter ") and not s.skip for s in steps):
        print(f"then: compare check-cell verdicts with the committed notebooks; write {RESULTS}/gpu_check_<device>.json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--chapters", nargs="+", default=list(DEFAULT_CHAPTERS), help="chapter prefixes (default 01..05)")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--skip-chapters", action="store_true")
    p.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for the whole run (default {BUDGET_S:.0f})")
    p.add_argument("--commit", help="the commit to record in the results (sets MIXBOOK_COMMIT), for a copy without .git")
    p.add_argument("--assume-missing", nargs="+", default=[], metavar="MODULE",
                   help="plan as if these modules could not be imported (e.g. papermill pytest)")
    args = p.parse_args(argv)
    if args.budget <= 0:
        p.error("--budget must be > 0 seconds")
    ASSUMED_MISSING.clear()
    ASSUMED_MISSING.update(args.assume_missing)

    day = time.strftime("%Y-%m-%d", time.gmtime())
    if args.dry_run:
        steps, advice = plan(args, Path("<tmp>"), f"<device>_{day}")
        print_plan(steps, advice, args)
        return 0

    chapter_paths(args.chapters)                       # an unknown chapter is refused first
    if not importable("torch"):
        print(f"make gpu: torch is not importable with {sys.executable}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print("make gpu: no CUDA device on this machine (see --dry-run for the plan)", file=sys.stderr)
        return 2
    slug = device_slug()
    out_dir = Path(tempfile.mkdtemp(prefix="mixbook-gpu-"))
    steps, advice = plan(args, out_dir, f"{slug}_{day}")
    if args.commit:
        os.environ["MIXBOOK_COMMIT"] = args.commit      # the verdict comparison saved here records it too
    env = step_env(args.commit)
    print(f"make gpu: python {sys.executable} ({platform.python_version()}, torch {torch.__version__}), "
          f"mixbook from {ROOT}; commit recorded: {commit_note(args.commit)}", flush=True)
    t0 = time.monotonic()
    summary, failed, comparisons = execute(steps, args.budget, env, out_dir)
    if advice:
        summary.append(f"chapters: {advice}")
    if comparisons:
        from mixbook.chapters import results

        rows = [{"chapter": stem, **r} for stem, rs in comparisons.items() for r in rs]
        written = results.save(RESULTS / f"gpu_check_{slug}.json", rows, {"chapters": args.chapters}, device="cuda")
        summary.append(f"verdict comparison written to {written}")
    print(f"\n== make gpu: {time.monotonic() - t0:.0f} s of the {args.budget:.0f} s budget, python {sys.executable} ==\n"
          + "\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
