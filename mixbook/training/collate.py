"""Mixing at collate time, in the DataLoader workers, on integer (uint8) images.

timm's ``FastCollateMixup`` mixes while it collates, so the main process receives batches
already mixed and still in uint8 (a quarter of the bytes of float32 through the worker
queues). :class:`MixCollate` does the same with any mixbook transform (``MixUp``, ``CutMix``,
``MixUpCutMix``, ``ZetaMixup``...): it collates the samples with ``default_collate``, draws the
transform's mixing for the batch, mixes the images in float32 (uint8 values are exact there) and
returns them

* as ``uint8``, rounded to the nearest integer (half to even, as timm's ``torch.round``) and
  clamped to ``[0, 255]`` (``dtype=torch.uint8``, default), or
* unrounded in a floating ``dtype`` (same 0–255 scale; normalise on the device),

with the ``(b, C)`` soft targets. In the workers each transform with a generator draws from a
per-worker stream (see :class:`mixbook.core.mixing.MixingTransform`), so the draws differ across
workers and epochs and are reproducible for the same DataLoader seeding.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import default_collate

from ..core import _checks
from ..core.mixing import MixingTransform

__all__ = ["MixCollate"]

_INTEGER_IMAGE_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class MixCollate:
    """A DataLoader ``collate_fn`` that mixes each batch with ``transform``.

    Args:
        transform: a :class:`~mixbook.core.mixing.MixingTransform` (its ``num_classes``,
            smoothing, generator and hyper-parameters are used).
        dtype: ``torch.uint8`` (default: rounded and clamped to ``[0, 255]``) or a floating
            dtype (unrounded).

    Calling it on a list of ``(image, label)`` samples (images ``(C, H, W)`` uint8 or floating
    tensors, labels ints or tensors) returns ``(images (b, C, H, W), targets (b, C))``.
    Floating images are mixed as the transform mixes them (``dtype`` is then ignored unless
    floating).

    Example::

        loader = DataLoader(dataset_of_uint8_images, batch_size=128, num_workers=4,
                            collate_fn=MixCollate(MixUpCutMix(num_classes=1000, generator=g)))
        for x, y_soft in loader:
            x = (x.cuda().float() / 255 - mean) / std
    """

    def __init__(self, transform: MixingTransform, *, dtype: torch.dtype = torch.uint8) -> None:
        if not isinstance(transform, MixingTransform):
            raise TypeError(f"transform must be a mixbook mixing transform (MixUp, CutMix, MixUpCutMix, ...), "
                            f"got {type(transform).__name__}")
        if not isinstance(dtype, torch.dtype) or not (dtype == torch.uint8 or dtype.is_floating_point):
            raise ValueError(f"dtype must be torch.uint8 or a floating dtype, got {dtype!r}")
        self.transform = transform
        self.dtype = dtype

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix an already collated batch: ``x`` ``(b, C, H, W)`` integer or floating, ``y`` labels."""
        _checks.tensor("x", x)
        if x.dtype in _INTEGER_IMAGE_DTYPES:
            x_mix, targets = self.transform(x.float(), y)
            if self.dtype == torch.uint8:
                return x_mix.round_().clamp_(0, 255).to(torch.uint8), targets
            return x_mix.to(self.dtype), targets
        x_mix, targets = self.transform(x, y)
        return (x_mix if self.dtype == torch.uint8 else x_mix.to(self.dtype)), targets

    def __call__(self, samples: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(samples) == 0:
            raise ValueError("samples must be a non-empty batch")
        x, y = default_collate(list(samples))[:2]
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        return self.mix(x, y)

    def __repr__(self) -> str:
        return f"MixCollate({self.transform!r}, dtype={self.dtype})"
