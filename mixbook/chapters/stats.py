"""Paired comparisons of training methods over seeds: the one statistic every chapter's verdict uses.

Chapters 1-6 and 8: every paired verdict.

Within a seed, :func:`mixbook.training.train.repeat` (and :func:`mixbook.training.population.repeat`) give every
method the same initial weights and the same batches, so two methods are compared seed by
seed: ``d_s = metric(method, s) − metric(reference, s)``. The verdict rests on the mean paired
difference and its Student-t confidence interval over the ``n`` seeds,

    d̄ ± t_{n−1, (1+c)/2} · sd(d) / √n,

which removes the seed-to-seed variation the two methods share (the initialisation, the data
order) and keeps only the variation of their difference.

A verdict is ``"better"`` or ``"worse"`` only when the interval clears zero by more than
``guard`` of its half-width; an interval that ends within that band of zero, or that contains
it, reads ``"no measurable difference"``. The band keeps a verdict printed by a check cell from
flipping with the last bits of floating-point rounding on another machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedDifference", "paired_difference", "compare", "top_group", "VERDICTS"]

VERDICTS = ("better", "worse", "no measurable difference")


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a − b`` over paired seeds with its confidence interval ``[low, high]``.

    ``n`` is the number of pairs; with ``n < 2`` the interval is ``(nan, nan)``.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def verdict(self, higher_is_better: bool = True, guard: float = 0.05) -> str:
        """``"better"``, ``"worse"`` or ``"no measurable difference"`` for ``a`` against ``b``.

        Args:
            higher_is_better: ``True`` for accuracy, ``False`` for NLL, ECE, error, time.
            guard: an interval must clear zero by more than this fraction of its half-width
                (in ``[0, 1)``); see the module docstring.
        """
        if not isinstance(higher_is_better, bool):
            raise TypeError(f"higher_is_better must be a bool, got {type(higher_is_better).__name__}")
        guard = _fraction("guard", guard, closed=True)
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return VERDICTS[2]
        band = guard * self.half_width
        if self.low > band:
            up = True
        elif self.high < -band:
            up = False
        else:
            return VERDICTS[2]
        return VERDICTS[0] if up == higher_is_better else VERDICTS[1]

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _fraction(name: str, value: object, closed: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number in {'[0, 1)' if closed else '(0, 1)'}, "
                        f"got {type(value).__name__}")
    value = float(value)
    if not ((0 <= value < 1) if closed else (0 < value < 1)):
        raise ValueError(f"{name} must be in {'[0, 1)' if closed else '(0, 1)'}, got {value}")
    return value


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """Student-t interval of the mean of ``a[i] − b[i]`` (``a`` and ``b`` paired by position).

    Args:
        a, b: equal-length sequences of finite numbers (one per seed), ``len ≥ 1``.
        confidence: coverage of the interval, in ``(0, 1)``.

    Returns:
        :class:`PairedDifference`; the interval is ``(nan, nan)`` for a single pair, and has
        zero width when every difference is equal.
    """
    from scipy import stats

    confidence = _fraction("confidence", confidence)
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape or a_arr.size == 0:
        raise ValueError(f"a and b must be non-empty 1-d sequences of the same length, got shapes "
                         f"{a_arr.shape} and {b_arr.shape}")
    if not (np.isfinite(a_arr).all() and np.isfinite(b_arr).all()):
        raise ValueError("a and b must be finite (a diverged run has no paired difference)")
    d = a_arr - b_arr
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, n, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return PairedDifference(mean, mean - half, mean + half, n, confidence)


def _paired_columns(frame, metric: str, method: str, reference: str, seed: str, method_col: str):
    a = frame[frame[method_col] == method].set_index(seed)[metric]
    b = frame[frame[method_col] == reference].set_index(seed)[metric]
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError(f"each seed must appear once per method; {method!r} or {reference!r} repeats one")
    if set(a.index) != set(b.index):
        raise ValueError(f"{method!r} and {reference!r} were not run on the same seeds: "
                         f"{sorted(a.index)} vs {sorted(b.index)}")
    return a.sort_index().to_numpy(), b.reindex(a.sort_index().index).to_numpy()


def compare(
    frame,
    metrics: Mapping[str, bool],
    *,
    reference: str = "ERM",
    by: Iterable[str] = (),
    method: str = "method",
    seed: str = "seed",
    confidence: float = 0.95,
    guard: float = 0.05,
):
    """Every method against ``reference``, seed by seed, for each metric (and each group of ``by``).

    Args:
        frame: a long pandas DataFrame, one row a (group, method, seed) run, such as
            :func:`mixbook.training.train.repeat` returns.
        metrics: ``{column: higher_is_better}``, e.g. ``{"accuracy": True, "ece": False}``.
        reference: the method every other is compared with (it must have run every seed the
            others ran, within each group).
        by: grouping columns (data set, regime, …).
        method, seed: the names of the method and seed columns.
        confidence, guard: as in :func:`paired_difference` and :meth:`PairedDifference.verdict`.

    Returns:
        A DataFrame indexed by ``(*by, method)`` with, per metric, the columns ``Δ <metric>``
        (mean paired difference), ``<metric> low``, ``<metric> high`` and ``<metric> vs
        <reference>`` (the verdict), and ``seeds`` (the number of pairs).
    """
    import pandas as pd

    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError("metrics must be a non-empty mapping {column: higher_is_better}")
    by = list(by)
    missing = [c for c in [*by, method, seed, *metrics] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}")
    groups = frame.groupby(by, sort=False) if by else [((), frame)]
    rows = []
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        if reference not in set(sub[method]):
            raise ValueError(f"reference {reference!r} has no runs in group {dict(zip(by, key))}")
        for name in sub[method].unique():
            if name == reference:
                continue
            row = dict(zip(by, key), **{method: name})
            for metric, up in metrics.items():
                a, b = _paired_columns(sub, metric, name, reference, seed, method)
                pd_ = paired_difference(a, b, confidence)
                row.update({f"Δ {metric}": pd_.mean, f"{metric} low": pd_.low, f"{metric} high": pd_.high,
                            f"{metric} vs {reference}": pd_.verdict(up, guard)})
                row["seeds"] = pd_.n
            rows.append(row)
    return pd.DataFrame(rows).set_index([*by, method])


def top_group(frame, metric: str, higher_is_better: bool, *, method: str = "method", seed: str = "seed",
              confidence: float = 0.95, guard: float = 0.05) -> list[str]:
    """The methods not measurably worse than the best mean on ``metric`` (paired intervals), best first.

    Args:
        frame: runs of one group (one data set / regime), one row a (method, seed).
        metric, higher_is_better: the column and its direction.
    """
    means = frame.groupby(method, sort=False)[metric].mean()
    ordered = means.sort_values(ascending=not higher_is_better).index
    best = ordered[0]
    out = []
    for name in ordered:
        if name == best:
            out.append(name)
            continue
        a, b = _paired_columns(frame, metric, name, best, seed, method)
        if paired_difference(a, b, confidence).verdict(higher_is_better, guard) != "worse":
            out.append(name)
    return out
