"""The Bayes view of mixup (Huszár 2017) on two moons: densities, the augmented distribution, q_aug.

Chapter 8 (the Bayes view of mixup).

Mixup's loss equals, in expectation, the loss of the *reformulated* augmentation that keeps the
first label: ``x̃ = λ x_i + (1 − λ) x_j`` with label ``y_i`` and λ ~ Beta(α + 1, α) (chapter 2).
Its joint distribution p_aug(x, y) is a mixture over pairs and λ, so samples of it are cheap and
its class-conditionals can be estimated to any precision with a kernel density estimate; the
Bayes-optimal classifier of p_aug is ``q_aug(1 | x) = π₁ p_aug(x | 1) / Σ_c π_c p_aug(x | c)``.

The true two-moons density is known: scikit-learn's ``make_moons`` puts class 0 on the upper
half circle ``(cos t, sin t)`` and class 1 on ``(1 − cos t, 0.5 − sin t)``, ``t`` uniform on
``[0, π]``, plus isotropic Gaussian noise; :func:`moons_density` integrates the noise kernel over
the arc (midpoint rule) in the standardised coordinates of :func:`mixbook.training.data.two_moons`.
Everything here is float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core import _checks
from ..core.distributions import beta

__all__ = ["moons_standardisation", "moons_density", "sample_augmented", "kde", "joint_kde", "posterior",
    "cross_entropy", "entropy", "kl"]


def moons_standardisation(n_train: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-feature ``(mean, std)`` ``(2,)`` that :func:`mixbook.training.data.two_moons` standardised with.

    It replays the training draw of ``make_moons`` from ``numpy.random.RandomState(seed)``.
    """
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=n_train, noise=noise, random_state=np.random.RandomState(seed))
    return x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)


def moons_density(x: torch.Tensor, noise: float, mean: np.ndarray, std: np.ndarray, *, n_arc: int = 800) -> torch.Tensor:
    """True class-conditional densities of two moons at standardised points.

    Args:
        x: ``(n, 2)`` points in the standardised coordinates.
        noise: the noise standard deviation of ``make_moons`` (raw units), > 0.
        mean, std: ``(2,)`` the standardisation (:func:`moons_standardisation`).
        n_arc: midpoints of the arc used for the integral over ``t``.

    Returns:
        ``(n, 2)`` float64: ``p(x | y = 0)`` and ``p(x | y = 1)`` as densities in the
        standardised coordinates (the Jacobian ``∏ std`` included).
    """
    noise = _checks.positive_float("noise", noise)
    x = torch.as_tensor(x, dtype=torch.float64)
    raw = x * torch.as_tensor(std) + torch.as_tensor(mean)
    t = (torch.arange(n_arc, dtype=torch.float64) + 0.5) * math.pi / n_arc
    arcs = [torch.stack([t.cos(), t.sin()], 1), torch.stack([1 - t.cos(), 0.5 - t.sin()], 1)]
    out = []
    for arc in arcs:
        d2 = torch.cdist(raw, arc).square()
        out.append(torch.exp(-d2 / (2 * noise ** 2)).mean(1) / (2 * math.pi * noise ** 2))
    return torch.stack(out, 1) * float(np.prod(std))


def sample_augmented(x: torch.Tensor, y: torch.Tensor, alpha: float, n: int, *,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` draws of p_aug (kept-label form): ``(λ x_i + (1 − λ) x_j, y_i)``, i, j uniform, λ ~ Beta(α + 1, α).

    Args:
        x: ``(m, d)`` training inputs; y: ``(m,)`` integer labels.
        alpha: α > 0.
        n: number of draws.

    Returns:
        ``(n, d)`` float64 inputs and ``(n,)`` labels.
    """
    alpha = _checks.positive_float("alpha", alpha)
    n = _checks.positive_int("n", n)
    x = torch.as_tensor(x, dtype=torch.float64)
    m = x.shape[0]
    i = torch.randint(m, (n,), generator=generator)
    j = torch.randint(m, (n,), generator=generator)
    lam = beta(alpha + 1, alpha, (n, 1), dtype=torch.float64, generator=generator)
    return lam * x[i] + (1 - lam) * x[j], y[i]


def kde(points: torch.Tensor, query: torch.Tensor, bandwidth: float, *, chunk: int = 4096) -> torch.Tensor:
    """Gaussian kernel density estimate of ``points`` ``(m, d)`` at ``query`` ``(q, d)``: ``(q,)`` float64."""
    bandwidth = _checks.positive_float("bandwidth", bandwidth)
    points = torch.as_tensor(points, dtype=torch.float64)
    query = torch.as_tensor(query, dtype=torch.float64)
    d = points.shape[1]
    norm = (2 * math.pi * bandwidth ** 2) ** (d / 2) * points.shape[0]
    out = [torch.exp(-torch.cdist(q, points).square() / (2 * bandwidth ** 2)).sum(1) for q in query.split(chunk)]
    return torch.cat(out) / norm


def joint_kde(x: torch.Tensor, y: torch.Tensor, query: torch.Tensor, bandwidth: float, num_classes: int = 2) -> torch.Tensor:
    """``p̂(x, y = c)`` at ``query`` ``(q, d)``: ``(q, C)``, the class share times the class's KDE."""
    cols = []
    for c in range(num_classes):
        mask = y == c
        share = float(mask.double().mean())
        cols.append(share * kde(x[mask], query, bandwidth) if share > 0 else torch.zeros(query.shape[0], dtype=torch.float64))
    return torch.stack(cols, 1)


def posterior(joint: torch.Tensor, floor: float = 1e-300) -> torch.Tensor:
    """``p(y | x)`` ``(q, C)`` from a joint ``(q, C)``; a point where every class has density 0 gets 1/C."""
    total = joint.sum(1, keepdim=True)
    uniform = torch.full_like(joint, 1.0 / joint.shape[1])
    return torch.where(total > floor, joint / total.clamp_min(floor), uniform)


def cross_entropy(prob: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-point ``−log prob[k, y_k]`` ``(q,)`` for class probabilities ``(q, C)``."""
    return -prob.gather(1, y.view(-1, 1)).squeeze(1).clamp_min(eps).log()


def entropy(prob: torch.Tensor, eps: float = 1e-300) -> torch.Tensor:
    """Per-point entropy ``(q,)`` of class probabilities ``(q, C)`` (nats)."""
    return -(prob * prob.clamp_min(eps).log()).sum(1)


def kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-point ``KL(p ‖ q)`` ``(q,)`` between rows of class probabilities ``(q, C)`` (nats)."""
    return (p * (p.clamp_min(1e-300).log() - q.clamp_min(eps).log())).sum(1)
