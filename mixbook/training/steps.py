"""Training methods built from the registered specs: :class:`SamplerMethod` and :func:`make_method`.

A method module declares its method as a :class:`~mixbook.core.registry.MethodSpec` (sampler,
where to mix, loss form, clean term, hyper-parameters) and registers it by name
(:func:`mixbook.core.registry.register`); :func:`make_method` turns a name and options into a
training method: a spec becomes a :class:`SamplerMethod`, a registered
:class:`~mixbook.core.step.Method` factory is called. Every built-in method's ``repr`` is its
registry name and its options, e.g. ``zeta(gamma=2.8)``, ``erm()``, ``cutmix(alpha=1.0)``.

:class:`SamplerMethod` is the one method that mixing methods are built from. It takes

* a **sampler**, ``sampler(x, y, *, generator, **hp) -> Mixing`` (every ``sample`` of the
  package: :func:`mixbook.methods.mixup.sample`, :func:`mixbook.methods.reformulation.sample`,
  :func:`mixbook.methods.zeta.sample`, :func:`mixbook.methods.multimix.sample`,
  :func:`mixbook.methods.cutmix.sample`, or a user's own);
* **where to mix**, ``at``: ``"input"``, a module path (``"features"``: mixing at that layer's
  output through :func:`mixbook.core.hooks.transform_at`), or a sequence of paths, one drawn
  uniformly at every step from a host RNG seeded with ``layer_seed`` (manifold mixup);
* the **loss form** (:data:`mixbook.core.registry.LOSS_FORMS`): ``"soft"``, ``"mixed"`` or ``"kept"``;
* the **clean term** (``clean=True``): the unmixed batch runs alongside (one concatenated pass)
  and its cross-entropy is added, as MultiMix training needs (chapter 5);
* an optional pool of **partners** (the reformulation's unlabelled examples), moved to the
  batch's device once.

It prepares a :class:`~mixbook.core.step.Step` whose ``mix`` is the arithmetic of
:meth:`Mixing.apply <mixbook.Mixing.apply>` (:func:`~mixbook.core.mixing.mix_pairwise`,
:func:`~mixbook.core.mixing.mix_dense`) and whose loss is one of the unchecked cross-entropies of
:mod:`mixbook.core.losses`, so :mod:`mixbook.training.population` runs it under ``vmap``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .. import methods  # noqa: F401  (every method module registers its spec when imported)
from ..core import _checks, hooks, registry
from ..core.losses import ce, clean_plus_soft_ce, mixed_ce, soft_ce
from ..core.mixing import Mixing, mix_dense, mix_pairwise
from ..core.registry import LOSS_FORMS, MethodSpec
from ..core.step import Method, Step

__all__ = ["SamplerMethod", "make_method", "mix_dense_with_clean"]


def mix_dense_with_clean(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``cat([h, W @ h])``: the clean rows first, then the mixed ones."""
    return torch.cat([h, mix_dense(h, weights)])


class SamplerMethod(Method):
    """A training method built from a sampler, where to mix, a loss form and the clean term.

    Args:
        sampler: ``sampler(x, y, *, generator, **hp) -> Mixing``.
        at: ``"input"``, a module path of the trained model, or a non-empty sequence of
            candidate paths (``"input"`` allowed), one drawn per step. Paths are checked against
            the model at its first step (``ValueError`` naming a bad path); through DDP and
            compile wrappers they name the user's network.
        loss: one of :data:`~mixbook.core.registry.LOSS_FORMS`. ``"mixed"`` needs a pairwise mixing, ``"kept"`` one
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
        probe: the trailing shape of that probe batch (``(1, 4, 4)`` for a sampler of images).
    """

    def __init__(self, sampler: Callable[..., Mixing], *, at: str | Sequence[str] = hooks.INPUT, loss: str = "soft",
                 clean: bool = False, layer_seed: int = 0, partners: torch.Tensor | None = None,
                 probe: Sequence[int] = (1,), **hp: Any) -> None:
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
        self._probe = tuple(probe)
        self._pool: torch.Tensor | None = None
        self._model: nn.Module | None = None
        self._layers = hooks.LayerDraw(self.layers, self.layer_seed)
        self.name: str | None = None
        self.options: dict[str, Any] | None = None
        self._check_with_probe()

    @classmethod
    def from_spec(cls, spec: MethodSpec) -> "SamplerMethod":
        """The method a registered :class:`~mixbook.core.registry.MethodSpec` describes."""
        if not isinstance(spec, MethodSpec):
            raise TypeError(f"spec must be a mixbook.core.registry.MethodSpec, got {type(spec).__name__}")
        return cls(spec.sampler, at=spec.at, loss=spec.loss, clean=spec.clean, layer_seed=spec.layer_seed,
                   partners=spec.partners, probe=spec.probe, **spec.hyper_parameters)

    def _check_with_probe(self) -> None:
        shape = (2, *self.partners.shape[1:]) if self.partners is not None else (2, *self._probe)
        probe = torch.zeros(shape, dtype=torch.float32 if self.partners is None else self.partners.dtype)
        extra = {} if self.partners is None else {"partners": self.partners}
        m = self.sampler(probe, torch.zeros(2, dtype=torch.int64), generator=torch.Generator(), **extra, **self.hp)
        if not isinstance(m, Mixing):
            raise TypeError(f"sampler must return a mixbook.core.mixing.Mixing, got {type(m).__name__}")
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
            self._layers.restart()
            self._model = model
        if not self._draw_layer:
            return self.layers[0]
        return self._layers.draw()

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
        clean_rows = x.shape[0] if self.clean else 0
        outputs = clean_rows + m.num_outputs
        if layer == hooks.INPUT:
            mixed = m.apply(x) if pool is None else m.apply(x, pool)
            return Step(torch.cat([x, mixed]) if self.clean else mixed, loss, loss_args, outputs=outputs,
                        clean_rows=clean_rows)
        if m.weights is None:
            return Step(x, loss, loss_args, layer=layer, mix=mix_pairwise, args=(m.partner, m.lam), outputs=outputs)
        return Step(x, loss, loss_args, layer=layer, mix=mix_dense_with_clean if self.clean else mix_dense,
                    args=(m.weights,), outputs=outputs, clean_rows=clean_rows)

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
    """``mixbook.methods.zeta.sample``, or ``mixbook.methods.zeta.sample(gamma=2.0)`` for a ``functools.partial``."""
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


def make_method(name: str, **options: Any) -> Method:
    """The training method registered as ``name`` (:data:`mixbook.core.registry.SPECS`), with ``options``.

    A registered :class:`~mixbook.core.registry.MethodSpec` becomes a :class:`~mixbook.training.steps.SamplerMethod` whose
    ``repr`` is ``name(option=value, ...)`` over the factory's arguments, defaults included.
    """
    factory = registry.lookup(name)
    made = factory(**options)
    if isinstance(made, MethodSpec):
        bound = inspect.signature(factory).bind(**options)
        bound.apply_defaults()
        method = SamplerMethod.from_spec(made)
        method.name, method.options = name, dict(bound.arguments)
        return method
    return made
