"""Timing harness: operations compared in the same process, interleaved, after warm-up.

Speed claims in mixbook are ratios against peers measured in the same run, never absolute
times in a test. :func:`time_ops` runs every operation ``number`` times per repeat, cycling
through the operations in each repeat (so that drift in the machine's load affects them
alike), and reports the median over repeats. On CUDA it synchronises around each timed block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from . import _checks


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ops(
    ops: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 7,
    number: int = 10,
    warmup: int = 2,
    baseline: str | None = None,
    device: torch.device | str | None = None,
):
    """Median seconds per call of each operation, and its ratio to ``baseline``.

    Args:
        ops: name → zero-argument callable.
        repeats: number of timed repeats (the median is reported); ≥ 7 recommended.
        number: calls per repeat.
        warmup: untimed calls of each op before timing.
        baseline: name of the op the others are divided by (default: the first).
        device: the device the ops run on (synchronised around timings when CUDA).

    Returns:
        A pandas DataFrame indexed by op name with ``median_s``, ``min_s`` and
        ``ratio_to_<baseline>`` (``median / median[baseline]``; > 1 means slower).
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
    if isinstance(warmup, bool) or not isinstance(warmup, int):
        raise TypeError(f"warmup must be an int >= 0, got {type(warmup).__name__}")
    if warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup}")
    baseline = baseline or next(iter(ops))
    if baseline not in ops:
        raise ValueError(f"baseline must be one of {list(ops)}, got {baseline!r}")
    dev = torch.device(device) if device is not None else None
    for fn in ops.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(repeats):
        for name, fn in ops.items():
            _sync(dev)
            start = time.perf_counter()
            for _ in range(number):
                fn()
            _sync(dev)
            times[name].append((time.perf_counter() - start) / number)
    frame = pd.DataFrame({
        "median_s": {k: float(pd.Series(v).median()) for k, v in times.items()},
        "min_s": {k: min(v) for k, v in times.items()},
    })
    frame[f"ratio_to_{baseline}"] = frame["median_s"] / frame.loc[baseline, "median_s"]
    return frame


def zeta_numpy_reference(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """A straightforward NumPy ζ-mixup, the peer that mixbook's version is timed against.

    Random orderings from the argsort of a uniform ``(b, b)`` matrix, p-series weights
    ``s^(−γ) / Σ_j j^(−γ)`` gathered by rank, and one ``einsum`` over the flattened batch.
    Unlike :func:`mixbook.zeta.weights` it does not fix which example dominates each row.

    Args:
        x: ``(b, *)`` NumPy array (float32).
        gamma: γ > 0.
        rng: a ``numpy.random.Generator``.

    Returns:
        ``(b, *)`` mixed array of ``x``'s dtype.
    """
    b = x.shape[0]
    ranks = np.argsort(np.argsort(rng.random((b, b)), axis=1), axis=1) + 1
    series = np.arange(1, b + 1, dtype=np.float64) ** -gamma
    w = (ranks.astype(np.float64) ** -gamma / series.sum()).astype(x.dtype)
    return np.einsum("nb,bd->nd", w, x.reshape(b, -1)).reshape(x.shape)
