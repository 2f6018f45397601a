"""The peers of mixbook's ops: NumPy references, torchvision, timm, a matmul and a copy.

:func:`zeta_numpy_reference` and :func:`multimix_numpy_reference` are straightforward NumPy
versions of ζ-mixup and MultiMix (CPU only); :func:`image_peers` and :func:`embedding_peers`
build every peer op of a case (see :mod:`mixbook.bench.harness` for what each one is and how
timm's in-place mixing is charged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import _checks
from ..methods import multimix, zeta
from .cases import ALPHA, ZETA_GAMMA, Case

__all__ = ["zeta_numpy_reference", "multimix_numpy_reference", "image_peers", "embedding_peers"]


def zeta_numpy_reference(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """A straightforward NumPy ζ-mixup, the peer that mixbook's version is timed against.

    Random orderings from the argsort of a uniform ``(b, b)`` matrix, p-series weights
    ``s^(−γ) / Σ_j j^(−γ)`` gathered by rank, and one ``einsum`` over the flattened batch.
    Unlike :func:`mixbook.methods.zeta.weights` it does not fix which example dominates each row.

    Args:
        x: ``(b, *)`` NumPy array (float32).
        gamma: γ > 0.
        rng: a ``numpy.random.Generator``.

    Returns:
        ``(b, *)`` mixed array of ``x``'s dtype.
    """
    b = x.shape[0]
    ranks = np.argsort(np.argsort(rng.random((b, b)), axis=1), axis=1) + 1
    series = np.arange(1, b + 1, dtype=np.float64) ** -gamma
    w = (ranks.astype(np.float64) ** -gamma / series.sum()).astype(x.dtype)
    return np.einsum("nb,bd->nd", w, x.reshape(b, -1)).reshape(x.shape)


def multimix_numpy_reference(
    z: np.ndarray,
    n: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    return_weights: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A straightforward NumPy MultiMix, the peer that :func:`mixbook.methods.multimix.sample` is timed against.

    ``W`` ``(n, b)``: every row an independent Dirichlet(α 1_b) (``rng.dirichlet``), rounded to
    ``z``'s dtype; then one ``einsum`` ``W @ Z`` over the flattened batch.

    Args:
        z: ``(b, *)`` floating NumPy array (embeddings, e.g. ``(b, 512)`` float32).
        n: number of outputs, ``n >= 1`` (may exceed ``b``).
        alpha: Dirichlet concentration α > 0.
        rng: a ``numpy.random.Generator``.
        return_weights: also return ``W``.

    Returns:
        ``(n, *)`` mixed array of ``z``'s dtype; with ``return_weights``, ``(mixed, W)``.
    """
    if not isinstance(z, np.ndarray) or not np.issubdtype(z.dtype, np.floating):
        raise TypeError(f"z must be a floating NumPy array, got {type(z).__name__} "
                        f"{getattr(z, 'dtype', '')}".rstrip())
    if z.ndim < 1 or z.shape[0] == 0:
        raise ValueError(f"z must have a non-empty batch dimension, got shape {z.shape}")
    n = _checks.positive_int("n", n)
    alpha = _checks.positive_float("alpha", alpha)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    b = z.shape[0]
    w = rng.dirichlet(np.full(b, alpha), size=n).astype(z.dtype)
    mixed = np.einsum("nb,bd->nd", w, z.reshape(b, -1)).reshape(n, *z.shape[1:])
    return (mixed, w) if return_weights else mixed


@dataclass
class _Op:
    """One timed op of a case: its call, its role, its bytes family (:func:`mixbook.bench.bytes_moved`)."""

    fn: Callable[[], object]
    role: str  # "mixbook" | "peer" | "baseline"
    family: str
    mixbook: bool = False
    note: str = ""
    on: Callable[[object, object], object] | None = None   # the same call on given (x, y): for fake CUDA inputs


@dataclass
class _Inputs:
    """A case's batch and labels, and the buffers the in-place peers mix (kept across calls)."""

    x: torch.Tensor
    y: torch.Tensor
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)


def _timm_mixup(mode: str, num_classes: int):
    try:
        from timm.data import Mixup
    except ImportError:  # pragma: no cover - timm is in the test extras
        return None
    return Mixup(mixup_alpha=ALPHA, cutmix_alpha=0.0, prob=1.0, mode=mode, label_smoothing=0.0,
                 num_classes=num_classes)


def image_peers(case: Case, dev: torch.device, inp: _Inputs, notes: list[str]) -> dict[str, _Op]:
    """The peer ops of an image case: torchvision ``MixUp`` and ``CutMix``, timm's ``Mixup`` in
    batch mode (in place, and on a fresh clone) and elem mode (even batches, timm installed), the
    NumPy ζ-mixup (CPU, float32) and one matmul ``(b, b) @ (b, D)``."""
    from torchvision.transforms import v2

    x, y, c = inp.x, inp.y, case.num_classes
    b = case.batch

    tv_mixup, tv_cutmix = v2.MixUp(alpha=ALPHA, num_classes=c), v2.CutMix(alpha=ALPHA, num_classes=c)
    w = zeta.weights(b, gamma=ZETA_GAMMA, device=dev).to(x.dtype)
    flat = x.reshape(b, -1)
    ops = {
        "torchvision_mixup": _Op(lambda: tv_mixup(x, y), "peer", "pairwise"),
        "torchvision_cutmix": _Op(lambda: tv_cutmix(x, y), "peer", "pairwise", note="CutMix: a different op, for scale"),
    }
    timm_batch, timm_elem = _timm_mixup("batch", c), _timm_mixup("elem", c)
    if timm_batch is None:
        notes.append("timm not installed: timm peers skipped")
    elif b % 2:
        notes.append(f"timm needs an even batch: timm peers skipped at b={b}")
    else:
        buf = inp.buffers.setdefault("timm", x.clone())
        ops["timm_batch"] = _Op(lambda: timm_batch(buf, y), "peer", "pairwise",
                                note="in place on a persistent buffer (no clone charged)")
        ops["timm_batch_clone"] = _Op(lambda: timm_batch(x.clone(), y), "peer", "pairwise",
                                      note="fresh clone each call (input kept, as mixbook)")
        ops["timm_elem"] = _Op(lambda: timm_elem(buf, y), "peer", "pairwise", note="in place, per-example loop")
    if dev.type == "cpu" and x.dtype == torch.float32:
        x_np, rng = x.numpy(), np.random.default_rng(0)
        ops["numpy_zeta"] = _Op(lambda: zeta_numpy_reference(x_np, ZETA_GAMMA, rng), "peer", "dense")
    ops["matmul"] = _Op(lambda: w @ flat, "peer", "dense", note=f"one {case.dtype} matmul (b,b)@(b,D)")
    return ops


def embedding_peers(case: Case, dev: torch.device, inp: _Inputs, notes: list[str]) -> dict[str, _Op]:
    """The peer ops of a MultiMix embedding case ``(b, d)`` → ``(n, d)``: the NumPy MultiMix (CPU,
    float32) and one matmul ``(n, b) @ (b, d)``."""
    z, b, n = inp.x, case.batch, case.n
    w = multimix.weights(b, n=n, alpha=ALPHA, device=dev).to(z.dtype)
    ops = {}
    if dev.type == "cpu" and z.dtype == torch.float32:
        z_np, rng = z.numpy(), np.random.default_rng(0)
        ops["numpy_multimix"] = _Op(lambda: multimix_numpy_reference(z_np, n, ALPHA, rng), "peer", "dense")
    ops["matmul"] = _Op(lambda: w @ z, "peer", "dense", note=f"one {case.dtype} matmul (n,b)@(b,d)")
    return ops
