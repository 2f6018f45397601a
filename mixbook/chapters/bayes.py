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

p_aug has no density in the plane: all its mass lies on the segments ``[x_i, x_j]`` between
training points (:func:`distance_to_segments` measures how close a point comes to that support),
so every density of it used here is the kernel-smoothed ``p_aug * N(0, h² I)``; as ``h → 0`` the
smoothed density vanishes off the segments and ``KL(p_test ‖ p_aug * N(0, h² I)) → ∞``.

Huszár's decomposition of the test loss of ``q_aug`` (classes balanced in both distributions) is
``E_y KL(p_test(x | y) ‖ p_aug(x | y)) − KL(p_test(x) ‖ p_aug(x))`` plus the irreducible
``E_x H(p_test(· | x))``; by the chain rule of KL, applied to the joint in both orders, the
difference equals ``E_x KL(p_test(· | x) ‖ q_aug(· | x))``, the divergence term of the posterior
decomposition. :func:`huszar_terms` estimates the first form from labelled draws of ``p_test``
and log class-conditional densities only, so that a chapter can compare it with the second
computed from posteriors at other points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core import _checks
from ..core.distributions import beta

__all__ = ["moons_standardisation", "moons_density", "sample_moons", "sample_augmented", "kde", "joint_kde", "posterior",
    "cross_entropy", "entropy", "kl", "class_kde", "singular_overlap", "HuszarTerms", "huszar_terms", "bhattacharyya", "distance_to_segments"]


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


def sample_moons(n: int, noise: float, mean: np.ndarray, std: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fresh labelled draws of two moons (``make_moons`` with ``RandomState(seed)``) in the
    standardised coordinates ``(x − mean) / std``: ``(n, 2)`` float64 and ``(n,)`` int64 labels
    (classes balanced: ``n // 2`` and ``n − n // 2``, as ``make_moons`` splits them)."""
    from sklearn.datasets import make_moons

    n = _checks.positive_int("n", n)
    noise = _checks.positive_float("noise", noise)
    x, y = make_moons(n_samples=n, noise=noise, random_state=np.random.RandomState(seed))
    return torch.as_tensor((x - mean) / std, dtype=torch.float64), torch.as_tensor(y, dtype=torch.int64)


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


def kde(points: torch.Tensor, query: torch.Tensor, bandwidth: float, *, chunk: int = 512) -> torch.Tensor:
    """Gaussian kernel density estimate of ``points`` ``(m, d)`` at ``query`` ``(q, d)``: ``(q,)`` float64.

    Squared distances are expanded (``|a|² + |b|² − 2 a·b``, one matmul a chunk of ``chunk`` query
    rows) and exponentiated in place: the cost is a few passes over a ``(chunk, m)`` block.
    """
    bandwidth = _checks.positive_float("bandwidth", bandwidth)
    points = torch.as_tensor(points, dtype=torch.float64)
    query = torch.as_tensor(query, dtype=torch.float64)
    d = points.shape[1]
    norm = (2 * math.pi * bandwidth ** 2) ** (d / 2) * points.shape[0]
    p2 = points.square().sum(1)
    scale = -1.0 / (2 * bandwidth ** 2)
    out = []
    for q in query.split(chunk):
        d2 = torch.addmm(p2, q, points.T, alpha=-2).add_(q.square().sum(1, keepdim=True)).clamp_min_(0)
        out.append(d2.mul_(scale).exp_().sum(1))
    return torch.cat(out) / norm


def class_kde(x: torch.Tensor, y: torch.Tensor, query: torch.Tensor, bandwidth: float, num_classes: int = 2) -> torch.Tensor:
    """Class-conditional KDEs ``p̂(x | y = c)`` at ``query`` ``(q, d)``: ``(q, C)`` (a class without points gets 0).

    Their normalised rows are the Bayes classifier with *balanced* classes (Huszár's ``q_aug``):
    ``posterior(class_kde(...))``.
    """
    query = torch.as_tensor(query, dtype=torch.float64)
    return torch.stack([kde(x[y == c], query, bandwidth) if bool((y == c).any())
                        else torch.zeros(query.shape[0], dtype=torch.float64) for c in range(num_classes)], 1)


def singular_overlap(alpha: float, n0: int, n1: int) -> float:
    """Bhattacharyya coefficient of p_aug's two class-conditionals themselves (no kernel), kept-label form.

    Both are singular (on segments), but on each of the ``n0 · n1`` segments between a class-0 and
    a class-1 training point they have densities along the segment: ``Beta(α, α + 1)`` and
    ``Beta(α + 1, α)`` in the position measured from the class-0 end, with masses ``1 / (n0 n)``
    and ``1 / (n1 n)``, ``n = n0 + n1``; segments within a class and the point masses at the
    training points carry one class only. Summed over the segments (distinct points, no three
    collinear),

        BC = √(n0 n1) / n · B(α + ½, α + ½) / B(α, α + 1).

    Smoothing both with one kernel can only raise a Bhattacharyya coefficient (data processing),
    so this is a lower bound on the overlap of ``p_aug * N(0, h² I)`` at every bandwidth ``h``.
    """
    alpha = _checks.positive_float("alpha", alpha)
    n0, n1 = _checks.positive_int("n0", n0), _checks.positive_int("n1", n1)
    log_b = lambda a, b: math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return math.sqrt(n0 * n1) / (n0 + n1) * math.exp(log_b(alpha + 0.5, alpha + 0.5) - log_b(alpha, alpha + 1))


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


@dataclass(frozen=True)
class HuszarTerms:
    """Monte Carlo estimates (nats) of the terms of Huszár's decomposition, each with its standard error.

    ``conditional`` = ``E_y KL(p(x | y) ‖ q(x | y))``, ``marginal`` = ``KL(p(x) ‖ q(x))`` and
    ``gap`` = ``conditional − marginal`` (its standard error from the per-draw differences, not
    from the two terms' errors added).
    """

    conditional: float
    conditional_se: float
    marginal: float
    marginal_se: float
    gap: float
    gap_se: float
    n: int


def huszar_terms(log_p: torch.Tensor, log_q: torch.Tensor, y: torch.Tensor, prior: torch.Tensor | None = None) -> HuszarTerms:
    """Huszár's ``E_y KL(p(x | y) ‖ q(x | y))`` and ``KL(p(x) ‖ q(x))`` from labelled draws of ``p``.

    Args:
        log_p, log_q: ``(n, C)`` log class-conditional densities ``log p(x_k | c)`` and
            ``log q(x_k | c)`` at draws ``(x_k, y_k) ~ p``.
        y: ``(n,)`` the draws' labels.
        prior: ``(C,)`` class priors of both distributions (default uniform, the post's
            balanced case); the marginals are ``Σ_c prior_c p(x | c)``.

    Returns:
        :class:`HuszarTerms`. No posterior enters: the estimate uses densities only.
    """
    log_p = torch.as_tensor(log_p, dtype=torch.float64)
    log_q = torch.as_tensor(log_q, dtype=torch.float64)
    if log_p.ndim != 2 or log_p.shape != log_q.shape or log_p.shape[0] < 2:
        raise ValueError(f"log_p and log_q must be (n, C) with n >= 2 and the same shape, got {tuple(log_p.shape)} "
                         f"and {tuple(log_q.shape)}")
    n, c = log_p.shape
    y = torch.as_tensor(y)
    if y.shape != (n,) or bool(((y < 0) | (y >= c)).any()):
        raise ValueError(f"y must be ({n},) labels in [0, {c}), got shape {tuple(y.shape)}")
    prior = torch.full((c,), 1.0 / c, dtype=torch.float64) if prior is None else torch.as_tensor(prior, dtype=torch.float64)
    if prior.shape != (c,) or bool((prior <= 0).any()) or abs(float(prior.sum()) - 1) > 1e-9:
        raise ValueError(f"prior must be ({c},) positive and sum to 1, got {prior.tolist()}")
    idx = y.view(-1, 1)
    cond = (log_p.gather(1, idx) - log_q.gather(1, idx)).squeeze(1)
    marg = torch.logsumexp(log_p + prior.log(), 1) - torch.logsumexp(log_q + prior.log(), 1)
    se = lambda t: float(t.std() / math.sqrt(n))
    return HuszarTerms(float(cond.mean()), se(cond), float(marg.mean()), se(marg), float((cond - marg).mean()),
                       se(cond - marg), n)


def bhattacharyya(p_at: torch.Tensor, q_at: torch.Tensor) -> tuple[float, float]:
    """Monte Carlo Bhattacharyya coefficient ``∫ √(p q) = E_{x~p} √(q(x) / p(x))`` and its standard error.

    Args:
        p_at, q_at: ``(n,)`` the densities ``p`` and ``q`` at draws ``x_k ~ p``. A draw where
            ``p`` is 0 (it cannot be, for a true draw, but can be for an estimate) counts 0.
    """
    p_at = torch.as_tensor(p_at, dtype=torch.float64)
    q_at = torch.as_tensor(q_at, dtype=torch.float64)
    if p_at.ndim != 1 or p_at.shape != q_at.shape or p_at.numel() < 2:
        raise ValueError(f"p_at and q_at must be (n,) with n >= 2, got {tuple(p_at.shape)} and {tuple(q_at.shape)}")
    r = torch.where(p_at > 0, (q_at / p_at.clamp_min(1e-300)).sqrt(), torch.zeros_like(p_at))
    return float(r.mean()), float(r.std() / math.sqrt(r.numel()))


def distance_to_segments(query: torch.Tensor, points: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
    """Distance ``(q,)`` from each query point to the nearest segment ``[x_i, x_j]``, ``i < j``, between
    ``points`` ``(m, d)``: the support of p_aug (a training point alone counts as a segment of length 0)."""
    query = torch.as_tensor(query, dtype=torch.float64)
    points = torch.as_tensor(points, dtype=torch.float64)
    if query.ndim != 2 or points.ndim != 2 or query.shape[1] != points.shape[1] or points.shape[0] < 1:
        raise ValueError(f"query (q, d) and points (m, d) must share d, got {tuple(query.shape)} and {tuple(points.shape)}")
    i, j = torch.triu_indices(points.shape[0], points.shape[0], offset=1)
    a, ab = points[i], points[j] - points[i]                           # segment starts and directions
    ab2 = ab.square().sum(1).clamp_min(1e-300)
    a_ab, a2 = (a * ab).sum(1), a.square().sum(1)
    out = []
    for q in query.split(chunk):                                       # |q − a − t ab|², t clamped to [0, 1]
        q_ab = q @ ab.T - a_ab                                         # (q − a)·ab
        ap2 = (q.square().sum(1, keepdim=True) - 2 * q @ a.T + a2).clamp_min(0)
        t = (q_ab / ab2).clamp_(0, 1)
        d2 = ap2 - t * (2 * q_ab - t * ab2)
        out.append(d2.min(1).values.clamp_min(0).sqrt())
    return torch.minimum(torch.cat(out), torch.cdist(query, points).min(1).values)
