"""mixbook.chapters.gan: the ring, the two measures (energy distance against scipy, mode coverage), the
three discriminator losses, pairing and the independence of ensemble members."""

import numpy as np
import pytest
import torch
from scipy.stats import energy_distance as scipy_energy

from mixbook.chapters import gan


def test_ring_centres_and_points():
    ring = gan.Ring(modes=8, radius=2.0, std=0.02)
    c = ring.centres()
    assert c.shape == (8, 2)
    assert torch.allclose(c.norm(dim=1), torch.full((8,), 2.0))
    assert torch.allclose(c[0], torch.tensor([2.0, 0.0]))
    x = ring.sample(4000, generator=torch.Generator().manual_seed(0))
    d, k = torch.cdist(x, c).min(1)
    assert x.shape == (4000, 2) and float(d.max()) < 0.02 * 6
    counts = torch.bincount(k, minlength=8)
    assert int(counts.min()) > 400 and int(counts.max()) < 600      # equal weights: 500 each on average


def test_energy_distance_matches_scipy_in_one_dimension():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.5, 2.0, size=200)
    ours = gan.energy_distance(torch.tensor(a)[:, None], torch.tensor(b)[:, None])
    assert ours == pytest.approx(scipy_energy(a, b), rel=1e-9)


def test_energy_distance_is_zero_on_itself_and_grows_with_a_shift():
    x = gan.Ring().sample(500, generator=torch.Generator().manual_seed(1))
    assert gan.energy_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shifts = [gan.energy_distance(x, x + torch.tensor([s, 0.0])) for s in (0.1, 0.5, 1.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]


def test_mode_coverage_counts_modes_and_quality():
    c = gan.Ring().centres()
    g = torch.Generator().manual_seed(2)
    full = gan.Ring().sample(2000, generator=g)
    covered, good = gan.mode_coverage(full, c, 0.02)
    assert covered == 8 and good > 0.98                       # within 3σ: 98.9% of a 2-D Gaussian
    collapsed = c[3] + 0.02 * torch.randn(2000, 2, generator=g)
    assert gan.mode_coverage(collapsed, c, 0.02)[0] == 1
    between = torch.zeros(1000, 2)                            # the centre of the ring: no mode, no quality
    assert gan.mode_coverage(between, c, 0.02) == (0, 0.0)
    # half the points on mode 0, a few on mode 1 (below a quarter of the fair share), the rest far away
    few = torch.cat([c[0].expand(500, 2), c[1].expand(20, 2), torch.full((480, 2), 10.0)])
    assert gan.mode_coverage(few, c, 0.02) == (1, pytest.approx(0.52))


@pytest.mark.parametrize("kwargs, err", [
    (dict(loss="wgan"), ValueError), (dict(seeds=[]), TypeError), (dict(seeds=[-1]), ValueError),
    (dict(seeds=3), TypeError), (dict(steps=0), ValueError), (dict(noise_std=-0.1), ValueError),
    (dict(alpha=0.0), ValueError), (dict(batch_size=1.5), TypeError), (dict(ring=(8, 2.0, 0.02)), TypeError),
])
def test_train_rejects_bad_arguments(kwargs, err):
    with pytest.raises(err):
        gan.train(**kwargs)


@pytest.mark.parametrize("kwargs, err", [
    (dict(modes=0), ValueError), (dict(radius=-1.0), ValueError), (dict(std=0.0), ValueError), (dict(modes=2.5), TypeError),
])
def test_ring_rejects_bad_arguments(kwargs, err):
    with pytest.raises(err, match=next(iter(kwargs))):
        gan.Ring(**kwargs)


def test_measures_reject_bad_arguments():
    with pytest.raises(TypeError, match="a must be"):
        gan.energy_distance([[0.0]], torch.zeros(1, 1))
    with pytest.raises(ValueError, match="same number of columns"):
        gan.energy_distance(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="std"):
        gan.mode_coverage(torch.zeros(3, 2), gan.Ring().centres(), 0.0)


@pytest.mark.parametrize("loss", gan.LOSSES)
def test_training_moves_the_generator_to_the_ring(loss):
    """A short run brings the generated points from near the origin (the untrained generator) to the
    ring: the energy distance to the ring falls well below the untrained generator's."""
    untrained = gan.train(loss, seeds=[0], steps=1)[0]
    trained = gan.train(loss, seeds=[0], steps=600)[0]
    assert trained.samples.shape == (2500, 2) and trained.loss == loss and trained.seed == 0
    assert trained.energy < 0.4 * untrained.energy
    assert trained.samples.norm(dim=1).mean() > 1.0          # the ring has radius 2


def test_members_are_independent_of_the_other_seeds():
    alone = gan.train("mixup", seeds=[3], steps=40)[0]
    together = gan.train("mixup", seeds=[5, 3], steps=40)[1]
    assert alone.seed == together.seed == 3
    torch.testing.assert_close(alone.samples, together.samples, rtol=1e-4, atol=1e-5)


def test_losses_are_paired_within_a_seed():
    """With zero noise, instance noise is the plain loss run for run: same initial weights, same
    real batches and latents, so the same samples. Noise or mixing then changes the run."""
    plain = gan.train("plain", seeds=[7], steps=3)[0]
    noiseless = gan.train("instance_noise", seeds=[7], steps=3, noise_std=0.0)[0]
    torch.testing.assert_close(plain.samples, noiseless.samples)
    noisy = gan.train("instance_noise", seeds=[7], steps=3, noise_std=0.5)[0]
    mixed = gan.train("mixup", seeds=[7], steps=3)[0]
    assert not torch.allclose(plain.samples, noisy.samples) and not torch.allclose(plain.samples, mixed.samples)


def test_row():
    run = gan.train("plain", seeds=[0], steps=2, n_samples=50)[0]
    assert set(run.row()) == {"loss", "seed", "modes covered", "high quality", "energy distance"}
