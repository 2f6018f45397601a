#!/usr/bin/env python3
"""`make gpu`: the one prepared command for a machine with a CUDA device.

Runs, in this order, and prints a summary at the end:

1. ``pytest -m gpu`` (the GPU tests: no host syncs, CPU/CUDA agreement, dtypes);
2. the benchmark at GPU sizes (b = 32 and 1024, 32² and 224² images) in fp32 and bf16, every
   mixbook op eager and compiled (``torch.compile``), written with its provenance to
   ``book/results/07_bench_<device>.json``;
3. chapters 1–5 with their default parameters and ``device=cuda`` through papermill (outputs in
   a temporary folder, not over the committed notebooks), comparing every check-cell verdict
   line (``...: True`` / ``...: False``) with the committed CPU run's; the comparison is written
   to ``book/results/gpu_check_<device>.json``.

Exits non-zero if any step fails or any verdict differs from the CPU's. Note that CUDA's random
streams differ from the CPU's (see DESIGN.md), so a training verdict near its threshold may
legitimately differ; the summary lists every differing line so that a reader can tell which.

``--dry-run`` prints the plan (every command, in order) and runs nothing; ``--chapters`` picks
the chapters; ``--skip-tests`` / ``--skip-bench`` drop a step. Budget: about 8 minutes on one
H100/H200.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
RESULTS = BOOK / "results"
DEFAULT_CHAPTERS = ("01", "02", "03", "04", "05")
VERDICT = re.compile(r"^(.*):\s*(True|False)\s*$")


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


def plan(args: argparse.Namespace, out_dir: Path, slug: str) -> list[tuple[str, list[str]]]:
    py = sys.executable
    steps = []
    if not args.skip_tests:
        steps.append(("gpu tests", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")]))
    if not args.skip_bench:
        # b = 32 (per-call cost) and b = 1024 (bandwidth), each op eager and compiled: the compiled
        # variants compile once per op and case, so two batch sizes keep the step within budget
        steps.append(("bench", [py, "-m", "mixbook.bench", "--device", "cuda", "--dtype", "float32", "bfloat16",
                                "--batch", "32", "1024", "--compiled",
                                "--json", str(RESULTS / f"07_bench_{slug}.json")]))
    for path in chapter_paths(args.chapters):
        steps.append((f"chapter {path.stem}", [py, "-m", "papermill", str(path), str(out_dir / path.name),
                                               "-p", "device", "cuda", "--cwd", str(BOOK), "--no-progress-bar"]))
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--chapters", nargs="+", default=list(DEFAULT_CHAPTERS), help="chapter prefixes (default 01..05)")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-bench", action="store_true")
    args = p.parse_args(argv)

    slug = "cuda" if args.dry_run else device_slug()
    out_dir = Path(tempfile.mkdtemp(prefix="mixbook-gpu-")) if not args.dry_run else Path("<tmp>")
    steps = plan(args, out_dir, slug)
    if args.dry_run:
        for name, cmd in steps:
            print(f"{name}: {shlex.join(cmd)}")
        print(f"then: compare check-cell verdicts with the committed notebooks; write {RESULTS}/gpu_check_<device>.json")
        return 0

    import torch

    if not torch.cuda.is_available():
        print("make gpu: no CUDA device on this machine (see --dry-run for the plan)", file=sys.stderr)
        return 2
    summary, failed, comparisons = [], False, {}
    for name, cmd in steps:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        seconds = time.perf_counter() - t0
        line = f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s"
        if name.startswith("chapter ") and rc == 0:
            stem = name.split(" ", 1)[1]
            rows = compare_verdicts(BOOK / f"{stem}.ipynb", out_dir / f"{stem}.ipynb")
            comparisons[stem] = rows
            differ = [r for r in rows if not r["same"]]
            line += f"; verdicts: {len(rows) - len(differ)} of {len(rows)} as on the CPU"
            for r in differ:
                line += f"\n    differs: [cell {r['cell']}] {r['statement']}: cpu {r['cpu']}, gpu {r['gpu']}"
            rc = rc or (1 if differ else 0)
        failed |= rc != 0
        summary.append(line)
        print(line, flush=True)
    if comparisons:
        from mixbook.chapters import results

        rows = [{"chapter": stem, **r} for stem, rs in comparisons.items() for r in rs]
        written = results.save(RESULTS / f"gpu_check_{slug}.json", rows, {"chapters": args.chapters}, device="cuda")
        summary.append(f"verdict comparison written to {written}")
    print("\n== make gpu ==\n" + "\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
