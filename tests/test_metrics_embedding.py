"""Alignment and uniformity (Wang & Isola 2020) on cases with known values."""

from __future__ import annotations

import math

import pytest
import torch

from mixbook.training import metrics


def test_alignment_known_values():
    # two classes; class 0 at (1, 0) twice, class 1 at (0, 1) and (0, -1): distances 0 and 2
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, -2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # ordered positive pairs: (0,1),(1,0) at distance 0; (2,3),(3,2) at distance 2 -> mean of d^2 = 2
    assert metrics.alignment(z, labels).item() == pytest.approx(2.0)
    assert metrics.alignment(z, labels, alpha=1.0).item() == pytest.approx(1.0)
    assert math.isnan(metrics.alignment(z, torch.tensor([0, 1, 2, 3])).item())


def test_uniformity_known_values():
    # identical embeddings: every distance 0 -> log E exp(0) = 0
    assert metrics.uniformity(torch.ones(5, 3)).item() == pytest.approx(0.0, abs=1e-6)
    # two antipodal points: one pair at squared distance 4 -> -t * 4
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert metrics.uniformity(z, t=2.0).item() == pytest.approx(-8.0)
    # the 4 vertices of a square on the circle: pairs at d^2 = 2 (4 of them) and 4 (2 of them)
    sq = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    expected = math.log((4 * math.exp(-4.0) + 2 * math.exp(-8.0)) / 6)
    assert metrics.uniformity(sq).item() == pytest.approx(expected, rel=1e-6)


def test_spread_is_more_uniform_than_collapsed():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(200, 8, generator=g)
    collapsed = torch.randn(1, 8, generator=g) + 0.05 * torch.randn(200, 8, generator=g)
    assert metrics.uniformity(spread) < metrics.uniformity(collapsed) - 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="z"):
        metrics.uniformity(torch.ones(1, 3))
    with pytest.raises(ValueError, match="z"):
        metrics.alignment(torch.ones(3), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="labels"):
        metrics.alignment(torch.ones(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="t"):
        metrics.uniformity(torch.ones(3, 2), t=0.0)
    with pytest.raises(TypeError, match="z"):
        metrics.uniformity(torch.ones(3, 2, dtype=torch.long))


@pytest.mark.parametrize("nonnegative", [False, True])
def test_uniformity_jensen_bound_and_the_bounds_of_nonnegative_embeddings(nonnegative):
    """Chapter 5's eq. (eq-uniformity-bound): uniformity >= -2t * 2N/(N-1) * (1 - |mean direction|^2) for any
    embedding; for non-negative ones (after a ReLU) alignment <= 2 and uniformity >= -2t as well."""
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        z = torch.randn(50, 6, generator=g, dtype=torch.float64) * (1 + trial)
        if nonnegative:
            z = z.relu() + 1e-3
        y = torch.randint(0, 3, (50,), generator=g)
        u = torch.nn.functional.normalize(z, dim=1)
        n = u.shape[0]
        bound = -2 * 2.0 * n / (n - 1) * (1 - float(u.mean(0).pow(2).sum()))
        assert metrics.uniformity(z, t=2.0).item() >= bound - 1e-9
        if nonnegative:
            assert metrics.alignment(z, y).item() <= 2 + 1e-9
            assert metrics.uniformity(z, t=2.0).item() >= -4 - 1e-9
