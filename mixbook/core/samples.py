"""Packed samples: where a mixing transform finds the labels and the batches to mix.

A transform is called as ``t(x, y)``, or on one packed sample as torchvision's ``v2.MixUp`` and
``v2.CutMix`` are: a tuple or list ``(images, labels, ...)``, a dict ``{"image": ..., "labels": ...}``
or a detection-style ``(images, {"labels": ...})``. This module holds those conventions, in
torchvision's words where torchvision has them:

* **the labels** (``labels_getter="default"``, torchvision's heuristic): the second item of a
  tuple or list if it is a tensor; else the dict (the sample, or its second item) is searched for
  the key ``"labels"`` (any case), then for a key *containing* ``"label"`` (``"FooLaBeLBar"``);
  or a callable ``sample -> labels``;
* **the batches to mix**: every torchvision ``Image``/``Video`` in the sample; when there is none,
  the first floating plain tensor (depth first) that is not the labels (torchvision takes the
  first plain tensor of any dtype); plus, explicitly, the
  entries named in ``mix_keys`` (batch features that must follow the images, e.g. a second view).
  Every other entry passes through unchanged (ids, paths, integer indices);
* **refused**, with a ``ValueError`` naming the entry's place in the sample and its type:
  torchvision ``BoundingBoxes``, ``Mask`` and ``KeyPoints`` (alone or in lists), PIL images, and
  any tensor under a key named like boxes, masks or key points (``"boxes"``, ``"bbox"``,
  ``"masks"``, ``"segmentation"``, ``"keypoints"``...), unless it is named in ``mix_keys``. A convex
  combination or a pasted box of a detection or segmentation target is not a target of the mixed
  image: mixing the image and passing its boxes through unchanged would train on wrong targets
  without a word. (``mix_keys`` is the way to mix, say, soft segmentation maps on purpose.)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch.utils import _pytree

__all__ = ["find_labels", "plan", "DETECTION_WORDS"]

DETECTION_WORDS = ("box", "mask", "keypoint", "key_point", "segm", "polygon")
"""Substrings (lower case) of a key that marks a detection or segmentation target."""


def _is_plain_tensor(value: object) -> bool:
    return type(value) is torch.Tensor


def find_labels(sample: object, getter: Callable[[object], object] | str = "default") -> torch.Tensor:
    """The labels tensor of a packed ``sample`` (``"default"``: torchvision's heuristic, above)."""
    if getter != "default":
        labels = getter(sample)
    else:
        labels = _default_heuristic(sample)
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"The labels must be a tensor, but got {type(labels).__name__} instead "
                         "(labels_getter found them in the sample)")
    return labels


def _default_heuristic(inputs: object) -> object:
    if isinstance(inputs, (tuple, list)):
        if len(inputs) < 2:
            raise ValueError("labels_getter='default': a tuple/list sample must be (images, labels, ...) or "
                             f"(images, {{'labels': ...}}), got {len(inputs)} item(s)")
        inputs = inputs[1]
    if isinstance(inputs, torch.Tensor):
        return inputs
    if not isinstance(inputs, Mapping):
        raise ValueError("When using the default labels_getter, the input passed to forward must be a dictionary "
                         "or a two-tuple whose second item is a dictionary or a tensor, "
                         f"but got {type(inputs).__name__} instead")
    keys = [k for k in inputs if isinstance(k, str)]
    for key in keys:
        if key.lower() == "labels":
            return inputs[key]
    for key in keys:
        if "label" in key.lower():
            return inputs[key]
    raise ValueError(f"Could not infer where the labels are in the sample (keys: {list(inputs)}): no key is "
                     "'labels' or contains 'label'; pass labels_getter=callable(sample) -> labels")


def _path_text(path: tuple[Any, ...]) -> str:
    return "sample" + _pytree.keystr(path) if path else "sample"


def _path_keys(path: tuple[Any, ...]) -> list[object]:
    out = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                out.append(getattr(entry, attr))
                break
    return out


def plan(sample: object, labels: torch.Tensor, mix_keys: tuple = ()) -> tuple[list, Any, list[int]]:
    """Flatten ``sample`` and decide what happens to each entry.

    Returns ``(leaves, spec, to_mix)``: the flattened entries, the structure to rebuild the sample
    with (``torch.utils._pytree``), and the positions of the batches to mix (the first one is the
    one the mixing is drawn for). Refuses detection and segmentation targets (module docstring).
    """
    leaves_with_path, spec = _pytree.tree_flatten_with_path(sample)
    tv = sys.modules.get("torchvision.tv_tensors")
    refused_types = tuple(getattr(tv, k) for k in ("BoundingBoxes", "Mask", "KeyPoints") if tv is not None and hasattr(tv, k))
    pil = sys.modules.get("PIL.Image")
    media_types = tuple(getattr(tv, k) for k in ("Image", "Video")) if tv is not None else ()
    wanted = set(mix_keys)
    media, first_plain, first_any, extra = [], None, None, []
    for i, (path, value) in enumerate(leaves_with_path):
        if value is labels:
            continue
        keys = _path_keys(path)
        named = _named(keys, wanted)
        if refused_types and isinstance(value, refused_types):
            raise ValueError(f"{_path_text(path)} is a torchvision.tv_tensors.{type(value).__name__}: mixing does not "
                             "support bounding boxes, masks or key points (neither does torchvision's v2.MixUp/v2.CutMix); "
                             "the mixed image's boxes are not the boxes of either image. Drop it from the sample")
        if pil is not None and isinstance(value, pil.Image):
            raise ValueError(f"{_path_text(path)} is a PIL image: a mixing transform takes batched tensors "
                             "(apply v2.ToImage and batch the samples first)")
        if not isinstance(value, torch.Tensor):
            continue
        if named:
            extra.append(i)
            continue
        words = [str(k).lower() for k in keys if isinstance(k, str)]
        hit = next((w for w in words for d in DETECTION_WORDS if d in w), None)
        if hit is not None:
            raise ValueError(f"{_path_text(path)} (a {type(value).__name__} of shape {tuple(value.shape)}) is named like a "
                             f"detection or segmentation target ({hit!r}): mixing the images would leave it describing "
                             "neither image. Drop it, or name it in mix_keys to mix it with the images on purpose")
        if media_types and isinstance(value, media_types):
            media.append(i)
        elif _is_plain_tensor(value):
            if first_plain is None and value.is_floating_point():
                first_plain = i
            if first_any is None:
                first_any = i
    seen = {k for path, _ in leaves_with_path for k in _path_keys(path)[:1] + [m for m in _path_keys(path) if isinstance(m, str)]
            if _hashable(k)}
    unknown = wanted - seen
    if unknown:
        raise ValueError(f"mix_keys names {sorted(map(repr, unknown))}, which the sample does not hold")
    # torchvision mixes the first plain tensor; a floating one is preferred here (an integer index before
    # the image passes through), and an integer one is handed on only to be refused by name and dtype
    plain = first_plain if first_plain is not None else first_any
    base = media if media else ([plain] if plain is not None else [])
    to_mix = base + [i for i in extra if i not in base]
    if not to_mix:
        raise ValueError("the sample holds no floating image or video batch to mix besides the labels "
                         "(torchvision Image/Video, or a floating tensor)")
    return [v for _, v in leaves_with_path], spec, to_mix


def _named(keys: list[object], wanted: set) -> bool:
    """A string in ``mix_keys`` names a dict key anywhere on the entry's path; an integer names a
    position of the top-level tuple or list only."""
    if not wanted:
        return False
    if keys and isinstance(keys[0], int) and keys[0] in wanted:
        return True
    return any(isinstance(k, str) and k in wanted for k in keys)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
