"""The pairwise mix as one fused kernel (``torch.compile``), with the eager path as fallback.

The eager pairwise mix is two kernels: ``out = source.index_select(0, partner)`` (read ``b·D``,
write ``b·D``) and ``out.lerp_(x, λ)`` (read ``2·b·D``, write ``b·D``): five passes over the batch
where a fused gather-and-interpolate needs three (read ``x`` and the partner rows, write the
output). :func:`pairwise` compiles ``lerp(source[partner], x, λ)`` with ``torch.compile``
(Inductor generates one Triton kernel on CUDA) and falls back to the eager kernels elsewhere.

Which path runs is a process-wide setting (:func:`set_backend`):

* ``"auto"`` (default): compiled on CUDA when Triton supports the device
  (``torch.utils._triton.has_triton``: the package is installed and the GPU is recent enough),
  eager otherwise. If compiling still fails (no compiler, an unsupported GPU), ``auto`` warns
  once and stays on the eager kernels for the rest of the process. On the
  CPU the compiled C++ loop is no faster at the batch sizes of training (measured in chapter 7)
  and compiling costs tens of seconds, so ``auto`` keeps the CPU eager.
* ``"eager"``: always the two eager kernels (bit-for-bit the historical results).
* ``"compiled"``: always compiled, on any device (needs a C++ compiler on the CPU); a failure
  to compile is raised, not hidden.

The two paths agree to floating-point rounding (``lerp``'s two formulas may differ in the last
bit), not bit for bit; tests compare them with a tolerance.
"""

from __future__ import annotations

import functools
import warnings

import torch

__all__ = ["BACKENDS", "set_backend", "get_backend", "pairwise", "kernel", "uses_compiled"]

BACKENDS = ("auto", "eager", "compiled")
_backend = "auto"
_compile_failed = False


def set_backend(name: str) -> None:
    """Choose the pairwise-mix implementation for this process: one of :data:`BACKENDS`."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    """The current setting of :func:`set_backend`."""
    return _backend


@functools.cache
def _triton_available() -> bool:
    from torch.utils._triton import has_triton

    return has_triton()


def uses_compiled(device: torch.device) -> bool:
    """Whether :func:`pairwise` takes the compiled path for tensors on ``device``."""
    if _backend == "compiled":
        return True
    return _backend == "auto" and device.type == "cuda" and not _compile_failed and _triton_available()


def _eager(x: torch.Tensor, source: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return source.index_select(0, partner).lerp_(x, lam)


def kernel(x: torch.Tensor, source: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lerp(source[partner], x, lam)`` out of place: what :func:`pairwise` compiles, and what a training
    step runs under ``vmap`` (:func:`mixbook.core.mixing.mix_pairwise`)."""
    return torch.lerp(source.index_select(0, partner), x, lam)


@functools.cache
def _compiled():
    return torch.compile(kernel, dynamic=True, fullgraph=True)


def pairwise(x: torch.Tensor, source: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``out[k] = lam[k]·x[k] + (1 − lam[k])·source[partner[k]]`` in one pass when compiled.

    Args:
        x: ``(b, *)`` floating batch.
        source: the tensor partners are gathered from: ``x`` itself, or a separate ``(m, *)``
            batch of the same dtype and trailing shape.
        partner: ``(b,)`` int64 indices into ``source``.
        lam: λ of ``x``'s dtype, broadcastable to ``x`` (``(b, 1, …, 1)``).

    Returns:
        A new ``(b, *)`` tensor of ``x``'s dtype; the inputs are not modified. Arguments are
        not checked here (:meth:`mixbook.Mixing.apply` checks them).
    """
    global _compile_failed
    if torch.compiler.is_compiling():
        # Inside the caller's torch.compile: the enclosing graph fuses the out-of-place lerp
        # itself (a nested compile, or the in-place eager kernel, would only get in its way).
        return kernel(x, source, partner, lam)
    if uses_compiled(x.device):
        if _backend == "compiled":
            return _compiled()(x, source, partner, lam)
        try:
            return _compiled()(x, source, partner, lam)
        except Exception as err:  # Inductor/Triton failures have no common base class
            _compile_failed = True
            warnings.warn(f"mixbook.core.fused: the compiled pairwise mix failed ({type(err).__name__}: {err}); "
                          "using the eager kernels for the rest of this process", RuntimeWarning, stacklevel=2)
    return _eager(x, source, partner, lam)
