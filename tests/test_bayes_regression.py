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
