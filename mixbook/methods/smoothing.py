"""Label smoothing (Szegedy et al. 2016) as a training method, alone and combined with mixup.

Registered in :mod:`mixbook.core.registry` (so :func:`mixbook.fit` and :func:`mixbook.training.population.repeat` take them by name):

* ``"label_smoothing"``: soft-target CE on ``(1 − ε) onehot(y) + ε / C``;
* ``"mixup_smoothing"``: input mixup (λ ~ Beta(α, α), random pairs) whose targets are mixed
  from the smoothed one-hot vectors, ``Mixing.targets(y, C, smoothing=ε)``.

Both soften the target; only the second also moves the input. Chapter 8 compares them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import _checks
from ..core.losses import soft_ce
from ..core.mixing import Mixing
from ..core.registry import register
from ..core.step import Method, Step
from . import mixup

__all__ = ["smoothed_targets", "LabelSmoothing", "MixupSmoothing"]


def smoothed_targets(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """``(b, C)`` float32 targets ``(1 − ε) onehot(y) + ε / C`` for integer labels ``y`` ``(b,)``."""
    b = y.shape[0]
    identity = Mixing(batch_size=b, partner=torch.arange(b, device=y.device),
                      lam=torch.ones(b, device=y.device))
    return identity.targets(y, num_classes, smoothing)


@register("label_smoothing")
class LabelSmoothing(Method):
    """Cross-entropy against smoothed one-hot targets; ``smoothing`` is ε in ``[0, 1)``."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = _checks.unit_interval("smoothing", smoothing)

    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                generator: torch.Generator) -> Step:
        return Step(x, soft_ce, (smoothed_targets(y, num_classes, self.smoothing),))

    def __repr__(self) -> str:
        return f"label_smoothing(smoothing={self.smoothing})"


@register("mixup_smoothing")
class MixupSmoothing(Method):
    """Input mixup with smoothed targets: ``alpha`` of Beta(α, α), ``smoothing`` ε."""

    def __init__(self, alpha: float = 1.0, smoothing: float = 0.1) -> None:
        self.alpha = _checks.positive_float("alpha", alpha)
        self.smoothing = _checks.unit_interval("smoothing", smoothing)

    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                generator: torch.Generator) -> Step:
        m = mixup.sample(x, y, alpha=self.alpha, generator=generator)
        return Step(m.apply(x), soft_ce, (m.targets(y, num_classes, self.smoothing),))

    def __repr__(self) -> str:
        return f"mixup_smoothing(alpha={self.alpha}, smoothing={self.smoothing})"
