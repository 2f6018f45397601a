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

with the ``(b, C)`` soft targets, in the structure of the samples (a tuple ``(images, labels,
...)`` or a dict; what is mixed, passed through or refused in a sample is the transform's rule,
:mod:`mixbook.core.samples`).

**Workers and resuming.** In the workers each transform with a generator draws from a per-worker
stream (see :class:`mixbook.core.mixing.MixingTransform`), derived from the DataLoader's own
seeding, which changes every epoch unless the workers are persistent. With ``persistent_workers=True``,
or to make a resumed run draw exactly what the interrupted one would have, call
:meth:`mixbook.MixCollate.set_epoch` before each epoch (as with ``DistributedSampler``): the draws of an
epoch then come from a stream that is a function of the transform's generator state, the epoch
and the worker id only, in the workers or (``num_workers=0``) in the main process. The epoch
reaches persistent workers through shared memory, with the ``fork``, ``spawn`` and ``forkserver``
start methods alike; the transform's generator travels to spawned workers as its state.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils import _pytree
from torch.utils.data import default_collate

from ..core import _checks, _random, samples as _samples
from ..core.mixing import MixingTransform

__all__ = ["MixCollate"]

_CHANNELS = (1, 3, 4)
_FLOAT_EXACT = 2 ** 24     # integers beyond this are not exact in float32


class MixCollate:
    """A DataLoader ``collate_fn`` that mixes each batch with ``transform``.

    Args:
        transform: a :class:`~mixbook.core.mixing.MixingTransform` (its ``num_classes``,
            smoothing, generator and hyper-parameters are used).
        dtype: ``torch.uint8`` (default: rounded and clamped to ``[0, 255]``) or a floating
            dtype (unrounded).

    Calling it on a list of samples returns the collated batch with the images mixed and the
    labels replaced by ``(b, C)`` soft targets: ``(image, label)`` samples give
    ``(images (b, C, H, W), targets (b, C))``; longer tuples and dicts keep their structure.
    Images are ``(C, H, W)`` tensors or NumPy arrays, uint8 or another integer dtype holding
    values in ``[0, 255]`` (with ``dtype=torch.uint8``), or floating (mixed as the transform mixes
    them; ``dtype`` then only casts). Refused with a ``ValueError`` naming the sample entry:
    channels-last ``(H, W, C)`` NumPy arrays, PIL images, integer images outside ``[0, 255]``,
    string labels, and what the transform refuses (boxes, masks, key points).

    Example::

        collate = MixCollate(MixUpCutMix(num_classes=1000, generator=torch.Generator().manual_seed(0)))
        loader = DataLoader(dataset_of_uint8_images, batch_size=128, num_workers=4,
                            persistent_workers=True, collate_fn=collate)
        for epoch in range(start_epoch, epochs):
            collate.set_epoch(epoch)                 # before iterating: the epoch's draws
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
        self._epoch = multiprocessing.RawValue("q", -1)   # shared with the workers, persistent or not

    # ------------------------------------------------------------------ epochs and checkpoints
    @property
    def epoch(self) -> int | None:
        """The epoch set by :meth:`set_epoch` (``None`` before)."""
        value = self._epoch.value
        return None if value < 0 else int(value)

    def set_epoch(self, epoch: int) -> None:
        """Draw the coming epoch's mixings from a stream of (generator state, ``epoch``, worker id).

        Call it before iterating the DataLoader for ``epoch`` (workers see the value when they
        collate). Needs a transform built with a ``generator``.
        """
        if self.transform.generator is None:
            raise ValueError("set_epoch needs a transform built with a generator (its state seeds every epoch's "
                             "stream); without one the draws come from torch's global RNG")
        self._epoch.value = _checks.non_negative_int("epoch", epoch)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to reproduce the draws: the epoch set and the transform's state
        (its generator's state)."""
        return {"epoch": self.epoch, "transform": self.transform.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (then :meth:`set_epoch` with the epoch to resume)."""
        if not isinstance(state, dict) or set(state) != {"epoch", "transform"}:
            raise ValueError("state must be the dict MixCollate.state_dict() returns ({'epoch', 'transform'})")
        self.transform.load_state_dict(state["transform"])
        self._epoch.value = -1 if state["epoch"] is None else _checks.non_negative_int("epoch", state["epoch"])
        self.__dict__.pop("_epoch_stream", None)

    def _stream(self) -> torch.Generator | None:
        """The generator of this call when an epoch is set (else ``None``: the transform's own stream)."""
        epoch = self._epoch.value
        gen = self.transform.generator
        if epoch < 0 or gen is None:
            return None
        info = torch.utils.data.get_worker_info()
        rank = _random.process_rank()
        key = (int(epoch), -1 if info is None else info.id, rank, id(gen))
        cached = self.__dict__.get("_epoch_stream")
        if cached is None or cached[0] != key:
            base = gen if rank is None else _random.rank_generator(gen, rank)
            cached = (key, _random.epoch_generator(base, key[0], key[1]))
            self.__dict__["_epoch_stream"] = cached
        return cached[1]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_epoch_stream", None)
        if multiprocessing.context.get_spawning_popen() is None:
            # pickled outside a worker's start (a copy, a save): the shared epoch travels as its value
            state["_epoch"] = int(self._epoch.value)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state.get("_epoch"), int):
            value = state["_epoch"]
            state = dict(state)
            state["_epoch"] = multiprocessing.RawValue("q", value)
        self.__dict__.update(state)

    # ------------------------------------------------------------------ mixing
    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix an already collated batch: ``x`` ``(b, C, H, W)`` integer or floating, ``y`` labels."""
        _checks.tensor("x", x)
        return self._mix_batch((x, y))

    def __call__(self, samples: Sequence[Any]) -> Any:
        if not isinstance(samples, (list, tuple)) or len(samples) == 0:
            raise ValueError("samples must be a non-empty list of samples (what a DataLoader hands its collate_fn)")
        _check_sample(samples[0])
        return self._mix_batch(default_collate(list(samples)))

    def _mix_batch(self, batch: Any) -> Any:
        if not isinstance(batch, (tuple, list, dict)):
            raise ValueError(f"a sample must be a tuple (image, label, ...) or a dict, got {type(batch).__name__}")
        leaves, spec = _pytree.tree_flatten(batch)
        labels = _labels(batch, self.transform.labels_getter)
        as_float, original = list(leaves), {}
        for i, value in enumerate(leaves):
            if value is labels or not isinstance(value, torch.Tensor) or value.is_floating_point() \
                    or value.ndim < 4 or value.dtype == torch.bool:
                continue
            self._check_integer_images(value, spec, i, leaves)
            as_float[i] = value.float()
            original[i] = value
        out = self.transform(_pytree.tree_unflatten(as_float, spec), generator=self._stream())
        out_leaves = _pytree.tree_flatten(out)[0]
        for i, value in enumerate(out_leaves):
            if out_leaves[i] is as_float[i]:            # passed through: as it came
                out_leaves[i] = leaves[i]
            elif i in original:                        # mixed from integers
                out_leaves[i] = (value.round_().clamp_(0, 255).to(torch.uint8) if self.dtype == torch.uint8
                                 else value.to(self.dtype))
            elif isinstance(value, torch.Tensor) and leaves[i] is not labels and self.dtype != torch.uint8:
                out_leaves[i] = value.to(self.dtype)   # mixed floating images: dtype casts
        return _pytree.tree_unflatten(out_leaves, spec)

    def _check_integer_images(self, value: torch.Tensor, spec: Any, i: int, leaves: list) -> None:
        lo, hi = (0, 255) if self.dtype == torch.uint8 else (-_FLOAT_EXACT, _FLOAT_EXACT)
        if value.dtype == torch.uint8 or value.numel() == 0:
            return
        vmin, vmax = int(value.min()), int(value.max())
        if vmin < lo or vmax > hi:
            where = _place(spec, i, len(leaves))
            if self.dtype == torch.uint8:
                raise ValueError(f"{where}: {value.dtype} images must hold values in [0, 255] to come back as uint8, "
                                 f"got values in [{vmin}, {vmax}]; scale them to 8 bits, or pass dtype=torch.float32 "
                                 "to MixCollate for unrounded floats on the images' own scale")
            raise ValueError(f"{where}: {value.dtype} images hold values in [{vmin}, {vmax}], beyond what float32 "
                             f"holds exactly (±2^24); convert them to floating images first")

    def __repr__(self) -> str:
        return f"MixCollate({self.transform!r}, dtype={self.dtype})"


def _place(spec: Any, i: int, n: int) -> str:
    """``sample[...]`` for the ``i``-th of ``n`` leaves of a collated batch with structure ``spec``."""
    paths = _pytree.tree_flatten_with_path(_pytree.tree_unflatten(list(range(n)), spec))[0]
    return "sample" + _pytree.keystr(paths[i][0])


def _labels(batch: Any, getter: Any) -> torch.Tensor:
    try:
        return _samples.find_labels(batch, getter)
    except ValueError:
        found = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        if isinstance(batch, dict):
            found = next((v for k, v in batch.items() if isinstance(k, str) and "label" in k.lower()), None)
        if isinstance(found, (list, tuple)) and found and isinstance(found[0], str):
            raise ValueError(f"the labels are strings ({found[0]!r}, ...): MixCollate needs integer class indices "
                             "or (C,) target tensors; map the class names to indices in the dataset") from None
        raise


def _check_sample(sample: Any) -> None:
    """Refuse what ``default_collate`` would take and the mixing would get wrong: channels-last NumPy
    images and PIL images; name the entry and its class."""
    if isinstance(sample, (tuple, list)):
        entries = list(enumerate(sample))
    elif isinstance(sample, dict):
        entries = list(sample.items())
    else:
        raise ValueError(f"a sample must be a tuple (image, label, ...) or a dict, got {type(sample).__qualname__}")
    import sys

    pil = sys.modules.get("PIL.Image")
    for key, value in entries:
        if pil is not None and isinstance(value, pil.Image):
            raise ValueError(f"sample[{key!r}] is a PIL image ({type(value).__qualname__}): MixCollate takes (C, H, W) "
                             "tensors or arrays (apply v2.PILToTensor() or np.asarray(img).transpose(2, 0, 1) first)")
        if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[-1] in _CHANNELS \
                and value.shape[0] not in _CHANNELS:
            raise ValueError(f"sample[{key!r}] is a NumPy array of shape {value.shape}, channels last (H, W, C): "
                             "MixCollate takes channels-first (C, H, W) images, as timm's ToNumpy gives them; "
                             "transpose it with arr.transpose(2, 0, 1)")
