"""Evaluation metrics for classifiers: accuracy, NLL, expected calibration error.

Every metric takes ``logits`` of shape ``(n, C)`` (unnormalised scores; the predicted
distribution is ``softmax(logits)``) and integer labels ``y`` of shape ``(n,)``, and returns
a 0-dim floating tensor on the logits' device. Nothing calls ``.item()``, so the metrics run
on an accelerator without synchronising; :func:`evaluate` is the one that returns Python
floats, for reporting. Half-precision logits are evaluated in float32.

To score *probabilities* ``p`` instead of logits, pass ``p.log()``: ``softmax(log p) = p``.

Calibration follows Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017: confidence is the largest softmax probability, samples are grouped in
``n_bins`` equal-width confidence bins ``B_m = ((m-1)/M, m/M]`` and

    ECE = Σ_m |B_m| / n · |acc(B_m) − conf(B_m)|.

The bins are closed on the right as in the paper (a confidence of exactly 0.5 with two bins
falls in the first bin). torchmetrics' ``MulticlassCalibrationError`` closes them on the
left; the two agree unless a confidence lies exactly on a bin edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _checks

__all__ = ["accuracy", "nll", "ece", "reliability_bins", "evaluate", "overconfidence",
           "uncertain_fraction", "input_gradient_norm"]


# ---------------------------------------------------------------------- checks and helpers
def _check(logits: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``(n, C)`` floating logits and ``(n,)`` labels in ``[0, C)``; logits in ≥ float32."""
    logits = _checks.batch("logits", logits)
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape (n, num_classes) with num_classes >= 1, got {tuple(logits.shape)}")
    y = _checks.labels("y", y)
    if y.device != logits.device:
        raise ValueError(f"y is on {y.device} but logits on {logits.device}; move one of them")
    _checks.same_batch("y", y, logits.shape[0])
    _checks.labels("y", y, logits.shape[1])
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return logits.to(dtype), y.long()


def _bins(logits: torch.Tensor, y: torch.Tensor, n_bins: int) -> dict[str, torch.Tensor]:
    """Per-bin sums of checked inputs: ``edges``, ``count``, ``conf_sum``, ``acc_sum``.

    Sample ``i`` with confidence ``c_i`` goes to bin ``m`` with ``edges[m] < c_i <= edges[m+1]``
    (a confidence of exactly 0 would go to bin 0; softmax confidences are ``>= 1/C > 0``).
    """
    z = logits.detach()
    conf, pred = z.softmax(dim=1).max(dim=1)
    correct = (pred == y).to(z.dtype)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=z.dtype, device=z.device)
    # bucketize(right=False) gives i with edges[i-1] < c <= edges[i]; the bin is i - 1.
    idx = (torch.bucketize(conf, edges, right=False) - 1).clamp_(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.int64, device=z.device).scatter_add_(0, idx, torch.ones_like(idx))
    conf_sum = torch.zeros(n_bins, dtype=z.dtype, device=z.device).scatter_add_(0, idx, conf)
    acc_sum = torch.zeros(n_bins, dtype=z.dtype, device=z.device).scatter_add_(0, idx, correct)
    return {"edges": edges, "count": count, "conf_sum": conf_sum, "acc_sum": acc_sum}


def _ece_from_bins(b: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    # |B_m|/n · |acc_m − conf_m| = |Σ_{B_m} correct − Σ_{B_m} conf| / n; empty bins add 0.
    return (b["acc_sum"] - b["conf_sum"]).abs().sum() / n


# ---------------------------------------------------------------------- metrics
def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy: the fraction of samples whose largest logit is the label's.

    Args:
        logits: ``(n, C)`` floating tensor, ``n >= 1``.
        y: ``(n,)`` integer labels in ``[0, C)`` on the same device.

    Returns:
        0-dim tensor (float32, or float64 for float64 logits) in ``[0, 1]``. Ties go to the
        lowest class index (``argmax``).
    """
    logits, y = _check(logits, y)
    return (logits.argmax(dim=1) == y).to(logits.dtype).mean()


def nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood ``−(1/n) Σ_i log softmax(logits_i)[y_i]``.

    Equal to ``F.cross_entropy(logits, y)`` (computed in at least float32); differentiable.

    Args:
        logits: ``(n, C)`` floating tensor, ``n >= 1``.
        y: ``(n,)`` integer labels in ``[0, C)`` on the same device.

    Returns:
        0-dim tensor ``>= 0``.
    """
    logits, y = _check(logits, y)
    return F.cross_entropy(logits, y)


def reliability_bins(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict[str, torch.Tensor]:
    """The reliability diagram of Guo et al. (2017): accuracy against confidence per bin.

    Confidence is the largest softmax probability; bin ``m`` holds the samples with
    ``edges[m] < confidence <= edges[m+1]``, ``edges = linspace(0, 1, n_bins + 1)``. The
    same binning defines :func:`ece`: ``ece = Σ_m count[m]/n · |accuracy[m] − confidence[m]|``
    over the non-empty bins.

    Args:
        logits: ``(n, C)`` floating tensor, ``n >= 1``.
        y: ``(n,)`` integer labels in ``[0, C)`` on the same device.
        n_bins: number of equal-width bins, ``>= 1``.

    Returns:
        A dict of tensors on the logits' device:

        * ``edges``: ``(n_bins + 1,)`` bin edges from 0 to 1;
        * ``confidence``: ``(n_bins,)`` mean confidence of each bin, NaN where empty;
        * ``accuracy``: ``(n_bins,)`` accuracy of each bin, NaN where empty;
        * ``count``: ``(n_bins,)`` int64 number of samples in each bin (sums to ``n``).
    """
    n_bins = _checks.positive_int("n_bins", n_bins)
    logits, y = _check(logits, y)
    b = _bins(logits, y, n_bins)
    count = b["count"].to(b["conf_sum"].dtype)  # 0/0 = NaN marks the empty bins
    return {
        "edges": b["edges"],
        "confidence": b["conf_sum"] / count,
        "accuracy": b["acc_sum"] / count,
        "count": b["count"],
    }


def ece(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Expected calibration error with equal-width bins (Guo et al. 2017, eq. 3).

    ``ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|`` with confidence the largest softmax
    probability and bins ``((m-1)/M, m/M]``, ``M = n_bins`` (see :func:`reliability_bins`).
    Vectorised (``bucketize`` + ``scatter_add_``), no synchronisation. Not differentiable
    (the logits are detached).

    Args:
        logits: ``(n, C)`` floating tensor, ``n >= 1``.
        y: ``(n,)`` integer labels in ``[0, C)`` on the same device.
        n_bins: number of bins ``M >= 1`` (15 in Guo et al.).

    Returns:
        0-dim tensor in ``[0, 1]``.
    """
    n_bins = _checks.positive_int("n_bins", n_bins)
    logits, y = _check(logits, y)
    return _ece_from_bins(_bins(logits, y, n_bins), logits.shape[0])


def evaluate(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL and ECE as Python floats, for reporting (one synchronisation).

    Args:
        logits: ``(n, C)`` floating tensor, ``n >= 1``.
        y: ``(n,)`` integer labels in ``[0, C)`` on the same device.
        n_bins: ECE bins, ``>= 1``.

    Returns:
        ``{"accuracy": ..., "nll": ..., "ece": ...}``.
    """
    n_bins = _checks.positive_int("n_bins", n_bins)
    logits, y = _check(logits, y)
    with torch.no_grad():
        acc = (logits.argmax(dim=1) == y).to(logits.dtype).mean()
        loss = F.cross_entropy(logits, y)
        cal = _ece_from_bins(_bins(logits, y, n_bins), logits.shape[0])
        values = torch.stack([acc, loss, cal]).tolist()
    return dict(zip(("accuracy", "nll", "ece"), values))


# ---------------------------------------------------------------------- confidence and smoothness
def overconfidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signed calibration gap: mean confidence − accuracy (0-dim tensor).

    Positive means overconfident, negative underconfident. Unlike :func:`ece`, it keeps the
    direction of the miscalibration (and it does not bin).
    """
    logits, y = _check(logits, y)
    conf, pred = logits.detach().softmax(dim=1).max(dim=1)
    return conf.mean() - (pred == y).to(conf.dtype).mean()


def uncertain_fraction(logits: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """Share of points whose top softmax probability is below ``threshold`` (0-dim tensor).

    Over a grid covering the data, this is the area of the band in which the classifier is
    unsure: a wider band means a smoother transition between classes.

    Args:
        logits: ``(n, C)``.
        threshold: in ``(0, 1]``.
    """
    logits = _checks.batch("logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, num_classes), got {tuple(logits.shape)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
    conf = logits.detach().float().softmax(dim=1).amax(dim=1)
    return (conf < threshold).float().mean()


def input_gradient_norm(model: torch.nn.Module, x: torch.Tensor, target_class: int | None = None) -> torch.Tensor:
    """Mean over points of ``‖∇_x p(c | x)‖₂``, the steepness of the model's predictions.

    Args:
        model: maps ``(n, *)`` inputs to ``(n, C)`` logits (evaluated in eval mode).
        x: ``(n, *)`` floating inputs (not modified).
        target_class: the class ``c`` whose probability is differentiated; ``None`` uses each
            point's predicted class.

    Returns:
        0-dim tensor; small values mean predictions that change slowly with the input.
    """
    x = _checks.batch("x", x)
    if target_class is not None and (isinstance(target_class, bool) or not isinstance(target_class, int)):
        raise TypeError(f"target_class must be an int or None, got {type(target_class).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            p = model(xg).softmax(dim=1)
            if target_class is None:
                c = p.detach().argmax(dim=1, keepdim=True)
            else:
                if not 0 <= target_class < p.shape[1]:
                    raise ValueError(f"target_class must lie in [0, {p.shape[1]}), got {target_class}")
                c = torch.full((p.shape[0], 1), target_class, device=p.device)
            (grad,) = torch.autograd.grad(p.gather(1, c).sum(), xg)
    finally:
        model.train(was_training)
    return grad.flatten(1).norm(dim=1).mean()
