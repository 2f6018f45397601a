"""The declared entries and their targets: what the method modules ask the bench to time and how
their results are judged.

A method module declares its ops in a ``BENCH`` tuple of
:class:`~mixbook.core.benchmark.BenchEntry` (see :data:`mixbook.methods.mixup.BENCH`);
:func:`entries` collects them from the modules of :mod:`mixbook.methods` (every module that
package's ``__all__`` names), so a new method's module is benchmarked without editing the bench.
:func:`evaluate_targets` turns the measured cases into one verdict per (target, case).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.benchmark import BenchEntry, Limit, Target
from .timing import COMPILED_SUFFIX

__all__ = ["BENCH_MODULES", "entries", "evaluate_targets", "TARGETS_CPU", "LIMITS", "TARGETS_CUDA",
           "BenchEntry", "Target", "Limit"]

BENCH_MODULES: Sequence[object] | None = None
"""The modules whose ``BENCH`` tuples the harness runs (:func:`entries`); ``None``: the modules of
:mod:`mixbook.methods`, in the order of its ``__all__``, that have one."""


def _method_modules() -> list[object]:
    from .. import methods  # imports every method module

    return [getattr(methods, name) for name in methods.__all__]


def entries(modules: Sequence[object] | None = None) -> tuple[BenchEntry, ...]:
    """Every declared benchmark entry of ``modules`` (default :data:`BENCH_MODULES`), checked.

    An entry is a :class:`~mixbook.core.benchmark.BenchEntry` in a module's ``BENCH`` tuple, next
    to its sampler (see :data:`mixbook.methods.mixup.BENCH`); a module without ``BENCH`` declares
    none. Raises ``TypeError`` for an item that is not a ``BenchEntry`` and ``ValueError`` when two
    entries share an op name."""
    if modules is None:
        modules = BENCH_MODULES
    if modules is None:
        modules = _method_modules()
    out: list[BenchEntry] = []
    for module in modules:
        declared = getattr(module, "BENCH", ())
        if not isinstance(declared, (tuple, list)):
            raise TypeError(f"{getattr(module, '__name__', module)}.BENCH must be a tuple of "
                            f"mixbook.core.benchmark.BenchEntry, got {type(declared).__name__}")
        for entry in declared:
            if not isinstance(entry, BenchEntry):
                raise TypeError(f"{getattr(module, '__name__', module)}.BENCH must hold "
                                f"mixbook.core.benchmark.BenchEntry instances, got {type(entry).__name__}: {entry!r}")
            out.append(entry)
    names = [e.op for e in out]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmark entries must have distinct op names, got {names}")
    return tuple(out)


TARGETS_CPU: tuple[Target, ...] = tuple(t for e in entries() for t in e.targets if t.devices is None or "cpu" in t.devices)
"""The speed-up targets of every entry (:class:`~mixbook.core.benchmark.Target`: ``name``,
``peer``, ``minimum``, ``batches``), evaluated on the CPU, where every peer runs; :func:`entries`
says which op and kind each belongs to."""

LIMITS: tuple[Limit, ...] = tuple(lim for e in entries() for lim in e.limits)
"""The targets against the physical limit of every entry (:class:`~mixbook.core.benchmark.Limit`:
``name``, ``measure``, ``bound``, ``min_mb``), evaluated on every device."""

TARGETS_CUDA: tuple[str, ...] = (tuple(t.name for e in entries() for t in e.targets if t.devices is None or "cuda" in t.devices)
                                 + tuple(lim.name for lim in LIMITS if lim.devices is None or "cuda" in lim.devices)
                                 + ("no host sync in mixbook ops",))
"""The names of the targets evaluated on CUDA: the peer speed-ups that name CUDA, the limits, and the
host-sync check of every mixbook op."""


def _target(name: str, case: str, measured: float | bool | None, target: str, ok: bool | None,
            note: str = "") -> dict[str, Any]:
    # plain Python types: ratios of pandas/NumPy medians are NumPy scalars, which json cannot write
    if measured is not None:
        measured = bool(measured) if isinstance(measured, (bool, np.bool_)) else float(measured)
    return {"name": name, "case": case, "measured": measured, "target": target,
            "pass": None if ok is None else bool(ok), "note": note}


def evaluate_targets(cases: list[dict[str, Any]], device: torch.device | str) -> list[dict[str, Any]]:
    """One entry per (target, case): ``{"name", "case", "measured", "target", "pass", "note"}``.

    The speed-ups over the peers (each entry's :class:`~mixbook.core.benchmark.Target`: peer
    median / mixbook median) on the devices each names (the CPU by default); the limits (each
    entry's :class:`~mixbook.core.benchmark.Limit`: fraction of a copy's bandwidth or of the
    gather-and-interpolate bound at large sizes, time over one matmul of the same shape, µs a
    call) on the devices each names (every device by default); on CUDA also whether each mixbook op ran under
    ``torch.cuda.set_sync_debug_mode("error")``. When the cases hold compiled variants
    (``run(compiled=True)``), each target is evaluated on them too, named ``<target> [compiled]``.
    """
    dev = torch.device(device)
    out: list[dict[str, Any]] = []
    compiled_run = any(op.endswith(COMPILED_SUFFIX) for c in cases for op in c["ops"])
    variants = (("", ""), (COMPILED_SUFFIX, " [compiled]")) if compiled_run else (("", ""),)
    declared = entries()
    speedups = [(e, t) for e in declared for t in e.targets if t.devices is None or dev.type in t.devices]
    for (entry, target), (suffix, label) in itertools.product(speedups, variants):
        name, op, peer, want = target.name + label, entry.op + suffix, target.peer, f">= {target.minimum:g}"
        for c in cases:
            if c["kind"] != entry.kind or (target.batches is not None and c["batch"] not in target.batches):
                continue
            if op not in c["ops"] or peer not in c["ops"][op].get("speedup_vs", {}):
                out.append(_target(name, c["name"], None, want, None, f"{op} or {peer} not run in this case"))
                continue
            s = c["ops"][op]["speedup_vs"][peer]
            out.append(_target(name, c["name"], s, want, s >= target.minimum))
    limits = [(e, lim) for e in declared for lim in e.limits if lim.devices is None or dev.type in lim.devices]
    for (entry, limit), (suffix, label) in itertools.product(limits, variants):
        name, op, bound = limit.name + label, entry.op + suffix, limit.bound
        for c in cases:
            ops = c["ops"]
            if c["kind"] != entry.kind or op not in ops:
                continue
            if limit.measure == "copy_fraction":
                if limit.min_mb is not None and ops[op].get("bytes", math.inf) < limit.min_mb * 1e6:
                    continue
                f = ops[op]["copy_fraction"]
                out.append(_target(name, c["name"], f, f">= {bound:g}", f >= bound))
            elif limit.measure == "bound_fraction":
                if limit.min_mb is not None and ops[op].get("bytes", math.inf) < limit.min_mb * 1e6:
                    continue
                # 1.5 copies' time over the op's; from the copy fraction when no copy is on record
                f = (1.5 * ops["copy"]["median_s"] / ops[op]["median_s"] if "copy" in ops
                     else 1.5 * ops[op]["copy_fraction"])
                out.append(_target(name, c["name"], f, f">= {bound:g}", f >= bound))
            elif limit.measure == "us_per_call":
                us = 1e6 * ops[op]["median_s"]
                out.append(_target(name, c["name"], us, f"<= {bound:g}", us <= bound))
            elif limit.measure == "matmul_ratio":
                if "matmul" not in ops:
                    out.append(_target(name, c["name"], None, f"<= {bound:g}", None, "no matmul in this case"))
                    continue
                r = ops[op]["median_s"] / ops["matmul"]["median_s"]
                out.append(_target(name, c["name"], r, f"<= {bound:g}", r <= bound))
    if dev.type == "cuda":
        for c in cases:
            for op, rec in c["ops"].items():
                if rec["role"] == "mixbook":
                    ok = rec.get("host_sync_free")
                    out.append(_target("no host sync in mixbook ops", c["name"], ok, "True", ok,
                                       f"{op} {rec.get('host_sync_error', '')}".strip()))
    return out
