"""Recorded GPU runs of the benchmark, the step cost and the per-call profile, as tidy tables.

Chapter 7 ("Recorded GPU runs") shows what ``book/results/`` holds from runs on a GPU; nothing
here times anything. Three kinds of file, each with a ``provenance`` dict
(:func:`mixbook.chapters.results.provenance`'s fields; ``device_name``, ``date_utc`` and
``git_commit`` at least):

* ``07_bench_nvidia-*.json``: ``python -m mixbook.bench --json`` (``cases`` with their ``ops``,
  ``targets``, ``parameters``); a run's eager and compiled files share one key;
* ``07_profile_nvidia-*.json``: ``rows`` of microseconds per call of a variant (``variant``,
  ``us``; image rows with ``b``, ``side``, ``dtype``, ``fused_backend``, dense rows with ``b``,
  ``n``, ``d``) and, optionally, ``profiler_table``, the text of ``torch.profiler``'s table of
  ``parameters["profiled_calls"]`` calls;
* ``07_stepcost_*.json``: ``rows`` of a training step's time per ``precision`` and ``method``,
  with ``ratio_to_ERM``.

Every table carries ``run``, the key :func:`run_key` makes from the provenance (date and
commit), so a later run with the same commands appears beside the first one ("before" and
"after") as another column or row.

The bound of a pairwise mix with a random partner: it reads the batch twice (each example and its
partner) and writes it once, :data:`BOUND_COPIES` = 1.5 times the bytes of a copy (one read,
one write). Its time is at least 1.5 times that of a copy of the batch measured in the same run,
and the fraction of that bound an op reaches is :func:`bound_fraction`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BOUND_COPIES", "STEP_RATIO_TARGET", "PER_CALL_ROWS", "run_key", "read_records", "provenance_frame",
           "bench_frame", "profile_frame", "stepcost_frame", "bound_fraction", "per_call_table", "bound_table",
           "stepcost_table", "dense_table", "dense_parts_table", "parse_profiler_table", "launch_summary",
           "targets_frame", "provenance_markdown", "SUMMARY_KEYS", "summary", "verdicts", "PAIRWISE_METHODS",
           "claims"]

BENCH_PATTERN = "07_bench_nvidia-*.json"
PROFILE_PATTERN = "07_profile_nvidia-*.json"
STEPCOST_PATTERN = "07_stepcost_*.json"

BOUND_COPIES = 1.5
"""Bytes of a gather-and-interpolate ``lerp(x, x[perm], w)`` in copies of the batch: two reads and
one write, against a copy's one read and one write."""

STEP_RATIO_TARGET = 1.03
"""The design's limit for a pairwise method's training step, as a multiple of an ERM step."""

PER_CALL_ROWS: dict[str, tuple[str | None, str | None]] = {
    "mixbook MixUp(x, y)": ("mixbook.MixUp(x, y)", "mixbook_mixup"),
    "part: mixup.sample": ("mixup.sample", None),
    "part: Mixing.apply": ("Mixing.apply", None),
    "part: Mixing.targets": ("Mixing.targets", None),
    "torchvision v2.MixUp": ("torchvision v2.MixUp", "torchvision_mixup"),
    "timm Mixup, in place": (None, "timm_batch"),
    "timm Mixup, fresh clone": ("timm Mixup (in place, + clone)", "timm_batch_clone"),
    "minimal torch.lerp(x, x[perm], w)": ("minimal eager lerp(x, x[perm], w)", None),
    "copy x.clone()": ("copy x.clone()", "copy"),
}
"""Rows of :func:`per_call_table`: label -> (the profile's ``variant``, the bench's ``op``); ``None``
where that source does not time it. The bench's ``mixbook_mixup`` is ``mixup.sample`` +
``Mixing.apply`` + ``Mixing.targets``, the same work as the transform's call."""

_PROFILE_BOUND_VARIANTS = ("mixbook.MixUp(x, y)", "Mixing.apply", "minimal eager lerp(x, x[perm], w)",
                           "torchvision v2.MixUp", "timm Mixup (in place, + clone)")


def _pd():
    import pandas as pd

    return pd


def run_key(provenance: Mapping[str, Any]) -> str:
    """``"<date> <commit>"``: the UTC date (``YYYY-MM-DD``) and the first 10 characters of the commit
    (``+dirty`` when the checkout had uncommitted changes), e.g. ``"2026-12-04 bdb4e137dc"``.

    Raises:
        TypeError: ``provenance`` is not a mapping.
        ValueError: it lacks ``date_utc`` or ``git_commit``.
    """
    if not isinstance(provenance, Mapping):
        raise TypeError(f"provenance must be a mapping, got {type(provenance).__name__}")
    date, commit = provenance.get("date_utc"), provenance.get("git_commit")
    if not date or not commit:
        raise ValueError(f"provenance needs date_utc and git_commit, got date_utc={date!r}, git_commit={commit!r}")
    return f"{str(date)[:10]} {str(commit)[:10]}" + ("+dirty" if provenance.get("git_dirty") else "")


def read_records(directory: str | os.PathLike, pattern: str) -> list[tuple[str, dict[str, Any]]]:
    """``[(file name, record)]`` of the JSON files in ``directory`` matching ``pattern``, sorted by name.

    A missing directory gives ``[]``. A file without a ``provenance`` dict is a ``ValueError`` naming it.
    """
    out = []
    for f in sorted(Path(directory).glob(pattern)):
        record = json.loads(f.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("provenance"), dict):
            raise ValueError(f"{f} has no 'provenance' dict: not a recorded run")
        out.append((f.name, record))
    return out


def provenance_frame(directory: str | os.PathLike,
                     patterns: Sequence[str] = (BENCH_PATTERN, PROFILE_PATTERN, STEPCOST_PATTERN)) -> Any:
    """One row per recorded file: ``run``, ``file``, ``device``, ``date``, ``commit``, ``torch``,
    ``cuda``, ``command`` and ``note`` (what was done to the file by hand, if anything)."""
    pd = _pd()
    rows = []
    for pattern in patterns:
        for name, rec in read_records(directory, pattern):
            p = rec["provenance"]
            rows.append({"run": run_key(p), "file": name, "device": p.get("device_name"),
                         "date": str(p.get("date_utc"))[:10], "commit": str(p.get("git_commit"))[:10],
                         "torch": p.get("torch"), "cuda": p.get("cuda"), "command": p.get("command"),
                         "note": p.get("note")})
    return pd.DataFrame(rows, columns=["run", "file", "device", "date", "commit", "torch", "cuda", "command", "note"])


def provenance_markdown(directory: str | os.PathLike) -> str:
    """A Markdown list of the recorded runs, one item each: run key, device, date, commit, torch and
    CUDA versions, its files, and the note of what was done to them by hand; a sentence saying that
    nothing is recorded when the folder holds none."""
    frame = provenance_frame(directory)
    if frame.empty:
        return ("**No GPU run is recorded yet** (`book/results/` holds no `" + BENCH_PATTERN + "`, `" + PROFILE_PATTERN
                + "` or `" + STEPCOST_PATTERN + "`): the tables below are empty.")
    lines = []
    for run, sub in frame.groupby("run", sort=True):
        r = sub.iloc[0]
        notes = sorted(set(sub["note"].dropna()))
        line = (f"- **{run}**: {r['device']}, {r['date']}, commit `{r['commit']}`, torch {r['torch']}"
                + (f", CUDA {r['cuda']}" if r["cuda"] else "") + "; files " + ", ".join(f"`{f}`" for f in sub["file"]) + ".")
        lines.append(line + "".join(f" Note: {n}." for n in notes))
    return "\n".join(lines)


def bench_frame(directory: str | os.PathLike, pattern: str = BENCH_PATTERN) -> Any:
    """Every op of every case of the recorded bench files, one row each.

    Columns: ``run``, ``device``, ``file``, ``compiled_run`` (the file's ``parameters.compiled``),
    ``case``, ``kind``, ``batch``, ``shape`` (e.g. ``"3x224x224"``), ``dtype``, ``n``, ``op``,
    ``role``, ``family``, ``us`` (median µs of one call), ``copy_fraction`` (as recorded: the op's
    GB/s over the copy's), ``dispatched_ops`` and ``note``. Read from ``cases`` (what
    ``python -m mixbook.bench --json`` writes), so a file without ``rows`` is read too.
    """
    pd = _pd()
    rows = []
    for name, rec in read_records(directory, pattern):
        prov = rec["provenance"]
        for case in rec.get("cases", []):
            for op, r in case.get("ops", {}).items():
                rows.append({"run": run_key(prov), "device": prov.get("device_name"), "file": name,
                             "compiled_run": bool(rec.get("parameters", {}).get("compiled")),
                             "case": case["name"], "kind": case.get("kind"), "batch": case.get("batch"),
                             "shape": "x".join(str(s) for s in case.get("shape", [])), "dtype": case.get("dtype"),
                             "n": case.get("n"), "op": op, "role": r.get("role"), "family": r.get("family"),
                             "us": 1e6 * r["median_s"], "copy_fraction": r.get("copy_fraction"),
                             "dispatched_ops": r.get("dispatched_ops"), "note": r.get("note", "")})
    columns = ["run", "device", "file", "compiled_run", "case", "kind", "batch", "shape", "dtype", "n", "op", "role",
               "family", "us", "copy_fraction", "dispatched_ops", "note"]
    return pd.DataFrame(rows, columns=columns)


def profile_frame(directory: str | os.PathLike, pattern: str = PROFILE_PATTERN) -> Any:
    """The recorded per-call times, one row per (run, case, backend, variant).

    Columns: ``run``, ``device``, ``file``, ``b``, ``side``, ``dtype`` (``"float32"``, not
    ``"torch.float32"``), ``fused_backend``, ``n``, ``d`` (dense rows), ``variant`` and ``us``.
    """
    pd = _pd()
    rows = []
    for name, rec in read_records(directory, pattern):
        prov = rec["provenance"]
        for r in rec.get("rows", []):
            dtype = r.get("dtype")
            rows.append({"run": run_key(prov), "device": prov.get("device_name"), "file": name, "b": r.get("b"),
                         "side": r.get("side"), "dtype": dtype.removeprefix("torch.") if isinstance(dtype, str) else None,
                         "fused_backend": r.get("fused_backend"), "n": r.get("n"), "d": r.get("d"),
                         "variant": r["variant"], "us": float(r["us"])})
    return pd.DataFrame(rows, columns=["run", "device", "file", "b", "side", "dtype", "fused_backend", "n", "d",
                                       "variant", "us"])


def stepcost_frame(directory: str | os.PathLike, pattern: str = STEPCOST_PATTERN) -> Any:
    """The recorded training steps: ``run``, ``device``, ``file``, ``batch``, ``classes``, ``precision``,
    ``method``, ``ms`` and ``ratio_to_ERM`` (``error`` where a method failed to run).

    ``batch`` and ``classes`` are read from the file's top level (a copied step-cost script's output)
    or from its ``parameters`` (``batch``, ``num_classes``: ``python -m mixbook.bench.stepcost``)."""
    pd = _pd()
    rows = []
    for name, rec in read_records(directory, pattern):
        prov, params = rec["provenance"], rec.get("parameters") or {}
        for r in rec.get("rows", []):
            rows.append({"run": run_key(prov), "device": prov.get("device_name"), "file": name,
                         "batch": rec.get("batch", params.get("batch")),
                         "classes": rec.get("classes", params.get("num_classes")), "precision": r.get("precision"),
                         "method": r.get("method"),
                         "ms": r.get("ms"), "ratio_to_ERM": r.get("ratio_to_ERM"), "error": r.get("error")})
    return pd.DataFrame(rows, columns=["run", "device", "file", "batch", "classes", "precision", "method", "ms",
                                       "ratio_to_ERM", "error"])


def bound_fraction(t_copy: float, t_op: float) -> float:
    """The fraction of the gather-and-interpolate bound an op reaches: ``1.5 · t_copy / t_op``.

    ``t_copy`` is the time of a copy of the batch (one read, one write), ``t_op`` the op's, measured
    in the same run; 1 means the op moves its two reads and one write at a copy's bandwidth.

    Raises:
        ValueError: a time is not a positive finite number.
    """
    for name, t in (("t_copy", t_copy), ("t_op", t_op)):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"{name} must be a positive finite time, got {t!r}")
    return BOUND_COPIES * float(t_copy) / float(t_op)


def _ordered_runs(frames: Iterable[Any]) -> list[str]:
    return sorted({r for f in frames if len(f) for r in f["run"].unique()})


def per_call_table(bench: Any, profile: Any, *, batch: int = 32, side: int = 32, dtype: str = "float32") -> Any:
    """µs per call of mixbook's ``MixUp`` and its peers at one size, one row per :data:`PER_CALL_ROWS` label.

    Columns ``(run, timing)``: ``"profile, fused auto"`` and ``"profile, fused eager"`` (the
    profile file's rows with ``mixbook.fused`` on each backend) and ``"bench"`` (the bench's eager
    file, default backend). A cell a source does not time is NaN.
    """
    pd = _pd()
    cols: dict[tuple[str, str], dict[str, float]] = {}
    for run in _ordered_runs([bench, profile]):
        if len(profile):
            p = profile[(profile.run == run) & (profile.b == batch) & (profile.side == side) & (profile["dtype"] == dtype)]
            for backend in sorted(p.fused_backend.dropna().unique()):
                sub = p[p.fused_backend == backend].set_index("variant")["us"]
                cols[(run, f"profile, fused {backend}")] = {
                    label: float(sub[v]) for label, (v, _) in PER_CALL_ROWS.items() if v is not None and v in sub.index}
        if len(bench):
            case = f"image3x{side}x{side}_b{batch}_{dtype}"
            b = bench[(bench["run"] == run) & (bench["case"] == case) & ~bench["compiled_run"].astype(bool)]
            b = b.set_index("op")["us"]
            if len(b):
                cols[(run, "bench")] = {label: float(b[o]) for label, (_, o) in PER_CALL_ROWS.items()
                                        if o is not None and o in b.index}
    table = pd.DataFrame(cols, index=list(PER_CALL_ROWS))
    table.columns = pd.MultiIndex.from_tuples(list(cols), names=["run", "timing"]) if cols else table.columns
    table.index.name = f"µs per call, b = {batch}, 3×{side}², {dtype}"
    return table


def bound_table(bench: Any, profile: Any, *, batch: int = 1024, side: int = 224,
                exclude: Sequence[str] = ("cutmix", "elem")) -> Any:
    """Every pairwise op at the large cases against a copy of the same batch in the same run.

    One row per (run, dtype, timing, op): ``µs``, ``copy µs`` (the same file and case, or the same
    profile backend), ``copy %`` (the bench's recorded "copy %", the op's bandwidth over a copy's,
    which counts the labels and soft targets too; for the profile's rows, which record no bytes,
    100 · t_copy / t_op) and ``% of bound`` = 100 · :func:`bound_fraction` (times only). ``timing`` is
    ``"bench, eager run"``/``"bench, compiled run"`` (the file's ``--compiled``) or
    ``"profile, fused <backend>"``. Bench ops whose name holds a string of ``exclude`` are
    left out (CutMix pastes a box instead of interpolating; timm's ``elem`` mode is a Python loop).
    """
    pd = _pd()
    rows = []
    shape = f"3x{side}x{side}"
    if len(bench):
        big = bench[(bench.family.isin(["pairwise", "copy"])) & (bench.batch == batch) & (bench["shape"] == shape)]
        for run, case, ops, t_copy, timing in _cases_against(big, "copy"):
            for op, r in ops.iterrows():
                if op == "copy" or any(s in op for s in exclude):
                    continue
                recorded = r["copy_fraction"]
                rows.append({"run": run, "dtype": r["dtype"], "timing": timing, "op": op, "µs": float(r["us"]),
                             "copy µs": t_copy, "copy %": None if recorded is None or pd.isna(recorded)
                             else 100 * float(recorded)})
    if len(profile):
        big = profile[(profile.b == batch) & (profile.side == side)]
        for (run, dtype, backend), sub in big.groupby(["run", "dtype", "fused_backend"], sort=False):
            v = sub.set_index("variant")["us"]
            if "copy x.clone()" not in v.index:
                continue
            for variant in _PROFILE_BOUND_VARIANTS:
                if variant in v.index:
                    rows.append({"run": run, "dtype": dtype, "timing": f"profile, fused {backend}", "op": variant,
                                 "µs": float(v[variant]), "copy µs": float(v["copy x.clone()"]), "copy %": None})
    table = pd.DataFrame(rows, columns=["run", "dtype", "timing", "op", "µs", "copy µs", "copy %"])
    table["copy %"] = table["copy %"].astype(float).fillna(100 * table["copy µs"] / table["µs"])
    table["% of bound"] = [100 * bound_fraction(c, t) for c, t in zip(table["copy µs"], table["µs"])]
    return table.sort_values(["run", "dtype", "timing"], kind="stable").set_index(["run", "dtype", "timing", "op"])


def _cases_against(bench: Any, baseline: str) -> Any:
    """``(run, case, ops, baseline µs, timing)`` for every (run, file, case) of ``bench`` that timed
    ``baseline``: ``ops`` indexed by op name, ``timing`` "bench, compiled run" or "bench, eager run"."""
    for (run, _file, case), sub in bench.groupby(["run", "file", "case"], sort=False):
        ops = sub.set_index("op")
        if baseline in ops.index:
            timing = "bench, compiled run" if bool(ops["compiled_run"].iloc[0]) else "bench, eager run"
            yield run, case, ops, float(ops.loc[baseline, "us"]), timing


def stepcost_table(stepcost: Any) -> Any:
    """A training step of each method relative to ERM's: rows ``method`` (in recorded order), columns
    ``(run, precision)``."""
    pd = _pd()
    ok = stepcost[stepcost.ratio_to_ERM.notna()]
    if ok.empty:
        return pd.DataFrame()
    table = ok.pivot_table(index="method", columns=["run", "precision"], values="ratio_to_ERM", sort=False)
    return table.reindex(columns=sorted(table.columns, key=lambda c: (c[0], list(ok.precision.unique()).index(c[1]))))


def dense_table(bench: Any) -> Any:
    """Every dense mixbook op (ζ-mixup, MultiMix; eager and compiled) against one matmul of its case's
    shape in the same file: rows ``(run, timing, case, op)`` (``timing`` as in :func:`bound_table`),
    columns ``µs``, ``matmul µs`` and ``× matmul``."""
    pd = _pd()
    rows = []
    if len(bench):
        dense = bench[bench.family == "dense"]
        for run, case, ops, t_mm, timing in _cases_against(dense, "matmul"):
            for op, r in ops[ops.role == "mixbook"].iterrows():
                rows.append({"run": run, "timing": timing, "case": case, "op": op, "µs": float(r["us"]),
                             "matmul µs": t_mm, "× matmul": float(r["us"]) / t_mm})
    table = pd.DataFrame(rows, columns=["run", "timing", "case", "op", "µs", "matmul µs", "× matmul"])
    return table.sort_values(["run", "timing"], kind="stable").set_index(["run", "timing", "case", "op"])


def dense_parts_table(profile: Any) -> Any:
    """Where a dense mix's time goes (the profile's dense rows): rows ``(run, b, n, d)``, columns µs of
    ``matmul W@z``, each method's ``sample`` and ``apply``, and their sum over the matmul (``× matmul``)."""
    pd = _pd()
    if profile.empty:
        return pd.DataFrame()
    dense = profile[profile["n"].notna()]
    rows = []
    for (run, b, n, d), sub in dense.groupby(["run", "b", "n", "d"], sort=False):
        v = sub.set_index("variant")["us"]
        mm = float(v.get("matmul W@z", float("nan")))
        row = {"run": run, "b": int(b), "n": int(n), "d": int(d), "matmul µs": mm}
        for method, label in (("multimix", "MultiMix"), ("zeta", "ζ-mixup")):
            s = float(v.get(f"{method}.sample", float("nan")))
            a = float(v.get(f"{method} Mixing.apply", float("nan")))
            row.update({f"{label} sample µs": s, f"{label} apply µs": a, f"{label} × matmul": (s + a) / mm})
        row["torch Dirichlet µs"] = float(v.get("torch Dirichlet(1) n x b", float("nan")))
        rows.append(row)
    return pd.DataFrame(rows).set_index(["run", "b", "n", "d"])


_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "ns": 1e-3}


def _us(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(ns|us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"not a profiler time: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_profiler_table(text: str) -> Any:
    """``torch.profiler``'s ``key_averages().table()`` as a DataFrame.

    Columns: ``name``, ``self_cpu_us``, ``cpu_total_us``, ``cpu_avg_us``, ``self_cuda_us``,
    ``cuda_total_us``, ``calls``; ``attrs["self_cpu_total_us"]`` and ``attrs["self_cuda_total_us"]``
    from its footer. Rows are read from the right (the name column may hold spaces); a table without
    the CUDA columns (a CPU profile) gets NaN there.
    """
    pd = _pd()
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    rows, totals = [], {}
    for line in text.splitlines():
        m = re.match(r"\s*Self (CPU|CUDA) time total:\s*(\S+)", line)
        if m:
            totals[f"self_{m.group(1).lower()}_total_us"] = _us(m.group(2))
            continue
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) < 7 or not parts[-1].isdigit():
            continue
        name, values = parts[0], parts[1:]
        if len(values) == 10:     # CPU and CUDA columns
            rows.append({"name": name, "self_cpu_us": _us(values[1]), "cpu_total_us": _us(values[3]),
                         "cpu_avg_us": _us(values[4]), "self_cuda_us": _us(values[5]),
                         "cuda_total_us": _us(values[7]), "calls": int(values[9])})
        elif len(values) == 6:    # CPU only
            rows.append({"name": name, "self_cpu_us": _us(values[1]), "cpu_total_us": _us(values[3]),
                         "cpu_avg_us": _us(values[4]), "self_cuda_us": float("nan"),
                         "cuda_total_us": float("nan"), "calls": int(values[5])})
    table = pd.DataFrame(rows, columns=["name", "self_cpu_us", "cpu_total_us", "cpu_avg_us", "self_cuda_us",
                                        "cuda_total_us", "calls"])
    table.attrs.update(totals)
    return table


def launch_summary(table: Any, calls: int) -> dict[str, float]:
    """Kernel launches in a profiler table of ``calls`` calls (:func:`parse_profiler_table`).

    Returns ``launches_per_call`` (``cudaLaunchKernel`` plus ``cuLaunchKernel``, the latter Triton's),
    ``cpu_us_per_launch`` (their self CPU time over their count), ``gpu_us_per_call`` (all kernels'
    self CUDA time over ``calls``) and ``cpu_us_per_call`` (self CPU time over ``calls``,
    profiler overhead included).

    Raises:
        ValueError: ``calls`` is not a positive int, or the table has no launch rows.
    """
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls must be a positive int, got {calls!r}")
    launches = table[table["name"].isin(["cudaLaunchKernel", "cuLaunchKernel"])]
    if launches.empty:
        raise ValueError("the profiler table has no cudaLaunchKernel/cuLaunchKernel rows")
    n = int(launches["calls"].sum())
    return {"launches_per_call": n / calls, "cpu_us_per_launch": float(launches["self_cpu_us"].sum()) / n,
            "gpu_us_per_call": table.attrs.get("self_cuda_total_us", float("nan")) / calls,
            "cpu_us_per_call": table.attrs.get("self_cpu_total_us", float("nan")) / calls}


def _first(frame: Any, **where: Any) -> float:
    """The ``us`` of the first row of ``frame`` matching ``where`` (NaN if none)."""
    if frame is None or len(frame) == 0:
        return float("nan")
    sub = frame
    for k, v in where.items():
        sub = sub[sub[k] == v]
    return float(sub["us"].iloc[0]) if len(sub) else float("nan")


def targets_frame(directory: str | os.PathLike, pattern: str = BENCH_PATTERN) -> Any:
    """The bench's own target checks as the recorded files hold them: ``run``, ``file`` and the
    ``targets`` entries (``name``, ``case``, ``measured``, ``target``, ``pass``, ``note``)."""
    pd = _pd()
    rows = [{"run": run_key(rec["provenance"]), "file": name, **t}
            for name, rec in read_records(directory, pattern) for t in rec.get("targets", [])]
    return pd.DataFrame(rows, columns=["run", "file", "name", "case", "measured", "target", "pass", "note"])


def _copy_target(directory: str | os.PathLike, run: str) -> float:
    """The bench's "≥ x of copy bandwidth" bound for pairwise ops, as recorded (NaN if absent)."""
    t = targets_frame(directory)
    t = t[(t["run"] == run) & t["name"].str.contains("of copy bandwidth", regex=False)]
    for text in t["target"]:
        m = re.fullmatch(r">=\s*([0-9.]+)", str(text).strip())
        if m:
            return float(m.group(1))
    return float("nan")


SUMMARY_KEYS = (
    "mixup_auto_us", "mixup_eager_us", "apply_small_auto_us", "apply_small_eager_us", "tv_us", "timm_clone_us", "lerp_us", "copy_us", "sample_us",
    "mixup_vs_timm_auto", "mixup_vs_timm_eager", "timm_inplace_us", "bench_mixup_us", "bench_timm_clone_us",
    "bench_vs_timm", "bench_over_profile_min", "bench_over_profile_max", "dispatched_ops", "us_per_op",
    "copy_fp32_us", "copy_bf16_us", "bench_mixup_large_fp32_us", "bench_mixup_large_bf16_us",
    "bound_fp32_eager_pct", "bound_bf16_eager_pct", "bound_fp32_compiled_pct", "bound_bf16_compiled_pct",
    "apply_fp32_auto_pct", "apply_bf16_auto_pct", "apply_fp32_eager_pct", "apply_bf16_eager_pct",
    "lerp_fp32_pct", "lerp_bf16_pct", "peer_bound_max_pct", "bound_max_pct", "ceiling_copy_pct",
    "copy_target_pct", "copy_target_bound_pct", "step_batch", "step_classes", "erm_ms", "mixup_step_fp32", "mixup_step_bf16", "step_ratio_min",
    "step_ratio_max", "mixup_extra_ms", "mixup_extra_pct", "step_target", "launches_per_call", "cpu_us_per_launch",
    "gpu_us_per_call", "cpu_us_per_call", "gpu_call_pct", "arith_us", "arith_pct", "multimix_x_matmul_min",
    "multimix_x_matmul_max", "zeta_x_matmul_min", "zeta_x_matmul_max", "multimix_sample_us_min",
    "multimix_sample_us_max", "zeta_sample_us_min", "zeta_sample_us_max", "apply_dense_us_min",
    "apply_dense_us_max", "matmul_us_min", "matmul_us_max",
)
"""The numeric keys of :func:`summary`, NaN where a run lacks the measurement."""


def summary(directory: str | os.PathLike, run: str | None = None) -> dict[str, Any]:
    """The figures chapter 7's prose quotes from one recorded run (default: the earliest).

    Returns ``run``, ``device``, ``date``, ``commit`` and ``torch`` (``None`` when nothing is
    recorded) and every key of :data:`SUMMARY_KEYS`:

    * b = 32, 3×32², fp32, the profile: µs of ``MixUp(x, y)`` on each ``fused`` backend
      (``mixup_auto_us``, ``mixup_eager_us``) and, beside the ``auto`` one, of torchvision, timm on a
      fresh clone, the minimal lerp, a copy and ``mixup.sample``; ``mixup_vs_timm_{auto,eager}``;
      ``apply_small_{auto,eager}_us`` (``Mixing.apply`` alone on each backend);
      the bench (its eager file): ``timm_inplace_us``, ``bench_mixup_us``, ``bench_timm_clone_us``,
      ``bench_vs_timm``, ``bench_over_profile_{min,max}`` (the bench's time over the profile's for the
      ops both time), ``dispatched_ops`` (ATen operators of one ``mixbook_mixup`` call) and
      ``us_per_op`` (the eager call's µs over them);
    * b = 1024, 3×224²: the bench's copy and eager mix (``copy_*_us``, ``bench_mixup_large_*_us``),
      ``% of bound`` (:func:`bound_table`) of the bench's ``mixbook_mixup`` eager and compiled, of the
      profile's ``Mixing.apply`` per backend and minimal lerp, the peers' best
      (``peer_bound_max_pct``) and the largest (``bound_max_pct``); ``ceiling_copy_pct`` = 100 / 1.5
      (the copy fraction of a three-pass op at a copy's bandwidth), ``copy_target_pct`` (the bench's
      recorded target) and ``copy_target_bound_pct`` (that target as a fraction of the bound);
    * the step: ``step_batch``, ``step_classes``, ``erm_ms`` (fp32), ``mixup_step_{fp32,bf16}``, ``step_ratio_{min,max}`` over the
      methods and precisions, ``mixup_extra_ms``/``mixup_extra_pct`` (fp32), ``step_target``
      (:data:`STEP_RATIO_TARGET`);
    * launches (:func:`launch_summary` of the profiled calls), ``gpu_call_pct`` (their GPU time as a
      share of the ERM step), ``arith_us``/``arith_pct`` (1.5 copies of a b = 128, 3×32², fp32 batch at
      the copy bandwidth of the largest fp32 case, and its share of the ERM step);
    * dense: ``{multimix,zeta}_x_matmul_{min,max}`` (the bench, eager and compiled files),
      ``{multimix,zeta}_sample_us_{min,max}``, ``apply_dense_us_{min,max}`` and ``matmul_us_{min,max}``
      (the profile).

    Raises:
        ValueError: ``run`` is given and not recorded in ``directory``.
    """
    nan = float("nan")
    out: dict[str, Any] = {"run": None, "device": None, "date": None, "commit": None, "torch": None}
    out.update({k: nan for k in SUMMARY_KEYS})
    bench, profile, step = bench_frame(directory), profile_frame(directory), stepcost_frame(directory)
    runs = _ordered_runs([bench, profile, step])
    if run is not None and run not in runs:
        raise ValueError(f"run {run!r} is not recorded in {directory}; recorded: {runs}")
    if not runs:
        return out
    run = runs[0] if run is None else run
    prov = provenance_frame(directory)
    p = prov[prov["run"] == run].iloc[0]
    out.update(run=run, device=p["device"], date=p["date"], commit=p["commit"], torch=p["torch"])
    bench, profile, step = bench[bench["run"] == run], profile[profile["run"] == run], step[step["run"] == run]
    eager_bench = bench[~bench["compiled_run"].astype(bool)]

    small = dict(b=32, side=32, dtype="float32")
    for backend in ("auto", "eager"):
        out[f"mixup_{backend}_us"] = _first(profile, **small, fused_backend=backend, variant="mixbook.MixUp(x, y)")
        timm = _first(profile, **small, fused_backend=backend, variant="timm Mixup (in place, + clone)")
        out[f"mixup_vs_timm_{backend}"] = out[f"mixup_{backend}_us"] / timm
        out[f"apply_small_{backend}_us"] = _first(profile, **small, fused_backend=backend, variant="Mixing.apply")
    for key, variant in (("tv_us", "torchvision v2.MixUp"), ("timm_clone_us", "timm Mixup (in place, + clone)"),
                         ("lerp_us", "minimal eager lerp(x, x[perm], w)"), ("copy_us", "copy x.clone()"),
                         ("sample_us", "mixup.sample")):
        out[key] = _first(profile, **small, fused_backend="auto", variant=variant)
    case = "image3x32x32_b32_float32"
    out["timm_inplace_us"] = _first(eager_bench, case=case, op="timm_batch")
    out["bench_mixup_us"] = _first(eager_bench, case=case, op="mixbook_mixup")
    out["bench_timm_clone_us"] = _first(eager_bench, case=case, op="timm_batch_clone")
    out["bench_vs_timm"] = out["bench_mixup_us"] / out["bench_timm_clone_us"]
    per_call = per_call_table(bench, profile)
    if (run, "bench") in per_call.columns and (run, "profile, fused auto") in per_call.columns:
        ratio = (per_call[(run, "bench")] / per_call[(run, "profile, fused auto")]).dropna()
        if len(ratio):
            out["bench_over_profile_min"], out["bench_over_profile_max"] = float(ratio.min()), float(ratio.max())
    d = eager_bench[(eager_bench["case"] == case) & (eager_bench["op"] == "mixbook_mixup")]["dispatched_ops"]
    if len(d) and not math.isnan(d.iloc[0]):
        out["dispatched_ops"] = int(d.iloc[0])
        out["us_per_op"] = out["mixup_eager_us"] / out["dispatched_ops"]

    bound = bound_table(bench, profile)

    def pct(dtype: str, timing: str, op: str, column: str = "% of bound") -> float:
        idx = (run, dtype, timing, op)
        return float(bound.loc[idx, column]) if idx in bound.index else nan

    for dt, short in (("float32", "fp32"), ("bfloat16", "bf16")):
        large = f"image3x224x224_b1024_{dt}"
        out[f"copy_{short}_us"] = _first(eager_bench, case=large, op="copy")
        out[f"bench_mixup_large_{short}_us"] = _first(eager_bench, case=large, op="mixbook_mixup")
        out[f"bound_{short}_eager_pct"] = pct(dt, "bench, eager run", "mixbook_mixup")
        out[f"bound_{short}_compiled_pct"] = pct(dt, "bench, compiled run", "mixbook_mixup_compiled")
        for backend in ("auto", "eager"):
            out[f"apply_{short}_{backend}_pct"] = pct(dt, f"profile, fused {backend}", "Mixing.apply")
        out[f"lerp_{short}_pct"] = pct(dt, "profile, fused eager", "minimal eager lerp(x, x[perm], w)")
    if len(bound):
        peers = bound[[op in ("torchvision_mixup", "timm_batch", "timm_batch_clone")
                       for op in bound.index.get_level_values("op")]]
        out["peer_bound_max_pct"] = float(peers["% of bound"].max()) if len(peers) else nan
        out["bound_max_pct"] = float(bound["% of bound"].max())
    out["ceiling_copy_pct"] = 100 / BOUND_COPIES
    out["copy_target_pct"] = 100 * _copy_target(directory, run)
    out["copy_target_bound_pct"] = out["copy_target_pct"] * BOUND_COPIES

    ok = step[step["ratio_to_ERM"].notna() & (step["method"] != "ERM")]
    erm = step[(step["method"] == "ERM") & (step["precision"] == "fp32")]["ms"]
    out["erm_ms"] = float(erm.iloc[0]) if len(erm) else nan
    for key, column in (("step_batch", "batch"), ("step_classes", "classes")):
        values = step[column].dropna()
        out[key] = int(values.iloc[0]) if len(values) else nan
    for prec in ("fp32", "bf16"):
        m = step[(step["method"] == "mixup") & (step["precision"] == prec)]
        out[f"mixup_step_{prec}"] = float(m["ratio_to_ERM"].iloc[0]) if len(m) else nan
        if prec == "fp32" and len(m):
            out["mixup_extra_ms"] = float(m["ms"].iloc[0]) - out["erm_ms"]
            out["mixup_extra_pct"] = 100 * out["mixup_extra_ms"] / out["erm_ms"]
    if len(ok):
        out["step_ratio_min"], out["step_ratio_max"] = float(ok["ratio_to_ERM"].min()), float(ok["ratio_to_ERM"].max())
    out["step_target"] = STEP_RATIO_TARGET

    for _, rec in read_records(directory, PROFILE_PATTERN):
        calls = rec.get("parameters", {}).get("profiled_calls")
        if run_key(rec["provenance"]) == run and rec.get("profiler_table") and isinstance(calls, int) and calls > 0:
            out.update(launch_summary(parse_profiler_table(rec["profiler_table"]), calls))
    out["gpu_call_pct"] = 100 * out["gpu_us_per_call"] / (1e3 * out["erm_ms"])
    copies = eager_bench[(eager_bench["op"] == "copy") & (eager_bench["dtype"] == "float32")]
    if len(copies):
        r = copies.assign(size=copies["batch"] * [math.prod(int(v) for v in sh.split("x")) for sh in copies["shape"]]
                          ).sort_values("size").iloc[-1]
        copy_bytes_per_us = 2 * int(r["size"]) * 4 / float(r["us"])
        out["arith_us"] = BOUND_COPIES * 2 * 128 * 3 * 32 * 32 * 4 / copy_bytes_per_us
        out["arith_pct"] = 100 * out["arith_us"] / (1e3 * out["erm_ms"])

    dense, parts = dense_table(bench), dense_parts_table(profile)
    for method, label in (("multimix", "MultiMix"), ("zeta", "ζ-mixup")):
        if len(dense):
            sel = dense[[op.startswith(f"mixbook_{method}") for op in dense.index.get_level_values("op")]]
            if len(sel):
                out[f"{method}_x_matmul_min"] = float(sel["× matmul"].min())
                out[f"{method}_x_matmul_max"] = float(sel["× matmul"].max())
        if len(parts):
            out[f"{method}_sample_us_min"] = float(parts[f"{label} sample µs"].min())
            out[f"{method}_sample_us_max"] = float(parts[f"{label} sample µs"].max())
    if len(parts):
        applies = parts[["MultiMix apply µs", "ζ-mixup apply µs"]].to_numpy()
        out["apply_dense_us_min"], out["apply_dense_us_max"] = float(applies.min()), float(applies.max())
        out["matmul_us_min"], out["matmul_us_max"] = float(parts["matmul µs"].min()), float(parts["matmul µs"].max())
    return out


def verdicts(directory: str | os.PathLike) -> list[tuple[str, bool]]:
    """The checks chapter 7 prints on the recorded runs, as ``(statement, holds)``.

    For all files: each names its device, date and commit; each bench row's ``% of bound`` is 1.5 times its recorded copy fraction up to the
    labels' and soft targets' bytes (within 1%), and no recorded pairwise op is faster than the
    gather-and-interpolate bound allows. Per run (by :func:`run_key`): ``MixUp(x, y)`` at b = 32 is
    no slower than timm's ``Mixup`` on a fresh clone (the profile, each ``fused`` backend); every
    pairwise method's step (mixup, manifold mixup, CutMix) is within :data:`STEP_RATIO_TARGET` of
    ERM's in every precision (a pairwise method that failed to run is not); every dense op with its sampling is within 1.5 matmuls of its shape
    in every case of the bench.
    """
    bench, profile, step = bench_frame(directory), profile_frame(directory), stepcost_frame(directory)
    bound = bound_table(bench, profile)
    measured = bound[bound.index.get_level_values("timing").str.startswith("bench")]
    consistent = bool(len(measured)) and bool(
        ((measured["% of bound"] / (BOUND_COPIES * measured["copy %"]) - 1).abs() < 0.01).all())
    prov = provenance_frame(directory)
    named = bool(len(prov)) and bool(prov[["device", "date", "commit"]].notna().all().all())
    out = [("every recorded GPU file names its device, date and commit", named),
           ("the bound fraction is 1.5 × the bench's recorded copy fraction, within the labels' bytes (1%)",
            consistent),
           ("no recorded pairwise op beats the gather-and-interpolate bound (fraction ≤ 1)",
            bool(len(bound)) and bool((bound["% of bound"] <= 100).all()))]
    dense = dense_table(bench)
    for run in _ordered_runs([bench, profile, step]):
        device = next(iter(_unique_values(bench, profile, step, run=run, column="device")), "?")
        p = profile[(profile["run"] == run) & (profile["b"] == 32) & (profile["side"] == 32)
                    & (profile["dtype"] == "float32")]
        for backend in sorted(p["fused_backend"].dropna().unique()):
            q = p[p["fused_backend"] == backend].set_index("variant")["us"]
            if {"mixbook.MixUp(x, y)", "timm Mixup (in place, + clone)"} <= set(q.index):
                out.append((f"{run} ({device}): MixUp(x, y) at b = 32 no slower than timm's Mixup on a fresh "
                            f"clone, fused {backend}",
                            bool(q["mixbook.MixUp(x, y)"] <= q["timm Mixup (in place, + clone)"])))
        s = step[(step["run"] == run) & step["method"].isin(["mixup", "manifold_mixup", "cutmix"])]
        if len(s):
            out.append((f"{run} ({device}): every pairwise method's step within {STEP_RATIO_TARGET}× ERM's, "
                        f"fp32 and bf16", bool((s["ratio_to_ERM"] <= STEP_RATIO_TARGET).all())))
        if len(dense):
            dr = dense[dense.index.get_level_values("run") == run]
            if len(dr):
                out.append((f"{run} ({device}): every dense op within 1.5 matmuls of its shape, every case",
                            bool((dr["× matmul"] <= 1.5).all())))
    return out


PAIRWISE_METHODS = ("mixup", "manifold_mixup", "cutmix")
"""The recorded step-cost methods that mix pairs (the ones :data:`STEP_RATIO_TARGET` is for)."""


def claims(directory: str | os.PathLike, bound_target: float, run: str | None = None) -> list[dict[str, str]]:
    """Chapter 7's claims about a GPU, judged on one recorded run (default: the earliest), as rows
    ``{"claim", "holds here", "numbers"}`` with ``holds here`` one of ``"yes"``, ``"no"`` and
    ``"not testable here"`` (no recorded run, or the run lacks the measurement).

    The claims: a ``MixUp(x, y)`` call at b = 32 costs no more than timm's ``Mixup`` on a fresh clone
    (the profile, every ``fused`` backend); every pairwise method's ResNet-18 step is within
    :data:`STEP_RATIO_TARGET` of ERM's (both precisions); mixbook's eager ``MixUp`` at b = 1024,
    3×224² reaches ``bound_target`` (a fraction, e.g. 0.8) of the gather-and-interpolate bound in fp32
    and bf16; every dense op is within 1.5 matmuls of its shape in every case of the bench.
    """
    if not isinstance(bound_target, (int, float)) or isinstance(bound_target, bool) or not 0 < bound_target <= 1:
        raise ValueError(f"bound_target must be a fraction in (0, 1], got {bound_target!r}")
    s = summary(directory, run)
    untested = "not testable here"

    def yes(ok: bool) -> str:
        return "yes" if ok else "no"

    def row(claim: str, holds: str, numbers: str) -> dict[str, str]:
        return {"claim": claim, "holds here": holds, "numbers": numbers}

    where = f"({s['device']}, recorded {s['date']})" if s["run"] else "(no GPU run recorded)"
    checks = {statement.split("): ", 1)[1]: holds for statement, holds in verdicts(directory)
              if s["run"] and statement.startswith(f"{s['run']} (")}
    call = [v for k, v in checks.items() if k.startswith("MixUp(x, y) at b = 32")]
    step = [v for k, v in checks.items() if k.startswith("every pairwise method's step")]
    dense = [v for k, v in checks.items() if k.startswith("every dense op")]
    steps = stepcost_frame(directory)
    steps = steps[(steps["run"] == s["run"]) & steps["method"].isin(PAIRWISE_METHODS) & steps["ratio_to_ERM"].notna()]
    eager = (s["bound_fp32_eager_pct"], s["bound_bf16_eager_pct"])
    batch = f", b = {s['step_batch']}" if isinstance(s["step_batch"], int) else ""
    return [
        row(f"a mixing call at b = 32 costs no more than timm's Mixup on a fresh clone {where}",
            yes(all(call)) if call else untested,
            f"{s['mixup_auto_us']:.0f} µs (compiled kernel), {s['mixup_eager_us']:.0f} µs (eager) vs "
            f"{s['timm_clone_us']:.0f} µs" if call else "not measured"),
        row(f"a pairwise method's training step (ResNet-18{batch}) costs at most "
            f"{STEP_RATIO_TARGET:g} ERM steps, fp32 and bf16 {where}",
            yes(all(step)) if step else untested,
            f"{steps['ratio_to_ERM'].min():.2f}–{steps['ratio_to_ERM'].max():.2f} ERM steps" if len(steps)
            else "not measured"),
        row(f"a pairwise mix reaches {100 * bound_target:.0f}% of the gather-and-interpolate bound "
            f"(b = 1024, 3×224², mixbook's MixUp as called) {where}",
            yes(min(eager) >= 100 * bound_target) if all(math.isfinite(v) for v in eager) else untested,
            f"{eager[0]:.0f}% (fp32), {eager[1]:.0f}% (bf16); compiled whole {s['bound_bf16_compiled_pct']:.0f}% (bf16)"
            if all(math.isfinite(v) for v in eager) else "not measured"),
        row(f"a dense mix with its sampling costs at most 1.5 matrix products of its shape, every case {where}",
            yes(all(dense)) if dense else untested,
            f"ζ-mixup {s['zeta_x_matmul_min']:.1f}–{s['zeta_x_matmul_max']:.1f}×, MultiMix "
            f"{s['multimix_x_matmul_min']:.1f}–{s['multimix_x_matmul_max']:.1f}×" if dense else "not measured"),
    ]


def _unique_values(*frames: Any, run: str, column: str) -> list[Any]:
    """The distinct values of ``column`` in the rows of ``run`` across ``frames`` (in order met)."""
    seen: list[Any] = []
    for f in frames:
        if len(f):
            for v in f.loc[f["run"] == run, column]:
                if v not in seen:
                    seen.append(v)
    return seen
