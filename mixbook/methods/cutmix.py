"""CutMix (Yun et al. 2019) and the mixup-or-CutMix switch, sampled on the batch's device.

CutMix pastes a box of the partner into each example: ``x̃_k = M_k ⊙ x_k + (1 − M_k) ⊙ x_{p(k)}``
with ``M_k`` a binary mask that is 0 inside the box. It is *not* a convex combination of whole
examples (the exception to mixbook's one idea), but its labels are: ``ỹ_k = λ_k y_k +
(1 − λ_k) y_{p(k)}`` with ``λ_k`` the area left to ``x_k``. :class:`BoxMixing` therefore extends
:class:`~mixbook.core.mixing.Mixing`: ``partner`` and ``lam`` are the label mixing (``targets``,
``dense()``), and ``boxes`` / ``use_box`` say how the *inputs* are mixed: rows with ``use_box``
get the box pasted, the others the ordinary mixup lerp with ``lam`` (the switch). Applying it is
one gather and one lerp against a ``(b, 1, H, W)`` weight map (0 in the box, 1 outside, or λ).

The box is torchvision's ``v2.CutMix`` box: a centre ``(c_y, c_x)`` uniform over the pixels,
half sides ``⌊½√(1 − λ) H⌋`` and ``⌊½√(1 − λ) W⌋``, clipped to the image; with ``correct_lam``
(default, always on in torchvision) λ is then the area actually left, ``1 − |box| / (HW)``,
else the drawn λ (timm's ``correct_lam=False``).

timm's modes (``mode``): ``"batch"`` (one λ, one box, one mixup/CutMix choice for the batch),
``"pair"`` (one draw per pair ``(k, b − 1 − k)``, both members swap the same box; needs the
``"flip"`` pairing and an even batch) and ``"elem"`` (one draw per example). ``prob`` is the
probability that a batch / pair / example is mixed at all (timm's ``prob``, kornia's ``p``);
an unmixed one keeps ``λ = 1``, and its targets are still soft, so the label type of a batch
never changes.

Everything is sampled on the batch's device from the optional generator, with no host
synchronisation; ``torch.compile(fullgraph=True)`` traces the samplers and transforms.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from ..core import _checks, _random, fused
from ..core.distributions import beta
from ..core.mixing import Mixing, MixingTransform, _channels_last_order
from ..core.registry import MethodSpec, register
from .mixup import PAIRINGS, pair

MODES = ("batch", "pair", "elem")

__all__ = ["MODES", "BoxMixing", "box", "sample", "sample_switch", "CutMix", "MixUpCutMix"]


@dataclass(frozen=True, eq=False)
class BoxMixing(Mixing):
    """A pairwise :class:`~mixbook.core.mixing.Mixing` whose inputs are mixed by pasting boxes.

    Besides ``partner`` and ``lam`` (the label mixing), it holds how the inputs are mixed.

    Attributes:
        boxes: ``(b, 4)`` int64 ``(y1, x1, y2, x2)`` per output (half-open; empty when
            ``y1 == y2`` or ``x1 == x2``), in the last two dimensions of the inputs.
        use_box: ``(b,)`` bool: paste the box (CutMix) or lerp with ``lam`` (mixup).
        size: ``(H, W)`` the boxes were drawn for.
    """

    boxes: torch.Tensor | None = None
    use_box: torch.Tensor | None = None
    size: tuple[int, int] | None = None

    def to(self, device: torch.device | str) -> "BoxMixing":
        return BoxMixing(self.batch_size, self.partner.to(device), self.lam.to(device), boxes=self.boxes.to(device),
                         use_box=self.use_box.to(device), size=self.size)

    def weight_map(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(b, H, W)``: the weight of each output's own example at every pixel."""
        h, w = self.size
        rows = torch.arange(h, device=self.device)
        cols = torch.arange(w, device=self.device)
        y1, x1, y2, x2 = self.boxes.unbind(1)
        in_rows = (rows >= y1[:, None]) & (rows < y2[:, None])            # (b, H)
        in_cols = (cols >= x1[:, None]) & (cols < x2[:, None])            # (b, W)
        inside = in_rows[:, :, None] & in_cols[:, None, :]                # (b, H, W)
        keep = (~inside).to(dtype)
        return torch.where(self.use_box[:, None, None], keep, self.lam.to(dtype)[:, None, None])

    def apply(self, x: torch.Tensor, partners: torch.Tensor | None = None) -> torch.Tensor:
        """Paste the boxes (and lerp the mixup rows) into ``(b, ..., H, W)`` inputs.

        ``out = lerp(x[partner], x, w)`` with ``w`` the :meth:`weight_map`: exactly ``x`` outside
        the box and the partner inside it for CutMix rows (a lerp with weight 0 or 1 is exact).
        dtype and memory format (channels_last) are kept; ``x`` is not modified.
        """
        _checks.tensor("x", x)
        _checks.not_boxes_or_masks("x", x)
        x = _checks.batch("x", x)
        if partners is not None:
            raise ValueError("partners: a CutMix mixing pairs examples within the batch")
        if x.ndim < 3 or tuple(x.shape[-2:]) != tuple(self.size):
            raise ValueError(f"x must be (b, ..., H, W) with (H, W) = {tuple(self.size)} (the size the boxes were "
                             f"drawn for), got shape {tuple(x.shape)}")
        self._check_batch("x", x)
        w = self.weight_map(x.dtype).view(x.shape[0], *([1] * (x.ndim - 3)), *self.size)
        order = _channels_last_order(x)
        if order is not None:
            perm, inverse = order
            return fused.pairwise(x.permute(perm), x.permute(perm), self.partner, w.permute(perm)).permute(inverse)
        return fused.pairwise(x, x, self.partner, w)

    def __repr__(self) -> str:
        return f"BoxMixing(n={self.num_outputs}, b={self.batch_size}, size={self.size}, device={self.device})"


def box(lam: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's CutMix box for λ and a centre: ``(boxes (k, 4) as (y1, x1, y2, x2), area_lam (k,))``.

    ``r = ½√(1 − λ)``, half sides ``⌊r W⌋`` and ``⌊r H⌋`` (computed in float64 like torchvision's
    Python floats), clipped to ``[0, H] × [0, W]``; ``area_lam = 1 − |box| / (HW)``.
    """
    h, w = size
    r = 0.5 * torch.sqrt(1.0 - lam.to(torch.float64))
    half_w = torch.floor(r * w).long()
    half_h = torch.floor(r * h).long()
    x1 = (cx - half_w).clamp(min=0)
    y1 = (cy - half_h).clamp(min=0)
    x2 = (cx + half_w).clamp(max=w)
    y2 = (cy + half_h).clamp(max=h)
    area = ((x2 - x1) * (y2 - y1)).to(torch.float64)
    return torch.stack([y1, x1, y2, x2], dim=1), 1.0 - area / (h * w)


def _spread(v: torch.Tensor, mode: str, b: int) -> torch.Tensor:
    """Per-draw values ``(k,)`` to per-output ``(b,)``: batch → expand, pair → (v, v reversed), elem → v."""
    if mode == "batch":
        return v.expand(b, *v.shape[1:])
    if mode == "pair":
        return torch.cat([v, v.flip(0)], dim=0)
    return v


def _sample(x, y, *, mixup_alpha, cutmix_alpha, switch_prob, prob, mode, correct_lam, pairing, generator) -> BoxMixing:
    x = _checks.non_empty("x", x)
    if x.ndim < 3:
        raise ValueError(f"x must be a batch of images (b, C, H, W) or videos (b, T, C, H, W) for CutMix, "
                         f"got shape {tuple(x.shape)}")
    mode = _checks.choice("mode", mode, MODES)
    prob = _checks.unit_interval("prob", prob, include_one=True)
    switch_prob = _checks.unit_interval("switch_prob", switch_prob, include_one=True)
    correct_lam = _checks.boolean("correct_lam", correct_lam)
    if pairing is None:
        pairing = "flip" if mode == "pair" else "random"
    pairing = _checks.choice("pairing", pairing, PAIRINGS)
    b = x.shape[0]
    if mode == "pair" and (pairing != "flip" or b % 2):
        raise ValueError(f"mode='pair' mixes the pairs (k, b-1-k): it needs pairing='flip' and an even batch, "
                         f"got pairing={pairing!r} and batch size {b}")
    _checks.optional_companion("y", y, x)
    _checks.generator(generator, x.device)
    dev = x.device
    h, w = x.shape[-2:]
    k = {"batch": 1, "pair": b // 2, "elem": b}[mode]
    partner = pair(b, pairing, y=y if pairing in ("same_class", "cross_class") else None, device=dev,
                   generator=generator)
    lam_dtype = _checks.weight_dtype(x)
    if mixup_alpha is not None and cutmix_alpha is not None:
        use_box = _random.rand((k,), device=dev, generator=generator) < switch_prob
        lam_cut = beta(cutmix_alpha, cutmix_alpha, (k,), device=dev, dtype=lam_dtype, generator=generator)
        lam_mix = beta(mixup_alpha, mixup_alpha, (k,), device=dev, dtype=lam_dtype, generator=generator)
        lam = torch.where(use_box, lam_cut, lam_mix)
    elif cutmix_alpha is not None:
        use_box = torch.ones((k,), dtype=torch.bool, device=dev)
        lam = beta(cutmix_alpha, cutmix_alpha, (k,), device=dev, dtype=lam_dtype, generator=generator)
    else:  # pragma: no cover - the public functions always give one of them
        raise ValueError("one of mixup_alpha and cutmix_alpha must be given")
    cy = _random.randint(h, (k,), device=dev, generator=generator)
    cx = _random.randint(w, (k,), device=dev, generator=generator)
    if prob < 1:
        applied = _random.rand((k,), device=dev, generator=generator) < prob
        lam = torch.where(applied, lam, torch.ones_like(lam))
        use_box = use_box & applied
    boxes, area_lam = box(lam, cy, cx, (h, w))
    boxes = torch.where(use_box[:, None], boxes, torch.zeros_like(boxes))   # mixup rows: empty box
    if correct_lam:
        lam = torch.where(use_box, area_lam.to(lam_dtype), lam)
    return BoxMixing(batch_size=b, partner=partner, lam=_spread(lam, mode, b), boxes=_spread(boxes, mode, b),
                     use_box=_spread(use_box, mode, b), size=(int(h), int(w)))


def sample(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: str = "batch",
    correct_lam: bool = True,
    pairing: str | None = None,
    generator: torch.Generator | None = None,
) -> BoxMixing:
    """Sample a CutMix :class:`BoxMixing` for the image batch ``x`` ``(b, ..., H, W)``.

    Args:
        x: ``(b, C, H, W)`` or ``(b, T, C, H, W)`` batch (only its shape and device are used).
        y: ``(b,)`` integer labels, needed for the class-aware pairings.
        alpha: α > 0 of λ ~ Beta(α, α) (the paper: 1).
        prob: probability in ``[0, 1]`` that a batch / pair / example (``mode``) is mixed.
        mode: ``"batch"``, ``"pair"`` or ``"elem"`` (see the module docstring).
        correct_lam: λ = the area actually left after clipping the box (torchvision, default)
            instead of the drawn λ.
        pairing: one of :data:`mixbook.methods.mixup.PAIRINGS`; default ``"random"`` (``"flip"`` for
            ``mode="pair"``). torchvision's ``v2.CutMix`` is ``"roll"``, timm's ``"flip"``.
        generator: optional ``torch.Generator`` on ``x``'s device.
    """
    alpha = _checks.positive_float("alpha", alpha)
    return _sample(x, y, mixup_alpha=None, cutmix_alpha=alpha, switch_prob=1.0, prob=prob, mode=mode,
                   correct_lam=correct_lam, pairing=pairing, generator=generator)


_BOX_OPTIONS = {k: p.default for k, p in inspect.signature(sample).parameters.items()
                if k in ("prob", "mode", "correct_lam", "pairing")}
"""The options :func:`sample_switch` takes from :func:`sample`, with sample's defaults."""


def sample_switch(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 1.0,
    switch_prob: float = 0.5,
    generator: torch.Generator | None = None,
    **options: Any,
) -> BoxMixing:
    """Mixup or CutMix per batch / pair / example (timm's ``Mixup`` with both alphas > 0).

    With probability ``switch_prob`` a draw is CutMix (λ ~ Beta(cutmix_alpha, ·)), else mixup
    (λ ~ Beta(mixup_alpha, ·)). ``options``: ``prob``, ``mode``, ``correct_lam`` and ``pairing``,
    with the meanings and defaults of :func:`sample`; any other keyword is a ``TypeError``.
    """
    mixup_alpha = _checks.positive_float("mixup_alpha", mixup_alpha)
    cutmix_alpha = _checks.positive_float("cutmix_alpha", cutmix_alpha)
    unknown = sorted(set(options) - set(_BOX_OPTIONS))
    if unknown:
        raise TypeError(f"sample_switch() got unexpected keyword argument(s) {unknown}; "
                        f"it takes mixup_alpha, cutmix_alpha, switch_prob, generator and {list(_BOX_OPTIONS)}")
    return _sample(x, y, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, switch_prob=switch_prob,
                   generator=generator, **{**_BOX_OPTIONS, **options})


class _BoxTransform(MixingTransform):
    def __init__(self, *, prob: float = 1.0, mode: str = "batch", correct_lam: bool = True, pairing: str | None = None,
                 **options: Any) -> None:
        self.prob = _checks.unit_interval("prob", prob, include_one=True)
        self.mode = _checks.choice("mode", mode, MODES)
        self.correct_lam = _checks.boolean("correct_lam", correct_lam)
        if pairing is None:
            pairing = "flip" if self.mode == "pair" else "random"
        self.pairing = _checks.choice("pairing", pairing, PAIRINGS)
        if self.mode == "pair" and self.pairing != "flip":
            raise ValueError(f"mode='pair' needs pairing='flip', got {self.pairing!r}")
        super().__init__(**options)   # num_classes, smoothing, multi_label, labels_getter, generator


class CutMix(_BoxTransform):
    """Batch transform ``(x, y) -> (x with pasted boxes, soft targets)``, like torchvision's ``v2.CutMix``.

    Args:
        alpha: α > 0 of λ ~ Beta(α, α).
        num_classes: number of classes.
        prob: probability that a batch / pair / example is mixed (timm's ``prob``, kornia's ``p``).
        mode: ``"batch"`` (default), ``"pair"`` or ``"elem"`` (timm's modes).
        correct_lam: targets weighted by the area actually pasted (default, as torchvision).
        pairing: partners (:data:`mixbook.methods.mixup.PAIRINGS`); default ``"random"``, ``"flip"``
            for ``mode="pair"``; ``"roll"`` is torchvision's.
        smoothing, multi_label, labels_getter, generator: as :class:`mixbook.MixUp`.

    Takes ``(b, C, H, W)`` images or ``(b, T, C, H, W)`` videos (the box is in the last two
    dimensions) and every calling convention of :class:`~mixbook.core.mixing.MixingTransform`.
    """

    sampler = staticmethod(sample)
    hyper_parameters = ("alpha", "prob", "mode", "correct_lam", "pairing")

    def __init__(self, *, alpha: float = 1.0, **options: Any) -> None:
        self.alpha = _checks.positive_float("alpha", alpha)
        super().__init__(**options)   # prob, mode, correct_lam, pairing and the options every transform shares


class MixUpCutMix(_BoxTransform):
    """Mixup or CutMix, switched per batch / pair / example: timm's ``Mixup`` as a mixbook transform.

    Args:
        mixup_alpha: α > 0 of mixup's Beta(α, α).
        cutmix_alpha: α > 0 of CutMix's Beta(α, α).
        switch_prob: probability in ``[0, 1]`` of CutMix rather than mixup for a draw
            (timm's ``switch_prob``; 0 is mixup only, 1 CutMix only).
        num_classes, prob, mode, correct_lam, pairing, smoothing, multi_label, labels_getter, generator: as
            :class:`~mixbook.methods.cutmix.CutMix`.

    Example::

        mix = MixUpCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=0.9,
                          num_classes=10, generator=torch.Generator().manual_seed(0))
        x_mix, y_soft = mix(x, y)      # y_soft is (b, 10) for every batch, mixed or not
    """

    sampler = staticmethod(sample_switch)
    hyper_parameters = ("mixup_alpha", "cutmix_alpha", "switch_prob", "prob", "mode", "correct_lam", "pairing")

    def __init__(self, *, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0, switch_prob: float = 0.5,
                 **options: Any) -> None:
        self.mixup_alpha = _checks.positive_float("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = _checks.positive_float("cutmix_alpha", cutmix_alpha)
        self.switch_prob = _checks.unit_interval("switch_prob", switch_prob, include_one=True)
        super().__init__(**options)   # prob, mode, correct_lam, pairing and the options every transform shares


@register("cutmix")
def spec(alpha: float = 1.0) -> MethodSpec:
    """CutMix (Yun et al. 2019) as a training method (``make_method("cutmix", ...)``): :func:`sample`
    at the input (a box of area ``1 − λ``, λ ~ Beta(α, α), pasted from a random partner; the targets
    mixed with the box's actual area), soft-target cross-entropy. Needs image batches
    ``(b, C, H, W)``; every draw comes from ``fit``'s mixing stream, on the batch's device.

    Args:
        alpha: α > 0 of Beta(α, α) (the paper: 1).
    """
    return MethodSpec(sample, dict(alpha=alpha), loss="soft", probe=(1, 4, 4))

