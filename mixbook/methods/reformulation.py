"""Mixup without mixed labels: keep the first label, draw λ from Beta(α + 1, α).

For a loss linear in its target (cross-entropy with one-hot or soft targets), the mixup
objective

    E_{i,j} E_{λ~Beta(α,α)} ℓ(f(λ x_i + (1−λ) x_j), λ y_i + (1−λ) y_j)

equals

    E_{i,j} E_{λ~Beta(α+1,α)} ℓ(f(λ x_i + (1−λ) x_j), y_i)

(linearity in the target; a Bernoulli(λ) indicator picks which label to keep; Beta–Bernoulli
conjugacy gives the posterior of λ given that the first label was kept; the symmetry λ ↔ 1−λ
with i ↔ j folds the other case onto this one — chapter 2 derives it). Beta(a, b) is in the
standard parameterisation, density ∝ λ^(a−1)(1−λ)^(b−1) as in NumPy, SciPy and torch: the
kept example's weight has mean (α+1)/(2α+1) > ½.

The partner's label never enters, so partners may be *unlabelled*: :func:`sample` takes an
optional separate batch of partners of any size, which gives a semi-supervised form.
"""

from __future__ import annotations

import torch

from ..core import _checks, _random
from ..core.distributions import beta
from ..core.mixing import Mixing
from ..core.registry import MethodSpec, register

__all__ = ["sample", "mix", "spec"]



def sample(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    partners: torch.Tensor | None = None,
    per_sample: bool = True,
    generator: torch.Generator | None = None,
) -> Mixing:
    """Sample the reformulated mixing: λ ~ Beta(α + 1, α), output ``k`` = λ_k x_k + (1 − λ_k) p.

    Args:
        x: ``(b, *)`` batch (its size and device are used).
        y: optional ``(b,)`` or ``(b, C)`` labels of ``x``, checked against ``x`` but not used to
            draw: the reformulation keeps each example's own label, so the draw needs none. It
            is there so that every sampler has the signature ``sample(x, y=None, *, generator,
            **hp)``.
        alpha: α > 0.
        partners: optional ``(m, *)`` separate batch (e.g. unlabelled examples) of any size
            ``m``; each output's partner is drawn uniformly from it, with replacement.
            ``None``: partners are a random permutation of the batch itself.
        per_sample: one λ per example (default) or one per batch.
        generator: optional ``torch.Generator`` on ``x``'s device.

    Returns:
        A pairwise :class:`~mixbook.core.mixing.Mixing` (with ``partner_size=m`` when ``partners``
        is given); apply it with ``m.apply(x)`` or ``m.apply(x, partners)``.
    """
    x = _checks.non_empty("x", x)
    _checks.optional_companion("y", y, x)
    alpha = _checks.concentration("alpha", alpha)
    per_sample = _checks.boolean("per_sample", per_sample)
    _checks.generator(generator, x.device)
    b = x.shape[0]
    if partners is None:
        partner = _random.randperm(b, device=x.device, generator=generator)
        size = None
    else:
        partners = _checks.non_empty("partners", partners)
        _checks.same_device("partners", partners, x.device)
        if partners.shape[1:] != x.shape[1:]:
            raise ValueError(f"partners must have x's trailing shape {tuple(x.shape[1:])}, got {tuple(partners.shape[1:])}")
        size = partners.shape[0]
        partner = _random.randint(size, (b,), device=x.device, generator=generator)
    lam_dtype = _checks.weight_dtype(x)
    lam = beta(alpha + 1, alpha, (b if per_sample else 1,), device=x.device, dtype=lam_dtype, generator=generator)
    return Mixing(batch_size=b, partner=partner, lam=lam.expand(b), partner_size=size)


def mix(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    alpha: float = 1.0,
    partners: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed inputs and the *integer* labels of the kept examples: train with plain ``cross_entropy``.

    Args:
        x: ``(b, *)`` floating batch (torchvision boxes, masks and key points are refused);
            y: ``(b,)`` integer labels.
        alpha: α > 0; λ ~ Beta(α + 1, α) per example.
        partners: optional ``(m, *)`` unlabelled partner batch (see :func:`sample`).

    Returns:
        ``(b, *)`` mixed inputs and ``y`` itself (the kept labels).
    """
    _checks.tensor("x", x)
    _checks.not_boxes_or_masks("x", x)
    x = _checks.batch("x", x)
    _checks.labels("y", y)
    _checks.same_batch("y", y, x.shape[0])
    _checks.same_device("y", y, x.device)
    m = sample(x, alpha=alpha, partners=partners, generator=generator)
    return m.apply(x, partners), y


@register("reformulation")
def spec(alpha: float = 1.0, unlabelled: torch.Tensor | None = None) -> MethodSpec:
    """The reformulation as a training method (``make_method("reformulation", ...)``).

    :func:`sample` at the input (λ ~ Beta(α + 1, α)), scored by the plain cross-entropy against
    the kept (first) label. ``unlabelled``: optional ``(m, *)`` pool of unlabelled inputs; if
    given, every example's partner is drawn uniformly from it (the semi-supervised form),
    otherwise from the batch. The pool is moved to the training device once and never modified.
    """
    if unlabelled is not None:
        unlabelled = _checks.batch("unlabelled", unlabelled)
    return MethodSpec(sample, dict(alpha=alpha), loss="kept", partners=unlabelled)
