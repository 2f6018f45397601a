"""mixbook.chapters.toy_manifolds: noise-free moons and helix, and their exact distances."""

from __future__ import annotations

import math

import pytest
import torch

from mixbook.chapters import toy_manifolds as tm


def _brute_moons(p: torch.Tensor, per_arc: int = 200_001) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.linspace(0, math.pi, per_arc, dtype=torch.float64)
    outer = torch.stack([torch.cos(t), torch.sin(t)], 1)
    inner = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)  # scikit-learn's make_moons
    d = torch.stack([torch.cdist(p, outer).min(1).values, torch.cdist(p, inner).min(1).values], 1)
    return d.min(1).values, d.argmin(1)


def _brute_helix(p: torch.Tensor, radius=1.0, pitch=0.2, turns=3.0, n=400_001) -> torch.Tensor:
    t = torch.linspace(0, 2 * math.pi * turns, n, dtype=torch.float64)
    curve = torch.stack([radius * torch.cos(t), radius * torch.sin(t), pitch * t], 1)
    return torch.cat([torch.cdist(q, curve).min(1).values for q in p.split(256)])


def test_moons_points_lie_on_the_moons_with_their_labels():
    x, y = tm.moons(501, generator=torch.Generator().manual_seed(0))
    assert x.shape == (501, 2) and x.dtype == torch.float64 and y.tolist() == [0] * 250 + [1] * 251
    dist, label = tm.moons_distance(x)
    assert dist.max() < 1e-12
    assert torch.equal(label, y)


def test_moons_are_scikit_learns_noise_free_moons():
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=200, noise=0.0, shuffle=False)
    dist, label = tm.moons_distance(torch.as_tensor(x))
    assert dist.max() < 1e-12
    assert label.tolist() == y.tolist()


def test_moons_distance_matches_brute_force_off_the_manifold():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(400, 2, generator=g, dtype=torch.float64) * torch.tensor([4.0, 3.0]) - torch.tensor([1.5, 1.2])
    p = torch.cat([p, torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.5, 0.25], [-3.0, 0.0], [4.0, 0.5]], dtype=torch.float64)])
    dist, label = tm.moons_distance(p)
    brute, brute_label = _brute_moons(p)
    assert (dist <= brute + 1e-12).all()           # exact is never above a sampled minimum
    assert (brute - dist).max() < 1e-4             # and the dense sampling gets within its spacing
    clear = (torch.stack([*_arcs(p)], 1).diff(dim=1).abs().squeeze(1) > 1e-3)
    assert torch.equal(label[clear], brute_label[clear])


def _arcs(p):
    return (_brute_moons_one(p, 0), _brute_moons_one(p, 1))


def _brute_moons_one(p, which):
    t = torch.linspace(0, math.pi, 20_001, dtype=torch.float64)
    arc = torch.stack([torch.cos(t), torch.sin(t)], 1) if which == 0 else torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
    return torch.cdist(p, arc).min(1).values


def test_helix_points_lie_on_the_helix_and_normal_offsets_are_exact():
    h = tm.helix(3000, generator=torch.Generator().manual_seed(2))
    assert h.shape == (3000, 3) and h.dtype == torch.float64
    assert tm.helix_distance(h).max() < 1e-9
    # moving a point radially by δ (the principal normal) puts it exactly δ from the helix
    delta = torch.linspace(-0.6, 0.9, 3000, dtype=torch.float64)
    scale = (1.0 + delta) / 1.0
    off = torch.stack([h[:, 0] * scale, h[:, 1] * scale, h[:, 2]], 1)
    assert (tm.helix_distance(off) - delta.abs()).abs().max() < 1e-9


def test_helix_distance_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(300, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 3.0, 5.0]) - torch.tensor([1.5, 1.5, 0.6])
    d = tm.helix_distance(p)
    brute = _brute_helix(p)
    assert (d <= brute + 1e-12).all()
    assert (brute - d).max() < 1e-6


def test_helix_parameters_are_used():
    h = tm.helix(500, radius=2.0, pitch=0.5, turns=1.5, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(h[:, :2].norm(dim=1), torch.full((500,), 2.0, dtype=torch.float64))
    assert h[:, 2].min() >= 0 and h[:, 2].max() <= 0.5 * 2 * math.pi * 1.5
    assert tm.helix_distance(h, radius=2.0, pitch=0.5, turns=1.5).max() < 1e-9
    assert tm.helix_distance(h).max() > 0.5  # a different helix is far away


def test_sampling_is_reproducible_with_a_generator():
    a = tm.moons(50, generator=torch.Generator().manual_seed(5))[0]
    b = tm.moons(50, generator=torch.Generator().manual_seed(5))[0]
    assert torch.equal(a, b)
    assert torch.equal(tm.helix(50, generator=torch.Generator().manual_seed(6)),
                       tm.helix(50, generator=torch.Generator().manual_seed(6)))


def test_distances_accept_float32_and_keep_the_device():
    x, _ = tm.moons(20, generator=torch.Generator().manual_seed(7))
    d, _ = tm.moons_distance(x.float())
    assert d.dtype == torch.float64 and d.max() < 1e-6


@pytest.mark.parametrize("bad, error", [
    (torch.zeros(5, 3), ValueError), (torch.zeros(5), ValueError), (torch.zeros(0, 2), ValueError),
    (torch.zeros(5, 2, dtype=torch.long), TypeError), (torch.tensor([[float("nan"), 0.0]]), ValueError),
    ([[0.0, 0.0]], TypeError),
])
def test_moons_distance_rejects_bad_points(bad, error):
    with pytest.raises(error):
        tm.moons_distance(bad)


def test_helix_rejects_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        tm.helix(10, radius=0.0)
    with pytest.raises(ValueError, match="turns"):
        tm.helix_distance(torch.zeros(4, 3), turns=-1.0)
    with pytest.raises(ValueError):
        tm.helix_distance(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="n"):
        tm.moons(0)
