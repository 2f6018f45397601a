"""Beta and Dirichlet sampling: moments, KS tests, small α, dtypes, bad input.

Moments are compared with 4 standard errors: for the sample mean ``sqrt(σ²/n)``, for the
(unbiased) sample variance ``sqrt((μ4 − σ⁴)/n)`` with the theoretical fourth central moment
``μ4 = (excess kurtosis + 3) σ⁴`` of the Beta distribution (from scipy.stats). Seeds are
fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from mixbook.core import distributions as D
from mixbook.methods import mixup

N = 200_000
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_beta_moments(sample: torch.Tensor, a: float, b: float, k: float = 4.0) -> None:
    s = sample.double().flatten()
    n = s.numel()
    assert not bool(s.isnan().any())
    mean, var, _, kurt = (float(v) for v in stats.beta.stats(a, b, moments="mvsk"))
    mu4 = (kurt + 3.0) * var**2
    se_mean = math.sqrt(var / n)
    se_var = math.sqrt((mu4 - var**2) / n)
    m, v = float(s.mean()), float(s.var())
    assert abs(m - mean) < k * se_mean, f"Beta({a}, {b}) mean {m:.5f} vs {mean:.5f} (SE {se_mean:.2g})"
    assert abs(v - var) < k * se_var, f"Beta({a}, {b}) variance {v:.5f} vs {var:.5f} (SE {se_var:.2g})"


def test_beta_moment_formula():
    """The closed forms of the brief agree with scipy (guards the helper itself)."""
    for alpha in (0.1, 0.4, 1.0, 4.0):
        mean, var = (float(v) for v in stats.beta.stats(alpha, alpha, moments="mv"))
        assert math.isclose(mean, 0.5) and math.isclose(var, 1 / (4 * (2 * alpha + 1)))


@pytest.mark.parametrize("alpha", [0.1, 0.4, 1.0, 4.0])
def test_mixup_per_sample_lambda_is_beta(alpha):
    x = torch.empty(N, 1)
    m = mixup.sample(x, alpha=alpha, per_sample=True, pairing="flip", generator=_gen(int(alpha * 100)))
    assert_beta_moments(m.lam, alpha, alpha)


@pytest.mark.parametrize("alpha", [0.1, 0.4, 1.0, 4.0])
def test_symmetric_beta_moments(alpha):
    assert_beta_moments(D.beta(alpha, alpha, (N,), generator=_gen(7)), alpha, alpha)


def test_batch_lambda_is_beta():
    """One λ per batch: across batches it is Beta(α, α) too."""
    x = torch.empty(2, 1)
    g = _gen(8)
    lams = torch.stack([mixup.sample(x, alpha=0.4, generator=g).lam[0] for _ in range(4000)])
    assert_beta_moments(lams, 0.4, 0.4)


@pytest.mark.parametrize("a, b", [(1.4, 0.4), (0.4, 1.4), (2.0, 5.0), (0.05, 3.0)])
def test_asymmetric_beta_moments(a, b):
    assert_beta_moments(D.beta(a, b, (N,), generator=_gen(9)), a, b)


@pytest.mark.parametrize("a, b", [(0.4, 0.4), (4.0, 4.0), (1.4, 0.4), (0.3, 0.7), (2.0, 0.5)])
def test_beta_ks(a, b):
    s = D.beta(a, b, (50_000,), dtype=torch.float64, generator=_gen(10)).numpy()
    assert stats.kstest(s, stats.beta(a, b).cdf).pvalue > 1e-3
    # ... and the test has power: the swapped parameters are rejected.
    if a != b:
        assert stats.kstest(s, stats.beta(b, a).cdf).pvalue < 1e-6


def test_small_alpha():
    s = D.beta(0.01, 0.01, (N,), generator=_gen(11))
    assert not bool(s.isnan().any()) and bool(((s >= 0) & (s <= 1)).all())
    below = float((s < 0.5).double().mean())
    assert abs(below - 0.5) < 4 * math.sqrt(0.25 / N)
    # Beta(α, α) → Bernoulli(½) as α → 0: nearly all the mass at the two ends.
    edge = float(((s < 1e-6) | (s > 1 - 1e-6)).double().mean())
    p_edge = 2 * float(stats.beta(0.01, 0.01).cdf(1e-6))
    assert abs(edge - p_edge) < 4 * math.sqrt(p_edge * (1 - p_edge) / N)
    m = mixup.sample(torch.empty(N, 1), alpha=0.01, per_sample=True, pairing="flip", generator=_gen(12))
    assert not bool(m.lam.isnan().any())
    assert abs(float((m.lam < 0.5).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / N)


@pytest.mark.parametrize("alpha", [1e-3, 0.01])
def test_tiny_alpha_dirichlet_has_no_nan(alpha):
    s = D.dirichlet(alpha, (20_000, 4), generator=_gen(13))
    assert not bool(s.isnan().any()) and bool((s >= 0).all())
    torch.testing.assert_close(s.sum(-1), torch.ones(20_000), atol=1e-5, rtol=0)


@pytest.mark.parametrize("alpha, k", [(0.3, 3), (2.0, 3), (1.0, 5)])
def test_dirichlet_moments(alpha, k):
    """Each coordinate of Dirichlet(α, …, α) is Beta(α, (K − 1) α): mean α / Σα = 1/K."""
    s = D.dirichlet(alpha, (N // k, k), generator=_gen(14))
    assert s.shape == (N // k, k)
    assert bool((s >= 0).all())
    torch.testing.assert_close(s.double().sum(-1), torch.ones(N // k, dtype=torch.float64), atol=1e-5, rtol=0)
    for j in range(k):
        assert_beta_moments(s[:, j], alpha, (k - 1) * alpha)
    # Coordinates of a Dirichlet are negatively correlated: Cov = −α² / (A² (A + 1)), A = Kα.
    big = float(k * alpha)
    cov = float(torch.cov(s[:, :2].double().T)[0, 1])
    assert cov < 0 and math.isclose(cov, -(alpha**2) / (big**2 * (big + 1)), rel_tol=0.1)


@pytest.mark.parametrize("a", [0.05, 0.5, 3.0])
def test_log_gamma(a):
    conc = torch.full((N,), a, dtype=torch.float64)
    lg = D.log_gamma(conc, generator=_gen(15))
    assert lg.shape == conc.shape and lg.dtype == torch.float64
    assert bool(torch.isfinite(lg).all())
    g = lg.exp()
    # Gamma(a, 1): mean a, variance a, fourth central moment 3a² + 6a.
    assert abs(float(g.mean()) - a) < 4 * math.sqrt(a / N)
    assert abs(float(g.var()) - a) < 4 * math.sqrt((3 * a**2 + 6 * a - a**2) / N)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_shape_device(dtype):
    s = D.beta(0.5, 2.0, (3, 4), dtype=dtype, generator=_gen(1))
    assert s.shape == (3, 4) and s.dtype == dtype and s.device.type == "cpu"
    assert bool(((s >= 0) & (s <= 1)).all())
    d = D.dirichlet(0.5, (3, 4), dtype=dtype, generator=_gen(1))
    assert d.shape == (3, 4) and d.dtype == dtype
    torch.testing.assert_close(d.double().sum(-1), torch.ones(3, dtype=torch.float64),
                               atol=4 * torch.finfo(dtype).eps, rtol=0)
    assert D.beta(1.0, 1.0, (), dtype=dtype).shape == ()


def test_seeds():
    assert torch.equal(D.beta(0.4, 0.4, (100,), generator=_gen(3)), D.beta(0.4, 0.4, (100,), generator=_gen(3)))
    assert not torch.equal(D.beta(0.4, 0.4, (100,), generator=_gen(3)), D.beta(0.4, 0.4, (100,), generator=_gen(4)))
    assert torch.equal(D.dirichlet(2.0, (5, 3), generator=_gen(3)), D.dirichlet(2.0, (5, 3), generator=_gen(3)))


@pytest.mark.parametrize("value, exc", [(0.0, ValueError), (-0.5, ValueError), (float("nan"), ValueError),
                                        (float("inf"), ValueError), (True, TypeError), ("1", TypeError)])
def test_bad_parameters(value, exc):
    with pytest.raises(exc, match=r"^a must"):
        D.beta(value, 1.0, (3,))
    with pytest.raises(exc, match=r"^b must"):
        D.beta(1.0, value, (3,))
    with pytest.raises(exc, match=r"^alpha must"):
        D.dirichlet(value, (3, 2))


def test_bad_generator_and_dtype():
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on meta"):
        D.beta(1.0, 1.0, (3,), device="meta", generator=torch.Generator())
    with pytest.raises(ValueError, match="generator is on cpu"):
        D.dirichlet(1.0, (3, 2), device="meta", generator=torch.Generator())
    with pytest.raises(TypeError, match="generator"):
        D.beta(1.0, 1.0, (3,), generator="cpu")
    with pytest.raises(TypeError, match="dtype"):
        D.beta(1.0, 1.0, (3,), dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype"):
        D.dirichlet(1.0, (3, 2), dtype=torch.int32)


def test_small_alpha_has_no_spurious_mass_at_one_half():
    """The naive g1 / (g1 + g2) puts ~18% of Beta(0.01, 0.01) at exactly 0.5 (clamped gammas)."""
    g = torch.Generator().manual_seed(0)
    lam = D.beta(0.01, 0.01, (100_000,), generator=g)
    exact = 2 * stats.beta(0.01, 0.01).cdf(0.499)  # mass outside (0.499, 0.501)
    assert ((lam - 0.5).abs() < 1e-3).float().mean().item() < 1e-3
    assert 1 - exact < 1e-3


def test_uniform_dirichlet_fast_path_is_uniform_on_the_simplex():
    """α = 1 takes the exponential path: each coordinate is Beta(1, K − 1), and the two
    paths agree in distribution (α = 1 against α = 1 + 1e-9, which takes the Gamma path)."""
    from scipy import stats

    k = 6
    fast = D.dirichlet(1.0, (20_000, k), dtype=torch.float64, generator=_gen(21))
    slow = D.dirichlet(1.0 + 1e-9, (20_000, k), dtype=torch.float64, generator=_gen(22))
    torch.testing.assert_close(fast.sum(-1), torch.ones(20_000, dtype=torch.float64), atol=1e-12, rtol=0)
    assert stats.kstest(fast[:, 0].numpy(), stats.beta(1, k - 1).cdf).pvalue > 1e-3
    assert stats.ks_2samp(fast[:, 1].numpy(), slow[:, 1].numpy()).pvalue > 1e-3
    half = D.dirichlet(1.0, (4, 3), dtype=torch.bfloat16, generator=_gen(1))
    assert half.dtype == torch.bfloat16 and bool((half >= 0).all())


@pytest.mark.parametrize("a, b", [(0.2, 0.2), (1.0, 1.0), (3.0, 3.0), (0.4, 2.0), (2.0, 0.5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_gamma_known_boost_is_the_per_element_path_bit_for_bit(a, b, dtype):
    """``boost`` given by the caller changes the kernels, not the draws or the values."""
    conc = torch.empty(257, 2, dtype=dtype)
    conc[:, 0], conc[:, 1] = a, b
    per_element = D.log_gamma(conc, _gen(5))
    if (a < 1) == (b < 1):
        assert torch.equal(D.log_gamma(conc, _gen(5), boost=a < 1), per_element)
    if a == b:  # beta's symmetric path draws the same stream (Gamma, then one uniform an entry)
        torch.testing.assert_close(D.beta(a, b, (257,), dtype=dtype, generator=_gen(5)),
                                   torch.sigmoid(per_element[:, 0] - per_element[:, 1]))


@pytest.mark.parametrize("a0, boost", [(0.3, True), (2.0, False), (0.3, None), (2.0, None)])
def test_log_gamma_gradient_is_the_same_on_every_path(a0, boost):
    """Reparameterised gradients flow through the fast path as through the per-element one."""
    conc = torch.full((64,), a0, dtype=torch.float64, requires_grad=True)
    D.log_gamma(conc, _gen(8), boost=boost).sum().backward()
    ref = torch.full((64,), a0, dtype=torch.float64, requires_grad=True)
    D.log_gamma(ref, _gen(8)).sum().backward()
    assert conc.grad is not None and bool(conc.grad.ne(0).any())
    torch.testing.assert_close(conc.grad, ref.grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_dirichlet_accelerator_path_has_the_dirichlet_law(monkeypatch, alpha):
    """Off the CPU, Dirichlet(α ≥ 1) rows are one Gamma (exponential for α = 1) draw an entry over
    its row sum. Taken on the CPU here through the test switch: rows sum to 1 and one entry's
    marginal is Beta(α, (b − 1)α) (Kolmogorov–Smirnov)."""
    from scipy import stats as st

    from mixbook.core import _random

    monkeypatch.setattr(_random, "_DEVICE_PATHS_ON_CPU", True)
    g = torch.Generator().manual_seed(7)
    b = 6
    w = D.dirichlet(alpha, (20_000, b), generator=g)
    assert w.dtype == torch.float32 and (w >= 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(20_000), rtol=0, atol=1e-5)
    assert st.kstest(w[:, 0].double().numpy(), st.beta(alpha, (b - 1) * alpha).cdf).pvalue > 1e-3
    one = D.dirichlet(alpha, (3, 1), generator=g)
    assert torch.equal(one, torch.ones(3, 1))


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (2.0, 1.0), (1.0, 3.0), (0.4, 1.0), (1.0, 0.3), (1.5, 1.5)])
def test_beta_accelerator_path_has_the_beta_law(monkeypatch, a, b):
    """Off the CPU a Beta with a unit parameter is an inverse-CDF transform of one uniform (U, U^(1/a),
    1 − U^(1/b)); taken on the CPU here through the test switch: Kolmogorov–Smirnov against scipy's
    Beta, values in [0, 1], the generator's stream reproducible."""
    from scipy import stats as st

    from mixbook.core import _random

    monkeypatch.setattr(_random, "_DEVICE_PATHS_ON_CPU", True)
    lam = D.beta(a, b, (20_000,), generator=torch.Generator().manual_seed(3))
    again = D.beta(a, b, (20_000,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(lam, again) and lam.dtype == torch.float32
    assert bool(((lam >= 0) & (lam <= 1)).all())
    assert st.kstest(lam.double().numpy(), st.beta(a, b).cdf).pvalue > 1e-3
