"""Training steps and training methods: one generic method built from a sampler, and the registry.

A training method turns a mini-batch into a loss (:class:`Method`). Every built-in method first
*prepares* its step (:class:`Step`: the inputs, where to mix, the mixing tensors, the loss) and
then runs it (:func:`run_step`); :mod:`mixbook.population` vectorises many members' prepared
steps with ``torch.func.vmap``, which is why a step's ``mix`` and ``loss`` are pure functions of
their tensor arguments.

:class:`SamplerMethod` is the one method that mixing methods are built from. It takes

* a **sampler**, ``sampler(x, y, *, generator, **hp) -> Mixing`` (every ``sample`` of the
  package: :func:`mixbook.mixup.sample`, :func:`mixbook.reformulation.sample`,
  :func:`mixbook.zeta.sample`, :func:`mixbook.multimix.sample`, or a user's own);
* **where to mix**, ``at``: ``"input"``, a module path (``"features"``: mixing at that layer's
  output through :func:`mixbook.hooks.transform_at`), or a sequence of paths, one drawn uniformly
  at every step from a host RNG seeded with ``layer_seed`` (manifold mixup, Verma et al. 2019);
* the **loss form**: ``"soft"`` (soft-target cross-entropy against ``W·onehot(y)``), ``"mixed"``
  (λ-weighted integer-target cross-entropy ``λ CE(z, y) + (1 − λ) CE(z, y[partner])``, equal to
  ``"soft"`` in value and gradient for a pairwise mixing) or ``"kept"`` (the plain cross-entropy
  against each example's own label: the reformulation, for losses linear in the label);
* the **clean term** (``clean=True``): the unmixed batch runs alongside (one concatenated pass)
  and its cross-entropy is added, as MultiMix training needs (chapter 5);
* an optional pool of **partners** (the reformulation's unlabelled examples), moved to the
  batch's device once.

Each method module registers its entry, with its defaults, next to its sampler
(``@steps.register("zeta")`` in :mod:`mixbook.zeta`); :func:`make_method` builds one by name.
One naming rule: a method is known by its registry name (snake_case, the module's name for a
mixing module: ``"mixup"``, ``"zeta"``, ``"manifold_mixup"``), each mixing module's factory is
``training_method``, and every built-in method's ``repr`` is its registry name and its options,
e.g. ``zeta(gamma=2.8)``, ``erm()``, ``cutmix(alpha=1.0)``.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks, hooks
from .mixing import Mixing

__all__ = ["Method", "Step", "run_step", "ce", "soft_ce", "mixed_ce", "clean_plus_soft_ce", "mix_pairwise",
           "mix_dense", "mix_dense_with_clean", "LOSS_FORMS", "SamplerMethod", "METHODS", "register", "make_method"]


class Method(Protocol):
    """A training method: the loss of one mini-batch."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             generator: torch.Generator) -> torch.Tensor: ...


@dataclass(frozen=True, eq=False)
class Step:
    """One training step of a method, prepared before the forward pass.

    A method's ``prepare`` draws everything random for the step (λ, partners, the layer, a
    box) and returns a ``Step``; :func:`run_step` runs the model on ``inputs`` with
    ``mix(h, *args)`` applied to the output ``h`` of ``layer``, and
    ``loss(logits, *loss_args)`` scores the logits. Splitting the step this way lets
    :mod:`mixbook.population` run many members' steps as one vectorised call: ``mix`` and
    ``loss`` are pure functions of their arguments (the step's tensors go in ``args`` and
    ``loss_args``, never in a closure), so they run under ``torch.func.vmap``.

    Attributes:
        inputs: what the model is called on (already mixed for input-level methods).
        loss: ``loss(logits, *loss_args) -> scalar``, e.g. :func:`ce`, :func:`soft_ce`.
        loss_args: the targets ``loss`` needs.
        layer: ``"input"`` (no hidden transform) or a module path of the model.
        mix: ``mix(h, *args) -> h'`` applied at ``layer`` (``None`` with ``"input"``).
        args: the tensors ``mix`` needs (partners, λ, a mixing matrix…).
    """

    inputs: torch.Tensor
    loss: Callable[..., torch.Tensor]
    loss_args: tuple[torch.Tensor, ...]
    layer: str = hooks.INPUT
    mix: Callable[..., torch.Tensor] | None = None
    args: tuple[torch.Tensor, ...] = ()

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


# ---------------------------------------------------------------------- the steps' pure pieces
# Unchecked: the methods build their targets themselves, valid by construction (and a value
# check cannot run under vmap). Same arithmetic as mixbook.losses.
def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``CE(logits, y)`` with integer labels, mean over the batch."""
    return F.cross_entropy(logits, y)


def soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft-target cross-entropy, mean over the batch (:func:`mixbook.soft_cross_entropy`)."""
    return F.cross_entropy(logits, targets.to(logits.dtype))


def mixed_ce(logits: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``λ CE(z, y) + (1 − λ) CE(z, y')``, mean (:func:`mixbook.mixed_cross_entropy`)."""
    ce_a = F.cross_entropy(logits, y, reduction="none")
    ce_b = F.cross_entropy(logits, y_partner, reduction="none")
    return (ce_b + lam.to(logits.dtype) * (ce_a - ce_b)).mean()


def clean_plus_soft_ce(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``CE(logits[:b], y) + soft_ce(logits[b:], targets)`` with ``b = len(y)``: clean rows first."""
    b = y.shape[0]
    return F.cross_entropy(logits[:b], y) + soft_ce(logits[b:], targets)


def mix_pairwise(h: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam·h + (1 − lam)·h[partner]`` (a pairwise :class:`~mixbook.mixing.Mixing` of ``h``)."""
    lam = lam.to(h.dtype).view(-1, *([1] * (h.ndim - 1)))
    return torch.lerp(h.index_select(0, partner), h, lam)


def mix_dense(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``W @ h`` over the batch (a dense :class:`~mixbook.mixing.Mixing` of ``h``)."""
    return (weights.to(h.dtype) @ h.reshape(weights.shape[1], -1)).reshape(weights.shape[0], *h.shape[1:])


def mix_dense_with_clean(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``cat([h, W @ h])``: the clean rows first, then the mixed ones."""
    return torch.cat([h, mix_dense(h, weights)])


class _Prepared:
    """Base of the built-in methods: ``loss`` is :meth:`prepare` followed by :func:`run_step`."""

    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                generator: torch.Generator) -> Step:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
             generator: torch.Generator) -> torch.Tensor:
        step = self.prepare(model, x, y, num_classes, generator)
        return step.score(run_step(model, step))


# ---------------------------------------------------------------------- the generic method
LOSS_FORMS = ("soft", "mixed", "kept")
"""The loss forms of :class:`SamplerMethod` (module docstring)."""


class SamplerMethod(_Prepared):
    """A training method built from a sampler, where to mix, a loss form and the clean term.

    Args:
        sampler: ``sampler(x, y, *, generator, **hp) -> Mixing``.
        at: ``"input"``, a module path of the trained model, or a non-empty sequence of
            candidate paths (``"input"`` allowed), one drawn per step. Paths are checked against
            the model at its first step (``ValueError`` naming a bad path); through DDP and
            compile wrappers they name the user's network.
        loss: one of :data:`LOSS_FORMS`. ``"mixed"`` needs a pairwise mixing, ``"kept"`` one
            output per input.
        clean: add the cross-entropy of the unmixed batch (dense mixings with the ``"soft"``
            loss: the clean rows run first, in the same pass).
        layer_seed: seed of the layer choice when ``at`` is a sequence: the draws restart from
            it for every new model, as a separate run would.
        partners: optional ``(m, *)`` pool the sampler draws partners from (passed to it as
            ``partners=``, and to ``Mixing.apply``); moved to the batch's device and dtype once,
            never modified.
        **hp: the sampler's hyper-parameters. They are checked when the method is built, by
            one draw on a two-example probe batch (so a bad value raises the sampler's own
            ``ValueError``/``TypeError`` here, not at the first step).
    """

    def __init__(self, sampler: Callable[..., Mixing], *, at: str | Sequence[str] = hooks.INPUT, loss: str = "soft",
                 clean: bool = False, layer_seed: int = 0, partners: torch.Tensor | None = None, **hp: Any) -> None:
        if not callable(sampler):
            raise TypeError(f"sampler must be callable as sampler(x, y, *, generator, **hp), got {type(sampler).__name__}")
        if isinstance(at, str):
            self.layers: tuple[str, ...] = (at,)
            self._draw_layer = False
        elif isinstance(at, Sequence) and at and all(isinstance(p, str) for p in at):
            self.layers = tuple(at)
            self._draw_layer = True
        else:
            raise TypeError(f"at must be 'input', a module path (str) or a non-empty list of module paths, got {at!r}")
        self.sampler = sampler
        self.loss_form = _checks.choice("loss", loss, LOSS_FORMS)
        self.clean = _checks.boolean("clean", clean)
        self.layer_seed = _checks.seed("layer_seed", layer_seed)
        if partners is not None:
            partners = _checks.batch("partners", partners)
        self.partners = partners
        self.hp = dict(hp)
        self._pool: torch.Tensor | None = None
        self._model: nn.Module | None = None
        self._rng = random.Random(self.layer_seed)
        self.name: str | None = None
        self.options: dict[str, Any] | None = None
        self._check_with_probe()

    def _check_with_probe(self) -> None:
        shape = (2, *self.partners.shape[1:]) if self.partners is not None else (2, 1)
        probe = torch.zeros(shape, dtype=torch.float32 if self.partners is None else self.partners.dtype)
        extra = {} if self.partners is None else {"partners": self.partners}
        m = self.sampler(probe, torch.zeros(2, dtype=torch.int64), generator=torch.Generator(), **extra, **self.hp)
        if not isinstance(m, Mixing):
            raise TypeError(f"sampler must return a mixbook.mixing.Mixing, got {type(m).__name__}")
        dense = m.weights is not None
        if self.loss_form == "mixed" and dense:
            raise ValueError("loss='mixed' (λ-weighted integer targets) needs a pairwise sampler; "
                             "use loss='soft' for a dense one")
        if self.loss_form == "kept" and m.num_outputs != m.batch_size:
            raise ValueError("loss='kept' (each output scored against its own input's label) needs one output per input")
        if self.clean and not (dense and self.loss_form == "soft"):
            raise ValueError("clean=True is for dense samplers with loss='soft' (MultiMix, ζ-mixup)")

    def _pool_for(self, x: torch.Tensor) -> torch.Tensor:
        if self._pool is None or self._pool.device != x.device or self._pool.dtype != x.dtype:
            self._pool = self.partners.to(device=x.device, dtype=x.dtype)
        return self._pool

    def _layer(self, model: nn.Module) -> str:
        if self._model is not model:                    # check the paths once per model; restart the draws
            if self.layers != (hooks.INPUT,):
                hooks.check_layers(model, list(self.layers))
                for path in self.layers:
                    hooks.check_not_compiled(model, path)
            self._rng = random.Random(self.layer_seed)
            self._model = model
        if not self._draw_layer:
            return self.layers[0]
        return self.layers[self._rng.randrange(len(self.layers))]

    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                generator: torch.Generator) -> Step:
        pool = None if self.partners is None else self._pool_for(x)
        extra = {} if pool is None else {"partners": pool}
        m = self.sampler(x, y, generator=generator, **extra, **self.hp)
        layer = self._layer(model)
        if self.loss_form == "mixed":
            loss, loss_args = mixed_ce, (y, y[m.partner], m.lam)
        elif self.loss_form == "kept":
            loss, loss_args = ce, (y,)
        else:
            targets = m.targets(y, num_classes)
            loss, loss_args = (clean_plus_soft_ce, (y, targets)) if self.clean else (soft_ce, (targets,))
        if layer == hooks.INPUT:
            mixed = m.apply(x) if pool is None else m.apply(x, pool)
            return Step(torch.cat([x, mixed]) if self.clean else mixed, loss, loss_args)
        if m.weights is None:
            return Step(x, loss, loss_args, layer=layer, mix=mix_pairwise, args=(m.partner, m.lam))
        return Step(x, loss, loss_args, layer=layer, mix=mix_dense_with_clean if self.clean else mix_dense,
                    args=(m.weights,))

    def __repr__(self) -> str:
        if self.name is not None and self.options is not None:
            return f"{self.name}(" + ", ".join(f"{k}={_show(v)}" for k, v in self.options.items()) + ")"
        at = repr(self.layers[0]) if not self._draw_layer else repr(list(self.layers))
        parts = [_name(self.sampler), f"at={at}", f"loss={self.loss_form!r}"]
        parts += [f"clean={self.clean}"] if self.clean else []
        parts += [f"partners={_show(self.partners)}"] if self.partners is not None else []
        parts += [f"{k}={_show(v)}" for k, v in self.hp.items()]
        return f"SamplerMethod({', '.join(parts)})"


def _name(fn: Callable[..., Any]) -> str:
    """``mixbook.zeta.sample``, or ``mixbook.zeta.sample(gamma=2.0)`` for a ``functools.partial``."""
    if isinstance(fn, functools.partial):
        bound = [_show(a) for a in fn.args] + [f"{k}={_show(v)}" for k, v in fn.keywords.items()]
        return f"{_name(fn.func)}({', '.join(bound)})"
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def _show(value: object) -> str:
    """An option as ``repr`` shows it: a tensor by its number of examples, a tuple as a list."""
    if isinstance(value, torch.Tensor):
        return f"<{value.shape[0]} examples>"
    return repr(list(value) if isinstance(value, tuple) else value)


# ---------------------------------------------------------------------- the registry
METHODS: dict[str, Callable[..., Method]] = {}
"""``{name: factory}``: the methods :func:`make_method` builds by name."""


def register(name: str) -> Callable[[Callable[..., Method]], Callable[..., Method]]:
    """Decorator adding a method factory (a class or a function) to :data:`METHODS` under ``name``.

    A factory returning a :class:`SamplerMethod` names it: the method's ``repr`` becomes
    ``name(option=value, ...)`` over the factory's arguments, defaults included. The factory
    itself is returned unchanged.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")

    def deco(factory: Callable[..., Method]) -> Callable[..., Method]:
        if name in METHODS:
            raise ValueError(f"a method named {name!r} is already registered")
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def build(*args: Any, **options: Any) -> Method:
            method = factory(*args, **options)
            if isinstance(method, SamplerMethod):
                bound = signature.bind(*args, **options)
                bound.apply_defaults()
                method.name, method.options = name, dict(bound.arguments)
            return method

        METHODS[name] = build
        return factory
    return deco


def make_method(name: str, **options: Any) -> Method:
    """Instantiate the registered method ``name`` with ``options``."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name](**options)
