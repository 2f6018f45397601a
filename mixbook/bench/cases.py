"""The cases the bench runs and the bytes an op of each family must move.

:func:`bytes_moved` counts the minimum traffic of the *result*, the same for every
implementation of a family (see :mod:`mixbook.bench.harness`), so GB/s ratios are speed ratios;
:func:`make_cases` picks the batches, shapes and dtypes of a run and says which it skips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..core import _checks
from ..core.benchmark import FAMILIES

__all__ = ["bytes_moved", "Case", "make_cases", "FAMILIES"]


def bytes_moved(
    family: str,
    *,
    batch: int,
    features: int,
    itemsize: int,
    num_classes: int = 0,
    n: int | None = None,
) -> int:
    """Minimum bytes an op of ``family`` must move (see the module docstring).

    * ``"pairwise"``: ``2·b·D·s + 8·b + 4·b·C`` (inputs read once, outputs written once,
      int64 labels read, float32 soft targets written);
    * ``"dense"``: ``(b + n)·D·s + 4·n·b`` (inputs read once, ``n`` outputs written, float32
      weights written once; ``n`` defaults to ``b``);
    * ``"copy"``: ``2·b·D·s``;
    * ``"call"``: 0 (a part of a call timed for its fixed cost, no bandwidth claim).

    Args:
        family: one of :data:`FAMILIES`.
        batch: ``b >= 1``.
        features: ``D >= 1``, elements per example (``3·32·32``, ``512``…).
        itemsize: ``s``, bytes per element (4 for fp32, 2 for bf16).
        num_classes: ``C >= 0`` (pairwise only).
        n: outputs (dense only), default ``b``.
    """
    family = _checks.choice("family", family, FAMILIES)
    b = _checks.positive_int("batch", batch)
    d = _checks.positive_int("features", features)
    s = _checks.positive_int("itemsize", itemsize)
    num_classes = _checks.non_negative_int("num_classes", num_classes)
    if family == "pairwise":
        return 2 * b * d * s + 8 * b + 4 * b * num_classes
    if family == "dense":
        n = b if n is None else _checks.positive_int("n", n)
        return (b + n) * d * s + 4 * n * b
    if family == "call":
        return 0
    return 2 * b * d * s


# ---------------------------------------------------------------------- cases
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FULL_BATCHES = (32, 128, 256, 1024)
IMAGE_SHAPES = ((3, 32, 32), (3, 224, 224))
NUM_CLASSES = {32: 100, 224: 1000}  # CIFAR-100-like and ImageNet-like label spaces
EMBED_DIM = 512
MULTIMIX_N = 1000
EMBED_CLASSES = 1000
ZETA_GAMMA = 2.8
ALPHA = 1.0
CPU_MAX_TENSOR_MB = 512.0


@dataclass(frozen=True)
class Case:
    """One benchmark case: a batch of ``batch`` examples of ``shape`` in ``dtype``.

    ``kind`` is ``"image"`` (pairwise and ζ ops, ``(b, 3, H, W)``) or ``"embedding"``
    (MultiMix, ``(b, d)`` with ``n`` outputs).
    """

    kind: str
    batch: int
    shape: tuple[int, ...]
    dtype: str
    num_classes: int
    n: int | None = None

    @property
    def name(self) -> str:
        dims = "x".join(map(str, self.shape))
        extra = f"_n{self.n}" if self.n is not None else ""
        return f"{self.kind}{dims}_b{self.batch}{extra}_{self.dtype}"

    @property
    def features(self) -> int:
        """``D``, elements per example."""
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return torch.empty(0, dtype=_DTYPES[self.dtype]).element_size()

    @property
    def tensor_bytes(self) -> int:
        """Bytes of one batch tensor ``(b, *shape)``."""
        return self.batch * self.features * self.itemsize

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "batch": self.batch, "shape": list(self.shape),
                "dtype": self.dtype, "num_classes": self.num_classes, "n": self.n}


def _positive_ints(name: str, values: object) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of ints >= 1, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{name} must name at least one value")
    return tuple(_checks.positive_int(name, v) for v in values)


def _resolve_device(device: object) -> torch.device:
    """:func:`mixbook.core.runtime.resolve_device`, restricted to the devices the harness times."""
    from ..core.runtime import resolve_device

    dev = resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return dev


def make_cases(
    device: torch.device | str = "cpu",
    *,
    quick: bool = False,
    batches: Sequence[int] | None = None,
    dtypes: Sequence[str] | None = None,
    include_large: bool = False,
    max_tensor_mb: float | None = None,
    image_sizes: Sequence[int] | None = None,
) -> tuple[list[Case], list[dict[str, str]]]:
    """The cases to run and the ones skipped (with the reason).

    Full: batch ∈ {32, 128, 256, 1024} × images 3×32×32 (100 classes) and 3×224×224 (1000
    classes), plus MultiMix embeddings ``(b, 512)`` with ``n = 1000`` outputs (1000 classes);
    float32, and bfloat16 as well on CUDA. Quick: batch 32, 3×32×32 images and embeddings.

    Skipped: on CPU, a case whose batch tensor exceeds ``max_tensor_mb`` (default 512 MB, which
    drops 3×224×224 at b = 1024: 616 MB a tensor, a few GB with outputs and the peers'
    temporaries, minutes per repeat) unless ``include_large``; on CUDA, a case whose tensor
    times 8 (input, outputs, temporaries, the clone peers) does not fit in free memory.

    ``image_sizes`` restricts the image cases to these sides (from 32 and 224; default: both,
    quick: 32).

    Returns:
        ``(cases, skipped)``; ``skipped`` entries are ``{"case": name, "reason": text}``.
    """
    dev = _resolve_device(device)
    quick = _checks.boolean("quick", quick)
    include_large = _checks.boolean("include_large", include_large)
    if batches is None:
        batches = (32,) if quick else FULL_BATCHES
    batches = _positive_ints("batches", batches)
    if dtypes is None:
        dtypes = ("float32", "bfloat16") if dev.type == "cuda" else ("float32",)
    if isinstance(dtypes, str) or not isinstance(dtypes, Sequence) or not dtypes:
        raise TypeError(f"dtypes must be a non-empty sequence of names from {tuple(_DTYPES)}, got {dtypes!r}")
    for d in dtypes:
        _checks.choice("dtypes", d, tuple(_DTYPES))
    if max_tensor_mb is None:
        max_tensor_mb = CPU_MAX_TENSOR_MB if dev.type == "cpu" else math.inf
    elif isinstance(max_tensor_mb, bool) or not isinstance(max_tensor_mb, (int, float)) or max_tensor_mb <= 0:
        raise ValueError(f"max_tensor_mb must be a number > 0, got {max_tensor_mb!r}")
    if image_sizes is None:
        shapes = IMAGE_SHAPES[:1] if quick else IMAGE_SHAPES
    else:
        sizes = _positive_ints("image_sizes", image_sizes)
        known = {s[-1]: s for s in IMAGE_SHAPES}
        for side in sizes:
            if side not in known:
                raise ValueError(f"image_sizes must be taken from {sorted(known)}, got {side}")
        shapes = tuple(known[side] for side in sizes)
    candidates = [Case("image", b, s, dt, NUM_CLASSES[s[-1]]) for dt in dtypes for s in shapes for b in batches]
    candidates += [Case("embedding", b, (EMBED_DIM,), dt, EMBED_CLASSES, MULTIMIX_N) for dt in dtypes for b in batches]
    free = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else None
    cases, skipped = [], []
    for c in candidates:
        mb = c.tensor_bytes / 1e6
        if dev.type == "cpu" and mb > max_tensor_mb and not include_large:
            skipped.append({"case": c.name, "reason": f"{mb:.0f} MB a tensor > {max_tensor_mb:g} MB on CPU "
                                                      "(pass --include-large to run it)"})
        elif free is not None and 8 * c.tensor_bytes > free:
            skipped.append({"case": c.name, "reason": f"8 x {mb:.0f} MB exceeds the {free / 1e6:.0f} MB free on {dev}"})
        else:
            cases.append(c)
    return cases, skipped
