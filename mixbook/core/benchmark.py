"""What a method declares about its speed: benchmark entries, read by :mod:`mixbook.bench`.

A method module may hold a ``BENCH`` tuple of :class:`BenchEntry`: the op it times (its name in
the bench's results), the cases it runs on, the bytes family it is compared in, how to build one
call, and its targets: speed-ups over peer ops (:class:`Target`) and bounds against what the
machine does in the same run (:class:`Limit`). The classes live in the core, not in the bench, so
that a method module declares its entries without importing the bench (the top floor): the bench
reads them from the method modules.

Example (the README's flip mixup)::

    BENCH = (BenchEntry(op="mixbook_flipmix", kind="image", family="pairwise",
                        make=lambda x, y, num_classes, n: lambda: sample(x).apply(x),
                        targets=(Target("flipmix >= 1.0x torchvision MixUp", "torchvision_mixup", 1.0),),
                        limits=(Limit("flipmix >= 85% of copy bandwidth", "copy_fraction", 0.85, 100.0),)),)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _checks

__all__ = ["BenchEntry", "Target", "Limit", "KINDS", "FAMILIES", "MEASURES", "DEVICE_TYPES"]

KINDS = ("image", "embedding")
"""The cases an entry runs on. ``"image"`` ``(b, 3, H, W)`` batches, ``"embedding"`` ``(b, d)``
batches mixed into ``n`` outputs ``(n, d)``."""

FAMILIES = ("pairwise", "dense", "copy", "call")
"""Byte-count families (``mixbook.bench.cases.bytes_moved``): an entry is compared with every peer op
of its family, at the family's minimum bytes moved; ``"call"`` is a part of a call (sampling, targets) timed
for its fixed cost, with no bandwidth claim (0 bytes)."""

MEASURES = ("copy_fraction", "bound_fraction", "matmul_ratio", "us_per_call")
"""What a :class:`Limit` bounds: ``"copy_fraction"``, the op's bandwidth over a plain copy's of the
same case (at least ``bound``); ``"bound_fraction"``, the fraction of the *gather-and-interpolate
bound* a pairwise mix reaches: the bound reads the batch twice (each example and its partner) and
writes it once, 1.5 times a copy's traffic, so the fraction is ``1.5 · t_copy / t_op`` (at least
``bound``; a three-pass op cannot reach a copy's bandwidth); ``"matmul_ratio"``, the op's time over
one matmul of its shape (at most ``bound``); ``"us_per_call"``, the op's median time in µs (at most
``bound``: the fixed cost of a call that launches kernels, judged on the devices it names)."""

DEVICE_TYPES = ("cpu", "cuda")


def _devices(cls: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise TypeError(f"{cls}.devices must be None or a non-empty tuple of device types {DEVICE_TYPES}, got {value!r}")
    for v in value:
        _checks.choice(f"{cls}.devices", v, DEVICE_TYPES)
    return tuple(value)


def _text(cls: str, field: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{cls}.{field} must be a non-empty str, got {value!r}")
    return value


def _items(cls: str, field: str, value: object, kind: type) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{cls}.{field} must be a tuple of {kind.__name__}, got {type(value).__name__}")
    bad = [v for v in value if not isinstance(v, kind)]
    if bad:
        raise TypeError(f"{cls}.{field} must hold {kind.__name__} instances only, got {bad[0]!r}")
    return tuple(value)


@dataclass(frozen=True)
class Target:
    """A speed-up target, evaluated on the CPU (where every peer runs): the op's call is at least
    ``minimum`` times as fast as ``peer``'s (peer median time / op median time).

    Args:
        name: the target's name in the bench's verdicts (e.g. ``"pairwise >= 1.0x torchvision MixUp"``).
        peer: the peer op it is compared with (``"torchvision_mixup"``, ``"timm_batch"``, ``"numpy_zeta"``…).
        minimum: the least speed-up that passes, > 0.
        batches: the batch sizes it applies to (``None``: every case of the entry's kind).
        devices: the device types it is judged on (default the CPU; ``None``: every device).
            A peer that runs on CUDA (torchvision, timm) can name ``("cpu", "cuda")``.
    """

    name: str
    peer: str
    minimum: float
    batches: tuple[int, ...] | None = None
    devices: tuple[str, ...] | None = ("cpu",)

    def __post_init__(self) -> None:
        _text("Target", "name", self.name)
        _text("Target", "peer", self.peer)
        object.__setattr__(self, "devices", _devices("Target", self.devices))
        object.__setattr__(self, "minimum", _checks.positive_float("Target.minimum", self.minimum))
        if self.batches is not None:
            if not isinstance(self.batches, (tuple, list)) or not self.batches:
                raise TypeError(f"Target.batches must be None or a non-empty tuple of ints >= 1, got {self.batches!r}")
            if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batches):
                raise ValueError(f"Target.batches must hold ints >= 1, got {self.batches!r}")
            object.__setattr__(self, "batches", tuple(self.batches))


@dataclass(frozen=True)
class Limit:
    """A target against the physical limit, evaluated on every device, in the same run.

    ``measure="copy_fraction"``: the op's bandwidth (its family's minimum bytes over its time) over
    a plain copy's is at least ``bound`` (a memory-bound op cannot exceed 1), on the cases where the
    op moves at least ``min_mb`` MB (the sizes at which the per-call cost no longer dominates;
    ``None``: every case). ``measure="matmul_ratio"``: the op's time over one matmul of the same
    shape is at most ``bound`` (a dense mix is that matmul plus its sampling); ``min_mb`` must be
    ``None``.

    Args:
        name: the target's name in the bench's verdicts.
        measure: one of :data:`MEASURES`.
        bound: the least copy fraction or the largest matmul ratio that passes, > 0.
        min_mb: MB moved from which a copy- or bound-fraction limit applies, >= 0, or ``None``.
        devices: the device types it is judged on (``None``: every device).
    """

    name: str
    measure: str
    bound: float
    min_mb: float | None = None
    devices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _text("Limit", "name", self.name)
        _checks.choice("Limit.measure", self.measure, MEASURES)
        object.__setattr__(self, "bound", _checks.positive_float("Limit.bound", self.bound))
        object.__setattr__(self, "devices", _devices("Limit", self.devices))
        if self.min_mb is not None:
            if self.measure not in ("copy_fraction", "bound_fraction"):
                raise ValueError(f"Limit.min_mb applies to measures 'copy_fraction' and 'bound_fraction' only; "
                                 f"it must be None for {self.measure!r}, got {self.min_mb!r}")
            object.__setattr__(self, "min_mb", _checks.non_negative_float("Limit.min_mb", self.min_mb))


@dataclass(frozen=True)
class BenchEntry:
    """One op a method module asks the bench to time (an item of its ``BENCH`` tuple).

    Args:
        op: its name in the bench's results (``"mixbook_<method>"``), distinct across entries.
        kind: the cases it runs on, one of :data:`KINDS`.
        family: its bytes family, one of :data:`FAMILIES`: it is compared with every peer of that
            family in each case.
        make: ``make(x, y, num_classes, n)`` → a zero-argument callable that runs the op once on
            the case's batch ``x``, its integer labels ``y`` (``num_classes`` classes) and, for
            embedding cases, ``n`` outputs (``None`` for image cases).
        targets: its CPU speed-up targets (:class:`Target`).
        limits: its targets against the physical limit (:class:`Limit`).
    """

    op: str
    kind: str
    family: str
    make: Callable[..., Callable[[], object]]
    targets: tuple[Target, ...] = ()
    limits: tuple[Limit, ...] = ()

    def __post_init__(self) -> None:
        _text("BenchEntry", "op", self.op)
        _checks.choice("BenchEntry.kind", self.kind, KINDS)
        _checks.choice("BenchEntry.family", self.family, FAMILIES)
        if not callable(self.make):
            raise TypeError(f"BenchEntry.make must be callable (x, y, num_classes, n) -> call, "
                            f"got {type(self.make).__name__}")
        object.__setattr__(self, "targets", _items("BenchEntry", "targets", self.targets, Target))
        object.__setattr__(self, "limits", _items("BenchEntry", "limits", self.limits, Limit))
