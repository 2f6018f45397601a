"""The registry of training methods, below the methods that fill it.

A method module declares what its method *is* next to its sampler, and registers it by name:

* a mixing method declares a :class:`MethodSpec`: its sampler, where to mix, the loss form, the
  clean term and its hyper-parameters (``@register("zeta") def spec(gamma=2.8) -> MethodSpec``);
* a method that is not a sampler (ERM, label smoothing, dense MultiMix) registers a factory of a
  :class:`mixbook.core.step.Method`.

Training turns a registered name into a training method (:func:`mixbook.make_method`: a spec
becomes a :class:`mixbook.training.steps.SamplerMethod`). Nothing here imports the methods or
training: :mod:`mixbook.methods` imports every method module, one line each, and so fills
:data:`SPECS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from . import hooks

__all__ = ["MethodSpec", "LOSS_FORMS", "SPECS", "register", "names", "lookup"]

LOSS_FORMS = ("soft", "mixed", "kept")
"""The loss forms of a :class:`MethodSpec`.

``"soft"``: soft-target cross-entropy against ``W·onehot(y)``. ``"mixed"``: λ-weighted
integer-target cross-entropy ``λ CE(z, y) + (1 − λ) CE(z, y[partner])``, equal to ``"soft"`` in
value and gradient for a pairwise mixing. ``"kept"``: the plain cross-entropy against each
example's own label (the reformulation, for losses linear in the label)."""


@dataclass(frozen=True)
class MethodSpec:
    """What a mixing method is, as training needs it: how ``W`` is sampled, where it is applied, how
    the result is scored.

    Attributes:
        sampler: ``sampler(x, y, *, generator, **hyper_parameters) -> Mixing`` (the one sampler
            contract; a ``functools.partial`` of any ``sample`` of the package will do).
        hyper_parameters: the sampler's keyword arguments.
        at: ``"input"``, a module path of the trained model, or a tuple of candidate paths (one
            drawn uniformly at every step: manifold mixup, Verma et al. 2019).
        loss: one of :data:`LOSS_FORMS`.
        clean: add the cross-entropy of the unmixed batch (dense samplers with ``"soft"``:
            MultiMix training, chapter 5).
        layer_seed: seed of the layer draws when ``at`` is a tuple.
        partners: optional ``(m, *)`` pool the sampler draws partners from (the reformulation's
            unlabelled examples).
        probe: trailing shape of the two-example batch on which the hyper-parameters are checked
            when the method is built (``(1, 4, 4)`` for a sampler that needs images).
    """

    sampler: Callable[..., Any]
    hyper_parameters: Mapping[str, Any] = field(default_factory=dict)
    at: str | tuple[str, ...] = hooks.INPUT
    loss: str = "soft"
    clean: bool = False
    layer_seed: int = 0
    partners: torch.Tensor | None = None
    probe: tuple[int, ...] = (1,)


SPECS: dict[str, Callable[..., Any]] = {}
"""``{name: factory}``: each factory takes the method's options and returns a :class:`MethodSpec`
or a :class:`~mixbook.core.step.Method`."""


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a method factory (a function returning a :class:`MethodSpec`, or a
    :class:`~mixbook.core.step.Method` class or factory) to :data:`SPECS` under ``name``.

    One naming rule: a method is known by its registry name, snake_case (the module's name for a
    mixing module: ``"mixup"``, ``"zeta"``, ``"manifold_mixup"``); a mixing module's factory is
    called ``spec``. The factory is returned unchanged.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in SPECS:
            raise ValueError(f"a method named {name!r} is already registered")
        if not callable(factory):
            raise TypeError(f"a registered method must be callable with its options, got {factory!r}")
        inspect.signature(factory)   # a factory whose options cannot be read is refused here
        SPECS[name] = factory
        return factory
    return deco


def names() -> list[str]:
    """The registered names, sorted."""
    return sorted(SPECS)


def lookup(name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` (``ValueError`` listing the names otherwise)."""
    if not isinstance(name, str) or name not in SPECS:
        raise ValueError(f"method must be one of {names()}, got {name!r}")
    return SPECS[name]
