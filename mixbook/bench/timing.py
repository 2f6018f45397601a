"""Timing: medians of interleaved repeats, and what one call costs besides its time.

:func:`time_ops` runs every operation ``number`` times per repeat, cycling through the operations
in each repeat (so that drift in the machine's load affects them alike), and reports the median
over repeats. On CPU it reads ``time.perf_counter``; on CUDA it times each block with CUDA events
(``torch.cuda.Event(enable_timing=True)``) recorded on the current stream, after a
synchronisation that empties the queue. :func:`dispatched_ops` counts the ATen operators of one
call; the peak extra memory, the host-sync check and the compiled variant of a call
(:data:`COMPILED_SUFFIX`) are the bench's other per-op measures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..core import _checks

__all__ = ["time_ops", "dispatched_ops", "cuda_path_ops", "COMPILED_SUFFIX"]


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_block(fn: Callable[[], object], number: int, dev: torch.device | None) -> float:
    """Seconds per call of ``number`` back-to-back calls of ``fn``.

    CPU: ``time.perf_counter`` around the block. CUDA: the queue is emptied first, then a
    start and an end event are recorded on the current stream around the block and the time
    between them is read after the end event completes (host launch gaps inside the block
    count, as they would in a training step).
    """
    _sync(dev)
    if dev is not None and dev.type == "cuda":
        stream = torch.cuda.current_stream(dev)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for _ in range(number):
            fn()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / number
    start_s = time.perf_counter()
    for _ in range(number):
        fn()
    _sync(dev)
    return (time.perf_counter() - start_s) / number


def time_ops(
    ops: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 7,
    number: int = 10,
    warmup: int = 2,
    baseline: str | None = None,
    device: torch.device | str | None = None,
    min_time: float | None = None,
) -> Any:
    """Median seconds per call of each operation, and its ratio to ``baseline``.

    Args:
        ops: name → zero-argument callable.
        repeats: number of timed repeats (the median is reported); ≥ 7 recommended.
        number: calls per repeat (the minimum, with ``min_time``).
        warmup: untimed calls of each op before timing.
        baseline: name of the op the others are divided by (default: the first).
        device: the device the ops run on; on CUDA each block is timed with CUDA events.
        min_time: if given (seconds > 0), each op's calls per repeat are raised from
            ``number`` so that one timed block lasts at least this long, judged from one
            extra timed call after warm-up (slow ops stay at ``number``, fast ones are
            repeated enough to rise above the clock's resolution and the call overhead).

    Returns:
        A pandas DataFrame indexed by op name with ``median_s``, ``min_s`` and
        ``ratio_to_<baseline>`` (``median / median[baseline]``; > 1 means slower);
        ``frame.attrs["number"]`` maps each op to its calls per repeat.
    """
    import pandas as pd

    if not isinstance(ops, Mapping):
        raise TypeError(f"ops must be a mapping name -> zero-argument callable, got {type(ops).__name__}")
    if not ops:
        raise ValueError("ops must name at least one operation")
    not_callable = [k for k, fn in ops.items() if not callable(fn)]
    if not_callable:
        raise TypeError(f"ops must map names to zero-argument callables; not callable: {not_callable}")
    repeats = _checks.positive_int("repeats", repeats)
    number = _checks.positive_int("number", number)
    warmup = _checks.non_negative_int("warmup", warmup)
    if min_time is not None:
        min_time = _checks.positive_float("min_time", min_time)
    baseline = baseline or next(iter(ops))
    if baseline not in ops:
        raise ValueError(f"baseline must be one of {list(ops)}, got {baseline!r}")
    dev = torch.device(device) if device is not None else None
    for fn in ops.values():
        for _ in range(warmup):
            fn()
    numbers = {k: number for k in ops}
    if min_time is not None:
        for name, fn in ops.items():
            once = _timed_block(fn, 1, dev)
            numbers[name] = max(number, math.ceil(min_time / max(once, 1e-9)))
    times: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(repeats):
        for name, fn in ops.items():
            times[name].append(_timed_block(fn, numbers[name], dev))
    frame = pd.DataFrame({
        "median_s": {k: float(pd.Series(v).median()) for k, v in times.items()},
        "min_s": {k: min(v) for k, v in times.items()},
    })
    frame[f"ratio_to_{baseline}"] = frame["median_s"] / frame.loc[baseline, "median_s"]
    frame.attrs["number"] = numbers
    return frame


def dispatched_ops(fn: Callable[[], object]) -> dict[str, int]:
    """The ATen operators one call of ``fn`` dispatches, counted by name (a ``TorchDispatchMode``).

    On a GPU each is (at least) one kernel launch, which dominates the cost of a mixing call at
    small batch sizes; the bench reports the total for every mixbook op (``dispatched_ops``) and
    a test bounds it. ``_local_scalar_dense`` entries are reads of a value to the host (the
    label-range checks on the CPU; skipped on CUDA, see :mod:`mixbook.core._checks`).
    """
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Counter[str] = Counter()

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with _Count():
        fn()
    return dict(counts)


def cuda_path_ops(fn: Callable[..., object], *inputs: torch.Tensor, warmup: int = 1) -> dict[str, int]:
    """The ATen operators ``fn(*inputs)`` dispatches when ``inputs`` live on a CUDA device, counted
    on a machine without one.

    Each input is replaced by a *fake* CUDA tensor of its shape and dtype
    (``torch._subclasses.FakeTensorMode``: metadata only, no memory, no kernels), so the call
    takes mixbook's CUDA code path (no value checks, the CUDA pairing, the CUDA dtype choices)
    and every operator it dispatches is counted (:func:`dispatched_ops`, ATen operators only).
    On a GPU each is at least one kernel launch at ~5–8 µs of host time (the H200 profile of
    chapter 7): the count is the CPU proxy of a small batch's per-call cost. Random draws
    without a generator are used (a CUDA ``torch.Generator`` needs a device); with one the
    same operators run. ``fn`` is called ``warmup`` times first (lazy initialisation is not
    counted). The inputs' values are ignored.
    """
    from collections import Counter

    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Counter[str] = Counter()

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "aten":
                counts[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with FakeTensorMode():
        fakes = [torch.empty(t.shape, dtype=t.dtype, device="cuda") for t in inputs]
        for _ in range(warmup):
            fn(*fakes)
        with _Count():
            fn(*fakes)
    return dict(counts)


def _peak_extra_bytes(fn: Callable[[], object], dev: torch.device) -> int | None:
    """CUDA: peak allocated bytes during one call minus those allocated before (outputs included)."""
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    out = fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - before
    del out
    return int(peak)


def _host_sync_free(fn: Callable[[], object], dev: torch.device) -> tuple[bool | None, str]:
    """CUDA: run one call under ``torch.cuda.set_sync_debug_mode("error")``; ``(ok, message)``."""
    if dev.type != "cuda":
        return None, "not applicable on CPU"
    torch.cuda.synchronize(dev)
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return True, ""
    except RuntimeError as err:
        return False, str(err).splitlines()[0][:200]
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize(dev)


COMPILED_SUFFIX = "_compiled"
"""Suffix of the compiled variant of a mixbook op (``run(compiled=True)``): the same call under
``torch.compile(fullgraph=True, dynamic=False)``, timed against the same peers."""


def _compiled_call(fn: Callable[[], object], name: str, notes: list[str]) -> Callable[[], object] | None:
    """``torch.compile(fn, fullgraph=True, dynamic=False)``, compiled now by one call (so that the
    timing excludes compilation), or ``None`` with a note when compiling fails (no C++ compiler or
    Triton, an unsupported op): the eager op is still timed."""
    compiled = torch.compile(fn, fullgraph=True, dynamic=False)
    try:
        compiled()
    except Exception as err:  # Dynamo/Inductor failures share no base class
        notes.append(f"{name}: torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
                     "compiled variant not timed")
        return None
    return compiled
