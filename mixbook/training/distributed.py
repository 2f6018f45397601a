"""Mixing over the global batch of a ``torch.distributed`` process group (an option).

Under ``torchrun``, :func:`mixbook.training.train.fit` mixes per rank: partners and MultiMix rows come
from the rank's local batch, as timm and torchvision do. :class:`GlobalBatch` wraps a method so
that they come from the whole global batch instead: the inputs (for input-level methods) or the
embeddings at the method's layer are all-gathered with the autograd-aware
``torch.distributed.nn.functional.all_gather`` (its backward sums every rank's gradient back to
the rank that produced the rows), one mixing is drawn over the ``b·world`` rows from a stream
that is the same on every rank, and each rank computes its ``1/world`` share of the ``n``
outputs. The mean over ranks of the ranks' losses (what DDP's gradient averaging gives) is then
the loss of one process on the concatenated batch, in value and gradient.

Costs: an all-gather of the layer's ``(b, *)`` rows per step (``(world − 1)·b·d`` elements
received per rank, and the same again in the backward), and every rank computes the mixing of
all ``n`` outputs before keeping its share (small next to the network).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core import _checks, hooks
from . import train
from ..core.step import prepares
from .steps import make_method

__all__ = ["DEFAULT_TIMEOUT_MINUTES", "init_from_env", "GlobalBatch", "gather"]

DEFAULT_TIMEOUT_MINUTES = 5.0
"""The process-group timeout :func:`init_from_env` (and ``python -m mixbook.chapters.cifar_grid``) use: a
collective that waits longer for a rank that died or stopped fails on the others (gloo's own
default is 30 minutes; a training step of the book's grids takes well under one)."""


def init_from_env(backend: str | None = None, *, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> bool:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) with a
    timeout; returns whether it joined (``False`` outside torchrun, or when a group is already initialised).

    Args:
        backend: ``None``: NCCL when CUDA is available, else gloo.
        timeout_minutes: how long a collective waits for the other ranks before it fails (> 0).
    """
    import datetime
    import os

    minutes = _checks.positive_float("timeout_minutes", timeout_minutes)
    dist = torch.distributed
    if "RANK" not in os.environ or not dist.is_available() or dist.is_initialized():
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    return True


def _group() -> tuple[int, int] | None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def gather(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``(b, *)`` rows in the global order of :func:`mixbook.training.train.fit` (row ``k·world + r``
    is rank ``r``'s ``k``-th), differentiable (``torch.distributed.nn.functional.all_gather``).

    All ranks must pass the same shape. Outside a process group: ``t`` itself.
    """
    group = _group()
    if group is None:
        return t
    _, world = group
    if t.requires_grad:
        from torch.distributed.nn.functional import all_gather

        parts = all_gather(t.contiguous())
    else:
        parts = [torch.empty_like(t) for _ in range(world)]
        torch.distributed.all_gather(parts, t.contiguous())
    return torch.stack(list(parts), 1).reshape(t.shape[0] * world, *t.shape[1:])


class GlobalBatch:
    """A training method that mixes over the global batch of the process group.

    Args:
        method: a registered name or a method with a ``prepare`` (:class:`mixbook.core.step.Step`):
            ERM, mixup, the reformulation, ζ-mixup, MultiMix (input or embedding), manifold
            mixup, CutMix. Its ``b`` (MultiMix's and ζ-mixup's mixing width) becomes
            ``b·world``; ``n`` must be divisible by the world size.
        seed: seed of the mixing stream shared by every rank (the one-process mixing stream of
            :func:`mixbook.training.train.generators` for that seed: with ``fit``'s seed, a run with
            ``world`` ranks of batch ``b`` draws what one process with batch ``b·world`` draws).
        options: passed to :func:`mixbook.make_method` with a name.

    Outside a process group the method runs as it is (with ``fit``'s generator).
    """

    def __init__(self, method: str | Any, *, seed: int = 0, **options: Any) -> None:
        inner = make_method(method, **options) if isinstance(method, str) else method
        if options and not isinstance(method, str):
            raise TypeError("options are only accepted with a method name")
        if not prepares(inner):
            raise TypeError(f"method must be a registered name or have a .prepare(...) (a mixbook.core.step.Step), "
                            f"got {inner!r}")
        self.method, self.seed = inner, _checks.seed("seed", seed)
        self._gen: torch.Generator | None = None

    def _shared(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = train.generators(self.seed, device)[1]
        return self._gen

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             generator: torch.Generator) -> torch.Tensor:
        group = _group()
        if group is None:
            return self.method.loss(model, x, y, num_classes, generator)
        rank, world = group
        x_all, y_all = gather(x.detach()), gather(y)
        step = self.method.prepare(model, x_all, y_all, num_classes, self._shared(x.device))
        if step.outputs is None:
            raise TypeError(f"GlobalBatch: {self.method!r} prepared a Step that does not state its outputs")
        b_all = step.clean_rows                    # the step states its clean rows and outputs
        n = step.outputs - b_all
        if n % world or b_all % world:
            raise ValueError(f"GlobalBatch: the {n} mixed outputs (and {b_all} clean rows) must split evenly "
                             f"over the {world} ranks; choose n divisible by the world size")
        share = torch.arange(rank * (n // world), (rank + 1) * (n // world), device=x.device)
        if b_all:                                  # clean_plus_soft_ce: (labels of the clean rows, mixed targets)
            own = torch.arange(rank * (b_all // world), (rank + 1) * (b_all // world), device=x.device)
            rows = torch.cat([own, b_all + share])
            loss_args = (step.loss_args[0][own], step.loss_args[1][share])
        else:
            rows = share
            loss_args = tuple(a[share] if a.ndim and a.shape[0] == n else a for a in step.loss_args)
        if step.mix is None:
            logits = model(step.inputs[rows])
        else:
            args = step.args
            logits = hooks.transform_at(model, x, step.layer,
                                        lambda h: step.mix(gather(h), *args).index_select(0, rows))
        return step.loss(logits, *loss_args)
