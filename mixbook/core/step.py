"""The training step and the one training-method base.

A *training method* turns a mini-batch into a loss: ``method.loss(model, x, y, num_classes,
generator) -> scalar``. Every method of the package is a :class:`Method`: its :meth:`~Method.prepare`
draws everything random for the step (λ, partners, the layer, a box) and returns a :class:`Step`,
and :meth:`~Method.loss` runs it (:func:`run_step`) and scores it. Splitting the step this way
lets :mod:`mixbook.training.population` run many members' steps as one vectorised call, and
:class:`mixbook.training.distributed.GlobalBatch` re-split a step drawn over the global batch.
(:func:`mixbook.fit` accepts any object with that ``loss``; a method that cannot be split into a
step, such as dense MultiMix, overrides ``loss`` alone.)

A step's ``mix`` and ``loss`` are pure functions of their tensor arguments (the step's tensors go
in ``args`` and ``loss_args``, never in a closure), so they run under ``torch.func.vmap``: the
mixes are :func:`mixbook.core.mixing.mix_pairwise` and :func:`~mixbook.core.mixing.mix_dense`
(the arithmetic :meth:`Mixing.apply <mixbook.Mixing.apply>` uses), the losses the
unchecked cross-entropies of :mod:`mixbook.core.losses`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import hooks

__all__ = ["Method", "Step", "run_step", "prepares"]


@dataclass(frozen=True, eq=False)
class Step:
    """One training step of a method, prepared before the forward pass.

    :func:`run_step` runs the model on ``inputs`` with ``mix(h, *args)`` applied to the output
    ``h`` of ``layer``, and ``loss(logits, *loss_args)`` scores the logits.

    Attributes:
        inputs: what the model is called on (already mixed for input-level methods).
        loss: ``loss(logits, *loss_args) -> scalar``, e.g. :func:`mixbook.core.losses.ce`.
        loss_args: the targets ``loss`` needs. With ``clean_rows > 0`` the first is the ``(b,)``
            labels of the clean rows and the second the ``(outputs - clean_rows, C)`` soft
            targets of the mixed ones (:func:`mixbook.core.losses.clean_plus_soft_ce`); otherwise
            every tensor whose first dimension is ``outputs`` has one row an output.
        layer: ``"input"`` (no hidden transform) or a module path of the model.
        mix: ``mix(h, *args) -> h'`` applied at ``layer`` (``None`` with ``"input"``).
        args: the tensors ``mix`` needs (partners, λ, a mixing matrix…).
        outputs: the rows of the logits the loss scores (clean rows included); for an input-level
            step it defaults to the rows of ``inputs``.
        clean_rows: how many of them, first, are the unmixed batch scored against its own labels
            (MultiMix's clean term); ``0`` for every other step.
    """

    inputs: torch.Tensor
    loss: Callable[..., torch.Tensor]
    loss_args: tuple[torch.Tensor, ...]
    layer: str = hooks.INPUT
    mix: Callable[..., torch.Tensor] | None = None
    args: tuple[torch.Tensor, ...] = ()
    outputs: int | None = None
    clean_rows: int = 0

    def __post_init__(self) -> None:
        if self.outputs is None and self.mix is None:   # an input-level step: one output a row of its inputs
            object.__setattr__(self, "outputs", int(self.inputs.shape[0]))
        if self.clean_rows < 0 or (self.outputs is not None and self.clean_rows > self.outputs):
            raise ValueError(f"clean_rows must lie in [0, outputs={self.outputs}], got {self.clean_rows}")

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """``loss(logits, *loss_args)``."""
        return self.loss(logits, *self.loss_args)


def run_step(model: Callable[[torch.Tensor], torch.Tensor], step: Step, *, module: nn.Module | None = None) -> torch.Tensor:
    """The logits of ``model`` for a prepared :class:`Step`.

    ``module`` is the submodule at ``step.layer`` when the caller has it (``model`` may then be
    any callable that runs the network, e.g. a ``functional_call``).
    """
    if step.mix is None:
        return model(step.inputs)
    if module is None and isinstance(model, nn.Module):
        module = hooks.submodule(model, step.layer)  # prepare() checked the path (DDP/compile-aware)
    args = step.args
    return hooks.transform_at(model, step.inputs, step.layer, lambda h: step.mix(h, *args), module=module)


class Method:
    """The one training-method base: :meth:`loss` is :meth:`prepare` followed by :func:`run_step`.

    A subclass implements :meth:`prepare` (and a ``__repr__``: its registry name and options, e.g.
    ``erm()``, ``mixup(alpha=1.0, ...)``). Arguments are those of ``loss``: the model, the ``(b, *)``
    batch, its ``(b,)`` int64 labels, the number of classes and the step's generator (``fit``'s
    mixing stream).
    """

    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                generator: torch.Generator) -> Step:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not split into a Step; it overrides loss")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             generator: torch.Generator) -> torch.Tensor:
        step = self.prepare(model, x, y, num_classes, generator)
        return step.score(run_step(model, step))


def prepares(method: object) -> bool:
    """Whether ``method`` splits into a :class:`Step` (has a ``prepare`` that is not :class:`Method`'s
    abstract one): what :mod:`mixbook.training.population` vectorises and
    :class:`~mixbook.training.distributed.GlobalBatch` re-splits."""
    prepare = getattr(type(method), "prepare", None)
    return callable(prepare) and prepare is not Method.prepare
