"""Tests of mixbook.chapters.stats: paired differences, verdicts, per-group comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mixbook.chapters import stats


def test_paired_difference_matches_scipy_ttest_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 12), rng.normal(0.5, 1.0, 12)
    pd_ = stats.paired_difference(a, b)
    ci = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert pd_.mean == pytest.approx(float((a - b).mean()))
    assert (pd_.low, pd_.high) == pytest.approx((ci.low, ci.high))
    assert pd_.n == 12 and pd_.half_width == pytest.approx((ci.high - ci.low) / 2)
    ci90 = sps.ttest_rel(a, b).confidence_interval(0.9)
    assert (stats.paired_difference(a, b, 0.9).low, stats.paired_difference(a, b, 0.9).high) == pytest.approx((ci90.low, ci90.high))


def test_pairing_removes_the_shared_seed_variation():
    # a seed effect 100x the method effect: unpaired the effect is invisible, paired it is clear
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 1.0, 10)
    a = seed_effect + 0.01 + rng.normal(0, 1e-3, 10)
    b = seed_effect
    assert stats.paired_difference(a, b).verdict(True) == "better"
    assert sps.ttest_ind(a, b).pvalue > 0.5


def test_coverage_of_the_interval_is_its_confidence():
    rng = np.random.default_rng(2)
    hits = 0
    trials = 4000
    for _ in range(trials):
        d = rng.normal(0.3, 1.0, 10)
        p = stats.paired_difference(d, np.zeros(10))
        hits += p.low <= 0.3 <= p.high
    se = math.sqrt(0.95 * 0.05 / trials)
    assert abs(hits / trials - 0.95) < 4 * se


@pytest.mark.parametrize("up,expect", [(True, "better"), (False, "worse")])
def test_verdict_direction(up, expect):
    p = stats.PairedDifference(0.02, 0.01, 0.03, 10)
    assert p.verdict(up) == expect
    q = stats.PairedDifference(-0.02, -0.03, -0.01, 10)
    assert q.verdict(up) == ("worse" if expect == "better" else "better")


def test_verdict_guard_band_near_zero():
    # the lower bound clears zero by 1% of the half-width: inside the 5% band
    p = stats.PairedDifference(1.0, 0.01, 1.99, 10)
    assert p.verdict(True) == "no measurable difference"
    assert p.verdict(True, guard=0.0) == "better"
    assert stats.PairedDifference(0.5, -0.1, 1.1, 10).verdict(True) == "no measurable difference"
    assert stats.PairedDifference(0.5, math.nan, math.nan, 1).verdict(True) == "no measurable difference"


def test_single_pair_and_constant_differences():
    one = stats.paired_difference([1.0], [0.0])
    assert one.mean == 1.0 and math.isnan(one.low) and one.verdict() == "no measurable difference"
    const = stats.paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert const.low == const.high == pytest.approx(0.5)
    assert str(const) == "+0.500 [+0.500, +0.500]"


@pytest.mark.parametrize("a,b,exc,match", [
    ([1, 2], [1], ValueError, "same length"), ([], [], ValueError, "non-empty"),
    ([1, float("nan")], [1, 2], ValueError, "finite")])
def test_paired_difference_bad_input(a, b, exc, match):
    with pytest.raises(exc, match=match):
        stats.paired_difference(a, b)


@pytest.mark.parametrize("c,exc", [(0, ValueError), (1, ValueError), (95, ValueError), ("0.95", TypeError)])
def test_confidence_checked(c, exc):
    with pytest.raises(exc, match="confidence"):
        stats.paired_difference([1, 2], [0, 1], c)


def _frame():
    rng = np.random.default_rng(3)
    rows = []
    for regime, gain in (("clean", 0.0), ("noisy", 0.1)):
        for s in range(10):
            base = rng.normal(0.8, 0.05)
            rows.append({"regime": regime, "method": "ERM", "seed": s, "accuracy": base, "ece": 0.05})
            rows.append({"regime": regime, "method": "mixup", "seed": s, "accuracy": base + gain + rng.normal(0, 0.01),
                         "ece": 0.08 + rng.normal(0, 0.005)})
    return pd.DataFrame(rows)


def test_compare_per_group():
    table = stats.compare(_frame(), {"accuracy": True, "ece": False}, by=["regime"])
    assert list(table.index) == [("clean", "mixup"), ("noisy", "mixup")]
    assert table.loc[("noisy", "mixup"), "accuracy vs ERM"] == "better"
    assert table.loc[("clean", "mixup"), "accuracy vs ERM"] == "no measurable difference"
    assert (table["ece vs ERM"] == "worse").all() and (table["seeds"] == 10).all()
    low, high = table.loc[("noisy", "mixup"), ["accuracy low", "accuracy high"]]
    assert low < table.loc[("noisy", "mixup"), "Δ accuracy"] < high


def test_compare_refuses_unpaired_runs():
    f = _frame()
    f = f[~((f.method == "mixup") & (f.seed == 3))]
    with pytest.raises(ValueError, match="same seeds"):
        stats.compare(f, {"accuracy": True}, by=["regime"])
    with pytest.raises(ValueError, match="reference"):
        stats.compare(_frame(), {"accuracy": True}, reference="nope")
    with pytest.raises(ValueError, match="lacks the columns"):
        stats.compare(_frame(), {"f1": True})


def test_top_group():
    f = _frame()
    noisy = f[f.regime == "noisy"]
    assert stats.top_group(noisy, "accuracy", True) == ["mixup"]
    assert stats.top_group(noisy, "ece", False) == ["ERM"]
    clean = f[f.regime == "clean"]
    assert set(stats.top_group(clean, "accuracy", True)) == {"ERM", "mixup"}
