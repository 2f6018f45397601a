"""Small 2-D GANs on a ring of Gaussians, with three discriminator losses and two sample measures.

Chapter 8 tests the claim of Huszár's post on mixup (and of Zhang et al. 2018, §3.5 "Stabilization
of Generative Adversarial Networks") that mixing real and generated samples, with the
discriminator's target mixed by the same λ, regularises the discriminator as *instance noise*
does (Sønderby et al. 2017; Arjovsky & Bottou 2017: Gaussian noise added to every input the
discriminator sees, annealed to zero).

The data is the usual mode-collapse benchmark: ``modes`` Gaussians of standard deviation ``std``
evenly spaced on a circle of radius ``radius`` (:class:`Ring`). The three discriminator losses
(:data:`LOSSES`), for real ``x``, generated ``g = G(z)`` and the discriminator's logit ``D``:

- ``"plain"``: ``BCE(D(x), 1) + BCE(D(g), 0)``;
- ``"instance_noise"``: the same on ``x + σ_t ε`` and ``g + σ_t ε'``, ``ε, ε' ~ N(0, I)``, with
  ``σ_t`` annealed linearly from ``noise_std`` to 0 over the training steps; the generator's
  step sees the same noisy discriminator;
- ``"mixup"``: ``BCE(D(λ x + (1 − λ) g), λ)`` with one ``λ ~ Beta(α, α)`` per pair (Zhang et al.'s
  objective ``ℓ(d(λx + (1 − λ)g(z)), λ)``).

The generator's loss is the non-saturating ``BCE(D(G(z)), 1)`` in all three, so only the
discriminator differs between them. Within a seed the three runs start from the same weights and
see the same real samples and latents (the losses' own draws, noise or λ, come from a separate
stream), so runs are paired across losses.

Measures of a sample ``s: (n, 2)`` (:func:`mode_coverage`, :func:`energy_distance`): a sample
point is *high quality* when it lies within ``k·std`` (k = 3) of its nearest mode; a mode is
*covered* when at least ``min_share`` of its fair share (``n / modes``) of the points are high
quality and nearest to it; the energy distance (Székely & Rizzo) between the generated and the
true distribution measures the whole mismatch, spread included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core import _checks
from ..training import models
from ..core.distributions import beta

__all__ = ["LOSSES", "Ring", "energy_distance", "mode_coverage", "GANRun", "train"]

LOSSES = ("plain", "instance_noise", "mixup")


@dataclass(frozen=True)
class Ring:
    """The data: the equal-weight mixture of ``N(c_k, std² I)``, k = 0 … modes − 1, with centres
    ``c_k = radius · (cos 2πk/modes, sin 2πk/modes)`` (Metz et al.'s eight-Gaussian ring by default)."""

    modes: int = 8
    radius: float = 2.0
    std: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", _checks.positive_int("modes", self.modes))
        object.__setattr__(self, "radius", _checks.positive_float("radius", self.radius))
        object.__setattr__(self, "std", _checks.positive_float("std", self.std))

    def centres(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``(modes, 2)`` centres ``c_k``."""
        angle = torch.arange(self.modes, dtype=torch.float64) * (2 * math.pi / self.modes)
        return (self.radius * torch.stack([angle.cos(), angle.sin()], 1)).to(dtype)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` points ``(n, 2)`` of the mixture (float32, CPU): a mode index, then its Gaussian."""
        n = _checks.positive_int("n", n)
        _checks.generator(generator, torch.device("cpu"))
        centres = self.centres()
        k = torch.randint(self.modes, (n,), generator=generator)
        return centres[k] + self.std * torch.randn(n, 2, generator=generator)


def _points(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d), got {type(t).__name__}")
    if t.ndim != 2 or t.shape[0] < 1 or not t.is_floating_point():
        raise ValueError(f"{name} must be a floating (n, d) tensor with n >= 1, got {t.dtype} {tuple(t.shape)}")
    return t.detach().double()


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The energy distance ``sqrt(2 E|A − B| − E|A − A'| − E|B − B'|)`` between two samples.

    ``a: (n, d)``, ``b: (m, d)``, Euclidean norm; the expectations are over the empirical
    distributions (V-statistics, the convention of ``scipy.stats.energy_distance``, with which it
    agrees for ``d = 1``). Zero iff the two samples hold the same points with the same frequencies.
    """
    a, b = _points("a", a), _points("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of columns, got {a.shape[1]} and {b.shape[1]}")
    ab = torch.cdist(a, b).mean()
    aa = torch.cdist(a, a).mean()
    bb = torch.cdist(b, b).mean()
    return float((2 * ab - aa - bb).clamp_min(0.0).sqrt())


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float, *, k: float = 3.0,
                  min_share: float = 0.25) -> tuple[int, float]:
    """``(covered modes, share of high-quality points)`` of ``samples: (n, 2)`` around ``centres: (modes, 2)``.

    A point is high quality when within ``k · std`` of its nearest centre; a mode is covered when
    its high-quality points number at least ``min_share · n / modes``.
    """
    s, c = _points("samples", samples), _points("centres", centres)
    std = _checks.positive_float("std", std)
    k = _checks.positive_float("k", k)
    min_share = _checks.unit_interval("min_share", min_share, include_one=True)
    d = torch.cdist(s, c)
    nearest_d, nearest = d.min(1)
    good = nearest_d <= k * std
    counts = torch.bincount(nearest[good], minlength=len(c))
    covered = int((counts >= min_share * len(s) / len(c)).sum())
    return covered, float(good.double().mean())


@dataclass(frozen=True)
class GANRun:
    """One trained GAN: its loss, seed, ``samples: (n_samples, 2)`` from the final generator, and
    the measures of those samples against the ring (``modes_covered``, ``high_quality``,
    ``energy`` — the energy distance to as many fresh points of the ring)."""

    loss: str
    seed: int
    samples: torch.Tensor
    modes_covered: int
    high_quality: float
    energy: float

    def row(self) -> dict[str, object]:
        """The run as a table row (no samples)."""
        return {"loss": self.loss, "seed": self.seed, "modes covered": self.modes_covered,
                "high quality": self.high_quality, "energy distance": self.energy}


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(S,)``: each member's mean binary cross-entropy over its ``(S, B, 1)`` batch."""
    return F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none").mean((1, 2))


class _Stacked:
    """The MLPs of an ensemble as stacked leaves: per linear layer ``W: (S, in, out)`` and
    ``b: (S, 1, out)``, taken from the members' own ``nn.Linear`` layers (so each member starts
    from its module's initialisation). ``self(x)`` maps ``(S, B, in) -> (S, B, out)``: one batched
    matmul a layer (``torch.baddbmm``), ReLU between layers, as :class:`mixbook.training.models.MLP`."""

    def __init__(self, nets: list[models.MLP]) -> None:
        layers = [[m for m in net.modules() if isinstance(m, nn.Linear)] for net in nets]
        self.weights = [torch.stack([ls[i].weight.detach().T for ls in layers]).contiguous().requires_grad_()
                        for i in range(len(layers[0]))]
        self.biases = [torch.stack([ls[i].bias.detach()[None] for ls in layers]).requires_grad_()
                       for i in range(len(layers[0]))]

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x


_CHUNK = 250  # steps of real points and latents drawn at once per seed (fixes the streams' order)


def train(
    loss: str = "plain",
    *,
    seeds: Sequence[int] = (0,),
    ring: Ring = Ring(),
    steps: int = 2000,
    batch_size: int = 128,
    latent: int = 2,
    hidden: int = 64,
    lr: float = 1e-3,
    noise_std: float = 0.1,      # instance noise's initial σ
    alpha: float = 1.0,          # mixup's Beta(α, α)
    n_samples: int = 2500,
) -> list[GANRun]:
    """Train one GAN per seed, a generator ``MLP(latent → 2)`` against a discriminator ``MLP(2 → 1)`` on ``ring`` (a :class:`Ring`).

    Both have two hidden ReLU layers of ``hidden``; Adam (lr, betas (0.5, 0.999)); one
    discriminator step then one generator step per iteration, ``steps`` iterations on fresh
    batches of ``batch_size`` real points and latents ``z ~ N(0, I_latent)``. ``loss`` is one of
    :data:`LOSSES` (module docstring); ``noise_std`` is instance noise's initial σ, ``alpha``
    mixup's Beta(α, α). CPU, float32.

    Seed ``s`` fixes the two networks' initial weights (``torch.manual_seed(s)``, then
    ``mixbook.training.models.MLP`` for the generator, then for the discriminator) and the real/latent
    stream, shared by the three losses; the loss's own draws (noise, λ) and the evaluation draws
    come from streams seeded from it. The seeds' GANs train together as one ensemble (each
    layer's weights stacked over the seeds, one batched matmul per layer): Adam updates element
    by element, so each member follows its own run, and a member's result does not depend on the
    other seeds. Returns one :class:`GANRun` per seed, in order.

    Not :func:`mixbook.training.train.fit`'s loop: a GAN has two players with two optimisers
    and alternating steps on fresh draws (no data set to iterate over, no epochs), and is judged
    by its samples (:class:`GANRun`), not by a classifier's
    :class:`~mixbook.training.train.History`.
    """
    loss = _checks.choice("loss", loss, LOSSES)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise TypeError(f"seeds must be a non-empty sequence of integers >= 0, got {seeds!r}")
    seeds = [_checks.seed("seeds", s) for s in seeds]
    steps = _checks.positive_int("steps", steps)
    batch_size = _checks.positive_int("batch_size", batch_size)
    latent = _checks.positive_int("latent", latent)
    hidden = _checks.positive_int("hidden", hidden)
    lr = _checks.positive_float("lr", lr)
    noise_std = _checks.non_negative_float("noise_std", noise_std)
    alpha = _checks.positive_float("alpha", alpha)
    if not isinstance(ring, Ring):
        raise TypeError(f"ring must be a mixbook.chapters.gan.Ring, got {type(ring).__name__}")
    n_samples = _checks.positive_int("n_samples", n_samples)

    gens, discs = [], []
    for s in seeds:
        torch.manual_seed(s)
        gens.append(models.MLP(latent, 2, (hidden, hidden)))
        discs.append(models.MLP(2, 1, (hidden, hidden)))
    G, D = _Stacked(gens), _Stacked(discs)
    data_streams = [torch.Generator().manual_seed(s) for s in seeds]
    loss_streams = [torch.Generator().manual_seed(s + 1_000_003) for s in seeds]
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999), foreach=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999), foreach=True)
    one, zero = torch.ones(()), torch.zeros(())
    k = len(seeds)

    def draws(make) -> torch.Tensor:
        return torch.stack([make(g) for g in loss_streams])

    for t in range(steps):
        if t % _CHUNK == 0:
            m = min(_CHUNK, steps - t)
            real_chunk = torch.stack([ring.sample(m * batch_size, generator=g)
                                      for g in data_streams]).view(k, m, batch_size, 2)
            z_chunk = torch.stack([torch.randn(m * batch_size, latent, generator=g)
                                   for g in data_streams]).view(k, m, batch_size, latent)
        real, z = real_chunk[:, t % _CHUNK], z_chunk[:, t % _CHUNK]   # (S, B, 2), (S, B, latent)
        sigma = noise_std * (1 - t / steps)
        fake = G(z)

        fake_d = fake.detach()
        if loss == "plain":
            d_loss = _bce(D(real), one) + _bce(D(fake_d), zero)
        elif loss == "instance_noise":
            d_loss = (_bce(D(real + sigma * draws(lambda g: torch.randn(batch_size, 2, generator=g))), one)
                      + _bce(D(fake_d + sigma * draws(lambda g: torch.randn(batch_size, 2, generator=g))), zero))
        else:
            lam = draws(lambda g: beta(alpha, alpha, (batch_size, 1), generator=g))
            d_loss = _bce(D(lam * real + (1 - lam) * fake_d), lam)
        opt_d.zero_grad(set_to_none=True)
        d_loss.sum().backward()
        opt_d.step()

        if loss == "instance_noise":
            fake = fake + sigma * draws(lambda g: torch.randn(batch_size, 2, generator=g))
        g_loss = _bce(D(fake), one)
        opt_g.zero_grad(set_to_none=True)
        g_loss.sum().backward()
        opt_g.step()

    eval_streams = [torch.Generator().manual_seed(s + 2_000_003) for s in seeds]
    with torch.no_grad():
        samples = G(torch.stack([torch.randn(n_samples, latent, generator=g) for g in eval_streams]))
    runs = []
    for s, g, member_samples in zip(seeds, eval_streams, samples):
        truth = ring.sample(n_samples, generator=g)
        covered, good = mode_coverage(member_samples, ring.centres(), ring.std)
        runs.append(GANRun(loss=loss, seed=s, samples=member_samples, modes_covered=covered, high_quality=good,
                           energy=energy_distance(member_samples, truth)))
    return runs
