"""Synthetic sets: what a mixing method generates from a data set, for analysis.

Chapter 4 (where ζ-mixup's and mixup's samples land).

Chapters compare methods by the examples they make (how far from the data, of what intrinsic
dimension, with what labels), not only by the models they train. :func:`synthetic_set` draws
random batches from a data set, applies a sampler's :class:`~mixbook.core.mixing.Mixing` and keeps
the mixed inputs, their soft labels and, for each output, its dominant (largest-weight) example's
label, that example's weight and the distance from the output to it: how far a method moves away
from the example it mostly copies, a measure of the *diversity* of what it generates that chapter 4
sets against the distance to the data manifold (its realism).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core import _checks
from ..core.mixing import Mixing

__all__ = ["Sampler", "SyntheticSet", "synthetic_set"]

Sampler = Callable[..., Mixing]
"""A sampler: ``sampler(x, y, *, generator=g) -> Mixing``, the signature of every ``sample`` in the
package, so ``functools.partial(mixbook.methods.zeta.sample, gamma=2.8)`` is one."""


@dataclass(frozen=True)
class SyntheticSet:
    """Mixed examples with their labels.

    Attributes:
        x: ``(m, *)`` synthetic inputs.
        soft: ``(m, C)`` their soft labels.
        dominant_label: ``(m,)`` label of the example with the largest weight in each mix.
        dominant_weight: ``(m,)`` that largest weight (``None`` when not recorded).
        parent_distance: ``(m,)`` Euclidean distance (inputs flattened) from each synthetic input to
            its dominant example (``None`` when not recorded).
    """

    x: torch.Tensor
    soft: torch.Tensor
    dominant_label: torch.Tensor
    dominant_weight: torch.Tensor | None = None
    parent_distance: torch.Tensor | None = None

    def label_entropy(self) -> torch.Tensor:
        """``(m,)`` Shannon entropy (nats) of each soft label."""
        p = self.soft.clamp_min(0)
        return -(p * p.clamp_min(1e-30).log()).sum(dim=1)

    def argmax_is_dominant(self) -> torch.Tensor:
        """``(m,)`` bool: the soft label's argmax is the dominant example's label."""
        return self.soft.argmax(dim=1) == self.dominant_label


def synthetic_set(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    sampler: Sampler,
    *,
    size: int,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
) -> SyntheticSet:
    """Draw random batches of ``batch_size`` from ``(x, y)`` and mix each with ``sampler``.

    Args:
        x: ``(N, *)`` data; y: ``(N,)`` integer labels.
        num_classes: ``C``.
        sampler: ``sampler(x_batch, y_batch, *, generator=g) -> Mixing``, e.g.
            ``functools.partial(mixbook.methods.mixup.sample, alpha=1.0)`` (see :data:`Sampler`).
        size: number of synthetic examples wanted (the last batch is trimmed).
        batch_size: examples per batch (drawn without replacement within a batch).
        generator: optional ``torch.Generator`` on ``x``'s device.

    Returns:
        A :class:`SyntheticSet` of ``size`` examples, with ``dominant_weight`` and
        ``parent_distance`` recorded (ties for the largest weight go to the lowest batch index).
    """
    x = _checks.batch("x", x)
    _checks.labels("y", y, num_classes)
    _checks.same_batch("y", y, x.shape[0])
    size = _checks.positive_int("size", size)
    batch_size = _checks.positive_int("batch_size", batch_size)
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size must be <= the data size {x.shape[0]}, got {batch_size}")
    xs, softs, doms, weights, dists, have = [], [], [], [], [], 0
    while have < size:
        idx = torch.randperm(x.shape[0], device=x.device, generator=generator)[:batch_size]
        xb, yb = x[idx], y[idx]
        m = sampler(xb, yb, generator=generator)
        if not isinstance(m, Mixing):
            raise TypeError(f"sampler must return a mixbook.core.mixing.Mixing, got {type(m).__name__}")
        mixed = m.apply(xb)
        top, parent = m.dense().max(dim=1)
        xs.append(mixed)
        softs.append(m.targets(yb, num_classes))
        doms.append(yb[parent])
        weights.append(top)
        dists.append((mixed - xb[parent]).flatten(1).norm(dim=1))
        have += xs[-1].shape[0]
    cat = lambda parts: torch.cat(parts)[:size]
    return SyntheticSet(cat(xs), cat(softs), cat(doms), cat(weights), cat(dists))
