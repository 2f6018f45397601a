"""Manifold mixup (Verma et al., ICML 2019) for any ``nn.Module``, and its gradient.

Manifold mixup mixes *hidden* representations instead of inputs: at every step pick one layer
``k`` uniformly from a set of candidates (``"input"`` included, which is input mixup), run the
network up to ``k``, replace the batch of features ``h`` there by ``W h`` for a sampled mixing
``W`` (the same pairwise :class:`~mixbook.core.mixing.Mixing` as input mixup), finish the forward
pass, and score the logits against the mixed targets ``W Y``.

:class:`ManifoldMixup` does this for any model, without editing its class: the candidate layers
are module paths (as in ``model.get_submodule(path)``), and the mixing is a forward hook,
registered for one forward pass only, that *returns* ``mixing.apply(output)``. The hook is
removed in a ``finally`` block, so it never outlives the call, even when the forward raises.

One manifold mixup: :func:`spec` (registered as ``"manifold_mixup"``, what :func:`mixbook.fit` trains)
declares the sampler, its hyper-parameters, the candidate layers and the layer seed, and
:class:`ManifoldMixup` draws from that same spec, with the same layer draw
(:class:`mixbook.core.hooks.LayerDraw`): for the same generator and seed, the class and the
training method pick the same λ, partners and layers.

The analysis of chapter 3 lives apart: the gradient's four terms, gradient surgery and the
two-network training loop in :mod:`mixbook.chapters.manifold_gradient`, the flatness of class
representations in :func:`mixbook.training.metrics.flatness`, the hook engine in :mod:`mixbook.core.hooks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from ..core import _checks
from . import mixup
from ..core.mixing import Mixing
from ..core.registry import MethodSpec, register
from ..core.hooks import INPUT, LayerDraw, check_layers, check_not_compiled, submodule, transform_at

# ====================================================================== the hook
class ManifoldMixup:
    """Manifold mixup at a randomly chosen layer of any ``nn.Module``.

    Args:
        model: the network, any ``nn.Module`` mapping a batch ``(b, *)`` to logits ``(b, C)``.
            Its class is not modified; the only trace of a call is a forward hook that exists
            during that call.
        layers: the candidate layers, a non-empty sequence of distinct module paths as accepted
            by ``model.get_submodule(path)`` (``"features"``, ``"features.1"``, ``"layer2"``,
            ``"layer2.0.conv1"``...), or the special name ``"input"`` (mix the input itself,
            i.e. input mixup; a submodule literally named ``input`` cannot be chosen). Every
            path is checked here: an unknown one raises ``ValueError`` naming it and listing
            valid paths. The mixing is applied to the *output* of the named module.
        alpha: α > 0 of the Beta(α, α) distribution of λ (Verma et al. use α = 2).
        per_sample: one λ per example instead of one per batch.
        pairing: how partners are chosen, one of :data:`mixbook.methods.mixup.PAIRINGS` (the paper's
            shuffled batch is ``"random"``; class-aware pairings need ``y`` at call time).
        generator: optional ``torch.Generator`` on the batches' device, for λ and the pairing.
        seed: seed of the host-side ``random.Random`` that chooses the layer at each call
            (no device synchronisation); the layer sequence depends on ``seed`` only.

    The arguments are kept as attributes of the same names (``layers`` as a tuple).

    Attributes:
        spec: the :class:`~mixbook.core.registry.MethodSpec` it draws from
            (:func:`~mixbook.methods.manifold.spec`, with ``pairing``).
        last_layer: the layer chosen by the last call (``None`` before the first call); set
            before the forward pass runs, so after an exception it names the layer that failed.

    Calling ``mm(x, y)`` does one step:

    1. sample a pairwise mixing ``m = mixup.sample(x, y, alpha=..., per_sample=...,
       pairing=..., generator=...)`` on ``x``'s device;
    2. choose a layer uniformly among ``layers`` with the host RNG;
    3. return ``(logits, m)`` with ``logits = mm.mix_at(x, m, layer)``.

    The caller scores the logits against the mixed targets, either form (equal value and
    gradient)::

        mm = ManifoldMixup(model, ["input", "features.1", "features.3"], alpha=2.0)
        logits, m = mm(x, y)
        loss = mixbook.mixed_cross_entropy(logits, y, y[m.partner], m.lam)
        # or: mixbook.soft_cross_entropy(logits, m.targets(y, num_classes))
        loss.backward()

    Notes:
        * Works on any architecture whose chosen module returns one tensor with the batch
          first (torchvision's ResNet ``"layer1"``...``"layer4"``, the book's ``MLP`` and
          ``SmallCNN`` ``"features.k"`` / ``"features"``). A module that returns a tuple, a
          non-floating tensor or a tensor without the batch dimension raises ``TypeError``.
        * The chosen module must run exactly once per forward: a module called twice (a shared
          activation, as ``layerK.M.relu`` in a ResNet block) raises ``RuntimeError`` at its
          second call, one that is never called raises ``RuntimeError`` after the forward.
        * A convex combination commutes with an affine map, so mixing the output of a
          ``Linear`` or ``Conv`` equals mixing its input. In the book's ``MLP``
          (``features`` = Flatten, Linear, ReLU, Linear, ReLU), ``"features.1"`` mixes like
          ``"input"`` and ``"features.3"`` like ``"features.2"``; the distinct hidden choices are
          the post-activation paths ``"features.2"`` and ``"features.4"`` (= ``"features"``,
          the embedding). In ``SmallCNN`` they are ``"features.1"``, ``"features.3"``,
          ``"features.4"`` (after max-pooling) and ``"features.6"`` (≡ ``"features"``: average
          pooling and flattening are linear too).
        * A compiled model (``torch.compile(model)``, ``model.compile()``, or a compiled parent
          of a candidate layer) is refused with ``TypeError``: its graph would not run the
          mixing hook (:func:`~mixbook.core.hooks.check_not_compiled`).
        * Layers before the chosen one see the *unmixed* batch (BatchNorm statistics
          included), as in the paper. The hook is appended after the module's existing hooks.
        * No host synchronisation: the layer is chosen on the host, λ and partners are sampled
          on ``x``'s device, and the hook checks only shapes and dtypes.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        *,
        alpha: float = 2.0,
        per_sample: bool = False,
        pairing: str = "random",
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layers = check_layers(model, layers)
        for name in self.layers:
            check_not_compiled(model, name)
        self._modules = {name: submodule(model, name) for name in self.layers if name != INPUT}
        self.alpha = _checks.concentration("alpha", alpha)
        self.per_sample = _checks.boolean("per_sample", per_sample)
        self.pairing = _checks.choice("pairing", pairing, mixup.PAIRINGS)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        self.seed = _checks.seed("seed", seed)
        # the registered method's spec (one manifold mixup): its sampler and hyper-parameters, and the
        # same layer draw as the training method built from it
        base = spec(self.layers, alpha=self.alpha, per_sample=self.per_sample, seed=self.seed)
        self.spec = dataclasses.replace(base, hyper_parameters={**base.hyper_parameters, "pairing": self.pairing})
        self._draws = LayerDraw(self.layers, self.seed)
        self.last_layer: str | None = None

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Mixing]:
        """One manifold-mixup forward pass: ``(logits, mixing)``.

        Args:
            x: ``(b, *)`` batch, what ``model`` takes (floating when ``"input"`` is a candidate;
                for hidden layers only its batch size and device matter to the mixing).
            y: optional ``(b,)`` integer labels; required by the class-aware pairings, checked
                for batch size and device otherwise. They are not used to build targets: call
                ``mixing.targets(y, C)`` or use ``y[mixing.partner]`` and ``mixing.lam``.
            generator: a ``torch.Generator`` on ``x``'s device to use for this call instead
                of the one given at construction (``mixbook.training.train.fit`` passes its own).

        Returns:
            ``logits``: the model's output with the mixing applied at the chosen layer
            (:attr:`last_layer`); ``mixing``: the pairwise :class:`~mixbook.core.mixing.Mixing`
            applied (``partner`` and ``lam`` of shape ``(b,)``).
        """
        m, layer = self.draw(x, y, generator=generator)
        return self.mix_at(x, m, layer), m

    def draw(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> tuple[Mixing, str]:
        """Steps 1 and 2 of a call without the forward pass: ``(mixing, layer)``.

        Advances the layer sequence and sets :attr:`last_layer`, exactly as a call does
        (:mod:`mixbook.training.train` uses it to prepare a step before running the model).
        """
        x = _checks.tensor("x", x)
        m = self.spec.sampler(x, y, generator=self.generator if generator is None else generator,
                              **self.spec.hyper_parameters)
        layer = self._draws.draw()
        self.last_layer = layer
        return m, layer

    def mix_at(self, x: torch.Tensor, mixing: Mixing, layer: str) -> torch.Tensor:
        """``model(x)`` with ``mixing`` applied to the output of ``layer`` (deterministic).

        Args:
            x: ``(b, *)`` batch.
            mixing: any :class:`~mixbook.core.mixing.Mixing` of batch size ``b`` on the features'
                device (pairwise or dense; a dense ``(n, b)`` one changes the batch to ``n``
                from that layer on).
            layer: ``"input"`` or any valid module path of ``model`` (not only a candidate).

        Returns:
            The model's output. For ``"input"`` this is exactly ``model(mixing.apply(x))``.
        """
        if not isinstance(mixing, Mixing):
            raise TypeError(f"mixing must be a mixbook.Mixing, got {type(mixing).__name__}")
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a module path (str), got {type(layer).__name__}")
        if layer == INPUT:
            return self.model(mixing.apply(x))
        module = self._modules.get(layer)
        return transform_at(self.model, x, layer, mixing.apply, batch_size=mixing.batch_size,
                            module=module)

    def state_dict(self) -> dict:
        """The state of the draws (not the model's weights): the generator's state, the layer
        sequence's host RNG state and :attr:`last_layer`. :meth:`load_state_dict` of it makes
        the next calls draw exactly the same λ, partners and layers."""
        gen = self.generator
        return {"generator": None if gen is None else gen.get_state(),
                "generator_device": None if gen is None else str(gen.device),
                "layer_rng": self._draws.getstate(), "last_layer": self.last_layer, "layers": self.layers}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the candidate layers must be the same)."""
        if not isinstance(state, dict) or not {"generator", "layer_rng", "layers"} <= state.keys():
            raise ValueError("state must be a dict from ManifoldMixup.state_dict()")
        if tuple(state["layers"]) != self.layers:
            raise ValueError(f"state was saved for layers {list(state['layers'])}, this ManifoldMixup has {list(self.layers)}")
        if state["generator"] is not None:
            if self.generator is None:
                self.generator = torch.Generator(device=state.get("generator_device") or "cpu")
            self.generator.set_state(state["generator"])
        self._draws.setstate(state["layer_rng"])
        self.last_layer = state.get("last_layer")

    def __repr__(self) -> str:
        return (f"ManifoldMixup({type(self.model).__name__}, layers={list(self.layers)}, alpha={self.alpha}, "
                f"per_sample={self.per_sample}, pairing={self.pairing!r}, seed={self.seed})")


__all__ = ["ManifoldMixup", "spec"]


@register("manifold_mixup")
def spec(layers: Sequence[str], alpha: float = 2.0, per_sample: bool = False, seed: int = 0) -> MethodSpec:
    """Manifold mixup (Verma et al. 2019) as a training method (``make_method("manifold_mixup", ...)``).

    At each step the batch's mixing is drawn with :func:`mixbook.methods.mixup.sample` (λ ~ Beta(α, α),
    partners from ``fit``'s generator), then one layer uniformly from ``layers`` (host RNG seeded
    with ``seed``, as :class:`ManifoldMixup` does); the loss is the λ-weighted cross-entropy.

    Args:
        layers: candidate module paths of the trained model (``"input"`` = input mixup), e.g.
            ``["input", "features.2", "features.4"]`` for ``models.MLP(2, 2, (h, h))`` (the outputs
            of its ReLUs: mixing right after a Linear equals mixing its input). They are checked
            against the model at its first step (``ValueError`` for a bad path).
        alpha: α > 0 of Beta(α, α) (the paper uses 2).
        per_sample: one λ per example instead of per batch.
        seed: seed of the layer choice; a new model restarts the layer sequence from it.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)) or not layers \
            or not all(isinstance(name, str) for name in layers):
        raise TypeError(f"layers must be a non-empty list of module paths (str), got {layers!r}")
    return MethodSpec(mixup.sample, dict(alpha=alpha, per_sample=per_sample), at=tuple(layers), loss="mixed",
                      layer_seed=seed)
