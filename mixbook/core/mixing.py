"""The one abstraction of mixbook: a mixing is a row-stochastic matrix.

Input mixup, the reformulated mixup, ζ-mixup, MultiMix and manifold mixup all produce ``n``
new examples, each a convex combination of the ``b`` examples of a batch::

    X_new = W @ X,    Y_new = W @ Y,    W ∈ R^(n×b),  W ≥ 0,  W 1 = 1.

The methods differ only in how ``W`` is sampled. :class:`Mixing` stores ``W`` in one of two
forms behind one interface:

* **pairwise** (``n == b``): output ``k`` is ``lam[k] * x[k] + (1 - lam[k]) * x[partner[k]]``.
  At most two non-zeros a row; applied with one gather and one in-place ``lerp``, never a
  dense matmul. The output is the only batch-sized allocation.
  The partners may also come from a *second* batch of any size ``m`` (for example unlabelled
  examples, as in the semi-supervised reformulation): then ``partner`` indexes that batch,
  ``apply(x, partners)`` takes it, and ``W`` is ``(b, b + m)`` over ``cat([x, partners])``.
* **dense**: the ``(n, b)`` matrix itself, applied with one matmul over the flattened batch.

Every method is differentiable with respect to ``x`` (manifold mixup mixes hidden features)
and never modifies its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils import _pytree

from . import _checks, _random, fused, samples
from .losses import _one_hot, soft_ce
from .step import Method, Step

__all__ = ["Mixing", "MixingTransform", "DenseMixingTransform", "mix_pairwise", "mix_dense", "draw_applied", "gate"]


# ---------------------------------------------------------------------- the arithmetic of W @ x
# One implementation of each form. Mixing.apply checks its arguments and calls these (the pairwise
# form through mixbook.core.fused, which runs the same lerp in place, or compiled); a training step
# (mixbook.core.step.Step) calls them unchecked, as pure functions, so that they run under vmap.
def mix_pairwise(h: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam·h + (1 − lam)·h[partner]`` over the first dimension, out of place.

    Args:
        h: ``(b, *)`` floating tensor.
        partner: ``(b,)`` int64 partner indices.
        lam: ``(b,)`` weights of each row's own example (any floating dtype; applied in ``h``'s).

    Returns:
        ``(b, *)`` tensor of ``h``'s dtype.
    """
    lam = lam if lam.dtype == h.dtype else lam.to(h.dtype)   # (Tensor.to costs µs even when a no-op)
    return fused.kernel(h, h, partner, lam.view(-1, *([1] * (h.ndim - 1))))


def mix_dense(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``W @ h`` over the first dimension: ``(n, b)`` weights, ``(b, *)`` ``h`` -> ``(n, *)`` in ``h``'s dtype.
    An output larger than half the device's memory (``mixbook.core._checks.MEMORY_FRACTION``) is refused."""
    _checks.allocation("the dense mixing's output (n, *features)", (weights.shape[0], *h.shape[1:]), h.dtype, h.device)
    w = weights if weights.dtype == h.dtype else weights.to(h.dtype)
    return (w @ h.reshape(weights.shape[1], -1)).reshape(weights.shape[0], *h.shape[1:])


def draw_applied(prob: float, k: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor | None:
    """``(k,)`` bool: which of ``k`` draws (the batch, or each output) are mixed, each with probability
    ``prob`` (timm's ``prob``, kornia's ``p``); ``None`` when ``prob == 1`` (nothing is drawn, so the
    draws that follow are those of a sampler without ``prob``)."""
    if prob >= 1:
        return None
    return _random.rand((k,), device=device, generator=generator) < prob


def gate(m: "Mixing", applied: torch.Tensor | None) -> "Mixing":
    """``m`` where ``applied`` holds and the identity elsewhere: an unmixed output is its own example
    (λ = 1 in the pairwise form, the row of the identity in the dense form), its targets still soft.

    Args:
        m: a pairwise mixing, or a dense one with ``n == b``.
        applied: ``(1,)`` (the whole batch) or ``(n,)`` bool, or ``None`` (``m`` unchanged).
    """
    if applied is None:
        return m
    if m.weights is None:
        return Mixing._drawn(m.partner, torch.where(applied, m.lam, torch.ones_like(m.lam)))
    w = m.weights
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"prob < 1 leaves some outputs unmixed, which needs n == b outputs; this mixing has "
                         f"n={w.shape[0]}, b={w.shape[1]}")
    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    return Mixing(batch_size=m.batch_size, weights=torch.where(applied[:, None], w, eye))


@dataclass(frozen=True, eq=False)
class Mixing:
    """A sampled convex-combination matrix ``W`` of shape ``(n, b)``.

    Build one with :meth:`pairwise` or :meth:`from_dense` (or from a sampler such as
    :func:`mixbook.methods.mixup.sample`), then call :meth:`apply` on inputs or features and
    :meth:`targets` on labels.

    Attributes:
        batch_size: ``b``, the number of examples mixed.
        partner: ``(b,)`` int64 partner index of each output (pairwise form), else ``None``.
        lam: ``(b,)`` weight of each output's own example (pairwise form), else ``None``.
        weights: ``(n, b)`` matrix (dense form), else ``None``.
        partner_size: ``m`` when the partners come from a separate batch of ``m`` examples
            (pairwise form only), else ``None`` (partners from the batch itself).
    """

    batch_size: int
    partner: torch.Tensor | None = None
    lam: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    partner_size: int | None = None

    def __post_init__(self) -> None:
        # Structural invariants, checked on every construction (free: no tensor values are read, so
        # no host synchronisation; the value checks live in :meth:`pairwise` and :meth:`from_dense`).
        b = self.batch_size
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {b!r}")
        dense, pair = self.weights is not None, self.partner is not None or self.lam is not None
        if dense == pair:
            raise ValueError("a Mixing takes either partner and lam (pairwise form) or weights (dense form), "
                             f"got {'both' if dense else 'neither'}; build one with Mixing.pairwise or Mixing.from_dense")
        if dense:
            w = self.weights
            if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.ndim != 2 or w.shape[1] != b:
                raise ValueError(f"weights must be a floating (n, {b}) tensor, got "
                                 f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}")
            if self.partner_size is not None:
                raise ValueError("partner_size applies to the pairwise form only")
            return
        for name, t in (("partner", self.partner), ("lam", self.lam)):
            if not isinstance(t, torch.Tensor) or t.shape != (b,):
                raise ValueError(f"{name} must be a ({b},) tensor, got "
                                 f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
        if self.partner.is_floating_point() or self.partner.dtype == torch.bool or self.partner.is_complex():
            raise TypeError(f"partner must be an integer tensor, got {self.partner.dtype}")
        if not self.lam.is_floating_point():
            raise TypeError(f"lam must be a floating-point tensor, got {self.lam.dtype}")
        m = self.partner_size
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"partner_size must be None or an int >= 1, got {m!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def _drawn(cls, partner: torch.Tensor, lam: torch.Tensor) -> "Mixing":
        """A pairwise mixing a sampler has just drawn: ``(b,)`` int64 ``partner`` in ``[0, b)`` and
        ``(b,)`` floating ``lam`` in ``[0, 1]`` on one device, by construction. Skips the
        structural checks of ``__post_init__`` (the samplers' hot path; tests compare the two)."""
        m = object.__new__(cls)
        set_ = object.__setattr__
        set_(m, "batch_size", partner.shape[0])
        set_(m, "partner", partner)
        set_(m, "lam", lam)
        set_(m, "weights", None)
        set_(m, "partner_size", None)
        return m

    @classmethod
    def pairwise(cls, partner: torch.Tensor, lam: torch.Tensor, partner_size: int | None = None) -> "Mixing":
        """Pairwise mixing ``out[k] = lam[k] x[k] + (1 - lam[k]) p[partner[k]]``.

        Args:
            partner: ``(b,)`` integer tensor with values in ``[0, b)``, or in ``[0, m)`` with
                ``partner_size=m``.
            lam: ``(b,)`` floating tensor with values in ``[0, 1]``, on the same device.
            partner_size: ``m`` if the partners ``p`` are a separate batch of ``m`` examples;
                ``None`` (default) if they are the batch itself (``p = x``).
        """
        partner = _checks.labels("partner", partner)
        lam = _checks.tensor("lam", lam)
        b = partner.shape[0]
        if b == 0:
            raise ValueError("partner must index a non-empty batch, got an empty tensor")
        if not lam.is_floating_point():
            raise TypeError(f"lam must be a floating-point tensor, got {lam.dtype}")
        if lam.shape != (b,):
            raise ValueError(f"lam must have shape ({b},) like partner, got {tuple(lam.shape)}")
        _checks.same_device("lam", lam, partner.device)
        bound = b if partner_size is None else _checks.positive_int("partner_size", partner_size)
        if _checks.check_values(partner):
            lo, hi = int(partner.min()), int(partner.max())
            if lo < 0 or hi >= bound:
                raise ValueError(f"partner must lie in [0, {bound}), got values in [{lo}, {hi}]")
            if not bool(((lam >= 0) & (lam <= 1)).all()):
                raise ValueError("lam must lie in [0, 1]")
        return cls(batch_size=b, partner=partner.long(), lam=lam, partner_size=partner_size)

    @classmethod
    def from_dense(cls, weights: torch.Tensor, atol: float = 1e-4) -> "Mixing":
        """Dense mixing from an ``(n, b)`` row-stochastic matrix (rows ≥ 0, summing to 1)."""
        w = _checks.tensor("weights", weights)
        if not w.is_floating_point():
            raise TypeError(f"weights must be a floating-point tensor, got {w.dtype}")
        if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
            raise ValueError(f"weights must have shape (n, b) with n, b >= 1, got {tuple(w.shape)}")
        _checks.soft_targets("weights", w, atol=atol)
        return cls(batch_size=w.shape[1], weights=w)

    # ------------------------------------------------------------------ properties
    @property
    def is_pairwise(self) -> bool:
        return self.weights is None

    @property
    def num_outputs(self) -> int:
        """``n``, the number of mixed examples produced."""
        return self.batch_size if self.weights is None else self.weights.shape[0]

    @property
    def device(self) -> torch.device:
        return self.partner.device if self.weights is None else self.weights.device

    def to(self, device: torch.device | str) -> "Mixing":
        """The same mixing on another device."""
        if self.weights is None:
            return Mixing(self.batch_size, self.partner.to(device), self.lam.to(device),
                          partner_size=self.partner_size)
        return Mixing(self.batch_size, weights=self.weights.to(device))

    def dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The matrix ``W`` (for analysis and plots; not used to apply pairwise mixings).

        ``(n, b)``; ``(b, b + m)`` over ``cat([x, partners])`` when the partners are a separate
        batch of ``m`` examples.
        """
        if self.weights is not None:
            return self.weights if dtype is None else self.weights.to(dtype)
        dtype = dtype or self.lam.dtype
        b = self.batch_size
        offset = 0 if self.partner_size is None else b
        lam = self.lam.to(dtype)
        rows = torch.arange(b, device=self.device)
        w = torch.zeros(b, b + (self.partner_size or 0), dtype=dtype, device=self.device)
        w.index_put_((rows, rows), lam, accumulate=True)
        w.index_put_((rows, self.partner + offset), 1 - lam, accumulate=True)
        return w

    # ------------------------------------------------------------------ application
    def _check_batch(self, name: str, x: torch.Tensor) -> None:
        _checks.same_batch(name, x, self.batch_size)
        _checks.same_device(name, x, self.device)

    def _mix(self, x: torch.Tensor, partners: torch.Tensor | None = None) -> torch.Tensor:
        """``W @ x`` over the first dimension of a floating tensor; output dtype = x.dtype.

        A channels_last (4-D) or channels_last_3d (5-D) ``x`` gives an output in the same memory
        format: the mix runs on the contiguous NHWC view and the result is permuted back.
        """
        if x.ndim >= 4:
            order = _channels_last_order(x)
            if order is not None:
                perm, inverse = order
                out = self._mix_dense_order(x.permute(perm), None if partners is None else partners.permute(perm))
                return out.permute(inverse)
        return self._mix_dense_order(x, partners)

    def _mix_dense_order(self, x: torch.Tensor, partners: torch.Tensor | None = None) -> torch.Tensor:
        if self.weights is None:
            lam = self.lam
            if lam.dtype != x.dtype:
                lam = lam.to(x.dtype)   # (Tensor.to costs µs even when a no-op)
            nd = x.ndim
            lam = lam.view(_LAM_SHAPES[nd] if nd < len(_LAM_SHAPES) else (-1, *([1] * (nd - 1))))
            return fused.pairwise(x, x if partners is None else partners, self.partner, lam)
        return mix_dense(x, self.weights)

    def apply(self, x: torch.Tensor, partners: torch.Tensor | None = None) -> torch.Tensor:
        """Mix a batch of inputs or features.

        Args:
            x: ``(b, *)`` floating tensor (fp16, bf16, fp32 or fp64) on the mixing's device.
            partners: ``(m, *)`` tensor of ``x``'s dtype and trailing shape, required exactly
                when the mixing was sampled with a separate partner batch of size ``m``.

        Returns:
            ``(n, *)`` tensor of ``x``'s dtype. In the pairwise form λ is applied in ``x``'s
            dtype (rounded to it for fp16/bf16: relative error ≤ 2^-8 for bf16) by a lerp
            whose internal arithmetic is at least float32.
        """
        _checks.tensor("x", x)
        _checks.not_boxes_or_masks("x", x)
        x = _checks.batch("x", x)
        self._check_batch("x", x)
        _checks.finite_inputs("x", x, dense=self.weights is not None)
        if self.partner_size is None:
            if partners is not None:
                raise ValueError("partners was given but this mixing pairs examples within the batch")
            return self._mix(x)
        if partners is None:
            raise ValueError(f"partners is required: this mixing draws partners from a separate batch of {self.partner_size}")
        partners = _checks.batch("partners", partners)
        _checks.same_batch("partners", partners, self.partner_size)
        _checks.same_device("partners", partners, self.device)
        if partners.dtype != x.dtype or partners.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"partners must match x in dtype and trailing shape: x is {x.dtype} {tuple(x.shape[1:])}, "
                f"partners {partners.dtype} {tuple(partners.shape[1:])}"
            )
        return self._mix(x, partners)

    def targets(
        self,
        y: torch.Tensor,
        num_classes: int | None = None,
        smoothing: float = 0.0,
        *,
        multi_label: bool = False,
    ) -> torch.Tensor:
        """Mix labels: ``W @ Y`` with ``Y`` the (smoothed) one-hot or soft targets.

        Args:
            y: ``(b,)`` integer labels in ``[0, num_classes)`` (any integer dtype: int64,
                int32, uint8...), or ``(b, C)`` soft targets whose rows are non-negative and sum
                to 1; with ``multi_label=True``, ``(b, C)`` multi-hot targets with values in
                ``[0, 1]`` (rows need not sum to 1).
            num_classes: ``C``; required for integer labels, checked against soft targets.
            smoothing: label smoothing ε in ``[0, 1)``: ``Y ← (1 − ε) Y + ε / C``. For
                multi-hot targets each label is an independent binary target and is smoothed
                towards 1/2, as timm's ``mixup_target(..., multi_label=True)`` does:
                ``y (1 − ε) + ε / 2`` (on value ``1 − ε/2``, off value ``ε/2``).
            multi_label: ``y`` holds multi-hot (multi-label) targets.

        Returns:
            ``(n, C)`` soft targets, rows summing to 1 (float32 for integer labels, else
            ``y``'s dtype); for multi-hot targets the mixed per-class probabilities.
        """
        _checks.tensor("y", y)
        if self.partner_size is not None:
            raise ValueError("targets: this mixing's partners come from a separate (unlabelled) batch whose "
                             "labels it does not know; train on the kept labels y instead (see mixbook.methods.reformulation)")
        smoothing = _checks.unit_interval("smoothing", smoothing)
        if _checks.boolean("multi_label", multi_label) and y.ndim == 2:
            if not y.is_floating_point():
                y = y.float()
            if num_classes is not None and y.shape[1] != _checks.num_classes(num_classes):
                raise ValueError(f"y has {y.shape[1]} columns but num_classes={num_classes}")
            if y.numel() and _checks.check_values(y) and not bool(((y >= 0) & (y <= 1)).all()):
                raise ValueError("y as multi-hot (multi_label) targets must lie in [0, 1]")
            self._check_batch("y", y)
            soft = y if smoothing == 0 else y * (1 - smoothing) + smoothing / 2
            return self._mix(soft)
        if y.is_floating_point():
            _checks.soft_targets("y", y)
            if num_classes is not None and y.shape[1] != _checks.num_classes(num_classes):
                raise ValueError(f"y has {y.shape[1]} columns but num_classes={num_classes}")
            self._check_batch("y", y)
            soft = y if smoothing == 0 else y * (1 - smoothing) + smoothing / y.shape[1]
        else:
            if num_classes is None:
                raise TypeError("num_classes is required when y holds integer labels")
            _checks.num_classes(num_classes)
            _checks.labels("y", y, num_classes)
            return self._label_targets(y, num_classes, smoothing)
        return self._mix(soft)

    def _label_targets(self, y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
        """:meth:`targets` for ``(b,)`` integer labels whose values are already checked (by the
        caller, e.g. a transform that validated its input): one-hot, smooth and mix."""
        self._check_batch("y", y)
        return self._mix(_one_hot(y, num_classes, smoothing, torch.float32))

    def __repr__(self) -> str:
        form = "pairwise" if self.is_pairwise else "dense"
        extra = "" if self.partner_size is None else f", partners={self.partner_size}"
        return f"Mixing({form}, n={self.num_outputs}, b={self.batch_size}{extra}, device={self.device})"


_LAM_SHAPES = tuple((-1, *([1] * (nd - 1))) for nd in range(1, 7))
_LAM_SHAPES = ((-1,), *_LAM_SHAPES)   # indexed by x.ndim: the shape λ is viewed as to broadcast over x


def _channels_last_order(x: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``(perm, inverse)`` for a channels_last 4-D or channels_last_3d 5-D tensor that is not
    also plain contiguous (``x.permute(perm)`` is then contiguous), else ``None``."""
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1), (0, 3, 1, 2)
    if x.ndim == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return (0, 2, 3, 4, 1), (0, 4, 1, 2, 3)
    return None


def _tv_wrap(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Re-wrap ``out`` as torchvision's ``Image``/``Video`` when ``like`` is one (as ``v2.MixUp`` does)."""
    if type(like) is torch.Tensor:   # the hot path: a plain tensor is never an Image or a Video
        return out
    import sys

    tv = sys.modules.get("torchvision.tv_tensors")
    if tv is not None and isinstance(like, (tv.Image, tv.Video)):
        return tv.wrap(out, like=like)
    return out


def _worker_info() -> object:
    """``torch.utils.data.get_worker_info()``; read from its module global while ``torch.compile``
    traces (Dynamo refuses to trace ``get_worker_info`` itself, a graph break)."""
    if torch.compiler.is_compiling():
        from torch.utils.data._utils import worker

        return getattr(worker, "_worker_info", None)
    return torch.utils.data.get_worker_info()


@dataclass(frozen=True)
class _GeneratorState:
    """A ``torch.Generator`` as it is pickled inside a transform: its state as bytes and its device."""

    state: bytes
    device: str

    def restore(self) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.set_state(torch.frombuffer(bytearray(self.state), dtype=torch.uint8))
        return gen


class MixingTransform(nn.Module, Method):
    """Base of the batch transforms ``(x, y) -> (mixed x, soft targets)`` (``MixUp``, ``ZetaMixup``).

    A subclass sets ``num_classes``, ``smoothing`` and ``generator`` and implements
    :meth:`sample`, which draws the :class:`Mixing` for a batch from :meth:`stream`;
    :meth:`forward` validates the batch, applies the mixing to ``x`` and mixes the (smoothed)
    one-hot labels with the same matrix.

    Labels may be ``(b,)`` integers of any integer dtype, ``(b, C)`` soft or one-hot targets, or
    (``multi_label=True``) ``(b, C)`` multi-hot targets; samples may be packed as torchvision
    packs them (see :meth:`forward`). ``state_dict()`` holds the generator's state
    (:meth:`get_extra_state`), so a checkpoint restores the next draws exactly.

    **DataLoader workers.** As a ``collate_fn`` with ``num_workers > 0``, every worker holds a
    copy of the transform, and so a copy of one generator state: they would all draw the same
    λ and partners, epoch after epoch. Inside a worker the transform therefore draws from a
    stream of its own, seeded from the generator's state and the worker's seed
    (``torch.utils.data.get_worker_info().seed``, which the DataLoader derives from its own
    ``generator``, or torch's global seed, at the start of every epoch's iterator, plus the
    worker id): different across workers and epochs, reproducible for the same DataLoader
    seeding (see ``mixbook.core._random.worker_generator``). With ``persistent_workers`` the
    worker keeps its stream across epochs; :meth:`mixbook.MixCollate.set_epoch` makes every
    epoch's draws a function of (generator state, epoch, worker id) instead, so that a resumed run
    reproduces them. Without a generator, draws come from torch's global RNG, which the
    DataLoader already seeds per worker. The main process is unaffected. The generator is pickled
    as its state in bytes, so the transform reaches ``spawn`` and ``forkserver`` workers.

    **Ranks.** Inside an initialised ``torch.distributed`` process group every rank holds the
    same seeded generator, so the transform draws from a stream derived from the generator's
    state (when first used) and the rank (``mixbook.core._random.rank_generator``): distinct λ
    and partners per rank, reproducible for a seed and rank; in DataLoader workers of a rank,
    the worker stream is derived from the rank's. ``state_dict()`` still stores the
    generator's own state: the rank stream restarts from it after ``load_state_dict``.
    Mixing is per rank (over the local batch), as in timm and torchvision.
    """

    num_classes: int | None
    smoothing: float
    generator: torch.Generator | None = None
    multi_label: bool = False
    labels_getter: object = "default"
    mix_keys: tuple = ()

    sampler: ClassVar[Callable[..., Mixing] | None] = None
    """The module's sampler, ``sampler(x, y, *, generator, **hp) -> Mixing`` (set with ``staticmethod``)."""
    hyper_parameters: ClassVar[tuple[str, ...]] = ()
    """The sampler keywords the transform holds as attributes, in the order ``repr`` shows them."""

    def __init__(self, *, num_classes: int | None = None, smoothing: float = 0.0, multi_label: bool = False,
                 labels_getter: object = "default", mix_keys: tuple = (),
                 generator: torch.Generator | None = None) -> None:
        """The options every transform shares (a subclass's ``__init__`` validates and stores its own
        hyper-parameters, then passes these on): ``num_classes`` (required for ``(b,)`` integer
        labels; ``None`` when the labels come as ``(b, C)`` one-hot or soft targets, as in
        torchvision); ``smoothing`` ε in ``[0, 1)`` applied before mixing; ``multi_label`` for
        ``(b, C)`` multi-hot labels; ``labels_getter`` to find the labels in a packed sample;
        ``mix_keys``, the entries of a packed sample to mix with the images besides them (see
        :mod:`mixbook.core.samples`); ``generator``, an optional ``torch.Generator`` on the
        batches' device."""
        super().__init__()
        self._set_common(num_classes=num_classes, smoothing=smoothing, multi_label=multi_label,
                         labels_getter=labels_getter, mix_keys=mix_keys, generator=generator)

    def _set_common(self, *, num_classes: object, smoothing: object, multi_label: object, labels_getter: object,
                    generator: object, mix_keys: object = ()) -> None:
        """Validate and store the options every transform shares."""
        self.num_classes = None if num_classes is None else _checks.num_classes(num_classes)
        self.smoothing = _checks.unit_interval("smoothing", smoothing)
        self.multi_label = _checks.boolean("multi_label", multi_label)
        self.labels_getter = _checks.labels_getter(labels_getter)
        if isinstance(mix_keys, (str, int)) or not isinstance(mix_keys, (tuple, list)) or not all(
                isinstance(k, (str, int)) and not isinstance(k, bool) for k in mix_keys):
            raise TypeError(f"mix_keys must be a tuple of dict keys (str) or tuple positions (int), got {mix_keys!r}")
        self.mix_keys = tuple(mix_keys)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator

    def stream(self) -> torch.Generator | None:
        """The generator this call draws from: ``generator``, or its per-worker stream in a DataLoader worker."""
        gen = self.generator
        if gen is None:
            return None
        rank = _random.process_rank()
        if rank is not None:             # one stream per rank of a process group (then per worker)
            cached = self.__dict__.get("_rank_stream")
            if cached is None or cached[0] != (rank, gen):
                cached = ((rank, gen), _random.rank_generator(gen, rank))
                self.__dict__["_rank_stream"] = cached
            gen = cached[1]
        info = _worker_info()
        if info is None:
            return gen
        key = (info.id, info.seed, rank)
        cached = self.__dict__.get("_worker_stream")
        if cached is None or cached[0] != key:
            cached = (key, _random.worker_generator(gen, info.seed))
            self.__dict__["_worker_stream"] = cached
        return cached[1]

    def __getstate__(self) -> dict:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_worker_stream", None)  # a worker's stream is never shipped to another process
        state.pop("_rank_stream", None)    # nor a rank's (each process derives its own)
        gen = state.get("generator")
        if isinstance(gen, torch.Generator):
            # The generator travels as its state in bytes: a torch.Generator pickles its state as a
            # tensor, which a spawn/forkserver DataLoader worker fails to rebuild from shared memory
            # (the worker dies); bytes pickle everywhere.
            state["generator"] = _GeneratorState(bytes(gen.get_state().numpy()), str(gen.device))
        return state

    def __setstate__(self, state: dict) -> None:
        gen = state.get("generator")
        if isinstance(gen, _GeneratorState):
            state = dict(state)
            state["generator"] = gen.restore()
        super().__setstate__(state)

    def sample(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> Mixing:
        """The :class:`Mixing` this transform would apply to ``(x, y)``: :attr:`sampler` with the
        transform's :attr:`hyper_parameters`, drawing from ``generator`` when one is given (for
        this call only; the transform's own stream does not advance), else from :meth:`stream`."""
        sampler = type(self).sampler
        if sampler is None:  # pragma: no cover - every transform of the package sets it
            raise NotImplementedError(f"{type(self).__name__} sets no sampler")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        return sampler(x, y, generator=self.stream() if generator is None else generator,
                       **{name: getattr(self, name) for name in self.hyper_parameters})

    def extra_repr(self) -> str:
        shown = [f"{name}={getattr(self, name)!r}" for name in self.hyper_parameters]
        return ", ".join([*shown, f"num_classes={self.num_classes}", f"smoothing={self.smoothing}"])

    # ------------------------------------------------------------------ as a training method
    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                generator: torch.Generator) -> Step:
        """The transform as a training step (:class:`mixbook.core.step.Step`): the mixed batch and its
        (smoothed) soft targets, scored by soft-target cross-entropy; drawn from ``generator``
        (``fit`` passes its mixing stream), so ``fit(model, split, MixUp(...))`` trains with it."""
        if self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(f"the transform was built for num_classes={self.num_classes}, the data has {num_classes}")
        x_mix, targets, _ = self._mix_batch(x, y, generator=generator)
        return Step(x_mix, soft_ce, (targets,))

    # ------------------------------------------------------------------ checkpointing
    def get_extra_state(self) -> dict:
        """What ``state_dict()`` stores besides parameters: the generator's state (``None``
        without a generator), so that loading a checkpoint reproduces the next draws exactly."""
        gen = self.generator
        if gen is None:
            return {"generator": None}
        return {"generator": gen.get_state(), "device": str(gen.device)}

    def set_extra_state(self, state: object) -> None:
        """Restore :meth:`get_extra_state` (called by ``load_state_dict``).

        A transform built without a generator gets one on the checkpoint's device; a checkpoint
        without a generator state leaves this transform's generator as it is.
        """
        if not isinstance(state, dict) or "generator" not in state:
            raise ValueError("state must be the dict a mixbook transform's state_dict() stores under '_extra_state'")
        if state["generator"] is None:
            return
        if self.generator is None:
            self.generator = torch.Generator(device=state.get("device", "cpu"))
        self.generator.set_state(state["generator"])
        self.__dict__.pop("_worker_stream", None)
        self.__dict__.pop("_rank_stream", None)

    # ------------------------------------------------------------------ calling conventions
    def _labels(self, y: object, batch_size: int) -> torch.Tensor:
        """Check ``y``: ``(b,)`` integer labels, ``(b, C)`` soft / one-hot targets, or with
        ``multi_label`` ``(b, C)`` multi-hot targets. Integer ``(b, C)`` targets become float32.
        The shape errors are ``ValueError`` with torchvision's wording."""
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"The labels must be a tensor, but got {type(y).__name__} instead")
        if y.ndim == 1:
            if self.num_classes is None:
                raise ValueError("num_classes must be passed if the labels are index-based (1D): "
                                 "build the transform with num_classes=C, or pass (b, C) one-hot or soft targets")
            _checks.labels("y", y, self.num_classes)
        elif y.ndim == 2:
            if y.is_complex():
                raise TypeError(f"y as (b, C) targets must be real, got {y.dtype}")
            if self.num_classes is not None and y.shape[1] != self.num_classes:
                raise ValueError(f"y has {y.shape[1]} columns (classes) but num_classes={self.num_classes}: when passing "
                                 "2D labels, the number of elements in the last dimension must match num_classes "
                                 "(or leave num_classes=None)")
            if not y.is_floating_point():
                y = y.float()
        else:
            raise ValueError(f"y must be (b,) integer labels or (b, C) soft, one-hot or multi-hot targets "
                             f"(labels should be index based with shape (batch_size,) or probability based with "
                             f"shape (batch_size, num_classes)), got shape {tuple(y.shape)}")
        _checks.same_batch("y", y, batch_size)
        return y

    def _sampler_labels(self, y: torch.Tensor) -> torch.Tensor:
        """The labels handed to :meth:`sample`: integer labels, or the dominant class of
        (b, C) targets when a class-aware pairing needs labels."""
        if y.ndim == 2 and getattr(self, "pairing", None) in ("same_class", "cross_class"):
            return y.argmax(1)
        return y

    def _mix_batch(self, x: object, y: object, extra: tuple[torch.Tensor, ...] = (),
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        x = _checks.image_batch("x", x)
        _checks.finite_inputs("x", x, dense=isinstance(self, DenseMixingTransform))
        y = self._labels(y, x.shape[0])
        m = self.sample(x, self._sampler_labels(y), generator=generator)
        outs = []
        for i, other in enumerate(extra):
            name = f"input {i}"
            _checks.image_batch(name, other)
            _checks.same_batch(name, other, x.shape[0])
            outs.append(_tv_wrap(m.apply(other), other))
        if y.ndim == 1:     # integer labels, checked by _labels: not checked again
            targets = m._label_targets(y, self.num_classes, self.smoothing)
        else:
            targets = m.targets(y, self.num_classes, self.smoothing, multi_label=self.multi_label)
        # x was checked by image_batch and the mixing drawn for it (its batch size and device):
        # Mixing.apply's checks would repeat those
        mixed = m._mix(x) if type(m) is Mixing and m.partner_size is None and m.batch_size == x.shape[0] else m.apply(x)
        return _tv_wrap(mixed, x), targets, tuple(outs)

    def forward(self, *inputs: object, generator: torch.Generator | None = None) -> object:
        """Mix a batch and its labels; returns ``(n, *)`` inputs and ``(n, C)`` soft targets.

        ``generator``: draw this call from it instead of the transform's own stream (which then
        does not advance), e.g. a training loop's per-step generator.

        Calling conventions (as torchvision's ``v2.MixUp``/``v2.CutMix``):

        * ``t(x, y)`` → ``(x_mixed, targets)``;
        * ``t((x, y))`` → the same, packed as the input was (tuple or list);
        * ``t({"image": x, "labels": y, ...})`` or ``t((x, {"labels": y, ...}))`` → the sample
          with the labels replaced by the targets and the images mixed; what is mixed, what
          passes through and what is refused (bounding boxes, masks, key points, and tensors
          under keys named like them) is :mod:`mixbook.core.samples`'s rule, torchvision's:
          every ``tv_tensors.Image``/``Video``, else the first floating plain tensor, plus the
          entries named in ``mix_keys``. The labels are found by ``labels_getter``:
          ``"default"`` (torchvision's heuristic: the second item of a tuple, else the key
          ``"labels"``, else a key containing ``"label"``) or a callable ``sample -> labels``.

        torchvision ``tv_tensors.Image``/``Video`` inputs come back as the same type. An odd
        batch size is accepted (timm's ``Mixup`` asserts an even one, except in the modes that
        pair ``k`` with ``b − 1 − k``).

        Args:
            x: floating batch of ``(b, d)`` features, ``(b, C, H, W)`` images or
                ``(b, T, C, H, W)`` videos. An unbatched ``(C, H, W)`` image (any 3-D tensor),
                1-D tensors and torchvision ``BoundingBoxes``/``Mask``/``KeyPoints`` are
                refused with ``ValueError``. channels_last stays channels_last.
            y: ``(b,)`` integer labels in ``[0, num_classes)`` (any integer dtype), or
                ``(b, C)`` soft or one-hot targets (so a transform applied twice, e.g. in a
                ``v2.Compose``/``v2.RandomChoice``, works on the soft targets of the first), or
                with ``multi_label=True`` ``(b, C)`` multi-hot targets. The targets are always
                soft ``(n, C)``, even for a batch left unmixed.
        """
        getter = getattr(self, "labels_getter", "default")
        if len(inputs) == 2 and getter == "default" and not isinstance(inputs[0], (tuple, list, dict)) \
                and not isinstance(inputs[1], (tuple, list, dict)):
            x_mix, targets, _ = self._mix_batch(inputs[0], inputs[1], generator=generator)
            return x_mix, targets
        sample = inputs if len(inputs) > 1 else (inputs[0] if inputs else None)
        if not isinstance(sample, (tuple, list, dict)):
            raise ValueError("call a mixing transform as t(x, y), t((x, y)), t({'image': x, 'labels': y}) or "
                             f"t((x, {{'labels': y}})), got {len(inputs)} argument(s) of type "
                             f"{[type(i).__name__ for i in inputs]}")
        labels = samples.find_labels(sample, getter)
        leaves, spec, to_mix = samples.plan(sample, labels, getattr(self, "mix_keys", ()))
        if not any(v is labels for v in leaves):
            raise ValueError("labels_getter returned a tensor that is not an entry of the sample: "
                             "the targets would have no place to go")
        first, rest = to_mix[0], to_mix[1:]
        x_mix, targets, outs = self._mix_batch(leaves[first], labels, tuple(leaves[i] for i in rest),
                                               generator=generator)
        replaced = {first: x_mix, **dict(zip(rest, outs))}
        out = [targets if v is labels else replaced.get(i, v) for i, v in enumerate(leaves)]
        return _pytree.tree_unflatten(out, spec)


class DenseMixingTransform(MixingTransform):
    """A transform whose sampler draws a dense ``(n, b)`` mixing of the whole batch (ζ-mixup,
    MultiMix): it owns ``n``, the number of outputs per batch (``None``: the batch size ``b``; it
    may exceed ``b``), and ``prob``, the probability that a batch is mixed (an unmixed batch is
    the identity, so ``prob < 1`` needs ``n == b``). A subclass declares its sampler and hyper-parameters (with ``"n"`` among
    them) and validates its own weight parameter, as every :class:`MixingTransform` does."""

    n: int | None = None
    prob: float = 1.0

    def __init__(self, *, n: int | None = None, prob: float = 1.0, **options: Any) -> None:
        self.n = _checks.optional_positive_int("n", n)
        self.prob = _checks.unit_interval("prob", prob, include_one=True)
        super().__init__(**options)
