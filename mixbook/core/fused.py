"""The pairwise mix as one fused kernel (``torch.compile``), with the eager path as fallback.

The eager pairwise mix is two kernels: ``out = source.index_select(0, partner)`` (read ``b·D``,
write ``b·D``) and ``out.lerp_(x, λ)`` (read ``2·b·D``, write ``b·D``): five passes over the batch
where a fused gather-and-interpolate needs three (read ``x`` and the partner rows, write the
output). :func:`pairwise` compiles ``lerp(source[partner], x, λ)`` with ``torch.compile``
(Inductor generates one Triton kernel on CUDA) and falls back to the eager kernels elsewhere.

Which path runs is a process-wide setting (:func:`set_backend`):

* ``"auto"`` (default): compiled on CUDA for batches of at least :data:`AUTO_MIN_BYTES` when
  Triton supports the device (``torch.utils._triton.has_triton``), eager otherwise. Below that
  size a call is bound by its fixed cost, not by bandwidth: on the H200 (chapter 7) the
  compiled call's guard and cache lookup made ``MixUp`` at b = 32 slower (409 µs) than the two
  eager kernels (229 µs), and the two passes fusion saves are worth a few µs there. If
  compiling still fails (no compiler, an unsupported GPU), ``auto`` warns once and stays on
  the eager kernels for the rest of the process. On the CPU the compiled C++ loop is no faster
  at the batch sizes of training and compiling costs tens of seconds, so ``auto`` keeps the
  CPU eager.
* ``"eager"``: always the two eager kernels (bit-for-bit the historical results).
* ``"compiled"``: always compiled, on any device (needs a C++ compiler on the CPU); a failure
  to compile is raised, not hidden.

**No recompile-limit fallback.** Dynamo keeps at most ``recompile_limit`` (8) graphs per code
object, and a dtype, a rank, an aliasing (``source is x``) or a stride-0 λ each needs its own
graph: one compiled function for all of them hit the limit in the H200 test run and fell back
to eager. Here every such *signature* (dtype, whether the partners come from ``x`` itself,
whether λ is one value a batch) gets its own compiled copy of :func:`kernel` (a distinct code
object, so its own cache), and the batch is flattened to ``(b, D)`` with ``dynamic=True``:
batch sizes (the last, smaller batch of an epoch) and image sizes reuse one graph.

The two paths agree to floating-point rounding (``lerp``'s two formulas may differ in the last
bit), not bit for bit; tests compare them with a tolerance.
"""

from __future__ import annotations

import functools
import types
import warnings

import torch

__all__ = ["BACKENDS", "AUTO_MIN_BYTES", "set_backend", "get_backend", "pairwise", "kernel", "uses_compiled",
           "compiled_signatures"]

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


def uses_compiled(device: torch.device, nbytes: int | None = None) -> bool:
    """Whether :func:`pairwise` takes the compiled path for a batch of ``nbytes`` bytes on
    ``device`` (``None``: a batch large enough for ``"auto"``, :data:`AUTO_MIN_BYTES`)."""
    if _backend == "compiled":
        return True
    return (_backend == "auto" and device.type == "cuda" and not _compile_failed
            and (nbytes is None or nbytes >= AUTO_MIN_BYTES) and _triton_available())



def kernel(x: torch.Tensor, source: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lerp(source[partner], x, lam)`` out of place: what :func:`pairwise` compiles, and what a training
    step runs under ``vmap`` (:func:`mixbook.core.mixing.mix_pairwise`)."""
    return torch.lerp(source.index_select(0, partner), x, lam)


AUTO_MIN_BYTES = 32 * 2**20
"""The smallest batch (bytes of ``x``) that ``"auto"`` mixes with the compiled kernel on CUDA."""

_COMPILE_BACKEND = "inductor"   # tests trace with a cheaper backend; the guards and caches are Dynamo's either way
_COMPILED: dict[tuple, object] = {}


def _compiled(signature: tuple):
    """The compiled :func:`kernel` for one signature ``(dtype, aliased, one λ a batch)``: a copy of
    the function with its own code object, so that each signature has its own Dynamo cache."""
    fn = _COMPILED.get(signature)
    if fn is None:
        code = kernel.__code__.replace(co_name=f"pairwise_{len(_COMPILED)}")
        copy = types.FunctionType(code, kernel.__globals__, code.co_name, kernel.__defaults__, kernel.__closure__)
        fn = _COMPILED[signature] = torch.compile(copy, dynamic=True, fullgraph=True, backend=_COMPILE_BACKEND)
    return fn


def compiled_signatures() -> tuple[tuple, ...]:
    """The signatures compiled so far in this process (each has its own compiled function)."""
    return tuple(_COMPILED)


def _run_compiled(x: torch.Tensor, source: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    flat_lam = lam.reshape(lam.shape[0], 1)
    one_lam = lam.shape[0] == 1 or flat_lam.stride(0) == 0
    signature = (x.dtype, source is x, one_lam)
    x2 = x.reshape(b, -1)
    s2 = x2 if source is x else source.reshape(source.shape[0], -1)
    return _compiled(signature)(x2, s2, partner, flat_lam).view(x.shape)


def _cpu_like(x: torch.Tensor) -> bool:
    """Whether ``x`` lives where ``"auto"`` never compiles (every device but CUDA)."""
    return not x.is_cuda


def pairwise(x: torch.Tensor, source: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``out[k] = lam[k]·x[k] + (1 − lam[k])·source[partner[k]]`` in one pass when compiled.

    Args:
        x: ``(b, *)`` floating batch.
        source: the tensor partners are gathered from: ``x`` itself, or a separate ``(m, *)``
            batch of the same dtype and trailing shape.
        partner: ``(b,)`` int64 indices into ``source``.
        lam: λ of ``x``'s dtype, ``(b, 1, …, 1)`` or ``(1, 1, …, 1)`` (broadcast over the batch).

    Returns:
        A new ``(b, *)`` tensor of ``x``'s dtype; the inputs are not modified. Arguments are
        not checked here (:meth:`mixbook.Mixing.apply` checks them).
    """
    global _compile_failed
    if _backend != "compiled" and _cpu_like(x) and not torch.compiler.is_compiling():   # the CPU's hot path
        return source.index_select(0, partner).lerp_(x, lam)
    if torch.compiler.is_compiling():
        # Inside the caller's torch.compile: the enclosing graph fuses the out-of-place lerp
        # itself (a nested compile, or the in-place eager kernel, would only get in its way).
        return kernel(x, source, partner, lam)
    if _backend == "compiled":
        return _run_compiled(x, source, partner, lam)
    if _backend == "auto" and uses_compiled(x.device, x.numel() * x.element_size()):
        try:
            return _run_compiled(x, source, partner, lam)
        except Exception as err:  # Inductor/Triton failures have no common base class
            _compile_failed = True
            warnings.warn(f"mixbook.core.fused: the compiled pairwise mix failed ({type(err).__name__}: {err}); "
                          "using the eager kernels for the rest of this process", RuntimeWarning, stacklevel=2)
    return source.index_select(0, partner).lerp_(x, lam)
