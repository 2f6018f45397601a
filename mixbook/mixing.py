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

from dataclasses import dataclass

import torch
from torch import nn

from . import _checks, _random, fused
from .losses import _one_hot


@dataclass(frozen=True, eq=False)
class Mixing:
    """A sampled convex-combination matrix ``W`` of shape ``(n, b)``.

    Build one with :meth:`pairwise` or :meth:`from_dense` (or from a sampler such as
    :func:`mixbook.mixup.sample`), then call :meth:`apply` on inputs or features and
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

    # ------------------------------------------------------------------ construction
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
        """``W @ x`` over the first dimension of a floating tensor; output dtype = x.dtype."""
        if self.weights is None:
            lam = self.lam.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
            return fused.pairwise(x, x if partners is None else partners, self.partner, lam)
        w = self.weights.to(x.dtype)
        return (w @ x.reshape(self.batch_size, -1)).reshape(self.num_outputs, *x.shape[1:])

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
    ) -> torch.Tensor:
        """Mix labels: ``W @ Y`` with ``Y`` the (smoothed) one-hot or soft targets.

        Args:
            y: ``(b,)`` integer labels in ``[0, num_classes)``, or ``(b, C)`` soft targets
                whose rows are non-negative and sum to 1.
            num_classes: ``C``; required for integer labels, checked against soft targets.
            smoothing: label smoothing ε in ``[0, 1)``: ``Y ← (1 − ε) Y + ε / C``.

        Returns:
            ``(n, C)`` soft targets, rows summing to 1 (float32 for integer labels, else
            ``y``'s dtype).
        """
        _checks.tensor("y", y)
        if self.partner_size is not None:
            raise ValueError("targets: this mixing's partners come from a separate (unlabelled) batch whose "
                             "labels it does not know; train on the kept labels y instead (see mixbook.reformulation)")
        smoothing = _checks.unit_interval("smoothing", smoothing)
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
            self._check_batch("y", y)
            soft = _one_hot(y, num_classes, smoothing, torch.float32)  # labels checked just above
        return self._mix(soft)

    def __repr__(self) -> str:
        form = "pairwise" if self.is_pairwise else "dense"
        extra = "" if self.partner_size is None else f", partners={self.partner_size}"
        return f"Mixing({form}, n={self.num_outputs}, b={self.batch_size}{extra}, device={self.device})"


def _worker_info() -> object:
    """``torch.utils.data.get_worker_info()``; read from its module global while ``torch.compile``
    traces (Dynamo refuses to trace ``get_worker_info`` itself, a graph break)."""
    if torch.compiler.is_compiling():
        from torch.utils.data._utils import worker

        return getattr(worker, "_worker_info", None)
    return torch.utils.data.get_worker_info()


class MixingTransform(nn.Module):
    """Base of the batch transforms ``(x, y) -> (mixed x, soft targets)`` (``MixUp``, ``ZetaMixup``).

    A subclass sets ``num_classes``, ``smoothing`` and ``generator`` and implements
    :meth:`sample`, which draws the :class:`Mixing` for a batch from :meth:`stream`;
    :meth:`forward` validates the batch, applies the mixing to ``x`` and mixes the (smoothed)
    one-hot labels with the same matrix.

    **DataLoader workers.** As a ``collate_fn`` with ``num_workers > 0``, every worker holds a
    copy of the transform, and so a copy of one generator state: they would all draw the same
    λ and partners, epoch after epoch. Inside a worker the transform therefore draws from a
    stream of its own, seeded from the generator's state and the worker's seed
    (``torch.utils.data.get_worker_info().seed``, which the DataLoader derives from its own
    ``generator``, or torch's global seed, at the start of every epoch's iterator, plus the
    worker id): different across workers and epochs, reproducible for the same DataLoader
    seeding (see :func:`mixbook._random.worker_generator`). With ``persistent_workers`` the
    worker keeps its stream across epochs. Without a generator, draws come from torch's global
    RNG, which the DataLoader already seeds per worker. The main process is unaffected.
    """

    num_classes: int
    smoothing: float
    generator: torch.Generator | None = None

    def stream(self) -> torch.Generator | None:
        """The generator this call draws from: ``generator``, or its per-worker stream in a DataLoader worker."""
        gen = self.generator
        if gen is None:
            return None
        info = _worker_info()
        if info is None:
            return gen
        key = (info.id, info.seed)
        cached = self.__dict__.get("_worker_stream")
        if cached is None or cached[0] != key:
            cached = (key, _random.worker_generator(gen, info.seed))
            self.__dict__["_worker_stream"] = cached
        return cached[1]

    def __getstate__(self) -> dict:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_worker_stream", None)  # a worker's stream is never shipped to another process
        return state

    def sample(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Mixing:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch and its labels; returns ``(n, *)`` inputs and ``(n, C)`` soft targets.

        Args:
            x: floating batch of ``(b, d)`` features, ``(b, C, H, W)`` images or
                ``(b, T, C, H, W)`` videos. An unbatched ``(C, H, W)`` image (any 3-D tensor),
                1-D tensors and torchvision ``BoundingBoxes``/``Mask``/``KeyPoints`` are
                refused with ``ValueError``.
            y: ``(b,)`` integer labels in ``[0, num_classes)``.
        """
        x = _checks.image_batch("x", x)
        _checks.labels("y", y, self.num_classes)
        _checks.same_batch("y", y, x.shape[0])
        m = self.sample(x, y)
        return m.apply(x), m.targets(y, self.num_classes, self.smoothing)
