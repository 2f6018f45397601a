"""CutMix (Yun et al. 2019) and the mixup-or-CutMix switch, sampled on the batch's device.

CutMix pastes a box of the partner into each example: ``x̃_k = M_k ⊙ x_k + (1 − M_k) ⊙ x_{p(k)}``
with ``M_k`` a binary mask that is 0 inside the box. It is *not* a convex combination of whole
examples (the exception to mixbook's one idea), but its labels are: ``ỹ_k = λ_k y_k +
(1 − λ_k) y_{p(k)}`` with ``λ_k`` the area left to ``x_k``. :class:`BoxMixing` therefore extends
:class:`~mixbook.core.mixing.Mixing`: ``partner`` and ``lam`` are the label mixing (``targets``,
``dense()``), and ``boxes`` / ``use_box`` say how the *inputs* are mixed: rows with ``use_box``
get the box pasted, the others the ordinary mixup lerp with ``lam`` (the switch). Applying it is
one gather and one lerp against a ``(b, 1, H, W)`` weight map (0 in the box, 1 outside, or λ).

The box (``box``): a centre ``(c_y, c_x)`` uniform over the pixels and

* ``"torchvision"`` (default): half sides ``⌊½√(1 − λ) H⌋`` and ``⌊½√(1 − λ) W⌋`` around it
  (torchvision's ``v2.CutMix``), or
* ``"timm"``: sides ``⌊√(1 − λ) H⌋`` and ``⌊√(1 − λ) W⌋``, the centre at ``⌊side/2⌋`` from the
  top-left corner (timm's ``rand_bbox``; one pixel longer than torchvision's when odd),

clipped to the image; or, with ``cutmix_minmax=(lo, hi)`` (timm's Darknet-style box), sides
drawn uniformly among the integers ``[⌊lo H⌋, ⌊hi H⌋)`` and ``[⌊lo W⌋, ⌊hi W⌋)`` independently
and a corner uniform over the positions that keep the box inside the image. With
``correct_lam`` (default, always on in torchvision, forced by ``cutmix_minmax`` in timm) λ is
then the area actually left, ``1 − |box| / (HW)``, else the drawn λ.

timm's modes (``mode``): ``"batch"`` (one λ, one box, one mixup/CutMix choice for the batch),
``"pair"`` (one draw per pair ``(k, b − 1 − k)``, both members swap the same box), ``"elem"``
(one draw per example) and ``"half"`` (timm's ``FastCollateMixup`` mode: the first ``b/2``
examples, each mixed with ``b − 1 − k`` from the second half, one draw each; only those ``b/2``
are returned). ``"pair"`` and ``"half"`` need the ``"flip"`` pairing and an even batch. ``prob``
is the probability that a batch / pair / example is mixed at all (timm's ``prob``, kornia's
``p``); an unmixed one keeps ``λ = 1``, and its targets are still soft, so the label type of a
batch never changes. ``mixup_enabled=False`` (timm's switch, which its ``mixup_off_epoch`` turns
off) leaves every batch unmixed.

Everything is sampled on the batch's device from the optional generator, with no host
synchronisation; ``torch.compile(fullgraph=True)`` traces the samplers and transforms.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..core import _checks, _random, fused
from ..core.distributions import beta
from ..core.mixing import Mixing, MixingTransform, _channels_last_order
from ..core.registry import MethodSpec, register
from .mixup import PAIRINGS, fixed_lam, pair

MODES = ("batch", "pair", "elem", "half")
BOX_RULES = ("torchvision", "timm")

__all__ = ["MODES", "BOX_RULES", "BoxMixing", "box", "sample", "sample_switch", "CutMix", "MixUpCutMix"]


@dataclass(frozen=True, eq=False)
class BoxMixing(Mixing):
    """A pairwise :class:`~mixbook.core.mixing.Mixing` whose inputs are mixed by pasting boxes.

    Besides ``partner`` and ``lam`` (the label mixing), it holds how the inputs are mixed.

    Attributes:
        boxes: ``(b, 4)`` int64 ``(y1, x1, y2, x2)`` per output (half-open; empty when
            ``y1 == y2`` or ``x1 == x2``), in the last two dimensions of the inputs.
        use_box: ``(b,)`` bool: paste the box (CutMix) or lerp with ``lam`` (mixup).
        size: ``(H, W)`` the boxes were drawn for.
        rows: ``None`` (every output), or the number of leading outputs kept (``mode="half"``:
            ``b/2``; the mixing is then the ``(b/2, b)`` matrix of those rows).
    """

    boxes: torch.Tensor | None = None
    use_box: torch.Tensor | None = None
    size: tuple[int, int] | None = None
    rows: int | None = None

    @property
    def num_outputs(self) -> int:
        return self.batch_size if self.rows is None else self.rows

    def to(self, device: torch.device | str) -> "BoxMixing":
        return BoxMixing(self.batch_size, self.partner.to(device), self.lam.to(device), boxes=self.boxes.to(device),
                         use_box=self.use_box.to(device), size=self.size, rows=self.rows)

    def dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        w = super().dense(dtype)
        return w if self.rows is None else w[: self.rows]

    def _mix(self, x: torch.Tensor, partners: torch.Tensor | None = None) -> torch.Tensor:
        out = super()._mix(x, partners)
        return out if self.rows is None else out[: self.rows]

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
        dtype and memory format (channels_last) are kept; ``x`` is not modified. Returns
        ``(n, ..., H, W)``: all ``b`` outputs, or the first ``rows``.
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
            out = fused.pairwise(x.permute(perm), x.permute(perm), self.partner, w.permute(perm)).permute(inverse)
        else:
            out = fused.pairwise(x, x, self.partner, w)
        return out if self.rows is None else out[: self.rows]

    def __repr__(self) -> str:
        rows = "" if self.rows is None else f", rows={self.rows}"
        return f"BoxMixing(n={self.num_outputs}, b={self.batch_size}, size={self.size}{rows}, device={self.device})"


def box(lam: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: tuple[int, int],
        rule: str = "torchvision") -> tuple[torch.Tensor, torch.Tensor]:
    """The CutMix box for λ and a centre: ``(boxes (k, 4) as (y1, x1, y2, x2), area_lam (k,))``.

    ``rule="torchvision"``: ``r = ½√(1 − λ)``, half sides ``⌊r W⌋`` and ``⌊r H⌋`` around the centre;
    ``rule="timm"``: sides ``s = ⌊√(1 − λ) H⌋`` (and W), from ``c − ⌊s/2⌋`` to ``c + ⌈s/2⌉``. Computed
    in float64 (like the peers' Python and NumPy floats), clipped to ``[0, H] × [0, W]``;
    ``area_lam = 1 − |box| / (HW)``.
    """
    h, w = size
    root = torch.sqrt(1.0 - lam.to(torch.float64))
    if rule == "timm":
        cut_h = torch.floor(root * h).long()
        cut_w = torch.floor(root * w).long()
        y1, y2 = cy - cut_h // 2, cy + (cut_h + 1) // 2
        x1, x2 = cx - cut_w // 2, cx + (cut_w + 1) // 2
    else:
        half_w = torch.floor(0.5 * root * w).long()
        half_h = torch.floor(0.5 * root * h).long()
        y1, y2 = cy - half_h, cy + half_h
        x1, x2 = cx - half_w, cx + half_w
    return _clipped(y1, x1, y2, x2, size)


def _clipped(y1, x1, y2, x2, size):
    h, w = size
    y1, x1 = y1.clamp(0, h), x1.clamp(0, w)
    y2, x2 = y2.clamp(0, h), x2.clamp(0, w)
    area = ((x2 - x1) * (y2 - y1)).to(torch.float64)
    return torch.stack([y1, x1, y2, x2], dim=1), 1.0 - area / (h * w)


def _minmax_box(cut_h, cut_w, corner_y, corner_x, size):
    """timm's ``rand_bbox_minmax`` box from its drawn sides and corner."""
    return _clipped(corner_y, corner_x, corner_y + cut_h, corner_x + cut_w, size)


class _Draws(NamedTuple):
    """The random draws of one CutMix / switch sample, ``k`` of each (one per batch, pair or example).

    ``lam`` is already 1 where the draw is not applied (``prob``), and ``use_box`` false there.
    ``cy``/``cx`` are the box centres, or with ``cutmix_minmax`` its top-left corner and
    ``cut_h``/``cut_w`` its sides (else ``None``).
    """

    use_box: torch.Tensor
    lam: torch.Tensor
    cy: torch.Tensor
    cx: torch.Tensor
    cut_h: torch.Tensor | None = None
    cut_w: torch.Tensor | None = None


def _uniform_int(low: torch.Tensor | int, high: torch.Tensor | int, k: int, device, generator) -> torch.Tensor:
    """``(k,)`` int64 uniform over ``[low, high)`` (``low`` where ``high <= low``), per element."""
    u = _random.rand((k,), device=device, generator=generator).to(torch.float64)
    span = torch.as_tensor(high, device=device) - torch.as_tensor(low, device=device)
    return torch.as_tensor(low, device=device) + torch.floor(u * span.clamp(min=0)).long().clamp(
        max=torch.clamp(span - 1, min=0))


def _draw(k, size, *, mixup_alpha, cutmix_alpha, cutmix_minmax, switch_prob, prob, lam, device, dtype,
          generator) -> _Draws:
    h, w = size
    if mixup_alpha is not None and cutmix_alpha is not None:
        use_box = _random.rand((k,), device=device, generator=generator) < switch_prob
        lam_cut = beta(cutmix_alpha, cutmix_alpha, (k,), device=device, dtype=dtype, generator=generator)
        lam_mix = beta(mixup_alpha, mixup_alpha, (k,), device=device, dtype=dtype, generator=generator)
        drawn = torch.where(use_box, lam_cut, lam_mix)
    elif cutmix_alpha is not None:
        use_box = torch.ones((k,), dtype=torch.bool, device=device)
        drawn = (beta(cutmix_alpha, cutmix_alpha, (k,), device=device, dtype=dtype, generator=generator)
                 if lam is None else fixed_lam(lam, k, device=device, dtype=dtype, generator=generator))
    elif mixup_alpha is not None:
        use_box = torch.zeros((k,), dtype=torch.bool, device=device)
        drawn = beta(mixup_alpha, mixup_alpha, (k,), device=device, dtype=dtype, generator=generator)
    else:  # pragma: no cover - the public functions always give one of them
        raise ValueError("one of mixup_alpha and cutmix_alpha must be given")
    cy = _random.randint(h, (k,), device=device, generator=generator)
    cx = _random.randint(w, (k,), device=device, generator=generator)
    cut_h = cut_w = None
    if cutmix_minmax is not None:
        lo, hi = cutmix_minmax
        cut_h = _uniform_int(int(h * lo), int(h * hi), k, device, generator)
        cut_w = _uniform_int(int(w * lo), int(w * hi), k, device, generator)
        cy = _uniform_int(0, h - cut_h + 1, k, device, generator)
        cx = _uniform_int(0, w - cut_w + 1, k, device, generator)
    if prob < 1:
        applied = _random.rand((k,), device=device, generator=generator) < prob
        drawn = torch.where(applied, drawn, torch.ones_like(drawn))
        use_box = use_box & applied
    return _Draws(use_box, drawn, cy, cx, cut_h, cut_w)


def _spread(v: torch.Tensor, mode: str, b: int, fill: object = None) -> torch.Tensor:
    """Per-draw values ``(k,)`` to per-output ``(b,)``: batch → expand, pair → (v, v reversed), elem → v,
    half → (v, ``fill`` for the second half: the unmixed rows, which are not returned)."""
    if mode == "batch":
        return v.expand(b, *v.shape[1:])
    if mode == "pair":
        return torch.cat([v, v.flip(0)], dim=0)
    if mode == "half":
        return torch.cat([v, torch.full_like(v, fill) if not isinstance(fill, torch.Tensor) else fill], dim=0)
    return v


def _sample(x, y, *, mixup_alpha, cutmix_alpha, switch_prob, prob, mode, correct_lam, pairing, generator,
            cutmix_minmax=None, box_rule="torchvision", lam=None, mixup_enabled=True) -> BoxMixing:
    x = _checks.non_empty("x", x)
    if x.ndim < 3:
        raise ValueError(f"x must be a batch of images (b, C, H, W) or videos (b, T, C, H, W) for CutMix, "
                         f"got shape {tuple(x.shape)}")
    mode = _checks.choice("mode", mode, MODES)
    prob = _checks.unit_interval("prob", prob, include_one=True)
    switch_prob = _checks.unit_interval("switch_prob", switch_prob, include_one=True)
    correct_lam = _checks.boolean("correct_lam", correct_lam)
    box_rule = _checks.choice("box", box_rule, BOX_RULES)
    mixup_enabled = _checks.boolean("mixup_enabled", mixup_enabled)
    cutmix_minmax = _minmax(cutmix_minmax)
    if pairing is None:
        pairing = "flip" if mode in ("pair", "half") else "random"
    pairing = _checks.choice("pairing", pairing, PAIRINGS)
    b = x.shape[0]
    if mode in ("pair", "half") and (pairing != "flip" or b % 2):
        raise ValueError(f"mode={mode!r} mixes k with b-1-k: it needs pairing='flip' and an even batch, "
                         f"got pairing={pairing!r} and batch size {b}")
    _checks.optional_companion("y", y, x)
    _checks.generator(generator, x.device)
    dev = x.device
    h, w = (int(s) for s in x.shape[-2:])
    k = {"batch": 1, "pair": b // 2, "elem": b, "half": b // 2}[mode]
    partner = pair(b, pairing, y=y if pairing in ("same_class", "cross_class") else None, device=dev,
                   generator=generator)
    lam_dtype = _checks.weight_dtype(x)
    rows = b // 2 if mode == "half" else None
    if not mixup_enabled:        # timm's switch: every output is its own example, targets still soft
        return BoxMixing(batch_size=b, partner=partner, lam=torch.ones(b, dtype=lam_dtype, device=dev),
                         boxes=torch.zeros(b, 4, dtype=torch.int64, device=dev),
                         use_box=torch.zeros(b, dtype=torch.bool, device=dev), size=(h, w), rows=rows)
    d = _draw(k, (h, w), mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax,
              switch_prob=switch_prob, prob=prob, lam=lam, device=dev, dtype=lam_dtype, generator=generator)
    if cutmix_minmax is not None:
        boxes, area_lam = _minmax_box(d.cut_h, d.cut_w, d.cy, d.cx, (h, w))
    else:
        boxes, area_lam = box(d.lam, d.cy, d.cx, (h, w), box_rule)
    use_box, lam_out = d.use_box, d.lam
    boxes = torch.where(use_box[:, None], boxes, torch.zeros_like(boxes))   # mixup rows: empty box
    if correct_lam or cutmix_minmax is not None:
        lam_out = torch.where(use_box, area_lam.to(lam_dtype), lam_out)
    return BoxMixing(batch_size=b, partner=partner, lam=_spread(lam_out, mode, b, 1.0),
                     boxes=_spread(boxes, mode, b, 0), use_box=_spread(use_box, mode, b, False), size=(h, w),
                     rows=rows)


def _minmax(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"cutmix_minmax must be None or (min, max) ratios of the image side, got {value!r}")
    lo = _checks.unit_interval("cutmix_minmax[0]", value[0], include_one=True)
    hi = _checks.unit_interval("cutmix_minmax[1]", value[1], include_one=True)
    if not 0 < lo < hi:
        raise ValueError(f"cutmix_minmax must satisfy 0 < min < max <= 1, got {value!r}")
    return (lo, hi)


def sample(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: str = "batch",
    correct_lam: bool = True,
    pairing: str | None = None,
    box: str = "torchvision",
    lam: float | tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> BoxMixing:
    """Sample a CutMix :class:`BoxMixing` for the image batch ``x`` ``(b, ..., H, W)``.

    Args:
        x: ``(b, C, H, W)`` or ``(b, T, C, H, W)`` batch (only its shape and device are used).
        y: ``(b,)`` integer labels, needed for the class-aware pairings.
        alpha: α > 0 of λ ~ Beta(α, α) (the paper: 1).
        prob: probability in ``[0, 1]`` that a batch / pair / example (``mode``) is mixed.
        mode: ``"batch"``, ``"pair"``, ``"elem"`` or ``"half"`` (see the module docstring).
        correct_lam: λ = the area actually left after clipping the box (torchvision, default)
            instead of the drawn λ.
        pairing: one of :data:`mixbook.methods.mixup.PAIRINGS`; default ``"random"`` (``"flip"`` for
            ``mode="pair"``/``"half"``). torchvision's ``v2.CutMix`` is ``"roll"``, timm's ``"flip"``.
        box: ``"torchvision"`` (default) or ``"timm"``: how the box's sides follow from λ (module docstring).
        lam: a fixed λ, or a range ``(lo, hi)`` to draw it from uniformly, instead of Beta(α, α).
        generator: optional ``torch.Generator`` on ``x``'s device.
    """
    alpha = _checks.concentration("alpha", alpha)
    return _sample(x, y, mixup_alpha=None, cutmix_alpha=alpha, switch_prob=1.0, prob=prob, mode=mode,
                   correct_lam=correct_lam, pairing=pairing, generator=generator, box_rule=box, lam=lam)


_BOX_OPTIONS = {k: p.default for k, p in inspect.signature(sample).parameters.items()
                if k in ("prob", "mode", "correct_lam", "pairing", "box")}
"""The options :func:`sample_switch` takes from :func:`sample`, with sample's defaults."""


def _alpha_or_off(name: str, value: object) -> float | None:
    """timm's alphas: > 0 turns the component on, 0 off."""
    value = _checks.non_negative_float(name, value)
    return _checks.concentration(name, value) if value > 0 else None


def sample_switch(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 1.0,
    switch_prob: float = 0.5,
    cutmix_minmax: tuple[float, float] | None = None,
    mixup_enabled: bool = True,
    generator: torch.Generator | None = None,
    **options: Any,
) -> BoxMixing:
    """Mixup or CutMix per batch / pair / example (timm's ``Mixup``).

    With both alphas > 0, a draw is CutMix with probability ``switch_prob`` (λ ~ Beta(cutmix_alpha, ·)),
    else mixup (λ ~ Beta(mixup_alpha, ·)); an alpha of 0 turns its component off, as in timm
    (at least one must be > 0, or ``cutmix_minmax`` given). ``cutmix_minmax=(lo, hi)``: timm's
    min/max box ratios (module docstring), which make CutMix active with ``cutmix_alpha = 1`` and
    λ the area left, as timm does. ``mixup_enabled=False``: nothing is mixed. ``options``:
    ``prob``, ``mode``, ``correct_lam``, ``pairing`` and ``box``, with the meanings and defaults of
    :func:`sample`; any other keyword is a ``TypeError``.
    """
    mixup_alpha = _alpha_or_off("mixup_alpha", mixup_alpha)
    cutmix_alpha = _alpha_or_off("cutmix_alpha", cutmix_alpha)
    if _minmax(cutmix_minmax) is not None:
        cutmix_alpha = 1.0
    if mixup_alpha is None and cutmix_alpha is None:
        raise ValueError("mixup_alpha and cutmix_alpha are both 0: at least one must be > 0 (or cutmix_minmax given)")
    unknown = sorted(set(options) - set(_BOX_OPTIONS))
    if unknown:
        raise TypeError(f"sample_switch() got unexpected keyword argument(s) {unknown}; it takes mixup_alpha, "
                        f"cutmix_alpha, switch_prob, cutmix_minmax, mixup_enabled, generator and {list(_BOX_OPTIONS)}")
    opts = {**_BOX_OPTIONS, **options}
    return _sample(x, y, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, switch_prob=switch_prob,
                   generator=generator, cutmix_minmax=cutmix_minmax, mixup_enabled=mixup_enabled,
                   prob=opts["prob"], mode=opts["mode"], correct_lam=opts["correct_lam"], pairing=opts["pairing"],
                   box_rule=opts["box"])


class _BoxTransform(MixingTransform):
    def __init__(self, *, prob: float = 1.0, mode: str = "batch", correct_lam: bool = True, pairing: str | None = None,
                 box: str = "torchvision", **options: Any) -> None:
        self.prob = _checks.unit_interval("prob", prob, include_one=True)
        self.mode = _checks.choice("mode", mode, MODES)
        self.correct_lam = _checks.boolean("correct_lam", correct_lam)
        if pairing is None:
            pairing = "flip" if self.mode in ("pair", "half") else "random"
        self.pairing = _checks.choice("pairing", pairing, PAIRINGS)
        if self.mode in ("pair", "half") and self.pairing != "flip":
            raise ValueError(f"mode={self.mode!r} needs pairing='flip', got {self.pairing!r}")
        self.box = _checks.choice("box", box, BOX_RULES)
        super().__init__(**options)   # num_classes, smoothing, multi_label, labels_getter, mix_keys, generator


class CutMix(_BoxTransform):
    """Batch transform ``(x, y) -> (x with pasted boxes, soft targets)``, like torchvision's ``v2.CutMix``.

    Args:
        alpha: α > 0 of λ ~ Beta(α, α).
        num_classes: number of classes (``None`` if the labels come as ``(b, C)`` one-hot or soft targets).
        prob: probability that a batch / pair / example is mixed (timm's ``prob``, kornia's ``p``).
        mode: ``"batch"`` (default), ``"pair"``, ``"elem"`` or ``"half"`` (timm's modes).
        correct_lam: targets weighted by the area actually pasted (default, as torchvision).
        pairing: partners (:data:`mixbook.methods.mixup.PAIRINGS`); default ``"random"``, ``"flip"``
            for ``mode="pair"``/``"half"``; ``"roll"`` is torchvision's.
        box: ``"torchvision"`` (default) or ``"timm"`` box sides (:func:`~mixbook.methods.cutmix.box`).
        lam: a fixed λ, or a range ``(lo, hi)`` to draw it from uniformly, instead of Beta(α, α).
        smoothing, multi_label, labels_getter, mix_keys, generator: as :class:`mixbook.MixUp`.

    Takes ``(b, C, H, W)`` images or ``(b, T, C, H, W)`` videos (the box is in the last two
    dimensions) and every calling convention of :class:`~mixbook.core.mixing.MixingTransform`.
    """

    sampler = staticmethod(sample)
    hyper_parameters = ("alpha", "prob", "mode", "correct_lam", "pairing", "box", "lam")

    def __init__(self, *, alpha: float = 1.0, lam: float | tuple[float, float] | None = None, **options: Any) -> None:
        self.alpha = _checks.concentration("alpha", alpha)
        if lam is not None:
            fixed_lam(lam, 1, device=torch.device("cpu"), dtype=torch.float32)   # validates it
            lam = tuple(lam) if isinstance(lam, (tuple, list)) else float(lam)
        self.lam = lam
        super().__init__(**options)   # prob, mode, correct_lam, pairing, box and the options every transform shares


_TIMM_DEFAULTS = dict(mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5, mode="batch",
                      correct_lam=True, label_smoothing=0.1, num_classes=1000, multi_label=False)
"""timm's ``Mixup`` keywords and their defaults (timm 1.0)."""


class MixUpCutMix(_BoxTransform):
    """Mixup or CutMix, switched per batch / pair / example: timm's ``Mixup`` as a mixbook transform.

    Takes timm's whole keyword set with timm's meaning; :meth:`from_timm` also takes timm's
    defaults (mixbook's differ, below).

    Args:
        mixup_alpha: α of mixup's Beta(α, α); 0 turns mixup off (timm).
        cutmix_alpha: α of CutMix's Beta(α, α); 0 turns CutMix off (timm). At least one alpha
            must be > 0, or ``cutmix_minmax`` given.
        cutmix_minmax: ``None`` or timm's ``(min, max)`` box ratios: a rectangular box with
            sides drawn between them, CutMix on with ``cutmix_alpha`` set to 1 and the area-
            corrected λ, as timm does.
        switch_prob: probability in ``[0, 1]`` of CutMix rather than mixup for a draw when both are on.
        prob: probability that a batch / pair / example is mixed at all.
        mode: ``"batch"``, ``"pair"``, ``"elem"`` or ``"half"``.
        correct_lam: λ = the area actually pasted (default, as timm and torchvision).
        label_smoothing: timm's name for ``smoothing`` (give one of them).
        mixup_enabled: ``False`` leaves every batch unmixed (targets still soft); an attribute a
            training loop may flip, as timm's ``mixup_off_epoch`` does.
        num_classes, pairing, box, smoothing, multi_label, labels_getter, mix_keys, generator: as
            :class:`~mixbook.methods.cutmix.CutMix`.

    **Defaults, mixbook's and timm's.** mixbook: both alphas 1.0, no smoothing, ``num_classes``
    required for integer labels, ``pairing="random"`` (about one example a batch is then paired
    with itself, unmixed: use ``"derangement"`` for none), torchvision's box. timm: mixup only
    (``cutmix_alpha=0``), ``label_smoothing=0.1``, ``num_classes=1000``, ``pairing="flip"``,
    timm's box: ``MixUpCutMix.from_timm(...)``.

    Example::

        mix = MixUpCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=0.9,
                          num_classes=10, generator=torch.Generator().manual_seed(0))
        x_mix, y_soft = mix(x, y)      # y_soft is (b, 10) for every batch, mixed or not
    """

    sampler = staticmethod(sample_switch)
    hyper_parameters = ("mixup_alpha", "cutmix_alpha", "cutmix_minmax", "switch_prob", "prob", "mode", "correct_lam",
                        "pairing", "box", "mixup_enabled")

    def __init__(self, *, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0,
                 cutmix_minmax: tuple[float, float] | None = None, switch_prob: float = 0.5,
                 label_smoothing: float | None = None, mixup_enabled: bool = True, **options: Any) -> None:
        self.mixup_alpha = _alpha_or_off("mixup_alpha", mixup_alpha) or 0.0
        cutmix_alpha = _alpha_or_off("cutmix_alpha", cutmix_alpha) or 0.0
        self.cutmix_minmax = _minmax(cutmix_minmax)
        self.cutmix_alpha = 1.0 if self.cutmix_minmax is not None else cutmix_alpha
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("mixup_alpha and cutmix_alpha are both 0: at least one must be > 0 (or cutmix_minmax given)")
        self.switch_prob = _checks.unit_interval("switch_prob", switch_prob, include_one=True)
        self.mixup_enabled = _checks.boolean("mixup_enabled", mixup_enabled)
        if label_smoothing is not None:
            label_smoothing = _checks.unit_interval("label_smoothing", label_smoothing)
            if "smoothing" in options and options["smoothing"] != label_smoothing:
                raise ValueError(f"label_smoothing={label_smoothing} and smoothing={options['smoothing']} disagree: "
                                 "they name the same option (timm's name and mixbook's); give one")
            options["smoothing"] = label_smoothing
        super().__init__(**options)   # prob, mode, correct_lam, pairing, box and the options every transform shares

    @property
    def label_smoothing(self) -> float:
        """timm's name for :attr:`smoothing`."""
        return self.smoothing

    @classmethod
    def from_timm(cls, **timm_kwargs: Any) -> "MixUpCutMix":
        """The transform timm's ``Mixup(**timm_kwargs)`` is: timm's defaults for every keyword not
        given (mixup only, ``label_smoothing=0.1``, ``num_classes=1000``), its ``"flip"`` pairing
        and box. mixbook's own options (``generator``, ``labels_getter``, ...) may be added."""
        options = {**_TIMM_DEFAULTS, "pairing": "flip", "box": "timm", **timm_kwargs}
        return cls(**options)


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

