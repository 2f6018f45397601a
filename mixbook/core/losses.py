"""Losses for mixed examples.

Cross-entropy is linear in its target, ``CE(z, Σ_j w_j y_j) = Σ_j w_j CE(z, y_j)``; so a
pairwise mixing can be trained either with soft targets (:func:`soft_cross_entropy` on
``Mixing.targets``) or with two integer-target cross-entropies weighted by λ
(:func:`mixed_cross_entropy`, Zhang et al. 2018, eq. 1 of the reference code), which never
builds a ``(b, C)`` target matrix. Both give the same value and gradient.

**Precision.** Every loss here computes in float32 (at least) when the logits are float16 or
bfloat16, and returns float32, as ``F.cross_entropy`` does under autocast: bfloat16 has 8 bits of
mantissa, and a log-softmax summed over classes in it is off by about 1e-2 (the targets, cast to
bfloat16, lose as much). The gradient flows back to the low-precision logits in their dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks

__all__ = ["one_hot", "soft_cross_entropy", "mixed_cross_entropy", "SoftTargetCrossEntropy", "ce", "soft_ce",
           "mixed_ce", "clean_plus_soft_ce"]

_REDUCTIONS = ("mean", "sum", "none")


def one_hot(
    y: torch.Tensor,
    num_classes: int,
    smoothing: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One-hot targets with label smoothing: ``(1 − ε) e_y + ε / C``.

    Args:
        y: ``(b,)`` integer labels in ``[0, num_classes)``.
        num_classes: ``C`` ≥ 1.
        smoothing: ε in ``[0, 1)``.
        dtype: floating dtype of the result.

    Returns:
        ``(b, C)`` tensor on ``y``'s device whose rows sum to 1.
    """
    num_classes = _checks.num_classes(num_classes)
    y = _checks.labels("y", y, num_classes)
    smoothing = _checks.unit_interval("smoothing", smoothing)
    return _one_hot(y, num_classes, smoothing, dtype)


def _one_hot(y: torch.Tensor, num_classes: int, smoothing: float, dtype: torch.dtype) -> torch.Tensor:
    """:func:`one_hot` for arguments the caller has already checked (one scatter, no checks)."""
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, dtype=dtype, device=y.device)
    index = y if y.dtype == torch.int64 else y.long()
    return out.scatter_(1, index.unsqueeze(1), 1.0 - smoothing + off)


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _precise(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in float32 when they are float16/bfloat16 (else as they are)."""
    return logits.float() if logits.dtype in _LOW_PRECISION else logits


def _check_logits(logits: object, batch_size: int | None = None) -> torch.Tensor:
    logits = _checks.batch("logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, num_classes), got {tuple(logits.shape)}")
    if batch_size is not None and logits.shape[0] != batch_size:
        raise ValueError(f"logits have batch size {logits.shape[0]} but the targets have {batch_size}")
    return logits


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy ``−Σ_c t_c log softmax(z)_c`` against soft targets.

    Args:
        logits: ``(b, C)`` floating tensor.
        target: ``(b, C)`` non-negative rows summing to 1.
        reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (shape ``(b,)``).
    """
    reduction = _checks.choice("reduction", reduction, _REDUCTIONS)
    target = _checks.tensor("target", target)
    if not target.is_floating_point():
        raise TypeError(f"target must hold soft targets (floating point), got {target.dtype}; use F.cross_entropy for labels")
    _checks.soft_targets("target", target)
    logits = _check_logits(logits, target.shape[0])
    _checks.same_device("target", target, logits.device)
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    return soft_ce(logits, target, reduction)


def mixed_cross_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    y_partner: torch.Tensor,
    lam: torch.Tensor | float,
    reduction: str = "mean",
    smoothing: float = 0.0,
) -> torch.Tensor:
    """λ-weighted integer-target cross-entropy ``λ CE(z, y) + (1 − λ) CE(z, y')``.

    Equal in value and gradient to :func:`soft_cross_entropy` against the pairwise mixed
    (and equally smoothed) one-hot targets, without materialising them.

    Args:
        logits: ``(b, C)``.
        y, y_partner: ``(b,)`` integer labels (for a :class:`~mixbook.core.mixing.Mixing` ``m``:
            ``y`` and ``y[m.partner]``).
        lam: ``(b,)`` tensor or a float in ``[0, 1]``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        smoothing: label smoothing ε in ``[0, 1)``.
    """
    reduction = _checks.choice("reduction", reduction, _REDUCTIONS)
    smoothing = _checks.unit_interval("smoothing", smoothing)
    logits = _check_logits(logits)
    b, c = logits.shape
    for name, t in (("y", y), ("y_partner", y_partner)):
        _checks.labels(name, t, c)
        _checks.same_device(name, t, logits.device)
        if t.shape[0] != b:
            raise ValueError(f"{name} has batch size {t.shape[0]} but logits have {b}")
    if isinstance(lam, torch.Tensor):
        if not lam.is_floating_point():
            raise TypeError(f"lam must be a floating-point tensor, got {lam.dtype}")
        if lam.shape not in ((b,), ()):
            raise ValueError(f"lam must be a float or have shape ({b},), got {tuple(lam.shape)}")
        _checks.same_device("lam", lam, logits.device)
        if _checks.check_values(lam) and not bool(((lam >= 0) & (lam <= 1)).all()):
            raise ValueError("lam must lie in [0, 1]")
    else:
        lam = _checks.unit_interval("lam", lam, include_one=True)
    # F.cross_entropy wants int64 class indices; int32 (or uint8) labels are widened here.
    return mixed_ce(logits, y.long(), y_partner.long(), lam, reduction, smoothing)


# ---------------------------------------------------------------------- the arithmetic, unchecked
# What the checked losses above compute, for training steps (mixbook.core.step.Step): their targets
# are valid by construction, and a value check cannot run under vmap.
def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``CE(logits, y)`` with ``(b,)`` int64 labels, mean over the batch (float32 for fp16/bf16 logits)."""
    return F.cross_entropy(_precise(logits), y)


def soft_ce(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Soft-target cross-entropy of ``(b, C)`` logits against ``(b, C)`` targets (:func:`soft_cross_entropy`;
    float32 for fp16/bf16 logits)."""
    logits = _precise(logits)
    return F.cross_entropy(logits, targets.to(logits.dtype), reduction=reduction)


def mixed_ce(logits: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor | float,
             reduction: str = "mean", smoothing: float = 0.0) -> torch.Tensor:
    """``λ CE(z, y) + (1 − λ) CE(z, y')`` with ``(b,)`` int64 labels and ``(b,)`` λ (:func:`mixed_cross_entropy`;
    float32 for fp16/bf16 logits)."""
    logits = _precise(logits)
    if isinstance(lam, torch.Tensor) and lam.dtype != logits.dtype:
        lam = lam.to(logits.dtype)
    ce_a = F.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing)
    ce_b = F.cross_entropy(logits, y_partner, reduction="none", label_smoothing=smoothing)
    loss = ce_b + lam * (ce_a - ce_b)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def clean_plus_soft_ce(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``CE(logits[:b], y) + soft_ce(logits[b:], targets)`` with ``b = len(y)``: the clean rows first."""
    b = y.shape[0]
    return F.cross_entropy(_precise(logits[:b]), y) + soft_ce(logits[b:], targets)


class SoftTargetCrossEntropy(nn.Module):
    """Loss module for mixed targets, like timm's ``SoftTargetCrossEntropy``.

    ``loss(logits, target)`` is :func:`soft_cross_entropy` for ``(b, C)`` soft targets (the
    output of every mixbook transform) and ``F.cross_entropy`` (with ``smoothing``) for ``(b,)``
    integer labels of any integer dtype, so one criterion serves mixed and unmixed batches
    (an evaluation step, say).

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        smoothing: label smoothing ε in ``[0, 1)`` for integer labels only (soft targets from
            a transform are already smoothed by it).
    """

    def __init__(self, reduction: str = "mean", smoothing: float = 0.0) -> None:
        super().__init__()
        self.reduction = _checks.choice("reduction", reduction, _REDUCTIONS)
        self.smoothing = _checks.unit_interval("smoothing", smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _checks.tensor("target", target)
        if target.is_floating_point():
            return soft_cross_entropy(logits, target, reduction=self.reduction)
        logits = _check_logits(logits, target.shape[0] if target.ndim else None)
        _checks.labels("target", target, logits.shape[1])
        _checks.same_device("target", target, logits.device)
        return F.cross_entropy(_precise(logits), target.long(), reduction=self.reduction, label_smoothing=self.smoothing)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, smoothing={self.smoothing}"
