"""MultiMix (Venkataramanan, Kijak, Amsaleg & Avrithis, NeurIPS 2023) and its dense variant.

"Embedding Space Interpolation Beyond Mini-Batch, Beyond Pairs and Beyond Examples": from a
mini-batch of ``b`` examples, MultiMix makes an *arbitrary* number ``n`` of synthetic examples
(the paper uses ``n = 1000`` from ``b = 128``, i.e. beyond the mini-batch), each a convex
combination of *all* ``b`` examples (beyond pairs), with weights drawn from a symmetric
Dirichlet distribution.

**Conventions.** The paper stores embeddings as columns, ``Z ∈ R^(d×b)``, and writes

    Z̃ = Z Λ,    Ỹ = Y Λ,    Λ ∈ R^(b×n),  every *column* of Λ ~ Dirichlet(α 1_b).

mixbook stores a batch as rows (``X ∈ R^(b×d)``) and a mixing as
:class:`~mixbook.core.mixing.Mixing` ``W ∈ R^(n×b)``, so here ``W = Λᵀ``: every *row* of ``W`` is
Dirichlet(α 1_b), and ``X̃ = W X``, ``Ỹ = W Y``. :func:`weights` draws all of ``W`` in one shot
on the device (:func:`mixbook.core.distributions.dirichlet`, a softmax of log-gamma variates, exact
for small α; as α → 0 every row tends to a vertex, i.e. one example copied; as α → ∞ every
row tends to the uniform average ``1/b``). The marginal of one entry is Beta(α, (b − 1)α): mean
``1/b``, variance ``(1/b)(1 − 1/b)/(bα + 1)``.

**Dense MultiMix.** For a feature map with ``r = h·w`` spatial positions, the paper mixes every
position ``j`` separately, re-weighting the examples by an attention map ``a^j ∈ R^b`` (the
class activation map of each example's own label, :func:`cam_attention`):
the interpolation factors are drawn *per position* (the paper's Figure 2: "interpolation vectors
λ, (1 − λ) ∈ R^9" for a 3 × 3 map), multiplied element-wise by the attention and ℓ1-normalised
per position: ``M^j = diag(a^j) Λ^j`` with each *column* of ``M^j`` normalised to sum to 1. In
the row convention of mixbook this is (:func:`dense_weights` with a ``(r, n, b)`` base)

    W^j[k, i] = Λ^j[k, i] a[i, j] / Σ_i' Λ^j[k, i'] a[i', j],

so each row of each ``W^j`` sums to 1; :func:`apply_dense` computes
``out[k, :, j] = Σ_i W^j[k, i] features[i, :, j]`` for all ``j`` with one ``einsum``. Each
position inherits its own mixed target ``Ỹ^j = W^j Y`` (``dense_targets(..., per_position=True)``,
``(r, n, C)``) and the loss is applied densely, over the ``n·r`` (output, position) terms
(:class:`~mixbook.methods.multimix.DenseMultiMix`). mixbook also keeps a *pooled* variant, used before
the published form was implemented: one base ``W`` ``(n, b)`` shared by every position, and
targets mixed with the position-averaged weights ``W̄ = (1/r) Σ_j W^j`` (row-stochastic), scored
after global pooling (``"dense_multimix_pooled"``).

If ``Σ_i W[k, i] a[i, j] = 0`` (the attention at position ``j`` is zero on every example that
row ``k`` mixes) the re-weighting is undefined; that row falls back to the unweighted row
``W[k]`` at that position, so the result is always a valid convex combination.

Nothing here loops over rows or positions in Python, reads a value to the host, or modifies its
inputs; the functions run on the inputs' device under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core import _checks, hooks
from ..core.benchmark import BenchEntry, Limit, Target
from ..core.distributions import dirichlet
from ..core.mixing import DenseMixingTransform, Mixing, draw_applied, gate
from ..core.losses import _one_hot, ce, clean_plus_soft_ce, soft_ce
from ..core.registry import MethodSpec, register
from ..core.step import Method

__all__ = ["weights", "sample", "MultiMix", "dense_weights", "apply_dense", "dense_targets",
           "cam_attention", "DEFAULT_ALPHA", "spec", "DenseMultiMix", "dense_multimix", "dense_multimix_pooled"]

DEFAULT_ALPHA = 1.0
"""The Dirichlet concentration α of the paper's experiments (uniform on the simplex)."""


def _floating(name: str, t: object, ndim: int | tuple[int, ...], shape_text: str) -> torch.Tensor:
    """A floating tensor with ``ndim`` dimensions (one of them, if a tuple), none empty."""
    t = _checks.tensor(name, t)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
                        f"got {t.dtype}; convert integer images first, e.g. x.float() / 255")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if t.ndim not in dims or t.numel() == 0:
        raise ValueError(f"{name} must have shape {shape_text} with every size >= 1, got {tuple(t.shape)}")
    return t


# ---------------------------------------------------------------------- MultiMix
def weights(
    b: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    n: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The MultiMix matrix ``W = Λᵀ`` ``(n, b)``: every row an independent Dirichlet(α 1_b).

    Args:
        b: number of inputs (columns), ``b >= 1``.
        alpha: Dirichlet concentration α > 0 (finite); 1 is uniform on the simplex.
        n: number of outputs (rows), ``n >= 1`` (default ``b``); any ``n``, in particular
            ``n > b`` (the paper: ``n = 1000`` from ``b = 128``).
        device: where to build ``W`` (default CPU).
        dtype: floating dtype of ``W`` (fp16/bf16 are drawn in float32 and rounded once).
        generator: optional ``torch.Generator`` on that device.

    Returns:
        ``(n, b)`` tensor, non-negative, rows summing to 1. ``b = 1`` gives a column of ones.
    """
    b = _checks.positive_int("b", b)
    n = b if n is None else _checks.positive_int("n", n)
    alpha = _checks.concentration("alpha", alpha)
    dtype = _checks.floating_dtype("dtype", dtype)
    device = torch.empty(0, device=device).device if device is not None else torch.device("cpu")
    _checks.generator(generator, device)
    _checks.allocation("MultiMix weights (n, b)", (n, b), torch.float32, device, copies=2)   # draws + weights
    return dirichlet(alpha, (n, b), device=device, dtype=dtype, generator=generator)


def sample(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    n: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> Mixing:
    """Sample a MultiMix :class:`~mixbook.core.mixing.Mixing` (dense form) for the batch ``x``.

    Apply it with ``m.apply(x)`` (one matmul, ``(n, *)``) and ``m.targets(y, num_classes)``
    (``(n, C)``). To mix embeddings rather than inputs, as the paper does, pass it to
    :meth:`mixbook.ManifoldMixup.mix_at`.

    Args:
        x: ``(b, *)`` floating batch (its size, dtype and device are used).
        y: optional ``(b,)`` labels or ``(b, C)`` soft targets; only checked against ``x``
            (batch size, device), not used to sample.
        n: number of outputs, ``n >= 1`` (default ``b``).
        alpha: Dirichlet concentration α > 0 (default 1).
        prob: probability in ``[0, 1]`` that the batch is mixed at all (timm's ``prob``, kornia's
            ``p``); an unmixed batch is the identity mixing (needs ``n == b`` when ``prob < 1``).
        generator: optional ``torch.Generator`` on ``x``'s device.

    Returns:
        A dense mixing with ``weights`` ``(n, b)``: float64 for float64 ``x``, else float32.
    """
    x = _checks.batch("x", x)
    _checks.optional_companion("y", y, x)
    w = weights(x.shape[0], n=n, alpha=alpha, device=x.device, dtype=_checks.weight_dtype(x), generator=generator)
    m = Mixing(batch_size=x.shape[0], weights=w)  # weights validated alpha, n: no from_dense host checks
    if prob != 1.0:
        m = gate(m, draw_applied(_checks.unit_interval("prob", prob, include_one=True), 1, x.device, generator))
    return m


class MultiMix(DenseMixingTransform):
    """Batch transform ``(x, y) -> (n mixed x, soft targets)``: each output a Dirichlet(α) mix of
    the whole batch (MultiMix, Venkataramanan et al. 2023, at the input; :func:`~mixbook.methods.multimix.sample`).

    Args:
        alpha: Dirichlet concentration α > 0 (default 1, as in the paper).
        n: number of outputs per batch (default: the batch size); may exceed it, as the paper's
            n = 1000 from b = 128.
        **options: ``num_classes`` and the options every transform shares
            (:class:`mixbook.core.mixing.MixingTransform`).

    Example: one thousand mixes of a batch of 128::

        mix = MultiMix(alpha=1.0, num_classes=10, n=1000)
        x_mix, y_soft = mix(x, y)           # (1000, *), (1000, 10)
        loss = mixbook.core.losses.soft_cross_entropy(model(x_mix), y_soft)
    """

    sampler = staticmethod(sample)
    hyper_parameters = ("alpha", "n", "prob")

    def __init__(self, *, alpha: float = DEFAULT_ALPHA, n: int | None = None, **options: Any) -> None:
        self.alpha = _checks.concentration("alpha", alpha)
        super().__init__(n=n, **options)


# ---------------------------------------------------------------------- dense MultiMix
def dense_weights(base: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Per-position weights ``W^j`` ``(r, n, b)`` of dense MultiMix.

    ``W^j[k, i] = Λ^j[k, i] a[i, j] / Σ_i' Λ^j[k, i'] a[i', j]``: the base mixing of position
    ``j`` re-weighted by the attention of each example at ``j`` and renormalised so that every
    row sums to 1 (the paper's ``M^j = diag(a^j) Λ^j`` with column normalisation, transposed).
    The base is one matrix per position (the published form, ``(r, n, b)``) or one matrix shared
    by every position (``(n, b)``, the pooled variant). A row whose re-weighted sum is 0 falls
    back to the unweighted base row at that position. Attention of all ones (or any attention
    constant over examples) gives back the base at every position.

    Args:
        base: ``(r, n, b)`` or ``(n, b)`` row-stochastic weights, e.g.
            ``weights(b, n=r * n, alpha=α).reshape(r, n, b)`` or :func:`weights`.
        attention: ``(b, r)`` non-negative, finite attention of each example at each of ``r``
            positions (e.g. :func:`cam_attention`), on ``base``'s device. Values are checked on
            the CPU only (see ``mixbook.core._checks``).

    Returns:
        ``(r, n, b)`` tensor in the promoted dtype of ``base`` and ``attention``.
    """
    base = _floating("base", base, (2, 3), "(r, n, b) or (n, b)")
    attention = _floating("attention", attention, 2, "(b, r)")
    n, b = base.shape[-2:]
    if attention.shape[0] != b:
        raise ValueError(f"attention must have shape (b, r) = ({b}, r) to match base (…, n, b) = {tuple(base.shape)}, "
                         f"got {tuple(attention.shape)}")
    if base.ndim == 3 and base.shape[0] != attention.shape[1]:
        raise ValueError(f"base of shape (r, n, b) = {tuple(base.shape)} needs attention (b, r) with r = {base.shape[0]}, "
                         f"got {tuple(attention.shape)}")
    _checks.same_device("attention", attention, base.device)
    r = base.shape[0] if base.ndim == 3 else attention.shape[1]
    _checks.allocation("Dense MultiMix weights (r, n, b)", (r, n, b), torch.promote_types(base.dtype, attention.dtype),
                       base.device, copies=2)
    if _checks.check_values(attention):
        if not bool(torch.isfinite(attention).all()) or bool((attention < 0).any()):
            raise ValueError("attention must be finite and non-negative")
    if _checks.check_values(base):
        _checks.soft_targets("base", base.detach().reshape(-1, b))
    dtype = torch.promote_types(base.dtype, attention.dtype)
    w = base.to(dtype)
    w = w.unsqueeze(0) if w.ndim == 2 else w                     # (1 or r, n, b)
    num = w * attention.to(dtype).t().unsqueeze(1)               # (r, n, b): Λ^j[k, i] a[i, j]
    den = num.sum(dim=-1, keepdim=True)                         # (r, n, 1)
    ok = den > 0
    # The safe denominator keeps NaN out of the unused branch (and out of gradients).
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), w.expand_as(num))


def _dense_mixing(name: str, w: object, b: int, r: int | None, device: torch.device) -> torch.Tensor:
    w = _floating(name, w, 3, "(r, n, b)")
    if w.shape[2] != b or (r is not None and w.shape[0] != r):
        want = f"({'r' if r is None else r}, n, {b})"
        raise ValueError(f"{name} must have shape (r, n, b) = {want}, got {tuple(w.shape)}")
    _checks.same_device(name, w, device)
    return w


def apply_dense(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mix every spatial position with its own weights: ``out[k, :, j] = Σ_i W^j[k, i] f[i, :, j]``.

    Args:
        features: ``(b, c, r)`` or ``(b, c, h, w)`` (``r = h·w``) floating feature maps.
        weights: ``(r, n, b)`` per-position weights from :func:`dense_weights`, on the same
            device; applied in ``features``' dtype.

    Returns:
        ``(n, c, r)`` or ``(n, c, h, w)`` tensor of ``features``' dtype (one ``einsum``).
    """
    features = _floating("features", features, (3, 4), "(b, c, r) or (b, c, h, w)")
    b, c = features.shape[:2]
    spatial = features.shape[2:]
    f = features.reshape(b, c, -1)
    w = _dense_mixing("weights", weights, b, f.shape[2], features.device)
    out = torch.einsum("jki,icj->kcj", w.to(features.dtype), f)
    return out.reshape(w.shape[1], c, *spatial)


def dense_targets(y_soft: torch.Tensor, weights: torch.Tensor, per_position: bool = False) -> torch.Tensor:
    """Targets of dense MultiMix: ``Ỹ^j = W^j Y`` per position, or ``W̄ Y`` with ``W̄ = (1/r) Σ_j W^j``.

    Args:
        y_soft: ``(b, C)`` soft targets (rows non-negative, summing to 1; checked on the CPU),
            e.g. ``mixbook.core.losses.one_hot(y, C, smoothing)``.
        weights: ``(r, n, b)`` per-position weights from :func:`dense_weights`.
        per_position: ``True``: every position its own target (the published form, eq. 13 of
            the paper); ``False``: one target per output from the position-averaged weights
            (the pooled variant).

    Returns:
        ``(r, n, C)`` (``per_position``) or ``(n, C)`` soft targets of ``y_soft``'s dtype, each
        row summing to 1.
    """
    y = _floating("y_soft", y_soft, 2, "(b, C)")
    _checks.soft_targets("y_soft", y.detach())
    w = _dense_mixing("weights", weights, y.shape[0], None, y.device).to(y.dtype)
    if _checks.boolean("per_position", per_position):
        return torch.einsum("jki,ic->jkc", w, y)
    return w.mean(dim=0) @ y


def cam_attention(features: torch.Tensor, head_weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class activation maps (Zhou et al. 2016) of each example's own label, as attention.

    ``a[i, j] = relu(⟨features[i, :, j], head_weight[labels[i]]⟩)``, normalised to sum to 1 over
    the ``r = h·w`` positions of each example. An example whose map is zero everywhere gets the
    uniform ``1/r``. The result is detached (attention is not trained through).

    Args:
        features: ``(b, c, h, w)`` floating feature maps (before global pooling).
        head_weight: ``(C, c)`` weight of the linear classifier after global average pooling.
        labels: ``(b,)`` integer labels in ``[0, C)`` (checked on the CPU).

    Returns:
        ``(b, h·w)`` tensor of ``features``' dtype, non-negative, rows summing to 1.
    """
    features = _floating("features", features, 4, "(b, c, h, w)")
    head_weight = _floating("head_weight", head_weight, 2, "(C, c)")
    b, c = features.shape[:2]
    if head_weight.shape[1] != c:
        raise ValueError(f"head_weight must have shape (C, c) = (C, {c}) to match features' {c} channels, "
                         f"got {tuple(head_weight.shape)}")
    _checks.same_device("head_weight", head_weight, features.device)
    labels = _checks.labels("labels", labels, head_weight.shape[0])
    _checks.same_batch("labels", labels, b)
    _checks.same_device("labels", labels, features.device)
    with torch.no_grad():
        f = features.detach().reshape(b, c, -1)
        w = head_weight.detach().to(f.dtype).index_select(0, labels.long())  # (b, c)
        cam = torch.einsum("bcj,bc->bj", f, w).relu_()
        total = cam.sum(dim=1, keepdim=True)
        ok = total > 0
        uniform = torch.full_like(cam, 1.0 / cam.shape[1])
        return torch.where(ok, cam / torch.where(ok, total, torch.ones_like(total)), uniform)


@register("multimix")
def spec(alpha: float = DEFAULT_ALPHA, n: int | None = None, layer: str = "features", clean: bool = True) -> MethodSpec:
    """MultiMix (Venkataramanan et al. 2023) as a training method (``make_method("multimix", ...)``).

    ``n`` Dirichlet(α) mixes of the whole batch (:func:`sample`) applied to the output of
    ``layer`` (by default ``"features"``, the embedding of the book's models, as in the paper;
    ``"input"`` mixes the inputs); the rest of the network runs on the ``n`` mixed rows, and the
    loss is the soft-target cross-entropy over all ``n`` outputs against ``W·onehot(y)``. With
    ``clean`` (the default) the ``b`` unmixed rows go through the rest of the network too (one
    concatenated pass) and their cross-entropy is added: ``CE(clean) + CE_soft(mixed)``.

    Why ``clean`` matters: a Dirichlet(α) row over ``b`` examples has its largest weight near
    ``H_b / b`` for α = 1 (0.07 at b = 64), so every mixed target is close to the batch's label
    histogram; trained on those alone, the network can settle on one embedding for every input
    (chapter 5 shows the collapse on digits). The clean term keeps the examples apart.

    Args:
        alpha: α > 0 of the Dirichlet (the paper: 1).
        n: outputs per batch (``None``: the batch size; the paper uses 1000 from b = 128).
        layer: ``"input"`` or a module path of the trained model (checked at the first step).
        clean: add the cross-entropy of the unmixed batch.
    """
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module path (str) or 'input', got {type(layer).__name__}")
    return MethodSpec(sample, dict(alpha=alpha, n=n), at=layer, loss="soft", clean=clean)


# ---------------------------------------------------------------------- dense MultiMix
def _with_clean(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``h -> cat([h, fn(h)])``: the clean rows first, then the mixed ones."""
    return lambda h: torch.cat([h, fn(h)])


class DenseMultiMix(Method):
    """Dense MultiMix (Venkataramanan et al. 2023): MultiMix per spatial position, CAM-weighted.

    At the feature map ``F`` ``(b, c, h, w)`` output by ``layer`` (the last one before global
    average pooling and the linear ``head``), every position ``j`` of ``r = h·w`` is mixed with
    its own weights ``W^j = normalise(Λ^j · diag(a_j))`` (:func:`~mixbook.methods.multimix.dense_weights`),
    where ``a`` ``(b, r)`` is each example's class activation map for its own label
    (:func:`~mixbook.methods.multimix.cam_attention`, from the current ``head`` weights, not trained
    through).

    ``per_position=True`` (registered as ``"dense_multimix"``) is the published form: a separate
    Dirichlet(α) base ``Λ^j`` ``(n, b)`` per position, each position its own mixed target
    ``Ỹ^j = W^j Y`` (:func:`~mixbook.methods.multimix.dense_targets` with ``per_position=True``), and the
    dense loss: the linear head applied at every position of the mixed map (as a 1 × 1
    convolution with the head's weights), soft-target cross-entropy averaged over the ``n·r``
    (output, position) terms. ``per_position=False`` (``"dense_multimix_pooled"``) is the pooled
    variant: one base ``W`` shared by every position, targets from the position-averaged weights,
    and the loss on the model's own (globally pooled) logits of the ``n`` outputs.

    With ``clean`` (mixbook's default, see chapter 5: without it accuracy falls) the
    cross-entropy of the ``b`` unmixed rows is added, as in :func:`spec`.

    Args:
        layer: module path of the last spatial feature map, e.g. ``"features.6"`` for
            :class:`~mixbook.training.models.SmallCNN`, ``"features.4"`` for
            :class:`~mixbook.training.models.CifarResNet18`.
        alpha: α > 0 of the Dirichlet.
        n: outputs per batch (``None``: the batch size).
        head: module path of the linear classifier (``nn.Linear``) whose weight gives the CAM.
        clean: add the cross-entropy of the unmixed batch.
        per_position: the published form (``True``) or the pooled variant.
    """

    def __init__(self, layer: str, alpha: float = DEFAULT_ALPHA, n: int | None = None,
                 head: str = "head", clean: bool = True, per_position: bool = True) -> None:
        for name, value in (("layer", layer), ("head", head)):
            if not isinstance(value, str) or value == hooks.INPUT:
                raise TypeError(f"{name} must be a module path (str) of the model, got {value!r}")
        self.layer, self.head = layer, head
        self.alpha = _checks.concentration("alpha", alpha)
        self.n = _checks.optional_positive_int("n", n)
        self.clean = _checks.boolean("clean", clean)
        self.per_position = _checks.boolean("per_position", per_position)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             generator: torch.Generator) -> torch.Tensor:
        (head_path,) = hooks.check_layers(model, [self.head])
        head = hooks.submodule(model, head_path)
        if not isinstance(head, nn.Linear):
            raise TypeError(f"head {self.head!r} must be an nn.Linear (its weight gives the CAM), "
                            f"got {type(head).__name__}")
        b = x.shape[0]
        n = b if self.n is None else self.n
        stash: dict[str, torch.Tensor] = {}

        def mixed(features: torch.Tensor) -> torch.Tensor:
            if features.ndim != 4:
                raise TypeError(f"dense MultiMix: layer {self.layer!r} must output a (b, c, h, w) feature map, "
                                f"got shape {tuple(features.shape)}")
            r = features.shape[2] * features.shape[3]
            if self.per_position:
                base = weights(b, n=r * n, alpha=self.alpha, device=features.device, dtype=torch.float32,
                                        generator=generator).reshape(r, n, b)
            else:
                base = weights(b, n=n, alpha=self.alpha, device=features.device, dtype=torch.float32,
                                        generator=generator)
            w = dense_weights(base, cam_attention(features, head.weight, y))  # checks y
            stash["targets"] = dense_targets(_one_hot(y, num_classes, 0.0, torch.float32), w,
                                                      per_position=self.per_position)
            return apply_dense(features, w)

        if not self.per_position:
            logits = hooks.transform_at(model, x, self.layer, _with_clean(mixed) if self.clean else mixed,
                                           batch_size=b)
            targets = stash["targets"]
            return clean_plus_soft_ce(logits, y, targets) if self.clean else soft_ce(logits, targets)

        def keep(features: torch.Tensor) -> torch.Tensor:   # the model goes on with the clean rows
            stash["map"] = mixed(features)
            return features

        clean_logits = hooks.transform_at(model, x, self.layer, keep, batch_size=b)
        z = stash["map"].flatten(2)                                            # (n, c, r)
        dense = torch.einsum("ncr,kc->nkr", z, head.weight.to(z.dtype))        # (n, C, r)
        if head.bias is not None:
            dense = dense + head.bias.to(z.dtype)[None, :, None]
        targets = stash["targets"].permute(1, 2, 0).to(dense.dtype)            # (r, n, C) -> (n, C, r)
        mixed_loss = -(targets * torch.log_softmax(dense, dim=1)).sum(1).mean()
        return mixed_loss + ce(clean_logits, y) if self.clean else mixed_loss

    def __repr__(self) -> str:
        name = "dense_multimix" if self.per_position else "dense_multimix_pooled"
        return f"{name}(layer={self.layer!r}, alpha={self.alpha}, n={self.n}, head={self.head!r}, clean={self.clean})"


@register("dense_multimix")
def dense_multimix(layer: str, alpha: float = DEFAULT_ALPHA, n: int | None = None, head: str = "head",
                   clean: bool = True) -> DenseMultiMix:
    """Dense MultiMix as published: a base per position, per-position targets, the dense loss."""
    return DenseMultiMix(layer, alpha, n, head, clean, per_position=True)


@register("dense_multimix_pooled")
def dense_multimix_pooled(layer: str, alpha: float = DEFAULT_ALPHA, n: int | None = None,
                          head: str = "head", clean: bool = True) -> DenseMultiMix:
    """The pooled variant of dense MultiMix: one base shared by all positions, the loss after pooling."""
    return DenseMultiMix(layer, alpha, n, head, clean, per_position=False)



# ---------------------------------------------------------------------- benchmark entries
def _bench(z: torch.Tensor, y: torch.Tensor, num_classes: int, n: int | None):
    return lambda: sample(z, n=n, alpha=DEFAULT_ALPHA).apply(z)


BENCH = (
    BenchEntry(op="mixbook_multimix", kind="embedding", family="dense", make=_bench,
               targets=(Target("multimix >= 1.0x NumPy reference", peer="numpy_multimix", minimum=1.0),),
               limits=(Limit("multimix <= 1.5x one matmul of its shape (sampling included)", measure="matmul_ratio",
                             bound=1.5),)),
)
"""What :mod:`mixbook.bench` times for this module (:class:`~mixbook.core.benchmark.BenchEntry`):
``n`` Dirichlet mixes of ``(b, d)`` embeddings."""
