"""Mixup as label shrinkage (Carratino et al., 2022): the confidence mixup should end with.

Chapter 6 (calibration).

Carratino, Cissé, Jenatton and Vert ("On mixup regularization", JMLR 2022, §3) rewrite mixup with
λ ~ Beta(α, α) as ERM on modified data: each example keeps the larger of its two weights,
θ = max(λ, 1 − λ) ~ Beta_[1/2, 1](α, α), and its target is shrunk towards the batch's mean label,
``ỹ = θ̄·y + (1 − θ̄)·ȳ`` with ``θ̄ = E[θ]``. A network that fits these targets predicts about
``θ̄ + (1 − θ̄)/C`` for the true class of a clean input when the classes are balanced (``ȳ`` uniform
over ``C`` classes): below 1 for every α, which is the underconfidence the book measures.

``E[max(λ, 1 − λ)]`` for Beta(α, α): since ``λ·Beta(α, α)`` is ``E[λ]·Beta(α + 1, α)`` and
``E[λ] = 1/2``, ``E[max] = 2∫_{1/2}^1 λ f(λ) dλ = P(Beta(α + 1, α) > 1/2) = 1 − I_{1/2}(α + 1, α)``.
"""

from __future__ import annotations

import math

__all__ = ["dominant_weight", "predicted_confidence"]


def _alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0 < alpha < math.inf):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return float(alpha)


def dominant_weight(alpha: float) -> float:
    """``E[max(λ, 1 − λ)]`` for λ ~ Beta(α, α): from 1 (α → 0, no mixing) down to 1/2 (α → ∞)."""
    from scipy import special

    a = _alpha(alpha)
    return float(special.betaincc(a + 1, a, 0.5))


def predicted_confidence(alpha: float, num_classes: int) -> float:
    """The probability of the true class a network fitting mixup's shrunk targets predicts on a clean
    input, ``θ̄ + (1 − θ̄)/C`` (balanced classes): Carratino et al.'s label-shrinkage prediction."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    theta = dominant_weight(alpha)
    return theta + (1 - theta) / num_classes
