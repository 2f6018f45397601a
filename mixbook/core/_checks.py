"""Argument checks shared by the public functions.

Every check raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind,
wrong value) with a message that names the argument and the accepted range.

Checks of *shape, dtype and device* are free and always run. Checks of tensor *values*
(labels inside ``[0, num_classes)``, soft-target rows summing to 1, weights non-negative)
need the values on the host; on an accelerator that is a synchronisation, which the mixing
hot path must not make. They therefore follow :func:`set_value_checks`:

* ``"auto"`` (default): check values of CPU tensors, skip them on other devices (on CUDA an
  out-of-range label still fails loudly, through the device-side assert of ``scatter_``);
* ``"always"``: check everywhere (use while debugging a GPU pipeline), and also check that the
  *inputs* a mixing is applied to are finite (:func:`finite_inputs`: a full pass over the batch,
  which ``"auto"`` does not pay for);
* ``"never"``: skip value checks everywhere.
"""

from __future__ import annotations

import math
import numbers
import sys
from contextlib import contextmanager
from typing import Iterator

import torch

_MODES = ("auto", "always", "never")
_value_checks = "auto"


def set_value_checks(mode: str) -> str:
    """Set when tensor *values* are checked (see module docstring); return the old mode."""
    global _value_checks
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    old, _value_checks = _value_checks, mode
    return old


@contextmanager
def value_checks(mode: str) -> Iterator[None]:
    """Context manager form of :func:`set_value_checks`."""
    old = set_value_checks(mode)
    try:
        yield
    finally:
        set_value_checks(old)


def check_values(t: torch.Tensor) -> bool:
    """Whether value checks apply to ``t`` under the current mode.

    Never while ``torch.compile`` traces (``torch.compiler.is_compiling()``): a value check
    reads tensor values on the host, which is a data-dependent graph break (an error under
    ``fullgraph=True``). Check the inputs once in eager mode (or with
    ``set_value_checks("always")`` outside the compiled region) when debugging a compiled step.
    """
    if torch.compiler.is_compiling():
        return False
    if _value_checks == "always":
        return True
    if _value_checks == "never":
        return False
    return t.device.type == "cpu"


def finite_inputs(name: str, x: torch.Tensor, dense: bool = False) -> None:
    """Under ``set_value_checks("always")``, refuse a floating ``x`` holding NaN or ±inf, saying how
    many entries of how many examples, and (``dense``) that a dense mixing spreads one bad example to
    every output. Skipped in the other modes and while ``torch.compile`` traces."""
    if _value_checks != "always" or torch.compiler.is_compiling() or not x.is_floating_point():
        return
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = int(bad.reshape(x.shape[0], -1).any(1).sum()) if x.ndim else 1
        spread = (" A dense mixing (ζ-mixup, MultiMix) combines every example into every output, so one bad "
                  "example makes the whole mixed batch non-finite." if dense else "")
        raise ValueError(f"{name} holds {int(bad.sum())} NaN or infinite value(s) in {rows} of its {x.shape[0]} "
                         f"examples.{spread}")


MEMORY_FRACTION = 0.5
"""The largest share of a device's memory one mixing allocation may ask for (:func:`allocation`)."""

_UNCHECKED_BYTES = 1 << 28   # allocations below 256 MiB are never measured (the hot path pays a multiply)


def _device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (CUDA: the GPU's; CPU: the machine's RAM), or ``None``."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "cpu":
        try:
            import os

            return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError):
            return None
    return None


def allocation(what: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
               copies: int = 1) -> None:
    """Refuse a mixing allocation of ``copies`` tensors of ``shape`` and ``dtype`` larger than
    :data:`MEMORY_FRACTION` of ``device``'s memory, with a ``ValueError`` naming the sizes, before it
    is asked for (a dense mixing's ``(n, b)`` weights grow as ``n·b``, Dense MultiMix's as ``r·n·b``)."""
    count = copies
    for s in shape:
        count *= int(s)
    nbytes = count * (torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 8)
    if nbytes < _UNCHECKED_BYTES:
        return
    device = torch.device(device)
    total = _device_memory(device)
    if total is not None and nbytes > MEMORY_FRACTION * total:
        raise ValueError(f"{what} of shape {tuple(int(s) for s in shape)} ({copies} cop{'y' if copies == 1 else 'ies'}, "
                         f"{dtype}) needs {nbytes / 2**30:.1f} GiB, more than {MEMORY_FRACTION:.0%} of the "
                         f"{total / 2**30:.1f} GiB of {device}; use a smaller n or batch")


_PLAIN_REALS = (float, int)   # exact types: checked without the (slow) numbers.Real ABC lookup


def _not_real(value: object) -> bool:
    """Whether ``value`` is not a real number (``bool`` counts as not real)."""
    if type(value) in _PLAIN_REALS:
        return False
    return isinstance(value, bool) or not isinstance(value, numbers.Real)


def positive_float(name: str, value: object) -> float:
    """A finite real number > 0 (``bool`` and tensors are refused; NumPy scalars are accepted)."""
    if _not_real(value):
        raise TypeError(f"{name} must be a real number > 0, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def non_negative_float(name: str, value: object) -> float:
    """A finite real number >= 0 (``bool`` and tensors are refused; NumPy scalars are accepted)."""
    if _not_real(value):
        raise TypeError(f"{name} must be a real number >= 0, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


CONCENTRATION_RANGE = (1e-30, 1e30)
"""The Beta/Dirichlet concentrations mixbook draws from: float32 holds them and every draw's
logarithm (``log U / α`` stays finite for ``α ≥ 1e-30``; ``Beta(α, α)`` for ``α = 1e-30`` is already
Bernoulli(½) to float32 precision, and for ``α = 1e30`` a point mass at ½)."""


def concentration(name: str, value: object) -> float:
    """A Beta/Dirichlet concentration: a real number in :data:`CONCENTRATION_RANGE` (NumPy scalars accepted)."""
    value = positive_float(name, value)
    lo, hi = CONCENTRATION_RANGE
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}] (the concentrations a float32 Beta/Dirichlet draw "
                         f"can represent), got {value!r}")
    return value


def unit_interval(name: str, value: object, *, include_one: bool = False) -> float:
    """A real number in ``[0, 1)`` (or ``[0, 1]`` with ``include_one``); NumPy scalars are accepted."""
    if _not_real(value):
        raise TypeError(f"{name} must be a real number in [0, 1), got {type(value).__name__}")
    value = float(value)
    upper_ok = value <= 1 if include_one else value < 1
    if not (value >= 0 and upper_ok):
        bracket = "]" if include_one else ")"
        raise ValueError(f"{name} must be in [0, 1{bracket}, got {value}")
    return value


def seed(name: str, value: object, *, upper: int | None = None) -> int:
    """A seed: an integer (Python or NumPy) ``>= 0``, and ``< upper`` when given; returned as ``int``."""
    import numpy as np

    bound = ">= 0" if upper is None else f"in [0, {upper})"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer {bound}, got {type(value).__name__} {value!r}")
    if value < 0 or (upper is not None and value >= upper):
        raise ValueError(f"{name} must be an integer {bound}, got {value}")
    return int(value)


def floating_dtype(name: str, dtype: object) -> torch.dtype:
    """A floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.dtype (float16, bfloat16, float32 or float64), "
                        f"got {dtype!r}")
    return dtype


def weight_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype mixing weights are drawn in for inputs ``x``: float64 for float64 inputs, else float32
    (half-precision and integer inputs get float32 weights, so λ is never rounded to 8 bits)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def positive_int(name: str, value: object) -> int:
    """An integer >= 1 (``bool`` refused; NumPy integers accepted and returned as ``int``)."""
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return value


def non_negative_int(name: str, value: object) -> int:
    """An integer >= 0 (``bool`` refused; NumPy integers accepted and returned as ``int``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 0, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value}")
    return int(value)


def optional_positive_int(name: str, value: object) -> int | None:
    """``None``, or an integer >= 1 as :func:`positive_int` (an optional count such as ``n``)."""
    return None if value is None else positive_int(name, value)


def choice(name: str, value: object, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def boolean(name: str, value: object) -> bool:
    """A ``bool`` (a NumPy ``bool_`` is accepted and returned as ``bool``)."""
    if value is True or value is False:
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def non_empty(name: str, x: object) -> torch.Tensor:
    """A tensor with a non-empty first (batch) dimension, of any dtype."""
    x = tensor(name, x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch dimension, got shape {tuple(x.shape)}")
    return x


def tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def batch(name: str, x: object) -> torch.Tensor:
    """A floating-point tensor whose first dimension is a non-empty batch."""
    x = tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got {x.dtype}; convert integer images first, e.g. x.float() / 255"
        )
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch dimension, got shape {tuple(x.shape)}")
    return x


def not_boxes_or_masks(name: str, x: torch.Tensor) -> None:
    """Refuse torchvision's ``BoundingBoxes``, ``Mask`` and ``KeyPoints`` (as ``v2.MixUp``/``CutMix`` do).

    They are tensors, but a convex combination of boxes, masks or key points is not a box, a
    mask or a set of key points. torchvision is only looked up if it is already imported (no
    such tensor can exist otherwise).
    """
    tv = sys.modules.get("torchvision.tv_tensors")
    if tv is None or type(x) is torch.Tensor:   # a plain tensor is never one of them: the hot path
        return
    refused = tuple(getattr(tv, kind) for kind in ("BoundingBoxes", "Mask", "KeyPoints") if hasattr(tv, kind))
    if isinstance(x, refused):
        raise ValueError(
            f"{name} is a torchvision.tv_tensors.{type(x).__name__}; mixing does not support bounding boxes, "
            "masks or key points (as torchvision's v2.MixUp/v2.CutMix); pass the image batch only"
        )


IMAGE_BATCH_SHAPES = "(b, d) features, (b, C, H, W) images or (b, T, C, H, W) videos"


def image_batch(name: str, x: object) -> torch.Tensor:
    """The batch a mixing *transform* takes: floating, 2-D, 4-D or 5-D, not boxes or masks.

    A 3-D tensor is refused: ``(3, H, W)`` is most often one unbatched image, whose channels
    would be mixed as if they were examples. ``(b, d, r)`` embeddings and other shapes go
    through the samplers and :meth:`mixbook.Mixing.apply`, which take any ``(b, *)``.
    """
    x = tensor(name, x)
    not_boxes_or_masks(name, x)
    x = batch(name, x)
    if x.ndim not in (2, 4, 5):
        hint = ""
        if x.ndim == 3:
            hint = (f"; a single unbatched image (C, H, W)? add the batch dimension ({name}.unsqueeze(0)); "
                    "for (b, d, r) embeddings use a sampler and Mixing.apply, e.g. mixbook.methods.mixup.sample(x).apply(x)")
        elif x.ndim == 1:
            hint = f"; for one feature a row use {name}.unsqueeze(1)"
        raise ValueError(f"{name} must be a batch of {IMAGE_BATCH_SHAPES}, got shape {tuple(x.shape)}{hint}")
    return x


def labels_getter(value: object) -> object:
    """``"default"`` or a callable ``sample -> labels`` (torchvision's ``labels_getter``)."""
    if (isinstance(value, str) and value == "default") or callable(value):
        return value
    raise ValueError(f"labels_getter should either be 'default' or a callable sample -> labels, got {value!r}")


def same_batch(name: str, x: torch.Tensor, batch_size: int) -> None:
    if x.ndim < 1 or x.shape[0] != batch_size:
        got = x.shape[0] if x.ndim else "a scalar"
        raise ValueError(f"{name} must have batch size {batch_size}, got {got}")


def optional_companion(name: str, y: object, x: torch.Tensor) -> None:
    """If ``y`` is given: a tensor with ``x``'s batch size, on ``x``'s device (values unchecked)."""
    if y is not None:
        tensor(name, y)
        same_batch(name, y, x.shape[0])
        same_device(name, y, x.device)


def same_device(name: str, x: torch.Tensor, device: torch.device) -> None:
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but expected {device} (where the mixing / logits live); move one of them")


def constant_under_compile(fn):  # type: ignore[no-untyped-def]
    """Mark ``fn`` as ``torch.compiler.assume_constant_result`` does: Dynamo calls it once at trace
    time (for real) and bakes its result into the graph, guarding on the identity of object
    arguments. It sets exactly this attribute; setting it here keeps ``import mixbook`` from
    importing ``torch._dynamo`` (1-2 s) for people who never compile."""
    fn._dynamo_marked_constant = True
    return fn


@constant_under_compile
def _generator_device(gen: torch.Generator) -> str:
    """``str(gen.device)``, evaluated once at trace time under ``torch.compile`` (a generator's
    attributes cannot be traced; Dynamo guards on the generator's identity instead)."""
    return str(gen.device)


def generator(gen: object, device: torch.device) -> torch.Generator | None:
    if gen is None:
        return None
    if not isinstance(gen, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(gen).__name__}")
    gdev = torch.device(_generator_device(gen))
    if gdev.type != device.type or (
        gdev.index is not None and device.index is not None and gdev.index != device.index
    ):
        raise ValueError(f"generator is on {gdev} but the batch is on {device}; create it with torch.Generator(device)")
    return gen


def labels(name: str, y: object, num_classes: int | None = None) -> torch.Tensor:
    """Integer class labels of shape ``(b,)``, inside ``[0, num_classes)`` when checked."""
    y = tensor(name, y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels, got {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per example), got shape {tuple(y.shape)}")
    if num_classes is not None and y.numel() and check_values(y):
        lo, hi = torch.aminmax(y)       # one operator for both ends
        lo, hi = int(lo), int(hi)
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, num_classes) = [0, {num_classes}), got values in [{lo}, {hi}]"
            )
    return y


def soft_targets(name: str, y: torch.Tensor, atol: float = 1e-4) -> torch.Tensor:
    """Soft targets ``(b, C)``: non-negative rows that sum to 1 (within ``atol``) when checked."""
    if y.ndim != 2:
        raise ValueError(f"{name} as soft targets must have shape (batch, num_classes), got {tuple(y.shape)}")
    if y.numel() and check_values(y):
        # Rounding each entry to fp16/bf16 alone can move a row sum by ~eps/2 (bf16: 2e-3).
        atol = max(atol, 4 * torch.finfo(y.dtype).eps)
        rows = y.sum(dim=1, dtype=torch.float64)
        if bool((y < 0).any()) or not bool(torch.isfinite(rows).all()):
            raise ValueError(f"{name} as soft targets must be finite and non-negative")
        worst = float((rows - 1).abs().max())
        if worst > atol:
            raise ValueError(f"{name} rows must sum to 1 (soft targets); the worst row is off by {worst:.3g}")
    return y


def num_classes(value: object) -> int:
    return positive_int("num_classes", value)
