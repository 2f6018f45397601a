"""Paired comparisons of training methods over seeds: the one statistic every chapter's verdict uses.

Chapters 1-6 and 8: every paired verdict.

**The t interval over seeds.** Within a seed, :func:`mixbook.training.train.repeat` (and
:func:`mixbook.training.population.repeat`) give every method the same initial weights and the
same batches, so two methods are compared seed by seed: ``d_s = metric(method, s) −
metric(reference, s)``. The verdict rests on the mean paired difference and its Student-t
confidence interval over the ``n`` seeds,

    d̄ ± t_{n−1, (1+c)/2} · sd(d) / √n,

which removes the seed-to-seed variation the two methods share (the initialisation, the data
order) and keeps only the variation of their difference.

**The bootstrap over seeds × test examples** (:func:`hierarchical_bootstrap`). When every seed
is evaluated on the *same* test set, the t interval over seeds leaves out the sampling variation
of the test set itself (another test set of the same size would give other numbers, and the
same other numbers for every seed). Resampling seeds and test examples together puts both in
the interval; see :func:`hierarchical_bootstrap`.

**Verdicts and their guard.** Without a multiple-comparison correction a verdict is
``"better"`` or ``"worse"`` only when the interval clears zero by more than ``guard`` of its
half-width; an interval that ends within that band of zero, or that contains it, reads ``"no
measurable difference"``. With a Holm correction (:func:`holm`, ``compare(...,
correction="holm")``) the verdict reads the adjusted p-value instead: ``"better"``/``"worse"``
only when ``p_adjusted < α·(1 − guard)``, ``α = 1 − confidence``, and the mean difference has
that sign. Either band keeps a verdict printed by a check cell from flipping when an interval
end or a p-value lies within floating-point rounding of its threshold on another machine.

**Power.** :meth:`PairedDifference.detectable` gives the smallest true mean difference the
experiment would have detected (with probability ``power``), which a negative verdict states.

**Margins.** :func:`equivalent` (two one-sided tests) and :func:`non_inferior` test a difference
against a margin rather than against zero.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["PairedDifference", "paired_difference", "compare", "top_group", "VERDICTS", "holm",
           "hierarchical_bootstrap", "MarginTest", "equivalent", "non_inferior", "INTERVALS"]

VERDICTS = ("better", "worse", "no measurable difference")

INTERVALS = {"t": "t over seeds", "bootstrap": "bootstrap over seeds × test examples"}
"""The ``interval`` options of :func:`compare` and :func:`top_group`, and the words its
``<metric> interval`` column uses for each."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a − b`` over paired seeds with its confidence interval ``[low, high]``.

    ``n`` is the number of paired seeds; with ``n < 2`` the t interval is ``(nan, nan)``.

    Attributes:
        mean, low, high: the mean paired difference and the interval's ends.
        n: number of paired seeds.
        confidence: the interval's coverage.
        p_value: two-sided p-value of "mean difference = 0" (paired t-test for ``method="t"``,
            bootstrap p-value for ``method="bootstrap"``); ``nan`` when there is none (``n < 2``
            for the t-test, or an object built by hand).
        p_adjusted: the multiple-comparison-adjusted p-value (Holm) when a correction was
            applied, else ``None``; when set, :meth:`verdict` reads it instead of the interval.
        se: the standard error of ``mean`` (``sd(d)/√n`` for the t interval, the standard
            deviation of the bootstrap replicates for the bootstrap); ``nan`` when unknown.
        df: degrees of freedom of the t interval (``n − 1``); ``None`` for a bootstrap interval,
            whose :meth:`detectable` uses normal quantiles.
        method: ``"t"`` or ``"bootstrap"``: how the interval was made.
        n_examples: the number of paired test examples a bootstrap resampled (``None`` for t).
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95
    p_value: float = math.nan
    p_adjusted: float | None = None
    se: float = math.nan
    df: float | None = None
    method: str = "t"
    n_examples: int | None = None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def alpha(self) -> float:
        """The two-sided level ``1 − confidence``."""
        return 1.0 - self.confidence

    def verdict(self, higher_is_better: bool = True, guard: float = 0.05) -> str:
        """``"better"``, ``"worse"`` or ``"no measurable difference"`` for ``a`` against ``b``.

        Without a correction (``p_adjusted is None``) the interval decides: it must clear zero
        by more than ``guard`` of its half-width. With one, the adjusted p-value decides:
        ``p_adjusted < (1 − confidence)·(1 − guard)`` and the sign of ``mean`` gives the
        direction. See the module docstring.

        Args:
            higher_is_better: ``True`` for accuracy, ``False`` for NLL, ECE, error, time.
            guard: the band, a fraction in ``[0, 1)`` (of the half-width, or of ``α``).
        """
        if not isinstance(higher_is_better, bool):
            raise TypeError(f"higher_is_better must be a bool, got {type(higher_is_better).__name__}")
        guard = _fraction("guard", guard, closed=True)
        if self.p_adjusted is not None:
            p = self.p_adjusted
            if not (math.isfinite(p) and p < self.alpha * (1 - guard)) or not math.isfinite(self.mean) \
                    or self.mean == 0:
                return VERDICTS[2]
            up = self.mean > 0
            return VERDICTS[0] if up == higher_is_better else VERDICTS[1]
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

    def detectable(self, power: float = 0.8, alpha: float | None = None) -> float:
        """The smallest true mean difference detected with probability ``power`` at two-sided level ``alpha``.

        The usual normal/t approximation for a test of "mean = 0" whose estimate has standard
        error ``se``:

            δ = (q_{1−α/2} + q_{power}) · se,

        with ``q`` the Student-t quantiles at ``df = n − 1`` for the t interval and the standard
        normal quantiles for a bootstrap interval (``se`` = the standard deviation of the
        bootstrap replicates). It uses the *observed* standard error, so it describes this
        experiment's resolution: a "no measurable difference" verdict means a true effect of at
        least ``δ`` would have been detected with probability ≈ ``power``. Against the exact
        noncentral-t power of the paired t-test the approximation is within 0.01 from 6 seeds on
        (at 3 seeds, 0.77 for a stated 0.8). The verdict's guard (threshold ``α·(1 − guard)``)
        is not included: it raises ``δ`` by about 1 % at the defaults.

        Args:
            power: in ``(0, 1)``.
            alpha: two-sided level in ``(0, 1)``; ``None``: ``1 − confidence``. Under a Holm
                correction over ``m`` comparisons, ``α/m`` gives a size that is detected with at
                least ``power`` whatever the other comparisons (Holm rejects every p ≤ α/m).

        Returns:
            ``δ ≥ 0``, or ``nan`` when the standard error is unknown (``n < 2``).
        """
        from scipy import stats

        power = _fraction("power", power)
        alpha = self.alpha if alpha is None else _fraction("alpha", alpha)
        if not math.isfinite(self.se):
            return math.nan
        if self.df is None:
            q = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
        else:
            q = stats.t.ppf(1 - alpha / 2, self.df) + stats.t.ppf(power, self.df)
        return float(q * self.se)

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


def _pairs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """``a − b`` as float64 after the checks of :func:`paired_difference`."""
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape or a_arr.size == 0:
        raise ValueError(f"a and b must be non-empty 1-d sequences of the same length, got shapes "
                         f"{a_arr.shape} and {b_arr.shape}")
    if not (np.isfinite(a_arr).all() and np.isfinite(b_arr).all()):
        raise ValueError("a and b must be finite (a diverged run has no paired difference)")
    return a_arr - b_arr


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """Student-t interval and paired t-test of the mean of ``a[i] − b[i]`` (``a`` and ``b`` paired by position).

    Interval ``d̄ ± t_{n−1,(1+c)/2}·sd(d)/√n``; p-value ``2·P(T_{n−1} ≥ |d̄|/(sd(d)/√n))``
    (:func:`scipy.stats.ttest_rel`). When every difference is equal (``sd = 0``) the p-value is
    ``0`` if that difference is non-zero and ``1`` if it is zero (the limit; SciPy returns nan).

    Args:
        a, b: equal-length sequences of finite numbers (one per seed), ``len ≥ 1``.
        confidence: coverage of the interval, in ``(0, 1)``.

    Returns:
        :class:`PairedDifference` with ``method="t"``, ``df = n − 1``, ``se = sd(d)/√n``; the
        interval, p-value and standard error are ``nan`` for a single pair, and the interval has
        zero width when every difference is equal.
    """
    from scipy import stats

    confidence = _fraction("confidence", confidence)
    d = _pairs(a, b)
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, n, confidence)
    sd = d.std(ddof=1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))
    se = float(sd / math.sqrt(n))
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(min(1.0, 2 * stats.t.sf(abs(mean) / se, n - 1)))
    return PairedDifference(mean, mean - half, mean + half, n, confidence, p_value=p, se=se, df=n - 1)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values, in the order given.

    Holm (1979), "A simple sequentially rejective multiple test procedure": with the ``m``
    p-values sorted ``p_(1) ≤ … ≤ p_(m)``,

        p̃_(k) = min(1, max_{j ≤ k} (m − j + 1)·p_(j)),

    and ``H_(k)`` is rejected at family-wise level ``α`` iff ``p̃_(k) ≤ α``. Ties get the same
    adjusted value whatever their order.

    Args:
        p_values: a 1-d sequence of p-values in ``[0, 1]``, no NaN (a comparison without a
            p-value cannot be part of a family); may be empty.

    Returns:
        float64 array of shape ``(m,)``, monotone in the p-values, capped at 1.
    """
    p = np.asarray(p_values)
    if p.dtype.kind not in "iuf":
        raise TypeError(f"p_values must be real numbers in [0, 1], got dtype {p.dtype}")
    p = p.astype(np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-d, got shape {p.shape}")
    if np.isnan(p).any():
        raise ValueError(f"p_values must not contain NaN (positions {np.flatnonzero(np.isnan(p)).tolist()}); "
                         "a comparison without a p-value (e.g. a single seed) cannot be corrected")
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"p_values must lie in [0, 1], got values in [{p.min()}, {p.max()}]")
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def _int_at_least(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def _matrix(name: str, x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (seeds × examples), got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{name} must have shape (seeds, examples) with both >= 1, got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


_BOOT_CELLS = 1 << 22
"""Replicates are evaluated in blocks of at most this many (replicate, example) cells (32 MiB of
float64 and as much of indices), so memory stays bounded for large test sets; the draws do not
depend on the block size (a test checks it)."""


def hierarchical_bootstrap(a: object, b: object, *, confidence: float = 0.95, n_boot: int = 2000,
                           seed: int = 0) -> PairedDifference:
    """Bootstrap over seeds × test examples of the mean paired difference of a per-example metric.

    ``a`` and ``b`` hold a per-example value (1/0 correct, per-example NLL, …) for two methods,
    shape ``(S, N)``: the rows are the same ``S`` seeds (paired), the columns the same ``N``
    test examples (paired: every seed of both methods was evaluated on the same test set). With
    ``D = a − b``, each replicate draws seeds with replacement and, independently, test examples
    with replacement (one column draw per replicate, shared by all its seeds, because every seed
    saw the same test set: Owen's 2007 "pigeonhole" bootstrap of a crossed design) and takes the
    mean of ``D`` over the resampled cells. The draws, in this order from
    ``numpy.random.default_rng(seed)``: seed indices ``I = rng.integers(0, S, size=(B, S))``, then
    example indices ``J = rng.integers(0, N, size=(B, N))`` (drawn in blocks of replicates, which
    gives the same stream), and

        d*_b = mean_{k,l} D[I[b,k], J[b,l]] = Σ_l (Ws[b] @ D)[J[b,l]] / (S·N),

    with ``Ws[b]`` the multinomial counts of ``I[b]`` (a matrix product and a gather per block of
    replicates; no Python loop over replicates).

    * interval: the percentile interval, the ``(1 − c)/2`` and ``(1 + c)/2`` quantiles of the
      ``d*`` (:func:`numpy.quantile`, linear interpolation);
    * p-value of "mean = 0", two-sided: ``min(1, 2·min(1 + #{d* ≤ 0}, 1 + #{d* ≥ 0}) / (B + 1))``
      (the ``+1`` counts the observed sample among the replicates, so p is never 0; the smallest
      attainable value is ``2/(B + 1)``);
    * ``se``: the standard deviation of the ``d*`` (``ddof=1``); ``mean`` is the observed ``D.mean()``.

    The pigeonhole bootstrap counts the seed × example interaction more than once and so is
    mildly conservative for it (Owen 2007); the percentile interval over few seeds is, on the
    other hand, narrower than a t interval for the seed component (normal quantiles and a
    ``(S − 1)/S`` variance factor), so with ~10 seeds its coverage of the seed component alone is
    near 0.9, not 0.95. The interval covers the test-set sampling that a t interval over seeds
    leaves out.

    Args:
        a, b: arrays of real numbers, shape ``(S, N)``, ``S, N ≥ 1``, finite.
        confidence: coverage in ``(0, 1)``.
        n_boot: number of replicates ``B``, an int ``>= 100``.
        seed: seed of the NumPy generator, an int ``>= 0``: the same seed gives the same result.

    Returns:
        :class:`PairedDifference` with ``method="bootstrap"``, ``n = S``, ``n_examples = N``,
        ``df = None``.
    """
    confidence = _fraction("confidence", confidence)
    n_boot = _int_at_least("n_boot", n_boot, 100)
    seed = _int_at_least("seed", seed, 0)
    a_arr, b_arr = _matrix("a", a), _matrix("b", b)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a and b must have the same shape (seeds, examples), got {a_arr.shape} and {b_arr.shape}")
    d = a_arr - b_arr
    s, n = d.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, s, size=(n_boot, s))
    ws = np.zeros((n_boot, s))
    np.add.at(ws, (np.repeat(np.arange(n_boot), s), seeds.ravel()), 1.0)      # multinomial counts of the seeds
    reps = np.empty(n_boot)
    block = max(1, _BOOT_CELLS // n)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        cols = rng.integers(0, n, size=(stop - start, n))
        reps[start:stop] = np.take_along_axis(ws[start:stop] @ d, cols, axis=1).sum(1) / (s * n)
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    below, above = int((reps <= 0).sum()), int((reps >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (n_boot + 1))
    return PairedDifference(float(d.mean()), float(low), float(high), s, confidence, p_value=p,
                            se=float(reps.std(ddof=1)), df=None, method="bootstrap", n_examples=n)


# ------------------------------------------------------------------------- margins
@dataclass(frozen=True)
class MarginTest:
    """The result of :func:`equivalent` or :func:`non_inferior`.

    Unpacks as ``(holds, difference)``: ``ok, diff = equivalent(a, b, 0.01)``.

    Attributes:
        holds: whether the claim (equivalence within ``±margin``, or non-inferiority by at most
            ``margin``) is shown at level ``α = 1 − confidence``: ``p_value < α·(1 − guard)``.
        p_value: the test's p-value (for equivalence the larger of the two one-sided p-values);
            ``nan`` with a single pair.
        margin: the margin, ``> 0``.
        difference: the paired difference with its ``(1 − 2α)`` two-sided t interval, whose
            ends are the one-sided ``(1 − α)`` bounds the tests compare with the margin.
        test: ``"equivalence"`` or ``"non-inferiority"``.
    """

    holds: bool
    p_value: float
    margin: float
    difference: PairedDifference
    test: str

    def __iter__(self) -> Iterator[object]:
        yield self.holds
        yield self.difference


def _margin(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"margin must be a real number > 0, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"margin must be a finite number > 0, got {value}")
    return value


def _one_sided(d: np.ndarray, shift: float, upper: bool) -> float:
    """One-sided paired t-test p-value of H0 ``mean ≤ shift`` (``upper=False``: H0 ``mean ≥ shift``)."""
    from scipy import stats

    n = d.size
    if n < 2:
        return math.nan
    se = d.std(ddof=1) / math.sqrt(n)
    diff = float(d.mean()) - shift
    if se == 0:
        return 0.0 if (diff > 0 if upper else diff < 0) else 1.0
    t = diff / se
    return float(stats.t.sf(t, n - 1) if upper else stats.t.cdf(t, n - 1))


def _margin_confidence(confidence: object) -> float:
    confidence = _fraction("confidence", confidence)
    if confidence <= 0.5:
        raise ValueError(f"confidence must be in (0.5, 1) for a one-sided test (its 1 − 2α interval), got {confidence}")
    return confidence


def equivalent(a: Sequence[float], b: Sequence[float], margin: float, *, confidence: float = 0.95,
               guard: float = 0.0) -> MarginTest:
    """Two one-sided tests (TOST, Schuirmann 1987) that the mean paired difference lies within ``±margin``.

    H0: ``|μ_d| ≥ margin``; rejected at level ``α = 1 − confidence`` when both one-sided paired
    t-tests reject, ``H0⁻: μ_d ≤ −margin`` and ``H0⁺: μ_d ≥ margin``, i.e. when
    ``p = max(p⁻, p⁺) < α`` — equivalently when the ``(1 − 2α)`` t interval lies inside
    ``(−margin, margin)``.

    Args:
        a, b: paired samples as in :func:`paired_difference`.
        margin: the equivalence margin, ``> 0``, in the metric's units.
        confidence: ``1 − α``, in ``(0.5, 1)``.
        guard: require ``p < α·(1 − guard)`` (in ``[0, 1)``, default 0: the textbook test); a
            check cell that prints the result may use the verdicts' ``0.05`` so that a p-value
            within rounding of ``α`` cannot flip it.

    Returns:
        :class:`MarginTest` (unpacks as ``(holds, difference)``); ``holds`` is ``False`` with a
        single pair.
    """
    margin = _margin(margin)
    confidence = _margin_confidence(confidence)
    guard = _fraction("guard", guard, closed=True)
    d = _pairs(a, b)
    p = max(_one_sided(d, -margin, upper=True), _one_sided(d, margin, upper=False)) if d.size > 1 else math.nan
    diff = paired_difference(a, b, 2 * confidence - 1)
    holds = bool(math.isfinite(p) and p < (1 - confidence) * (1 - guard))
    return MarginTest(holds, p, margin, diff, "equivalence")


def non_inferior(a: Sequence[float], b: Sequence[float], margin: float, higher_is_better: bool = True,
                 confidence: float = 0.95, *, guard: float = 0.0) -> MarginTest:
    """One-sided paired t-test that ``a`` is not worse than ``b`` by ``margin`` or more.

    ``higher_is_better``: H0 ``μ_d ≤ −margin``, rejected when ``p = P(T_{n−1} ≥ (d̄ + margin)/se) < α``
    (the lower ``(1 − α)`` bound of ``μ_d`` lies above ``−margin``). Otherwise H0 ``μ_d ≥ margin``,
    ``p = P(T_{n−1} ≤ (d̄ − margin)/se)``. ``d = a − b``, ``α = 1 − confidence``.

    Args:
        a, b: paired samples as in :func:`paired_difference`.
        margin: how much worse ``a`` may be, ``> 0``, in the metric's units.
        higher_is_better: the metric's direction.
        confidence: ``1 − α``, in ``(0.5, 1)``.
        guard: as in :func:`equivalent`.

    Returns:
        :class:`MarginTest` (unpacks as ``(holds, difference)``).
    """
    margin = _margin(margin)
    if not isinstance(higher_is_better, bool):
        raise TypeError(f"higher_is_better must be a bool, got {type(higher_is_better).__name__}")
    confidence = _margin_confidence(confidence)
    guard = _fraction("guard", guard, closed=True)
    d = _pairs(a, b)
    p = _one_sided(d, -margin, upper=True) if higher_is_better else _one_sided(d, margin, upper=False)
    diff = paired_difference(a, b, 2 * confidence - 1)
    holds = bool(math.isfinite(p) and p < (1 - confidence) * (1 - guard))
    return MarginTest(holds, p, margin, diff, "non-inferiority")


# ------------------------------------------------------------------------- tables
def _paired_columns(frame, metric: str, method: str, reference: str, seed: str, method_col: str):
    a = frame[frame[method_col] == method].set_index(seed)[metric]
    b = frame[frame[method_col] == reference].set_index(seed)[metric]
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError(f"each seed must appear once per method; {method!r} or {reference!r} repeats one")
    if set(a.index) != set(b.index):
        raise ValueError(f"{method!r} and {reference!r} were not run on the same seeds: "
                         f"{sorted(a.index)} vs {sorted(b.index)}")
    return a.sort_index().to_numpy(), b.reindex(a.sort_index().index).to_numpy()


def _example_matrix(cells: np.ndarray, totals: np.ndarray, column: str, metric: str, who: str) -> np.ndarray:
    """Stack one method's per-example cells (one a seed) into ``(S, N)``, checking each against its metric."""
    rows = []
    for cell, total in zip(cells, totals):
        if not isinstance(cell, np.ndarray) or cell.dtype.kind not in "biuf" or cell.ndim != 1 or cell.size == 0:
            raise TypeError(f"examples column {column!r} must hold non-empty 1-d numpy arrays of real numbers "
                            f"(one value a test example); {who} has {type(cell).__name__}"
                            + (f" of shape {cell.shape}, dtype {cell.dtype}" if isinstance(cell, np.ndarray) else ""))
        rows.append(cell.astype(np.float64))
    sizes = {r.size for r in rows}
    if len(sizes) != 1:
        raise ValueError(f"examples column {column!r}: {who} has test sets of sizes {sorted(sizes)}; the bootstrap "
                         "over test examples needs every seed evaluated on the same test set")
    m = np.stack(rows)
    means = m.mean(1)
    bad = ~np.isclose(means, np.asarray(totals, dtype=np.float64), rtol=1e-5, atol=1e-6)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"examples column {column!r} does not average to metric {metric!r} for {who}: "
                         f"mean {means[i]:.6g} vs {float(totals[i]):.6g} (seed position {i}); the per-example "
                         "values must be the ones the metric is the mean of")
    return m


def _difference(frame, metric: str, name: str, reference: str, seed: str, method: str, confidence: float,
                column: str | None, n_boot: int, boot_seed: int) -> PairedDifference:
    a, b = _paired_columns(frame, metric, name, reference, seed, method)
    if column is None:
        return paired_difference(a, b, confidence)
    ea, eb = _paired_columns(frame, column, name, reference, seed, method)
    ma = _example_matrix(ea, a, column, metric, repr(name))
    mb = _example_matrix(eb, b, column, metric, repr(reference))
    if ma.shape != mb.shape:
        raise ValueError(f"examples column {column!r}: {name!r} has {ma.shape[1]} test examples a seed and "
                         f"{reference!r} {mb.shape[1]}; they must be evaluated on the same test set")
    return hierarchical_bootstrap(ma, mb, confidence=confidence, n_boot=n_boot, seed=boot_seed)


def _example_columns(frame, metrics: Iterable[str], interval: object, examples: object) -> dict[str, str | None]:
    """``{metric: examples column or None}`` after checking ``interval`` and ``examples``."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {tuple(INTERVALS)}, got {interval!r}")
    metrics = list(metrics)
    if interval == "t":
        if examples is not None:
            raise ValueError("examples is used only with interval='bootstrap'; pass interval='bootstrap' or drop examples")
        return dict.fromkeys(metrics)
    if examples is None:
        raise ValueError("interval='bootstrap' needs examples={metric: column of per-example value arrays}")
    if not isinstance(examples, Mapping):
        raise TypeError(f"examples must be a mapping {{metric: column}}, got {type(examples).__name__}")
    unknown = [k for k in examples if k not in metrics]
    if unknown:
        raise ValueError(f"examples names metrics that are not compared: {unknown} (metrics: {metrics})")
    for k, col in examples.items():
        if not isinstance(col, str):
            raise TypeError(f"examples[{k!r}] must be a column name (str), got {type(col).__name__}")
    missing = [c for c in examples.values() if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the examples columns {missing}")
    return {m: examples.get(m) for m in metrics}


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
    interval: str = "t",
    examples: Mapping[str, str] | None = None,
    correction: str | None = None,
    n_boot: int = 2000,
    boot_seed: int = 0,
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
        interval: ``"t"`` (Student t over seeds, :func:`paired_difference`) or ``"bootstrap"``
            (:func:`hierarchical_bootstrap` over seeds × test examples).
        examples: with ``interval="bootstrap"`` (required there, refused with ``"t"``):
            ``{metric: column}``, the column's cells holding 1-d numpy arrays of that metric's
            per-test-example values (the metric must be their mean, checked to ``rtol=1e-5``;
            every seed and method evaluated on the same test set). A metric without an entry
            (ECE, which is not a mean over examples) uses the t interval; the ``<metric>
            interval`` column says which.
        correction: ``None`` (default: each verdict at level ``1 − confidence``, read from its
            interval) or ``"holm"``: Holm over every (group, method, metric) comparison of this
            call (the chapter's family); verdicts then read the adjusted p-value (see
            :meth:`PairedDifference.verdict`). Needs a p-value for every comparison (≥ 2 seeds
            for the t-test), and with bootstrap intervals ``n_boot`` large enough that the
            smallest bootstrap p-value ``2/(n_boot + 1)`` can pass the first Holm step.
        n_boot, boot_seed: replicates and seed of the bootstrap (the same seed for every
            comparison of the call).

    Returns:
        A DataFrame indexed by ``(*by, method)`` with, per metric, the columns ``Δ <metric>``
        (mean paired difference), ``<metric> low``, ``<metric> high``, ``<metric> vs
        <reference>`` (the verdict), ``<metric> p`` (two-sided p-value of no difference),
        ``<metric> p (Holm)`` (with ``correction="holm"`` only), ``<metric> detectable`` (the
        true difference detected with power 0.8 at level ``1 − confidence``, at ``α/m`` under
        Holm with ``m`` comparisons: see :meth:`PairedDifference.detectable`) and ``<metric>
        interval`` (``"t over seeds"`` or ``"bootstrap over seeds × test examples"``), and
        ``seeds`` (the number of pairs).
    """
    import pandas as pd

    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError("metrics must be a non-empty mapping {column: higher_is_better}")
    if correction not in (None, "holm"):
        raise ValueError(f"correction must be None or 'holm', got {correction!r}")
    confidence = _fraction("confidence", confidence)
    guard = _fraction("guard", guard, closed=True)
    n_boot = _int_at_least("n_boot", n_boot, 100)
    boot_seed = _int_at_least("boot_seed", boot_seed, 0)
    by = list(by)
    missing = [c for c in [*by, method, seed, *metrics] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}")
    columns = _example_columns(frame, metrics, interval, examples)
    groups = frame.groupby(by, sort=False) if by else [((), frame)]
    rows: list[dict] = []
    cells: list[tuple[int, str, PairedDifference]] = []
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        if reference not in set(sub[method]):
            raise ValueError(f"reference {reference!r} has no runs in group {dict(zip(by, key))}")
        for name in sub[method].unique():
            if name == reference:
                continue
            rows.append(dict(zip(by, key), **{method: name}))
            for metric in metrics:
                cells.append((len(rows) - 1, metric, _difference(sub, metric, name, reference, seed, method,
                                                                  confidence, columns[metric], n_boot, boot_seed)))
    alpha = 1 - confidence
    if correction == "holm" and cells:
        m = len(cells)
        for i, metric, d in cells:
            if not math.isfinite(d.p_value):
                where = {**{k: rows[i][k] for k in by}, method: rows[i][method]}
                raise ValueError(f"correction='holm' needs a p-value for every comparison; {where}, {metric!r} has "
                                 f"none ({d.n} seed(s): the t-test needs >= 2)")
        if any(d.method == "bootstrap" for _, _, d in cells) and 2 / (n_boot + 1) >= alpha * (1 - guard) / m:
            need = math.ceil(2 * m / (alpha * (1 - guard)))
            raise ValueError(f"n_boot={n_boot} is too small for a Holm correction over {m} comparisons: the smallest "
                             f"bootstrap p-value 2/(n_boot + 1) cannot pass α/m; use n_boot >= {need}")
        adjusted = holm([d.p_value for _, _, d in cells])
        cells = [(i, metric, replace(d, p_adjusted=float(p))) for (i, metric, d), p in zip(cells, adjusted)]
    level = alpha / len(cells) if (correction == "holm" and cells) else alpha
    for i, metric, d in cells:
        row = rows[i]
        row.update({f"Δ {metric}": d.mean, f"{metric} low": d.low, f"{metric} high": d.high,
                    f"{metric} vs {reference}": d.verdict(metrics[metric], guard)})
        row["seeds"] = d.n
        row[f"{metric} p"] = d.p_value
        if correction == "holm":
            row[f"{metric} p (Holm)"] = d.p_adjusted
        row[f"{metric} detectable"] = d.detectable(0.8, level)
        row[f"{metric} interval"] = INTERVALS[d.method]
    return pd.DataFrame(rows).set_index([*by, method])


def top_group(frame, metric: str, higher_is_better: bool, *, method: str = "method", seed: str = "seed",
              confidence: float = 0.95, guard: float = 0.05, interval: str = "t",
              examples: str | Mapping[str, str] | None = None, n_boot: int = 2000, boot_seed: int = 0) -> list[str]:
    """The methods not measurably worse than the best mean on ``metric`` (paired intervals), best first.

    Each method is compared with the best one by the verdict of its paired interval
    (:meth:`PairedDifference.verdict`, uncorrected): the top group is a description of which
    methods this experiment cannot separate from the best, each exclusion a statement at level
    ``1 − confidence``. No multiple-comparison correction is applied (a correction would only
    widen the group); a chapter that states the exclusions as findings counts them in its Holm
    family (:func:`compare` with ``correction="holm"``).

    Args:
        frame: runs of one group (one data set / regime), one row a (method, seed).
        metric, higher_is_better: the column and its direction.
        method, seed, confidence, guard: as in :func:`compare`.
        interval, n_boot, boot_seed: as in :func:`compare`.
        examples: with ``interval="bootstrap"``: the column of per-example arrays of ``metric``
            (a name, or a mapping as in :func:`compare`, where a ``metric`` without an entry
            uses the t interval).
    """
    confidence = _fraction("confidence", confidence)
    guard = _fraction("guard", guard, closed=True)
    n_boot = _int_at_least("n_boot", n_boot, 100)
    boot_seed = _int_at_least("boot_seed", boot_seed, 0)
    if isinstance(examples, str):
        examples = {metric: examples}
    column = _example_columns(frame, [metric], interval, examples)[metric]
    means = frame.groupby(method, sort=False)[metric].mean()
    ordered = means.sort_values(ascending=not higher_is_better).index
    best = ordered[0]
    out = []
    for name in ordered:
        if name == best:
            out.append(name)
            continue
        d = _difference(frame, metric, name, best, seed, method, confidence, column, n_boot, boot_seed)
        if d.verdict(higher_is_better, guard) != "worse":
            out.append(name)
    return out
