"""Empirical risk minimisation, the baseline every chapter compares with: ``CE(f(x), y)``.

Registered as ``"erm"`` (:func:`mixbook.make_method`, :func:`mixbook.fit`'s default method).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.losses import ce
from ..core.registry import register
from ..core.step import Method, Step

__all__ = ["ERM"]


@register("erm")
class ERM(Method):
    """Empirical risk minimisation: the plain cross-entropy of the unmixed batch."""

    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                generator: torch.Generator) -> Step:
        return Step(x, ce, (y,))

    def __repr__(self) -> str:
        return "erm()"
