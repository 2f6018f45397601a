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

    ``ECE = Σ_m |B_m| / n · |acc(B_m) − conf(B_m)|``.

The bins are closed on the right as in the paper (a confidence of exactly 0.5 with two bins
falls in the first bin). torchmetrics' ``MulticlassCalibrationError`` closes them on the
left; the two agree unless a confidence lies exactly on a bin edge.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core import _checks

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
        A dict of tensors on the logits' device, with the keys

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
    """Accuracy, NLL, ECE and the signed calibration gap as Python floats, for reporting (one synchronisation).

    Args:
        logits: ``(n, C)`` floating tensor, ``n >= 1``.
        y: ``(n,)`` integer labels in ``[0, C)`` on the same device.
        n_bins: ECE bins, ``>= 1``.

    Returns:
        ``{"accuracy": ..., "nll": ..., "ece": ..., "overconfidence": ...}``; the last is
        :func:`overconfidence` (mean confidence − accuracy: negative means underconfident).
    """
    n_bins = _checks.positive_int("n_bins", n_bins)
    logits, y = _check(logits, y)
    with torch.no_grad():
        acc = (logits.argmax(dim=1) == y).to(logits.dtype).mean()
        loss = F.cross_entropy(logits, y)
        cal = _ece_from_bins(_bins(logits, y, n_bins), logits.shape[0])
        gap = logits.softmax(dim=1).amax(dim=1).mean() - acc
        values = torch.stack([acc, loss, cal, gap]).tolist()
    return dict(zip(("accuracy", "nll", "ece", "overconfidence"), values))


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


# ---------------------------------------------------------------------- geometry of (mixed) data
# Analysis metrics (chapter 4: does a mixing stay on the data manifold?). They run host-side
# with scikit-learn and are not meant for the training hot path.
def _points(name: str, x: object) -> np.ndarray:
    x = _checks.tensor(name, x)
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor of points, got {x.dtype}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (num_points, dim) with both >= 1, got {tuple(x.shape)}")
    a = x.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def knn_distance(points: torch.Tensor, reference: torch.Tensor, k: int = 5, exclude_self: bool = False) -> torch.Tensor:
    """Mean distance from each point to its ``k`` nearest reference points, averaged over points.

    ``(1/m) Σ_i (1/k) Σ_{j≤k} ‖p_i − r_(j)(p_i)‖₂`` with ``r_(j)(p)`` the ``j``-th nearest
    reference point to ``p`` (Euclidean; scikit-learn ``NearestNeighbors``, computed in
    float64 on the host). Small values mean the points lie close to the reference set (e.g.
    mixed examples close to the data manifold).

    Args:
        points: ``(m, d)`` real tensor.
        reference: ``(n, d)`` real tensor.
        k: number of neighbours, ``1 <= k <= n`` (``<= n − 1`` with ``exclude_self``).
        exclude_self: ``points`` *is* ``reference`` (equal tensors, required): each point's own
            entry is not counted as its neighbour (its zero self-distance is dropped; other
            points that duplicate it still count, at distance 0).

    Returns:
        0-dim float64 tensor on the CPU.
    """
    from sklearn.neighbors import NearestNeighbors

    if not isinstance(exclude_self, bool):
        raise TypeError(f"exclude_self must be a bool, got {type(exclude_self).__name__}")
    k = _checks.positive_int("k", k)
    p = _points("points", points)
    r = _points("reference", reference)
    if p.shape[1] != r.shape[1]:
        raise ValueError(f"points and reference must have the same dimension, got {p.shape[1]} and {r.shape[1]}")
    available = r.shape[0] - 1 if exclude_self else r.shape[0]
    if k > available:
        raise ValueError(f"k must be <= {available} (the reference points available), got {k}")
    nn_ = NearestNeighbors(n_neighbors=k).fit(r)
    if exclude_self:
        if p.shape != r.shape or not (p == r).all():
            raise ValueError("exclude_self=True needs points and reference to be the same set (equal tensors)")
        dist, _ = nn_.kneighbors(None, n_neighbors=k)  # scikit-learn leaves each sample itself out
    else:
        dist, _ = nn_.kneighbors(p, n_neighbors=k)
    return torch.tensor(dist.mean(axis=1).mean(), dtype=torch.float64)


def intrinsic_dimension(x: torch.Tensor, k: int = 10) -> float:
    """Levina–Bickel maximum-likelihood intrinsic dimension, averaged as MacKay–Ghahramani advise.

    Levina & Bickel, "Maximum Likelihood Estimation of Intrinsic Dimension", NeurIPS 2004: with
    ``T_j(x_i)`` the distance from ``x_i`` to its ``j``-th nearest neighbour (itself excluded),

        m̂_k(x_i) = [ (1/(k−1)) Σ_{j=1..k−1} log(T_k(x_i) / T_j(x_i)) ]^(−1).

    Levina & Bickel average the ``m̂_k(x_i)`` over the points. MacKay & Ghahramani ("Comments on
    'Maximum Likelihood Estimation of Intrinsic Dimension' by E. Levina and P. Bickel", 2005)
    show that this is biased (a mean of inverses of noisy estimates) and that the maximum
    likelihood estimate pools the evidence instead, averaging the *inverses*; that is the form
    used here:

        m̂_k = [ (1/n) Σ_i m̂_k(x_i)^(−1) ]^(−1).

    Duplicate points (zero distances, where ``log(T_k/T_j)`` is undefined) are removed before
    the neighbours are searched; ``n`` counts the distinct points. Neighbours via scikit-learn
    in float64 on the host.

    Args:
        x: ``(n, d)`` real tensor of points (rows).
        k: number of neighbours, ``k >= 2``, at most (number of distinct points) − 1.

    Returns:
        The estimate as a float (``inf`` in the degenerate case where every point's ``k``
        neighbours are all equidistant, e.g. a regular lattice with ``k`` ≤ the ties).
    """
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    k = _checks.positive_int("k", k)
    if k < 2:
        raise ValueError(f"k must be an int >= 2 (the estimate uses log T_k/T_j for j < k), got {k}")
    a = np.unique(_points("x", x), axis=0)
    if k > a.shape[0] - 1:
        raise ValueError(f"k must be <= {a.shape[0] - 1} (the number of distinct points minus one), got {k}")
    dist, _ = NearestNeighbors(n_neighbors=k).fit(a).kneighbors(None, n_neighbors=k)
    # Distinct points: every distance is > 0 (up to float64 underflow, which we guard).
    dist = np.maximum(dist, np.finfo(np.float64).tiny)
    inverse = np.log(dist[:, -1:] / dist[:, :-1]).mean(axis=1)  # m̂_k(x_i)^(-1), (n,)
    mean_inverse = float(inverse.mean())
    return float("inf") if mean_inverse <= 0 else 1.0 / mean_inverse


__all__ += ["knn_distance", "intrinsic_dimension"]


def nearest_label(points: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor) -> torch.Tensor:
    """The label of each point's nearest reference point (1-nearest-neighbour label).

    A label-correctness proxy for synthetic examples: the class of the real example a mixed
    input lies closest to. Compared with the argmax of the mixed *soft label*, it can disagree
    for any method (unlike "argmax = label of the largest weight", which pairwise mixup meets by
    construction). Euclidean, scikit-learn ``NearestNeighbors`` in float64 on the host; ties
    go to the reference point scikit-learn returns first.

    Args:
        points: ``(m, d)`` real tensor.
        reference: ``(N, d)`` real tensor, same ``d``.
        reference_labels: ``(N,)`` integer labels of the reference points.

    Returns:
        ``(m,)`` int64 tensor on the CPU.
    """
    from sklearn.neighbors import NearestNeighbors

    p = _points("points", points)
    r = _points("reference", reference)
    if p.shape[1] != r.shape[1]:
        raise ValueError(f"points and reference must have the same dimension, got {p.shape[1]} and {r.shape[1]}")
    labels = _checks.tensor("reference_labels", reference_labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"reference_labels must be an integer tensor, got {labels.dtype}")
    if labels.shape != (r.shape[0],):
        raise ValueError(f"reference_labels must have shape ({r.shape[0]},) (one per reference point), "
                         f"got {tuple(labels.shape)}")
    _, idx = NearestNeighbors(n_neighbors=1).fit(r).kneighbors(p, n_neighbors=1)
    return labels.detach().cpu().long()[torch.as_tensor(idx[:, 0])]


__all__ += ["nearest_label"]


# ---------------------------------------------------------------------- embedding quality
def _unit_rows(name: str, z: object) -> torch.Tensor:
    z = _checks.batch(name, z)
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(z.shape)}")
    return F.normalize(z.detach().to(torch.promote_types(z.dtype, torch.float32)), dim=1)


def alignment(z: torch.Tensor, labels: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Alignment of Wang & Isola (2020): ``E ‖f(x) − f(x⁺)‖₂^α`` over positive pairs.

    Features are L2-normalised first; positive pairs are all pairs of *distinct* examples with
    the same label (the supervised reading used for MultiMix). Lower is better.

    Args:
        z: ``(n, d)`` embeddings; labels: ``(n,)`` integer classes; alpha: exponent > 0.

    Returns:
        0-dim tensor; NaN if no class has two examples.
    """
    u = _unit_rows("z", z)
    labels = _checks.labels("labels", labels)
    _checks.same_batch("labels", labels, u.shape[0])
    alpha = _checks.positive_float("alpha", alpha)
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    dist = torch.cdist(u, u)
    return (dist[same] ** alpha).mean() if bool(same.any()) else torch.tensor(float("nan"), device=u.device)


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Uniformity of Wang & Isola (2020): ``log E exp(−t ‖f(x) − f(y)‖₂²)`` over distinct pairs.

    Features are L2-normalised first. Lower (more negative) means more uniformly spread on the
    sphere. Computed with ``logsumexp`` for stability.

    Args:
        z: ``(n, d)`` embeddings with n ≥ 2; t: temperature > 0.
    """
    u = _unit_rows("z", z)
    if u.shape[0] < 2:
        raise ValueError(f"z must hold at least 2 embeddings, got {u.shape[0]}")
    t = _checks.positive_float("t", t)
    sq = torch.pdist(u) ** 2
    return torch.logsumexp(-t * sq, dim=0) - torch.log(torch.tensor(float(sq.numel()), dtype=sq.dtype, device=sq.device))


__all__ += ["alignment", "uniformity"]


def class_features(features: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a ``(n, d)`` finite floating ``features`` tensor and its ``(n,)`` integer ``labels`` on the
    same device (the arguments of :func:`flatness` and of class-spectrum analyses); returns both."""
    features = _checks.batch("features", features)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (n, d), got {tuple(features.shape)}")
    labels = _checks.labels("labels", labels)
    _checks.same_batch("labels", labels, features.shape[0])
    _checks.same_device("labels", labels, features.device)
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features must be finite")
    return features, labels


def effective_rank(singular_values: torch.Tensor) -> torch.Tensor:
    """``exp(−Σ_j p_j log p_j)`` with ``p = s / Σ s`` along the last dimension (Roy & Vetterli 2007).

    1 for points on a line, ``r`` for ``r`` equal singular values, 0 for a spectrum of zeros (0 log 0
    = 0). Any leading shape: ``(..., m) -> (...)``.
    """
    s = _checks.tensor("singular_values", singular_values)
    if not s.is_floating_point() or s.ndim < 1:
        raise ValueError("singular_values must be a floating tensor with at least one dimension")
    if bool((s < 0).any()):
        raise ValueError("singular values must be >= 0")
    total = s.sum(-1, keepdim=True)
    p = torch.where(total > 0, s / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(s))
    entropy = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(-1)
    return torch.where(total[..., 0] > 0, entropy.exp(), torch.zeros_like(entropy))


def flatness(features: torch.Tensor, labels: torch.Tensor) -> dict:
    """Singular-value spectra of class-conditional features and their effective rank.

    Verma et al. (2019, §3 and Fig. 4) show that manifold mixup *flattens* the representation
    of each class: the class-conditional features concentrate on fewer directions, i.e. fewer
    large singular values. For every class ``c`` with at least two examples, take its features
    ``Z_c`` ``(n_c, d)``, centre them on the class mean, and compute the singular values
    ``s_1 ≥ ... ≥ s_m`` (``m = min(n_c, d)``). Normalise them to ``p_j = s_j / Σ s`` and
    summarise by the **effective rank** (Roy & Vetterli 2007)::

        erank_c = exp(−Σ_j p_j log p_j)        (0 log 0 = 0)

    which is 1 for points on a line, ``r`` for ``r`` equal singular values (points spread
    evenly in an ``r``-dimensional subspace), ``d`` for an isotropic cloud, and in general a
    smooth count of the significant directions. A class whose centred features are all zero
    has effective rank 0. Flatter class representations give a smaller mean effective rank.
    Note ``erank_c ≤ min(n_c − 1, d)``: use ``n_c`` well above ``d`` to compare models.

    This is an analysis function: it loops over the classes and synchronises with the device.
    The spectra are computed in float64.

    Args:
        features: ``(n, d)`` floating tensor, e.g. ``model.features(x)`` under ``no_grad``.
        labels: ``(n,)`` integer class labels on the same device.

    Returns:
        A dict with
        ``"classes"``: ``(C,)`` int64, the classes analysed (sorted; those with ≥ 2 examples);
        ``"singular_values"``: ``(C, d)`` float64, row ``c`` the normalised singular values
        ``p`` of class ``classes[c]`` in descending order, zero-padded when ``n_c < d``;
        ``"effective_rank"``: ``(C,)`` float64;
        ``"mean_effective_rank"``: a Python float, the mean over the classes (the summary).
    """
    features, labels = class_features(features, labels)
    d = features.shape[1]
    z = features.detach().to(torch.float64)
    classes, counts = torch.unique(labels, return_counts=True)
    classes = classes[counts >= 2]
    if classes.numel() == 0:
        raise ValueError("flatness needs at least one class with two or more examples")
    spectra, eranks = [], []
    for c in classes.tolist():
        zc = z[labels == c]
        s = torch.linalg.svdvals(zc - zc.mean(0, keepdim=True))
        total = s.sum()
        p = s / total if bool(total > 0) else torch.zeros_like(s)
        eranks.append(effective_rank(s))
        spectra.append(F.pad(p, (0, d - p.shape[0])))
    erank = torch.stack(eranks)
    return {
        "classes": classes.long(),
        "singular_values": torch.stack(spectra),
        "effective_rank": erank,
        "mean_effective_rank": float(erank.mean()),
    }


__all__ += ["class_features", "effective_rank", "flatness"]
