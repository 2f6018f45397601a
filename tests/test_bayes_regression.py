"""mixbook.chapters.bayes (two-moons densities, p_aug, KDE) and mixbook.chapters.regression, mixup's nearest pairing."""

import math

import pytest
import torch

from mixbook.chapters import bayes, regression
from mixbook.training import data
from mixbook.methods import mixup


def test_moons_density_integrates_to_one_and_matches_split():
    s = data.two_moons(n_train=200, n_test=10, noise=0.2, seed=3)
    mean, std = bayes.moons_standardisation(200, 0.2, 3)
    from sklearn.datasets import make_moons
    import numpy as np
    raw, _ = make_moons(n_samples=200, noise=0.2, random_state=np.random.RandomState(3))
    assert torch.allclose(torch.as_tensor((raw - mean) / std, dtype=torch.float32), s.x_train, atol=1e-5)
    g = torch.linspace(-4, 4, 241)
    dens = bayes.moons_density(torch.cartesian_prod(g, g), 0.2, mean, std)
    assert torch.allclose(dens.sum(0) * (8 / 240) ** 2, torch.ones(2, dtype=torch.float64), atol=2e-3)


def test_kde_integrates_to_one():
    pts = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    g = torch.linspace(-6, 6, 201)
    total = bayes.kde(pts, torch.cartesian_prod(g, g), 0.3).sum() * (12 / 200) ** 2
    assert float(total) == pytest.approx(1.0, abs=1e-3)


def test_sample_augmented_kept_label_and_convex():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1])
    xa, ya = bayes.sample_augmented(x, y, 1.0, 20000, generator=torch.Generator().manual_seed(0))
    assert bool(((xa[:, 0] - xa[:, 1]).abs() < 1e-12).all()) and bool(((xa >= 0) & (xa <= 1)).all())
    # label 1 points: x = λ·1 + (1 − λ)·x_j with E[λ] = (α + 1) / (2α + 1) = 2/3 -> mean 2/3 + (1/3)/2 = 5/6
    assert float(xa[ya == 1, 0].mean()) == pytest.approx(5 / 6, abs=0.01)


def test_posterior_entropy_kl_decomposition():
    p = torch.tensor([[0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.4, 0.6], [0.9, 0.1]], dtype=torch.float64)
    ce = (p * -q.log()).sum(1)
    assert torch.allclose(ce, bayes.entropy(p) + bayes.kl(p, q))
    assert torch.allclose(bayes.posterior(torch.tensor([[1.0, 3.0], [0.0, 0.0]])), torch.tensor([[0.25, 0.75], [0.5, 0.5]]))


def test_quadratic_bias_formula_monte_carlo():
    g = torch.Generator().manual_seed(0)
    n, alpha = 400_000, 0.7
    x_i, x_j = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    lam = torch.distributions.Beta(alpha, alpha).sample((n,)).double()
    mixed_target = lam * x_i ** 2 + (1 - lam) * x_j ** 2
    mixed_x = lam * x_i + (1 - lam) * x_j
    assert torch.allclose(mixed_target - mixed_x ** 2, regression.quadratic_bias(x_i, x_j, lam))
    expected = regression.expected_lam_product(alpha) * 2 * 1.0
    assert float((mixed_target - mixed_x ** 2).mean()) == pytest.approx(expected, rel=0.02)


def test_nearest_partner_is_a_near_neighbour():
    x = torch.arange(10, dtype=torch.float32).view(10, 1)
    p = mixup.nearest_partner(x, 1, generator=torch.Generator().manual_seed(0))
    assert bool(((p - torch.arange(10)).abs() == 1).all())
    p2 = mixup.nearest_partner(x, 2, generator=torch.Generator().manual_seed(1))
    assert bool(((p2 - torch.arange(10)).abs() <= 2).all() and (p2 != torch.arange(10)).all())
    assert mixup.nearest_partner(x[:1], 3).tolist() == [0]
    assert bool((mixup.nearest_partner(x, 50) != torch.arange(10)).all())   # k clipped to b − 1


def test_nearest_pairing_in_sample_and_bad_input():
    x = torch.randn(16, 1, 4, 4)
    m = mixup.sample(x, alpha=1.0, pairing="nearest", k=3, generator=torch.Generator().manual_seed(0))
    d = torch.cdist(x.flatten(1), x.flatten(1)).fill_diagonal_(math.inf)
    rank = (d < d.gather(1, m.partner.view(-1, 1))).sum(1)
    assert bool((rank < 3).all())
    with pytest.raises(ValueError, match="k"):
        mixup.nearest_partner(x, 0)
    with pytest.raises(TypeError, match="floating"):
        mixup.nearest_partner(torch.ones(4, 2, dtype=torch.int64), 1)


def test_regression_fit_runs_and_local_mix_shrinks_bias():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, generator=g) * 4 - 2
    y = x ** 2
    xr, yr = regression.mix(x, y, alpha=1.0, pairing="random", generator=torch.Generator().manual_seed(0))
    xl, yl = regression.mix(x, y, alpha=1.0, pairing="nearest", k=2, generator=torch.Generator().manual_seed(0))
    assert float((yl - xl ** 2).mean()) < 0.05 * float((yr - xr ** 2).mean())
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        before = float((model(x) - y).square().mean())
    regression.fit(model, x, y, method="local", epochs=20, seed=0)
    with torch.no_grad():
        assert float((model(x) - y).square().mean()) < before


def test_fit_many_members_are_independent_and_match_their_seed_init():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, generator=g) * 4 - 2
    y = x ** 2
    ens = regression.Ensemble([3, 4], 1, 8)
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1))
    with torch.no_grad():
        assert torch.allclose(ens(x)[0], net(x), atol=1e-6)
    model, members = regression.fit_many(x, y, ["erm", "mixup", "local"], [0, 1], hidden=8, epochs=30, k=2)
    assert members == [("erm", 0), ("mixup", 0), ("local", 0), ("erm", 1), ("mixup", 1), ("local", 1)]
    with torch.no_grad():
        mse = (model(x) - y).square().mean(dim=(1, 2))
    assert mse.shape == (6,) and bool(torch.isfinite(mse).all())
    # a member trained alone with the same seed and method follows the same path as in the ensemble
    solo, _ = regression.fit_many(x, y, ["erm"], [0], hidden=8, epochs=30)
    with torch.no_grad():
        assert torch.allclose(solo(x)[0], model(x)[0], atol=1e-5)


# --------------------------------------------------------------------------------------------
# Identities that hold by construction: chapter 8 states them and no longer "checks" them.

def _random_probs(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(n, c, generator=g, dtype=torch.float64), 1)


@pytest.mark.parametrize("seed", range(5))
def test_cross_entropy_is_entropy_plus_kl_for_any_q(seed):
    p, q = _random_probs(64, 3, seed), _random_probs(64, 3, seed + 100)
    ce = (p * -q.log()).sum(1)
    assert torch.allclose(ce, bayes.entropy(p) + bayes.kl(p, q), atol=1e-12)
    # the Bayes classifier has the lowest expected cross-entropy: KL >= 0, 0 only at q = p
    assert bool((bayes.kl(p, q) >= -1e-12).all()) and float(bayes.kl(p, p).abs().max()) < 1e-12


def test_huszar_gap_equals_posterior_kl_exactly_on_a_discrete_space():
    # p(x, y) and q(x, y) on 50 points × 2 balanced classes: the chain rule of KL in both orders
    g = torch.Generator().manual_seed(0)
    p_cond = torch.softmax(torch.randn(2, 50, generator=g, dtype=torch.float64), 1).T     # (x, c): p(x | c)
    q_cond = torch.softmax(torch.randn(2, 50, generator=g, dtype=torch.float64), 1).T
    p_x, q_x = p_cond.mean(1), q_cond.mean(1)
    cond = 0.5 * (p_cond * (p_cond / q_cond).log()).sum(0).sum()
    marg = (p_x * (p_x / q_x).log()).sum()
    post = (p_x * bayes.kl(bayes.posterior(p_cond), bayes.posterior(q_cond))).sum()
    assert float(cond - marg) == pytest.approx(float(post), abs=1e-12)
    # the loss form of the post: E[-log q_aug(y|x)] = E_x H(p(.|x)) + gap
    loss = -(0.5 * p_cond * bayes.posterior(q_cond).log()).sum()
    assert float(loss) == pytest.approx(float((p_x * bayes.entropy(bayes.posterior(p_cond))).sum() + cond - marg), abs=1e-12)


def test_huszar_terms_monte_carlo_matches_exact_gaussians():
    # p(x|c) = N(±1, 1), q(x|c) = N(±1.5, 1.5²) in 1-d: the Monte Carlo terms against quadrature
    g = torch.Generator().manual_seed(0)
    n = 200_000
    y = torch.randint(2, (n,), generator=g)
    x = torch.randn(n, generator=g, dtype=torch.float64) + torch.where(y == 1, 1.0, -1.0)
    logn = lambda x, m, s: -0.5 * ((x - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    lp = torch.stack([logn(x, -1.0, 1.0), logn(x, 1.0, 1.0)], 1)
    lq = torch.stack([logn(x, -1.5, 1.5), logn(x, 1.5, 1.5)], 1)
    t = bayes.huszar_terms(lp, lq, y)
    kl_gauss = math.log(1.5) + (1 + 0.5 ** 2) / (2 * 1.5 ** 2) - 0.5            # KL(N(1,1) || N(1.5,1.5²))
    assert t.conditional == pytest.approx(kl_gauss, abs=4 * t.conditional_se)
    grid = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    pg = 0.5 * (logn(grid, -1, 1).exp() + logn(grid, 1, 1).exp())
    qg = 0.5 * (logn(grid, -1.5, 1.5).exp() + logn(grid, 1.5, 1.5).exp())
    marg = float((pg * (pg / qg).log()).sum() * (grid[1] - grid[0]))
    assert t.marginal == pytest.approx(marg, abs=4 * t.marginal_se)
    assert t.gap == pytest.approx(t.conditional - t.marginal, abs=1e-12) and t.n == n
    with pytest.raises(ValueError, match="y must be"):
        bayes.huszar_terms(lp, lq, y[:-1])
    with pytest.raises(ValueError, match="prior"):
        bayes.huszar_terms(lp, lq, y, prior=torch.tensor([0.7, 0.7]))


def test_bhattacharyya_monte_carlo_of_two_gaussians():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100_000, generator=g, dtype=torch.float64)
    p = torch.exp(-x ** 2 / 2)
    q = torch.exp(-(x - 1) ** 2 / 2)
    bc, se = bayes.bhattacharyya(p, q)
    assert bc == pytest.approx(math.exp(-1 / 8), abs=4 * se)       # BC of N(0,1), N(1,1) = exp(−Δ²/8)


def test_singular_overlap_matches_the_augmented_distribution_of_two_points():
    # one point a class: p_aug(. | c) puts half its mass on x_c and half on the segment, with the
    # position densities Beta(α, α+1) and Beta(α+1, α) from the class-0 end; the overlap lives on the segment
    alpha = 0.7
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    xa, ya = bayes.sample_augmented(x, y, alpha, 400_000, generator=torch.Generator().manual_seed(0))
    edges = torch.linspace(0, 1, 201, dtype=torch.float64)
    inner = lambda c: xa[(ya == c) & (xa[:, 0] > 1e-12) & (xa[:, 0] < 1 - 1e-12), 0]
    h0 = torch.histogram(inner(0), edges).hist / (ya == 0).sum() / (edges[1] - edges[0])
    h1 = torch.histogram(inner(1), edges).hist / (ya == 1).sum() / (edges[1] - edges[0])
    bc_hist = float((h0 * h1).sqrt().sum() * (edges[1] - edges[0]))
    assert bc_hist == pytest.approx(bayes.singular_overlap(alpha, 1, 1), abs=0.01)
    assert bayes.singular_overlap(1.0, 100, 100) == pytest.approx(math.pi / 8, abs=1e-12)
    # smoothing can only raise it: the KDE overlap of the same draws at any bandwidth stays above
    for h in (0.05, 0.2):
        d = bayes.class_kde(xa[:20000], ya[:20000], xa[20000:24000][ya[20000:24000] == 0] + h * torch.randn(
            int((ya[20000:24000] == 0).sum()), 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64), h)
        assert bayes.bhattacharyya(d[:, 0], d[:, 1])[0] > bayes.singular_overlap(alpha, 1, 1) - 0.02
    with pytest.raises(ValueError, match="alpha"):
        bayes.singular_overlap(0.0, 1, 1)


def test_distance_to_segments_and_sample_moons():
    pts = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    q = torch.tensor([[1.0, 1.0], [1.0, -1.0], [3.0, 0.0], [0.5, 0.5]])
    d = bayes.distance_to_segments(q, pts)
    assert torch.allclose(d, torch.tensor([0.0, 1.0, 1.0, 0.5], dtype=torch.float64), atol=1e-9)
    mean, std = bayes.moons_standardisation(200, 0.2, 3)
    x, y = bayes.sample_moons(101, 0.2, mean, std, 7)
    assert x.shape == (101, 2) and x.dtype == torch.float64 and int((y == 0).sum()) == 50


def test_kde_agrees_with_the_direct_sum():
    g = torch.Generator().manual_seed(0)
    pts, q = torch.randn(300, 2, generator=g, dtype=torch.float64), torch.randn(700, 2, generator=g, dtype=torch.float64)
    direct = torch.exp(-torch.cdist(q, pts).square() / (2 * 0.3 ** 2)).sum(1) / (2 * math.pi * 0.3 ** 2) / 300
    assert torch.allclose(bayes.kde(pts, q, 0.3, chunk=64), direct, rtol=1e-10)
    joint = bayes.joint_kde(pts, (pts[:, 0] > 0).long(), q, 0.3)
    cond = bayes.class_kde(pts, (pts[:, 0] > 0).long(), q, 0.3)
    assert torch.allclose(bayes.posterior(cond), bayes.posterior(cond * 0.5))
    assert joint.shape == cond.shape == (700, 2)
