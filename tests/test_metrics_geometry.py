"""Geometry metrics: k-NN distance to a reference set and the Levina–Bickel intrinsic dimension."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixbook.training import metrics


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _embed(z: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """A linear (full-rank, random) embedding of the rows of ``z`` into ``dim`` dimensions."""
    a = torch.randn(z.shape[1], dim, generator=_gen(seed), dtype=torch.float64)
    return z @ a + torch.randn(dim, generator=_gen(seed + 1), dtype=torch.float64)


def _brute_force_id(x: np.ndarray, k: int, average: str) -> float:
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    t = np.sort(d, axis=1)[:, :k]  # T_1 .. T_k
    inv = np.log(t[:, -1:] / t[:, :-1]).sum(1) / (k - 1)
    return 1 / inv.mean() if average == "inverse" else float((1 / inv).mean())


# ---------------------------------------------------------------------- intrinsic dimension
@pytest.mark.parametrize("k", [5, 10, 20])
def test_id_of_a_plane_in_64d(k):
    z = torch.rand(2000, 2, generator=_gen(k), dtype=torch.float64)
    est = metrics.intrinsic_dimension(_embed(z, 64, 100 + k), k=k)
    assert isinstance(est, float)
    assert abs(est - 2) < 0.3, est


@pytest.mark.parametrize("k", [5, 10, 20])
def test_id_of_a_5d_gaussian_in_64d(k):
    z = torch.randn(2000, 5, generator=_gen(k), dtype=torch.float64)
    est = metrics.intrinsic_dimension(_embed(z, 64, 200 + k).float(), k=k)
    assert abs(est - 5) < 0.8, est


def test_id_separates_dimensions():
    g = _gen(3)
    ests = [metrics.intrinsic_dimension(_embed(torch.randn(1500, d, generator=g, dtype=torch.float64), 32, d), k=10)
            for d in (1, 2, 4, 8)]
    assert all(a < b for a, b in zip(ests, ests[1:])), ests
    assert abs(ests[0] - 1) < 0.2


def test_id_uses_inverse_averaging():
    """Equal to the brute-force MacKay–Ghahramani form, and not to Levina–Bickel's mean of m̂_k."""
    x = _embed(torch.randn(200, 3, generator=_gen(5), dtype=torch.float64), 10, 5)
    a = x.numpy()
    for k in (2, 5, 12):
        est = metrics.intrinsic_dimension(x, k=k)
        assert est == pytest.approx(_brute_force_id(a, k, "inverse"), rel=1e-10)
        assert abs(est - _brute_force_id(a, k, "mean")) > 1e-3


def test_id_ignores_duplicates():
    x = _embed(torch.randn(300, 2, generator=_gen(6), dtype=torch.float64), 8, 6)
    dup = torch.cat([x, x[:100], x[:10]])  # zero distances would give log(T_k / 0)
    est = metrics.intrinsic_dimension(dup, k=8)
    assert math.isfinite(est)
    assert est == pytest.approx(metrics.intrinsic_dimension(x, k=8), rel=1e-12)


def test_id_is_invariant_to_similarity_transforms():
    x = torch.randn(300, 4, generator=_gen(7), dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=_gen(8), dtype=torch.float64))
    est = metrics.intrinsic_dimension(x, k=10)
    assert metrics.intrinsic_dimension(3.0 * x @ q + 5.0, k=10) == pytest.approx(est, rel=1e-8)


def test_id_equidistant_neighbours():
    """Points on a line with unit spacing and k = 2: T_1 = T_2 for inner points."""
    x = torch.arange(50, dtype=torch.float64)[:, None]
    assert metrics.intrinsic_dimension(x, k=2) == pytest.approx(1 / (math.log(2) * 2 / 50))
    # All neighbours at the same distance (a regular simplex): the estimate diverges.
    assert metrics.intrinsic_dimension(torch.eye(6), k=3) == math.inf


def test_id_bad_arguments():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match=r"\bk\b must be an int >= 2"):
        metrics.intrinsic_dimension(x, k=1)
    with pytest.raises(TypeError, match=r"\bk\b"):
        metrics.intrinsic_dimension(x, k=5.0)
    with pytest.raises(ValueError, match=r"\bk\b must be <= 19"):
        metrics.intrinsic_dimension(x, k=20)
    with pytest.raises(ValueError, match=r"\bk\b must be <= 2 \(the number of distinct"):
        metrics.intrinsic_dimension(torch.cat([x[:3]] * 5), k=3)
    with pytest.raises(ValueError, match=r"\bx\b must have shape \(num_points, dim\)"):
        metrics.intrinsic_dimension(torch.randn(20), k=3)
    with pytest.raises(ValueError, match=r"\bx\b must have shape"):
        metrics.intrinsic_dimension(torch.randn(0, 3), k=3)
    with pytest.raises(TypeError, match=r"\bx\b must be a torch.Tensor"):
        metrics.intrinsic_dimension(x.numpy(), k=3)
    with pytest.raises(ValueError, match=r"\bx\b must be finite"):
        metrics.intrinsic_dimension(torch.full((20, 3), float("nan")), k=3)


# ---------------------------------------------------------------------- k-NN distance
def test_knn_distance_on_a_line():
    x = torch.arange(10, dtype=torch.float32)[:, None]
    assert metrics.knn_distance(x, x, k=1).item() == 0.0  # every point is its own neighbour
    assert metrics.knn_distance(x, x, k=1, exclude_self=True).item() == 1.0
    # k = 2 without self: the two ends are at 1 and 2, the inner points at 1 and 1.
    assert metrics.knn_distance(x, x, k=2, exclude_self=True).item() == pytest.approx((2 * 1.5 + 8 * 1.0) / 10)
    # Midpoints are at 0.5 from their two neighbours.
    mid = x[:-1] + 0.5
    assert metrics.knn_distance(mid, x, k=1).item() == pytest.approx(0.5)
    assert metrics.knn_distance(mid, x, k=2).item() == pytest.approx(0.5)
    out = metrics.knn_distance(mid, x, k=3)
    assert out.ndim == 0 and out.dtype == torch.float64
    assert out.item() == pytest.approx((0.5 + 0.5 + 1.5) / 3)


def test_knn_distance_known_values():
    ref = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    pts = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    assert metrics.knn_distance(pts, ref, k=1).item() == pytest.approx(2.5)  # (0 + 5) / 2
    assert metrics.knn_distance(pts, ref, k=2).item() == pytest.approx(((0 + 5) / 2 + (5 + 10) / 2) / 2)


def test_knn_distance_exclude_self_keeps_duplicates():
    x = torch.tensor([[0.0], [0.0], [1.0]])
    # Point 0's nearest other point is its duplicate (distance 0), likewise point 1; point 2: 1.
    assert metrics.knn_distance(x, x, k=1, exclude_self=True).item() == pytest.approx(1 / 3)


def test_knn_distance_mixed_points_are_farther():
    """Mixup points between two distant clusters lie far from the data; the data itself does not."""
    g = _gen(0)
    a = torch.randn(200, 2, generator=g) * 0.1
    data = torch.cat([a - 5, a + 5])
    mixed = 0.5 * data[:200] + 0.5 * data[200:]
    assert metrics.knn_distance(mixed, data, k=5) > 10 * metrics.knn_distance(data, data, k=5, exclude_self=True)


def test_knn_distance_bad_arguments():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"\bk\b must be <= 5"):
        metrics.knn_distance(x, x, k=6)
    with pytest.raises(ValueError, match=r"\bk\b must be <= 4"):
        metrics.knn_distance(x, x, k=5, exclude_self=True)
    with pytest.raises(ValueError, match=r"\bk\b must be an int >= 1"):
        metrics.knn_distance(x, x, k=0)
    with pytest.raises(ValueError, match="same dimension"):
        metrics.knn_distance(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="exclude_self=True needs points and reference to be the same set"):
        metrics.knn_distance(x, x + 1, k=1, exclude_self=True)
    with pytest.raises(TypeError, match="exclude_self"):
        metrics.knn_distance(x, x, exclude_self=1)
    with pytest.raises(ValueError, match=r"\bpoints\b must have shape"):
        metrics.knn_distance(torch.randn(5), x)
    with pytest.raises(ValueError, match=r"\breference\b must have shape"):
        metrics.knn_distance(x, torch.randn(0, 2))
    with pytest.raises(TypeError, match=r"\breference\b must be a torch.Tensor"):
        metrics.knn_distance(x, [[0.0, 0.0]])
