"""Benchmark harness: mixbook's mixing ops against their peers, in one process.

Speed claims in mixbook are ratios against peers measured in the same run, never absolute
times in a test. :func:`time_ops` runs every operation ``number`` times per repeat, cycling
through the operations in each repeat (so that drift in the machine's load affects them
alike), and reports the median over repeats. On CPU it reads ``time.perf_counter``; on CUDA it
times each block with CUDA events (``torch.cuda.Event(enable_timing=True)``) recorded on the
current stream, after a synchronisation that empties the queue.

``python -m mixbook.bench`` (:func:`main`) runs the whole comparison and writes a table and a
JSON file (:func:`run` is the same from Python):

* **mixbook ops**: whatever the method modules declare in their ``BENCH`` tuples of
  :class:`~mixbook.core.benchmark.BenchEntry` (:func:`mixbook.bench.targets.entries`): today
  pairwise mixup with one λ a batch (``mixup.sample`` + ``Mixing.apply`` + ``Mixing.targets``),
  the same with one λ per example, ζ-mixup (``zeta.sample`` + ``apply``, dense) and MultiMix
  (``multimix.sample`` with ``n = 1000`` outputs + ``apply`` on ``d = 512`` embeddings). An entry names its op, the kind
  of case it runs on, its bytes family, how to build the call, and its targets; the harness
  compares it with every peer of its family in the case, so adding a method's benchmark is a
  ``BENCH`` tuple in its module. The bench's modules: :mod:`~mixbook.bench.timing` (how a call is
  timed), :mod:`~mixbook.bench.cases` (cases and bytes), :mod:`~mixbook.bench.peers` (the peer ops),
  :mod:`~mixbook.bench.targets` (the declared entries and the verdicts) and this one (a run, its
  table and the command line).
* **compiled variants** (``run(compiled=True)``, ``--compiled``; the default on CUDA):
  ``<op>_compiled`` is the same call under ``torch.compile(fullgraph=True, dynamic=False)``,
  compiled before it is timed, against the same peers and targets (``[compiled]``). It shows
  what compiling the training step buys for the per-call cost: one fused kernel instead of a
  dozen operators, no Python argument checks (value checks are skipped while tracing).
* **peers**: torchvision ``transforms.v2.MixUp`` and ``v2.CutMix``; timm ``timm.data.Mixup`` in
  ``batch`` and ``elem`` mode; :func:`zeta_numpy_reference` and :func:`multimix_numpy_reference`
  (NumPy, CPU only); one plain matmul ``W @ X`` of the dense ops' shape; and the baseline, a
  plain copy ``x.clone()`` of the batch.

**timm mixes in place.** ``Mixup.__call__(x, target)`` overwrites ``x`` (and needs an even
batch). Two variants are timed: ``timm_batch`` mixes one persistent buffer in place, again and
again (a convex combination of a bounded batch stays bounded, so the values stay sane), which
charges timm nothing for keeping the input — the most favourable reading for timm and the
cost in a loader that hands over a fresh batch anyway; ``timm_batch_clone`` gives it a fresh
``clone`` each call, the cost under mixbook's contract (the input is left unmodified). The
``elem`` mode is timed in place only (it clones internally for its source anyway).

**Bytes moved** (:func:`bytes_moved`) count the minimum traffic of the *result*, the same for
every implementation of a family, so GB/s ratios are speed ratios; ``b`` examples of ``D``
elements of ``s`` bytes, ``C`` classes, ``n`` outputs:

* ``pairwise`` (mixup, per-sample λ, CutMix, timm): read ``x`` once and write the output once,
  read int64 labels and write float32 soft targets: ``2·b·D·s + 8·b + 4·b·C``;
* ``dense`` (ζ-mixup, MultiMix, the matmul): read ``x`` once, write ``n`` outputs, write the
  float32 weights once: ``(b + n)·D·s + 4·n·b`` (targets not included: the dense ops time
  "weights + mixing", like their NumPy references);
* ``copy``: ``2·b·D·s``.

``copy_fraction`` is an op's GB/s over that of the copy of the same case, measured in the same
run. **Peak extra bytes** (CUDA only; ``None`` on CPU, where PyTorch keeps no allocator
statistics) is ``torch.cuda.max_memory_allocated()`` during one call minus the allocated bytes
before it; it includes the op's outputs.

**Measuring on a CPU.** Two things outside the ops move CPU numbers a lot, so the provenance
records them (thread count, load average at start and end, ``THP_MEM_ALLOC_ENABLE``, the
kernel's transparent-huge-page mode):

* *threads*: with more busy threads than cores (another job on the machine), every
  OpenMP-parallel kernel waits for its descheduled sibling thread, in scheduler-quantum steps
  of milliseconds; ``--threads 1`` times every op on one thread and stays meaningful there;
* *allocation*: a fresh CPU tensor of many MB is ``mmap``-ed and first touched page by page;
  that page-fault cost is most of a large ``clone`` (and of every op that allocates its output,
  as mixbook's must), while an in-place op (timm) pays it once. ``THP_MEM_ALLOC_ENABLE=1``
  (read by PyTorch's CPU allocator) backs large allocations with huge pages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..chapters.results import provenance
from ..core import _checks
from . import targets as _targets
from .cases import (ALPHA, CPU_MAX_TENSOR_MB, EMBED_CLASSES, EMBED_DIM, FAMILIES, MULTIMIX_N, NUM_CLASSES, ZETA_GAMMA,
                    _DTYPES, Case, _resolve_device, bytes_moved, make_cases)
from .peers import _Inputs, _Op, embedding_peers, image_peers, multimix_numpy_reference, zeta_numpy_reference
from .targets import LIMITS, TARGETS_CPU, TARGETS_CUDA, entries, evaluate_targets
from .timing import (COMPILED_SUFFIX, _compiled_call, _host_sync_free, _peak_extra_bytes, cuda_path_ops, dispatched_ops,
                     time_ops)

__all__ = ["time_ops", "dispatched_ops", "cuda_path_ops", "COMPILED_SUFFIX", "zeta_numpy_reference", "multimix_numpy_reference",
           "bytes_moved", "Case", "make_cases", "run", "format_table", "main", "evaluate_targets", "provenance",
           "FAMILIES", "TARGETS_CPU", "LIMITS", "TARGETS_CUDA", "entries"]


# ---------------------------------------------------------------------- ops of a case
def _declared_ops(kind: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, n: int | None, *,
                  compiled: bool = False, notes: list[str] | None = None) -> dict[str, _Op]:
    """The declared entries of ``kind`` (:func:`~mixbook.bench.targets.entries`) as ops of a case,
    each followed by its compiled variant when ``compiled``."""
    ops = {}
    for e in _targets.entries():
        if e.kind != kind:
            continue
        fn = e.make(x, y, num_classes, n)
        ops[e.op] = _Op(fn, "mixbook", e.family, True,
                        on=lambda fx, fy, make=e.make: make(fx, fy, num_classes, n)())
        if compiled:
            cfn = _compiled_call(fn, e.op, notes if notes is not None else [])
            if cfn is not None:
                ops[e.op + COMPILED_SUFFIX] = _Op(cfn, "mixbook", e.family, True,
                                                  note="torch.compile(fullgraph=True, dynamic=False)")
    return ops


def _image_ops(case: Case, dev: torch.device, inp: _Inputs, notes: list[str], compiled: bool = False) -> dict[str, _Op]:
    """Ops of an image case: the copy, the declared image entries, their peers (see the module docstring)."""
    peers = image_peers(case, dev, inp, notes)
    return {"copy": _Op(inp.x.clone, "baseline", "copy"),
            **_declared_ops("image", inp.x, inp.y, case.num_classes, None, compiled=compiled, notes=notes),
            **peers}


def _embedding_ops(case: Case, dev: torch.device, inp: _Inputs, notes: list[str], compiled: bool = False) -> dict[str, _Op]:
    """Ops of a MultiMix embedding case ``(b, d)`` → ``(n, d)``: the copy, the declared embedding
    entries, their peers."""
    peers = embedding_peers(case, dev, inp, notes)
    return {"copy": _Op(inp.x.clone, "baseline", "copy"),
            **_declared_ops("embedding", inp.x, inp.y, case.num_classes, case.n, compiled=compiled, notes=notes),
            **peers}


def _run_case(case: Case, dev: torch.device, *, repeats: int, warmup: int, min_time: float,
              seed: int, compiled: bool = False) -> dict[str, Any]:
    """Time every op of ``case`` (interleaved) and derive ops/s, GB/s, copy fraction, speedups.

    With ``compiled``, Dynamo's caches are reset first: every case compiles its variants afresh
    (specialised to its shapes), so the per-function recompile limit is never reached."""
    if compiled:
        torch.compiler.reset()
    gen = torch.Generator().manual_seed(seed)
    dtype = _DTYPES[case.dtype]
    x = torch.randn(case.batch, *case.shape, generator=gen).to(device=dev, dtype=dtype)
    y = torch.randint(0, case.num_classes, (case.batch,), generator=gen).to(dev)
    inp, notes = _Inputs(x, y), []
    ops = (_image_ops if case.kind == "image" else _embedding_ops)(case, dev, inp, notes, compiled)
    frame = time_ops({k: op.fn for k, op in ops.items()}, repeats=repeats, number=1, warmup=warmup,
                     baseline="copy", device=dev, min_time=min_time)
    copy_bytes = bytes_moved("copy", batch=case.batch, features=case.features, itemsize=case.itemsize)
    copy_gbs = copy_bytes / float(frame.loc["copy", "median_s"]) / 1e9
    peers = {fam: [k for k, op in ops.items() if op.role == "peer" and op.family == fam] for fam in FAMILIES}
    results: dict[str, Any] = {}
    for name, op in ops.items():
        med = float(frame.loc[name, "median_s"])
        nbytes = bytes_moved(op.family, batch=case.batch, features=case.features, itemsize=case.itemsize,
                             num_classes=case.num_classes if op.family == "pairwise" else 0, n=case.n)
        gbs = nbytes / med / 1e9
        rec: dict[str, Any] = {
            "role": op.role, "family": op.family, "median_s": med, "min_s": float(frame.loc[name, "min_s"]),
            "number": int(frame.attrs["number"][name]), "ops_per_s": 1.0 / med, "bytes": nbytes,
            "gb_per_s": gbs, "copy_fraction": gbs / copy_gbs, "peak_extra_bytes": _peak_extra_bytes(op.fn, dev),
            "note": op.note,
        }
        if op.mixbook:
            rec["speedup_vs"] = {p: float(frame.loc[p, "median_s"]) / med for p in peers[op.family]}
            # a compiled call runs Inductor's kernels, not ATen operators one by one: not counted
            rec["dispatched_ops"] = None if name.endswith(COMPILED_SUFFIX) else sum(dispatched_ops(op.fn).values())
            # on a CPU, the operators the same call dispatches on CUDA (fake CUDA inputs): its launch count there
            rec["cuda_path_ops"] = (sum(dispatched_ops(op.fn).values()) if dev.type == "cuda" and op.on is not None
                                    else sum(cuda_path_ops(op.on, x, y).values()) if op.on is not None else None)
            rec["host_sync_free"], msg = _host_sync_free(op.fn, dev)
            if msg and rec["host_sync_free"] is False:
                rec["host_sync_error"] = msg
        results[name] = rec
    del inp
    return {**case.to_dict(), "notes": notes, "ops": results}


# ---------------------------------------------------------------------- run, table, CLI
def run(
    *,
    device: torch.device | str = "auto",
    repeats: int | None = None,
    warmup: int | None = None,
    min_time: float | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    quick: bool = False,                          # the case list, as make_cases
    batches: Sequence[int] | None = None,
    dtypes: Sequence[str] | None = None,
    image_sizes: Sequence[int] | None = None,
    include_large: bool = False,
    compiled: bool | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-ready result (see :func:`main` for the layout).

    Args:
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda[:i]"``.
        quick: a small subset with few repeats, for tests and live notebook cells (its numbers
            are for smoke tests, not for quoting).
        batches: override the batch sizes (default: 32, 128, 256, 1024; quick: 32).
        dtypes: override the dtypes (default float32, plus bfloat16 on CUDA).
        include_large: run cases above the CPU size limit too (:func:`make_cases`).
        repeats: timed repeats, median reported (default 7; quick 3).
        warmup: untimed calls of each op first (default 2; quick 1).
        min_time: seconds a timed block should last at least (default 0.05; quick 0.002).
        seed: seed of the inputs.
        log: called with a line of progress per case (e.g. ``print``), or ``None``.
        image_sizes: image sides to run, from 32 and 224 (default both; quick: 32).
        compiled: also time every mixbook op compiled, ``<op>_compiled`` (the same call under
            ``torch.compile(fullgraph=True, dynamic=False)``, compiled before timing; its targets
            are the eager op's, marked ``[compiled]``). ``None`` (default): on CUDA yes, on the
            CPU no (Inductor's C++ compile costs seconds per op and case there).

    Returns:
        ``{"provenance", "parameters", "skipped", "cases", "targets", "rows"}`` (``rows``: :func:`flat_rows`).
    """
    dev = _resolve_device(device)
    quick = _checks.boolean("quick", quick)
    repeats = _checks.positive_int("repeats", (3 if quick else 7) if repeats is None else repeats)
    warmup = _checks.non_negative_int("warmup", (1 if quick else 2) if warmup is None else warmup)
    min_time = _checks.positive_float("min_time", (0.002 if quick else 0.05) if min_time is None else min_time)
    _checks.seed("seed", seed)
    compiled = dev.type == "cuda" if compiled is None else _checks.boolean("compiled", compiled)
    if log is not None and not callable(log):
        raise TypeError(f"log must be callable or None, got {type(log).__name__}")
    cases, skipped = make_cases(dev, quick=quick, batches=batches, dtypes=dtypes, include_large=include_large,
                                image_sizes=image_sizes)
    params = {"device": str(dev), "quick": quick, "batches": sorted({c.batch for c in cases}),
              "dtypes": sorted({c.dtype for c in cases}), "include_large": include_large,
              "image_sizes": sorted({c.shape[-1] for c in cases if c.kind == "image"}), "repeats": repeats,
              "warmup": warmup, "min_time_s": min_time, "seed": seed, "alpha": ALPHA, "zeta_gamma": ZETA_GAMMA,
              "multimix_n": MULTIMIX_N, "embed_dim": EMBED_DIM, "num_classes": {f"{k}x{k}": v for k, v in NUM_CLASSES.items()},
              "embedding_classes": EMBED_CLASSES, "compiled": compiled}
    result: dict[str, Any] = {"provenance": provenance(dev), "parameters": params, "skipped": skipped, "cases": []}
    for s in skipped:
        if log:
            log(f"skipped {s['case']}: {s['reason']}")
    for i, case in enumerate(cases):
        t0 = time.perf_counter()
        result["cases"].append(_run_case(case, dev, repeats=repeats, warmup=warmup, min_time=min_time, seed=seed + i,
                                         compiled=compiled))
        if log:
            log(f"[{i + 1}/{len(cases)}] {case.name}: {time.perf_counter() - t0:.1f} s")
    result["targets"] = evaluate_targets(result["cases"], dev)
    result["rows"] = flat_rows(result["cases"])
    result["provenance"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


def flat_rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (case, op): the case's fields and the op's scalar measurements (its speed-ups are
    in ``cases``). A run's JSON carries them as ``rows``, so every file in ``book/results/`` reads
    with :func:`mixbook.chapters.results.load`."""
    rows = []
    for c in cases:
        head = {k: v for k, v in c.items() if k not in ("ops", "notes")}
        head["case"] = head.pop("name", None)
        for op, rec in c["ops"].items():
            rows.append({**head, "op": op, **{k: v for k, v in rec.items() if not isinstance(v, (dict, list))}})
    return rows


def _fmt_speedups(rec: dict[str, Any]) -> str:
    return " ".join(f"{p}={s:.2f}x" for p, s in rec.get("speedup_vs", {}).items())


def format_table(result: Mapping[str, Any]) -> str:
    """A plain-text table: a header (device, threads, dtypes, the columns' meaning), one line per
    (case, op), then every target with PASS/MISS and the skipped cases."""
    prov = result.get("provenance", {})
    dtypes = sorted({c.get("dtype", "?") for c in result.get("cases", [])})
    lines = [f"mixbook.bench on {prov.get('device_name', '?')} ({prov.get('device', '?')}), "
             f"{prov.get('torch_threads', '?')} torch threads, dtypes {', '.join(dtypes) or '-'}, "
             f"torch {prov.get('torch', '?')}, commit {(prov.get('git_commit') or '?')[:10]}",
             "columns: ms = median time of one call; GB/s = the family's minimum bytes (bytes_moved) over that time; "
             "copy% = GB/s over a plain copy's in the same case; peakMB (CUDA) = peak extra memory of a call; "
             "bound% = a pairwise op's fraction of the gather-and-interpolate bound (1.5 copies' time over its time); "
             "aten = ATen operators one call dispatches here, cuda = on CUDA (counted on fake CUDA tensors off a GPU); "
             "speedup = peer time / mixbook time",
             ""]
    show_peak = any(r["peak_extra_bytes"] is not None for c in result["cases"] for r in c["ops"].values())
    peak_head = f" {'peakMB':>7}" if show_peak else ""
    lines += [f"{'case':<34} {'op':<33} {'ms':>9} {'ops/s':>9} {'GB/s':>7} {'copy%':>6} {'bound%':>6}{peak_head} "
              f"{'aten':>5} {'cuda':>5}  speedup vs peers"]
    for c in result["cases"]:
        copy_s = c["ops"].get("copy", {}).get("median_s")
        for name, r in c["ops"].items():
            peak, aten, cuda = "", r.get("dispatched_ops"), r.get("cuda_path_ops")
            bound = f"{150 * copy_s / r['median_s']:5.0f}%" if r["family"] == "pairwise" and copy_s else ""
            if show_peak:
                peak = " " + ("-" if r["peak_extra_bytes"] is None else f"{r['peak_extra_bytes'] / 1e6:.1f}").rjust(7)
            lines.append(f"{c['name']:<34} {name:<33} {r['median_s'] * 1e3:9.3f} {r['ops_per_s']:9.1f} "
                         f"{r['gb_per_s']:7.2f} {100 * r['copy_fraction']:5.0f}% {bound:>6}{peak} "
                         f"{'' if aten is None else aten:>5} {'' if cuda is None else cuda:>5}  {_fmt_speedups(r)}")
    if result.get("targets"):
        lines.append("")
        lines.append("targets:")
        for t in result["targets"]:
            m = t["measured"]
            shown = f"{m:.2f}" if isinstance(m, float) else str(m)
            verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["pass"]]
            lines.append(f"  {verdict:<4} {t['name']:<55} {t['case']:<34} {shown:>7} (target {t['target']}) {t['note']}")
    for s in result.get("skipped", []):
        lines.append(f"skipped {s['case']}: {s['reason']}")
    return "\n".join(lines)


def _positive_int_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mixbook.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:i] (default auto)")
    p.add_argument("--quick", action="store_true", help="small subset, few repeats (smoke tests, notebook cells)")
    p.add_argument("--json", type=Path, default=None, help="write the result here as JSON")
    p.add_argument("--batch", type=_positive_int_arg, nargs="+", default=None,
                   help="batch sizes (default 32 128 256 1024; quick: 32)")
    p.add_argument("--dtype", nargs="+", choices=tuple(_DTYPES), default=None,
                   help="dtypes (default float32, plus bfloat16 on CUDA)")
    p.add_argument("--image-size", type=_positive_int_arg, nargs="+", default=None, choices=(32, 224),
                   help="image sides to run (default 32 224; quick: 32)")
    p.add_argument("--include-large", action="store_true",
                   help=f"on CPU also run cases whose batch tensor exceeds {CPU_MAX_TENSOR_MB:g} MB (224x224 at b=1024)")
    p.add_argument("--repeats", type=_positive_int_arg, default=None, help="timed repeats, median reported (default 7)")
    p.add_argument("--threads", type=_positive_int_arg, default=None, help="torch.set_num_threads before running")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="also time every mixbook op under torch.compile (default: on CUDA only)")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: run, print the table, write ``--json``. Returns the result dict.

    JSON layout: ``provenance`` (device name, torch/torchvision/timm/numpy versions, UTC date,
    git commit, thread count, load average), ``parameters``, ``skipped`` (case, reason),
    ``cases`` (each: case fields, ``notes``, ``ops`` → name → ``role``, ``family``,
    ``median_s``, ``min_s``, ``number``, ``ops_per_s``, ``bytes``, ``gb_per_s``,
    ``copy_fraction``, ``peak_extra_bytes``, ``note``, and for mixbook ops ``speedup_vs`` (peer →
    peer time / mixbook time), ``dispatched_ops`` (ATen operators per call, :func:`dispatched_ops`)
    and ``host_sync_free``), ``targets`` (name, case, measured, target,
    pass, note).
    """
    args = _parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = run(device=args.device, quick=args.quick, batches=args.batch, dtypes=args.dtype,
                 include_large=args.include_large, repeats=args.repeats, seed=args.seed, image_sizes=args.image_size,
                 compiled=args.compiled, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return result
