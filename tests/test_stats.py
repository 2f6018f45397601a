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


# ---------------------------------------------------------------- p-values, power, Holm
def _holm_by_procedure(p):
    """Holm's adjusted p-values from the definition: the smallest level α at which the step-down
    procedure (reject p_(k) while p_(k) <= α/(m - k + 1)) rejects each hypothesis, 1 if none does."""
    p = list(map(float, p))
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])

    def rejected(alpha):
        out = set()
        for k, i in enumerate(order):
            if (m - k) * p[i] <= alpha:
                out.add(i)
            else:
                break
        return out

    candidates = sorted({min(1.0, (m - k) * p[i]) for k, i in enumerate(order)} | {1.0})
    return np.array([min((a for a in candidates if i in rejected(a)), default=1.0) for i in range(m)])


def test_holm_textbook_examples():
    # worked by hand: sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, 1·0.04, then running max
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm")
    assert stats.holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])          # capped at 1
    assert stats.holm([0.03]) == pytest.approx([0.03])                   # a family of one is uncorrected
    assert stats.holm([]).shape == (0,)


def test_holm_matches_the_step_down_procedure_and_is_monotone():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        p = rng.uniform(0, 1, m) ** 3
        if rng.random() < 0.3:                                          # ties
            p[: m // 2] = p[0]
        adj = stats.holm(p)
        assert adj == pytest.approx(_holm_by_procedure(p), abs=1e-15)
        assert (adj >= p).all() and (adj <= 1).all()
        order = np.argsort(p)
        assert (np.diff(adj[order]) >= 0).all()
        perm = rng.permutation(m)
        assert stats.holm(p[perm]) == pytest.approx(adj[perm])


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(1)
    for m in (1, 3, 10, 40):
        p = rng.uniform(0, 0.2, m)
        assert stats.holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1])


@pytest.mark.parametrize("p,exc,match", [
    ([0.1, float("nan")], ValueError, "NaN"), ([0.1, 1.5], ValueError, r"\[0, 1\]"), ([-0.1], ValueError, r"\[0, 1\]"),
    ([[0.1, 0.2]], ValueError, "1-d"), (0.1, ValueError, "1-d"), (["0.1"], TypeError, "real numbers"),
    ([True, False], TypeError, "real numbers")])
def test_holm_bad_input(p, exc, match):
    with pytest.raises(exc, match=match):
        stats.holm(p)


def test_paired_p_value_is_scipys_paired_t_test():
    rng = np.random.default_rng(4)
    for n in (2, 5, 12):
        a, b = rng.normal(0.3, 1, n), rng.normal(0, 1, n)
        d = stats.paired_difference(a, b)
        assert d.p_value == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-10)
        assert d.se == pytest.approx(sps.sem(a - b)) and d.df == n - 1 and d.method == "t"
        assert d.p_adjusted is None and d.n_examples is None
    assert math.isnan(stats.paired_difference([1.0], [0.0]).p_value)
    assert stats.paired_difference([1.0, 2.0], [0.5, 1.5]).p_value == 0.0   # constant non-zero difference
    assert stats.paired_difference([1.0, 2.0], [1.0, 2.0]).p_value == 1.0   # constant zero difference


def test_detectable_has_the_stated_power():
    """The exact power of the two-sided paired t-test at δ = detectable() (noncentral t) is the power asked
    for, within 0.01 from 6 seeds on (the approximation gives 0.77 instead of 0.8 at 3 seeds)."""
    rng = np.random.default_rng(5)
    for n, power in ((10, 0.8), (20, 0.9), (6, 0.8), (30, 0.8)):
        d = rng.normal(0, 0.7, n)
        pd_ = stats.paired_difference(d, np.zeros(n))
        delta = pd_.detectable(power)
        sd = d.std(ddof=1)
        crit = sps.t.ppf(0.975, n - 1)
        nc = delta / (sd / math.sqrt(n))
        exact = sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc)
        assert exact == pytest.approx(power, abs=0.01)
        # a stricter level needs a larger effect
        assert pd_.detectable(power, alpha=0.01) > delta
    # bootstrap (normal) form: Φ(δ/se − z_{1−α/2}) = power
    boot = stats.PairedDifference(0.0, -1.0, 1.0, 10, se=0.25, df=None, method="bootstrap")
    delta = boot.detectable(0.8)
    assert sps.norm.cdf(delta / 0.25 - sps.norm.ppf(0.975)) == pytest.approx(0.8)
    assert math.isnan(stats.paired_difference([1.0], [0.0]).detectable())
    with pytest.raises(ValueError, match="power"):
        boot.detectable(1.0)
    with pytest.raises(ValueError, match="alpha"):
        boot.detectable(0.8, alpha=0.0)


def test_verdict_reads_the_adjusted_p_value_when_corrected():
    # the interval clears zero, but the family-wise p does not: no claim
    p = stats.PairedDifference(0.02, 0.01, 0.03, 10, p_value=0.001, p_adjusted=0.2)
    assert p.verdict(True) == "no measurable difference"
    assert stats.PairedDifference(0.02, -0.01, 0.05, 10, p_value=0.3, p_adjusted=0.01).verdict(True) == "better"
    assert stats.PairedDifference(-0.02, -0.03, 0.01, 10, p_adjusted=0.01).verdict(True) == "worse"
    assert stats.PairedDifference(-0.02, -0.03, 0.01, 10, p_adjusted=0.01).verdict(False) == "better"
    # the guard band: p within 5 % of α below it reads "no measurable difference"
    edge = stats.PairedDifference(0.02, 0.01, 0.03, 10, p_adjusted=0.049)
    assert edge.verdict(True) == "no measurable difference" and edge.verdict(True, guard=0.0) == "better"
    assert stats.PairedDifference(0.0, -0.01, 0.01, 10, p_adjusted=0.0).verdict() == "no measurable difference"
    assert stats.PairedDifference(0.02, 0.01, 0.03, 10, confidence=0.99, p_adjusted=0.02).verdict() == \
        "no measurable difference"


# ---------------------------------------------------------------- bootstrap over seeds × examples
def _bootstrap_by_loop(d, n_boot, seed, confidence=0.95):
    """The documented draws, one replicate at a time: rows I[b], columns J[b], mean of D over the cells."""
    rng = np.random.default_rng(seed)
    s, n = d.shape
    rows = rng.integers(0, s, size=(n_boot, s))
    cols = rng.integers(0, n, size=(n_boot, n))
    reps = np.array([d[np.ix_(rows[b], cols[b])].mean() for b in range(n_boot)])
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    p = min(1.0, 2 * min(np.sum(reps <= 0) + 1, np.sum(reps >= 0) + 1) / (n_boot + 1))
    return reps, low, high, p


@pytest.mark.parametrize("shape", [(5, 17), (1, 30), (8, 1)])
def test_hierarchical_bootstrap_matches_a_loop_over_replicates(shape, monkeypatch):
    rng = np.random.default_rng(6)
    a, b = rng.normal(0.1, 1, shape), rng.normal(0, 1, shape)
    reps, low, high, p = _bootstrap_by_loop(a - b, 300, seed=11, confidence=0.9)
    got = stats.hierarchical_bootstrap(a, b, confidence=0.9, n_boot=300, seed=11)
    assert (got.low, got.high) == pytest.approx((low, high), rel=1e-12)
    assert got.p_value == pytest.approx(p) and got.se == pytest.approx(reps.std(ddof=1), rel=1e-10)
    assert got.mean == pytest.approx((a - b).mean()) and got.n == shape[0] and got.n_examples == shape[1]
    assert got.method == "bootstrap" and got.df is None and got.confidence == 0.9
    # evaluating the replicates in small blocks draws the same stream
    monkeypatch.setattr(stats, "_BOOT_CELLS", 7 * shape[1])
    small = stats.hierarchical_bootstrap(a, b, confidence=0.9, n_boot=300, seed=11)
    assert (small.low, small.high, small.p_value, small.se) == pytest.approx((got.low, got.high, got.p_value, got.se),
                                                                            rel=1e-12)


def test_hierarchical_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(4, 50)), rng.normal(size=(4, 50))
    assert stats.hierarchical_bootstrap(a, b, seed=3) == stats.hierarchical_bootstrap(a, b, seed=3)
    assert stats.hierarchical_bootstrap(a, b, seed=3).low != stats.hierarchical_bootstrap(a, b, seed=4).low
    # 1/0 correctness as booleans is accepted
    correct = rng.random((4, 50)) < 0.8
    assert stats.hierarchical_bootstrap(correct, np.ones((4, 50), bool)).mean == pytest.approx(correct.mean() - 1)


def _crossed(rng, s, n, mu, seed_sd, example_sd, noise_sd):
    """Per-cell differences of a crossed design: mu + seed effect + test-example effect + noise."""
    return (mu + seed_sd * rng.normal(size=(s, 1)) + example_sd * rng.normal(size=(1, n))
            + noise_sd * rng.normal(size=(s, n)))


def test_hierarchical_bootstrap_coverage():
    """The interval contains the true mean difference (over new seeds and new test sets) in ≈ 95 % of
    simulated experiments; 200 of them, within 3 binomial standard errors."""
    rng = np.random.default_rng(8)
    trials, mu = 200, 0.1
    hits = 0
    for _ in range(trials):
        d = _crossed(rng, 10, 100, mu, seed_sd=0.2, example_sd=0.5, noise_sd=0.3)
        r = stats.hierarchical_bootstrap(d, np.zeros_like(d), n_boot=400, seed=int(rng.integers(2**31)))
        hits += r.low <= mu <= r.high
    assert abs(hits / trials - 0.95) < 3 * math.sqrt(0.95 * 0.05 / trials)


def test_bootstrap_is_wider_than_the_seed_t_interval_when_test_examples_vary():
    """Every seed is scored on the same test set: the seeds-only t interval misses the test set's own
    sampling variation, which the bootstrap over examples keeps (and then covers the truth)."""
    rng = np.random.default_rng(9)
    t_miss = boot_miss = 0
    for _ in range(40):
        d = _crossed(rng, 10, 200, 0.05, seed_sd=0.02, example_sd=0.6, noise_sd=0.2)
        t = stats.paired_difference(d.mean(1), np.zeros(10))
        boot = stats.hierarchical_bootstrap(d, np.zeros_like(d), n_boot=400)
        assert boot.half_width > 1.5 * t.half_width
        t_miss += not t.low <= 0.05 <= t.high
        boot_miss += not boot.low <= 0.05 <= boot.high
    assert t_miss > 10 and boot_miss < 6
    # without test-example variation the two agree roughly
    d = _crossed(rng, 10, 200, 0.05, seed_sd=0.2, example_sd=0.0, noise_sd=0.2)
    ratio = stats.hierarchical_bootstrap(d, np.zeros_like(d)).half_width / stats.paired_difference(d.mean(1), np.zeros(10)).half_width
    assert 0.7 < ratio < 1.2


@pytest.mark.parametrize("a,b,kw,exc,match", [
    (np.zeros((3, 4)), np.zeros((3, 5)), {}, ValueError, "same shape"),
    (np.zeros(4), np.zeros(4), {}, ValueError, r"shape \(seeds, examples\)"),
    (np.zeros((0, 4)), np.zeros((0, 4)), {}, ValueError, "both >= 1"),
    (np.full((2, 2), np.nan), np.zeros((2, 2)), {}, ValueError, "finite"),
    (np.array([["x"]]), np.zeros((1, 1)), {}, TypeError, "real numbers"),
    (np.zeros((2, 2)), np.zeros((2, 2)), {"n_boot": 50}, ValueError, "n_boot"),
    (np.zeros((2, 2)), np.zeros((2, 2)), {"n_boot": 200.0}, TypeError, "n_boot"),
    (np.zeros((2, 2)), np.zeros((2, 2)), {"seed": -1}, ValueError, "seed"),
    (np.zeros((2, 2)), np.zeros((2, 2)), {"confidence": 1.0}, ValueError, "confidence"),
])
def test_hierarchical_bootstrap_bad_input(a, b, kw, exc, match):
    with pytest.raises(exc, match=match):
        stats.hierarchical_bootstrap(a, b, **kw)


# ---------------------------------------------------------------- equivalence and non-inferiority
def test_equivalence_is_scipys_two_one_sided_tests():
    rng = np.random.default_rng(10)
    for _ in range(100):
        n = int(rng.integers(3, 15))
        a, b = rng.normal(rng.normal(0, 0.05), 0.05, n), rng.normal(0, 0.05, n)
        margin = float(rng.uniform(0.005, 0.1))
        conf = float(rng.choice([0.9, 0.95, 0.99]))
        res = stats.equivalent(a, b, margin, confidence=conf)
        p_ref = max(sps.ttest_rel(a + margin, b, alternative="greater").pvalue,
                    sps.ttest_rel(a - margin, b, alternative="less").pvalue)
        assert res.p_value == pytest.approx(p_ref, rel=1e-9)
        assert res.holds == (p_ref < 1 - conf)
        ci = sps.ttest_rel(a, b).confidence_interval(2 * conf - 1)
        assert res.holds == (-margin < ci.low and ci.high < margin)
        assert (res.difference.low, res.difference.high) == pytest.approx((ci.low, ci.high))
        ok, diff = res
        assert ok is res.holds and diff is res.difference and res.test == "equivalence" and res.margin == margin


@pytest.mark.parametrize("up", [True, False])
def test_non_inferiority_is_scipys_one_sided_test(up):
    rng = np.random.default_rng(11 + up)
    for _ in range(100):
        n = int(rng.integers(3, 15))
        a, b = rng.normal(rng.normal(0, 0.05), 0.05, n), rng.normal(0, 0.05, n)
        margin = float(rng.uniform(0.005, 0.1))
        res = stats.non_inferior(a, b, margin, higher_is_better=up)
        ref = (sps.ttest_rel(a + margin, b, alternative="greater") if up
               else sps.ttest_rel(a - margin, b, alternative="less"))
        assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert res.holds == (ref.pvalue < 0.05) and res.test == "non-inferiority"
        ci = sps.ttest_rel(a, b).confidence_interval(0.9)
        assert res.holds == ((ci.low > -margin) if up else (ci.high < margin))


def test_margin_tests_guard_and_edge_cases():
    rng = np.random.default_rng(12)
    a, b = rng.normal(0, 0.05, 10), rng.normal(0, 0.05, 10)
    # the margin at which the TOST p-value is 0.049: holds at guard 0, not at guard 0.05
    from scipy import optimize
    margin = optimize.brentq(lambda m: stats.equivalent(a, b, m).p_value - 0.049, 1e-4, 1.0)
    assert stats.equivalent(a, b, margin).holds
    assert not stats.equivalent(a, b, margin, guard=0.05).holds
    one = stats.equivalent([0.0], [0.0], 0.1)
    assert not one.holds and math.isnan(one.p_value)
    # constant differences: decided without a t statistic
    assert stats.non_inferior([1.0, 2.0], [1.05, 2.05], 0.1).holds
    assert not stats.non_inferior([1.0, 2.0], [1.2, 2.2], 0.1).holds
    assert stats.equivalent([1.0, 2.0], [1.05, 2.05], 0.1).holds


@pytest.mark.parametrize("kw,exc,match", [
    ({"margin": 0.0}, ValueError, "margin"), ({"margin": -0.1}, ValueError, "margin"),
    ({"margin": float("nan")}, ValueError, "margin"), ({"margin": True}, TypeError, "margin"),
    ({"margin": "0.1"}, TypeError, "margin"), ({"margin": 0.1, "confidence": 0.5}, ValueError, "confidence"),
    ({"margin": 0.1, "guard": 1.0}, ValueError, "guard")])
def test_margin_tests_bad_input(kw, exc, match):
    for fn in (stats.equivalent, stats.non_inferior):
        with pytest.raises(exc, match=match):
            fn([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], **kw)
    with pytest.raises(TypeError, match="higher_is_better"):
        stats.non_inferior([1.0, 2.0], [1.0, 2.0], 0.1, higher_is_better=1)


# ---------------------------------------------------------------- compare: p, detectable, Holm, bootstrap
def test_compare_reports_p_detectable_and_interval():
    f = _frame()
    table = stats.compare(f, {"accuracy": True, "ece": False}, by=["regime"])
    assert "accuracy p (Holm)" not in table.columns
    for regime in ("clean", "noisy"):
        sub = f[f.regime == regime].sort_values("seed")
        a, b = sub[sub.method == "mixup"].accuracy.to_numpy(), sub[sub.method == "ERM"].accuracy.to_numpy()
        row = table.loc[(regime, "mixup")]
        assert row["accuracy p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
        se = sps.sem(a - b)
        assert row["accuracy detectable"] == pytest.approx((sps.t.ppf(0.975, 9) + sps.t.ppf(0.8, 9)) * se)
        assert row["accuracy interval"] == "t over seeds"


def _fixed_t_frame(ts, n=10):
    """Methods m0, m1, … whose paired differences against ERM have exactly the t statistics ``ts``."""
    z = np.linspace(-1, 1, n)
    z = (z - z.mean()) / z.std(ddof=1)
    rows = []
    for j, t in enumerate(ts):
        d = 0.01 * (z + t / math.sqrt(n))                   # mean/(sd/√n) = t
        for s in range(n):
            rows.append({"method": "ERM", "seed": s, "acc": 0.5, "group": j})
            rows.append({"method": f"m{j}", "seed": s, "acc": 0.5 + d[s], "group": j})
    return pd.DataFrame(rows)


def test_compare_holm_over_the_whole_call():
    ts = [2.5, 0.3, -0.5, 6.0]                              # p ≈ 0.034, 0.77, 0.63, 0.0002
    f = _fixed_t_frame(ts)
    plain = stats.compare(f, {"acc": True}, by=["group"])
    holm = stats.compare(f, {"acc": True}, by=["group"], correction="holm")
    p = np.array([2 * sps.t.sf(abs(t), 9) for t in ts])
    assert plain["acc p"].to_numpy() == pytest.approx(p)
    assert holm["acc p (Holm)"].to_numpy() == pytest.approx(_holm_by_procedure(p))
    # uncorrected, the t = 2.5 comparison is "better"; in a family of four it is not
    assert plain.loc[(0, "m0"), "acc vs ERM"] == "better"
    assert holm.loc[(0, "m0"), "acc vs ERM"] == "no measurable difference"
    assert holm.loc[(3, "m3"), "acc vs ERM"] == "better"
    # the old columns do not move; detectable is stated at α/m
    for col in ("Δ acc", "acc low", "acc high", "acc p", "seeds"):
        assert holm[col].to_numpy() == pytest.approx(plain[col].to_numpy())
    se = 0.01 / math.sqrt(10)
    assert holm.loc[(1, "m1"), "acc detectable"] == pytest.approx((sps.t.ppf(1 - 0.05 / 8, 9) + sps.t.ppf(0.8, 9)) * se)
    # the family is every (group, method, metric): two metrics double it
    f["acc2"] = f["acc"]
    both = stats.compare(f, {"acc": True, "acc2": True}, by=["group"], correction="holm")
    assert both["acc p (Holm)"].to_numpy() == pytest.approx(_holm_by_procedure(np.repeat(p, 2))[::2])


def test_compare_holm_refuses_what_it_cannot_correct():
    with pytest.raises(ValueError, match="correction"):
        stats.compare(_frame(), {"accuracy": True}, correction="bonferroni")
    single = _frame()
    single = single[single.seed == 0]
    with pytest.raises(ValueError, match="needs a p-value"):
        stats.compare(single, {"accuracy": True}, by=["regime"], correction="holm")
    # uncorrected, a single seed is still reported (with a nan p)
    assert math.isnan(stats.compare(single, {"accuracy": True}, by=["regime"])["accuracy p"].iloc[0])


def _example_frame(rng, s=10, n=200, example_sd=0.6, gain=-0.02, shuffle=True):
    """Two methods on the same seeds and test set; per-example losses in column 'losses', their mean in 'loss'."""
    base = rng.normal(1.0, 0.3, n)                      # test-example difficulty, shared by everything
    shared_gap = example_sd * rng.normal(size=n)        # how much better B does on each example, every seed
    rows = []
    for seed in range(s):
        seed_level = rng.normal(0, 0.05)
        ref = base + seed_level + 0.1 * rng.normal(size=n)
        other = ref + gain + shared_gap - shared_gap.mean() + 0.01 * rng.normal(size=n)
        for method, values in (("ERM", ref), ("B", other)):
            rows.append({"method": method, "seed": seed, "losses": values, "loss": float(values.mean()),
                         "correct": values < 1.0, "acc": float((values < 1.0).mean())})
    f = pd.DataFrame(rows)
    return f.sample(frac=1, random_state=0) if shuffle else f


def test_compare_with_the_bootstrap_over_examples():
    rng = np.random.default_rng(13)
    f = _example_frame(rng)
    table = stats.compare(f, {"loss": False, "acc": True}, interval="bootstrap", examples={"loss": "losses"},
                          n_boot=500, boot_seed=2)
    row = table.loc["B"]
    assert row["loss interval"] == "bootstrap over seeds × test examples" and row["acc interval"] == "t over seeds"
    ordered = f.sort_values("seed")
    a = np.stack(ordered[ordered.method == "B"].losses.to_list())
    b = np.stack(ordered[ordered.method == "ERM"].losses.to_list())
    ref = stats.hierarchical_bootstrap(a, b, n_boot=500, seed=2)
    assert (row["Δ loss"], row["loss low"], row["loss high"], row["loss p"]) == \
        pytest.approx((ref.mean, ref.low, ref.high, ref.p_value))
    assert row["loss detectable"] == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * ref.se)
    assert row["Δ loss"] == pytest.approx(ordered[ordered.method == "B"].loss.mean() - ordered[ordered.method == "ERM"].loss.mean())
    # the motivating case: over seeds alone B is clearly better; over seeds and the test set it is not shown
    t_table = stats.compare(f, {"loss": False})
    assert t_table.loc["B", "loss vs ERM"] == "better"
    assert row["loss vs ERM"] == "no measurable difference"
    assert stats.top_group(f, "loss", False) == ["B"]
    assert stats.top_group(f, "loss", False, interval="bootstrap", examples="losses", n_boot=500) == ["B", "ERM"]
    assert stats.top_group(f, "loss", False, interval="bootstrap", examples={"loss": "losses"}, n_boot=500) == ["B", "ERM"]
    # booleans per example (1/0 correct) work too
    acc = stats.compare(f, {"acc": True}, interval="bootstrap", examples={"acc": "correct"}, n_boot=200)
    assert acc.loc["B", "acc interval"].startswith("bootstrap")


def test_compare_bootstrap_with_holm_needs_enough_replicates():
    f = _example_frame(np.random.default_rng(14))
    with pytest.raises(ValueError, match="n_boot >= "):
        stats.compare(f, {"loss": False}, interval="bootstrap", examples={"loss": "losses"}, correction="holm",
                      n_boot=100, confidence=0.999)
    ok = stats.compare(f, {"loss": False, "acc": True}, interval="bootstrap", examples={"loss": "losses"},
                       correction="holm", n_boot=500)
    p = ok.loc["B", ["loss p", "acc p"]].to_numpy(dtype=float)
    assert ok.loc["B", ["loss p (Holm)", "acc p (Holm)"]].to_numpy(dtype=float) == pytest.approx(_holm_by_procedure(p))


def test_compare_bootstrap_bad_input():
    rng = np.random.default_rng(15)
    f = _example_frame(rng, s=4, n=20)
    with pytest.raises(ValueError, match="interval must be one of"):
        stats.compare(f, {"loss": False}, interval="bca")
    with pytest.raises(ValueError, match="needs examples"):
        stats.compare(f, {"loss": False}, interval="bootstrap")
    with pytest.raises(ValueError, match="only with interval='bootstrap'"):
        stats.compare(f, {"loss": False}, examples={"loss": "losses"})
    with pytest.raises(ValueError, match="not compared"):
        stats.compare(f, {"loss": False}, interval="bootstrap", examples={"nll": "losses"})
    with pytest.raises(ValueError, match="lacks the examples columns"):
        stats.compare(f, {"loss": False}, interval="bootstrap", examples={"loss": "per_example"})
    with pytest.raises(TypeError, match="column name"):
        stats.compare(f, {"loss": False}, interval="bootstrap", examples={"loss": 3})
    with pytest.raises(TypeError, match="mapping"):
        stats.compare(f, {"loss": False}, interval="bootstrap", examples=["losses"])
    # per-example values that do not average to the metric
    with pytest.raises(ValueError, match="does not average to metric 'acc'"):
        stats.compare(f, {"acc": True}, interval="bootstrap", examples={"acc": "losses"})
    # cells that are not 1-d numpy arrays
    g = f.copy()
    g["losses"] = g["losses"].map(list)
    with pytest.raises(TypeError, match="1-d numpy arrays"):
        stats.compare(g, {"loss": False}, interval="bootstrap", examples={"loss": "losses"})
    # a seed evaluated on a different number of test examples
    g = f.copy()
    i = g.index[0]
    g.at[i, "losses"] = g.at[i, "losses"][:-1]
    g.at[i, "loss"] = float(g.at[i, "losses"].mean())
    with pytest.raises(ValueError, match="same test set"):
        stats.compare(g, {"loss": False}, interval="bootstrap", examples={"loss": "losses"})
    with pytest.raises(ValueError, match="n_boot"):
        stats.compare(f, {"loss": False}, interval="bootstrap", examples={"loss": "losses"}, n_boot=10)
