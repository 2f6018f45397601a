"""Run a model with a transform at one of its layers: the hook engine of every hidden-layer method.

Manifold mixup (:mod:`mixbook.methods.manifold`), embedding-space MultiMix and dense MultiMix
(:mod:`mixbook.methods.multimix`, :mod:`mixbook.training.steps`) and the distributed global-batch mixing
(:mod:`mixbook.training.distributed`) all do one thing to a network they did not write: run it with the
output ``h`` of the module at a path (``"features.2"``, as in ``model.get_submodule``) replaced by
``fn(h)``. :func:`transform_at` does it with a forward hook registered for that one call and
removed in a ``finally`` block; :func:`check_layers` validates candidate paths with messages that
list close matches; :func:`unwrap`, :func:`resolve` and :func:`submodule` see through
``DistributedDataParallel``/``DataParallel`` (``module.``) and ``torch.compile`` (``_orig_mod.``)
wrappers, so a user names layers of their own network; :func:`check_not_compiled` refuses a
compiled module, whose graph would not run the hook. :class:`LayerDraw` is the one draw of a layer
among candidates (manifold mixup's, in :class:`~mixbook.methods.manifold.ManifoldMixup` and in the
registered training method alike).
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["INPUT", "transform_at", "unwrap", "resolve", "submodule", "check_not_compiled", "check_layers",
           "LayerDraw"]

INPUT = "input"
"""The layer name that means "mix the input itself" (input mixup)."""


def transform_at(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int | None = None,
    module: nn.Module | None = None,
) -> torch.Tensor:
    """``model(x)`` with ``fn`` applied to the output of the module at path ``layer``.

    The engine under :meth:`mixbook.ManifoldMixup.mix_at`, and under the embedding-space MultiMix and
    dense MultiMix training methods (:mod:`mixbook.training.train`): a forward hook replaces the output
    ``h`` ``(b, *)`` of ``layer`` by ``fn(h)`` ``(n, *)`` (``n`` may differ from ``b``: the rest of
    the network then runs on ``n`` examples). The hook exists only during this call.

    Args:
        model: any ``nn.Module``.
        x: the batch ``model`` takes.
        layer: ``"input"`` (then this is ``model(fn(x))``) or a module path accepted by
            ``model.get_submodule``; an unknown path raises ``ValueError`` listing valid ones.
        fn: the transform of the layer's output.
        batch_size: if given, the layer's output must have this many rows (``TypeError``
            otherwise).
        module: the module at ``layer`` if the caller has it already (skips the lookup).

    Returns:
        The model's output with the transform in place, ``(n, *)`` logits when ``fn`` maps the
        ``b`` rows of the layer to ``n`` rows (``(b, *)`` when it keeps them).

    Raises:
        RuntimeError: the module ran more than once in the forward pass (a shared module), or
            never.
        TypeError: its output is not one floating tensor with the batch first.
    """
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module path (str), got {type(layer).__name__}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if layer == INPUT:
        return model(fn(x))
    if module is None:
        (layer,) = check_layers(model, [layer])
        module = submodule(model, layer)
    check_not_compiled(model, layer)
    calls = 0

    def hook(mod: nn.Module, inputs: tuple, output: object) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError(
                f"manifold mixup: layer {layer!r} ({type(mod).__name__}) was called more than once in "
                f"one forward pass (a shared module?); its output would be mixed twice. Choose a module "
                f"that runs once, e.g. the enclosing block"
            )
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"manifold mixup: layer {layer!r} ({type(mod).__name__}) returned a {type(output).__name__}, "
                f"not a tensor; only a module whose output is one tensor (b, *) can be mixed"
            )
        if output.ndim < 1 or not output.is_floating_point() or \
                (batch_size is not None and output.shape[0] != batch_size):
            want = "the batch" if batch_size is None else f"the batch of {batch_size}"
            raise TypeError(
                f"manifold mixup: layer {layer!r} ({type(mod).__name__}) returned a {output.dtype} tensor of "
                f"shape {tuple(output.shape)}; it must be floating with {want} first"
            )
        return fn(output)

    handle = module.register_forward_hook(hook)
    try:
        out = model(x)
    finally:
        handle.remove()
    if calls == 0:
        raise RuntimeError(
            f"manifold mixup: layer {layer!r} ({type(module).__name__}) was never called by "
            f"{type(model).__name__}.forward, so nothing was mixed; choose a module that runs (if the model "
            f"is run through torch.compile, its forward hooks do not run: pass the uncompiled model)"
        )
    return out


def unwrap(model: nn.Module) -> tuple[str, nn.Module]:
    """``(prefix, inner)``: the module a wrapper holds and the path prefix that leads to it.

    ``DistributedDataParallel`` and ``DataParallel`` hold the user's network at ``module``,
    ``torch.compile(model)`` at ``_orig_mod``; wrappers nest (``DDP(torch.compile(net))``
    gives ``"module._orig_mod."``). An unwrapped model gives ``("", model)``.
    """
    import sys

    prefix = ""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            prefix, model = prefix + "module.", model.module
            continue
        eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # no compiled model without it
        if eval_frame is not None and isinstance(model, eval_frame.OptimizedModule):
            prefix, model = prefix + "_orig_mod.", model._orig_mod
            continue
        return prefix, model


def resolve(model: nn.Module, path: str) -> str:
    """The path of the user's layer ``path`` on ``model``, through DDP and compile wrappers.

    ``path`` names a submodule of the user's network (``"features.2"``); on
    ``DistributedDataParallel(net)`` it is ``"module.features.2"``, on ``torch.compile(net)``
    ``"_orig_mod.features.2"``. A path that already resolves on ``model`` itself, ``"input"``
    and a path unknown to both are returned unchanged (:func:`check_layers` reports those).
    """
    if path == INPUT or not path:
        return path
    prefix, inner = unwrap(model)
    if not prefix:
        return path
    try:
        inner.get_submodule(path)
    except AttributeError:
        return path
    return prefix + path


def submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(resolve(model, path))``: the user's layer, wrapped model or not."""
    return model.get_submodule(resolve(model, path))


def check_not_compiled(model: nn.Module, layer: str = "") -> None:
    """Refuse a compiled model, or a compiled module on the path to ``layer``.

    Manifold mixup (and every hidden-layer method) mixes through a forward hook registered for
    one call. A model returned by ``torch.compile(model)``, or one on which
    ``module.compile()`` was called (itself or a parent of ``layer``), runs a compiled graph
    that does not call hooks added after it was traced: the mixing would silently not happen.

    Raises:
        TypeError: naming the compiled module and what to pass instead.
    """
    from torch._dynamo.eval_frame import OptimizedModule

    if layer == INPUT:
        return  # input mixup mixes before the model runs: no hook
    user_layer, layer = layer, resolve(model, layer)
    parts = layer.split(".") if layer else []
    for i in range(len(parts) + 1):
        path = ".".join(parts[:i])
        try:
            mod = model.get_submodule(path)
        except AttributeError:
            return  # check_layers reports bad paths
        if isinstance(mod, OptimizedModule) or getattr(mod, "_compiled_call_impl", None) is not None:
            where = "model" if not path else f"module {path!r} of the model"
            orig = " (model._orig_mod for torch.compile(model))" if isinstance(mod, OptimizedModule) and not path else ""
            raise TypeError(
                f"manifold mixup: the {where} is compiled (torch.compile / nn.Module.compile); its compiled graph "
                f"does not run the forward hook that mixes layer {user_layer!r}, so nothing would be mixed. "
                f"Pass the uncompiled module{orig}: hidden-layer mixing needs eager forward hooks"
            )


def check_layers(model: nn.Module, layers: object) -> tuple[str, ...]:
    """Validate candidate layer names for ``model``; return them as a tuple.

    Raises ``TypeError`` unless ``layers`` is a sequence of strings (a bare string is refused),
    and ``ValueError`` for an empty sequence, a duplicate, the empty path (the model itself:
    its output is the logits) or a path that ``model.get_submodule`` does not know; the
    message names the bad path and lists close matches and a few valid paths.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of module paths such as ['input', 'features.1'], got {layers!r}")
    if len(layers) == 0:
        raise ValueError("layers must name at least one layer (a module path or 'input')")
    wrapper = model
    _, model = unwrap(model)   # paths name the user's network, also through DDP / compile wrappers
    valid = [INPUT] + [name for name, _ in model.named_modules() if name]
    out = []
    for path in layers:
        if not isinstance(path, str):
            raise TypeError(f"layers must hold module paths (str), got {type(path).__name__} {path!r}")
        if path in out:
            raise ValueError(f"layers names {path!r} twice; each candidate must be distinct")
        if path != INPUT:
            ok = bool(path)
            if ok:
                try:
                    model.get_submodule(path)
                except AttributeError:
                    try:
                        wrapper.get_submodule(path)   # a full path on the wrapper ("module.features")
                    except AttributeError:
                        ok = False
            if not ok:
                close = difflib.get_close_matches(path, valid, n=3, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                shown = sorted(valid, key=lambda name: name.count("."))[:10]  # shallowest first (stable)
                more = f" ... ({len(valid)} in all, see model.named_modules())" if len(valid) > len(shown) else ""
                raise ValueError(
                    f"layers: {path!r} is not a submodule of {type(model).__name__}{hint}. "
                    f"Valid paths: {shown}{more}"
                )
        out.append(path)
    return tuple(out)


class LayerDraw:
    """One layer drawn uniformly from ``layers`` at each :meth:`draw`, on the host.

    A ``random.Random(seed)`` of its own (no device synchronisation, no other stream touched): the
    sequence of layers depends on ``seed`` only, and :meth:`restart` begins it again (a new model
    restarts it, as a separate run would). Manifold mixup (Verma et al. 2019) draws its layer so.

    Args:
        layers: non-empty tuple of candidate paths (``"input"`` allowed), already checked.
        seed: seed of the host RNG.
    """

    def __init__(self, layers: Sequence[str], seed: int) -> None:
        self.layers = tuple(layers)
        self.seed = seed
        self._rng = random.Random(seed)

    def draw(self) -> str:
        """The next layer of the sequence."""
        return self.layers[self._rng.randrange(len(self.layers))]

    def restart(self) -> None:
        """Begin the sequence again from ``seed``."""
        self._rng = random.Random(self.seed)

    def getstate(self) -> object:
        return self._rng.getstate()

    def setstate(self, state: object) -> None:
        self._rng.setstate(state)

