"""Beta and Dirichlet samples on the tensor's device, from an optional ``torch.Generator``.

``torch.distributions`` cannot take a generator and validates its arguments on every call
(a host synchronisation on an accelerator). Here samples are built from
``torch._standard_gamma`` directly, in log space, so that they stay exact for small
concentrations:

* For ``a < 1`` a Gamma(a) variate is often below the smallest normal float32 (2^-126):
  with probability ≈ 2^(-126a)/Γ(a+1), which is 0.42 at a = 0.01. ``torch._standard_gamma``
  clamps such draws to 2^-126, so the textbook ratio ``g1 / (g1 + g2)`` returns exactly 0.5
  whenever both draws of a pair are clamped: 18% of Beta(0.01, 0.01) samples, where the true
  distribution has almost no mass. We use the boost G(a) = G(a+1) · U^(1/a) (Marsaglia &
  Tsang 2000) and keep ``log G``, which never underflows; normalising is then a
  ``sigmoid``/``softmax`` of log-gammas.
* As α → 0 Beta(α, α) tends to Bernoulli(½) on {0, 1}: almost every λ lies within float32
  rounding of 0 or 1 (mixing then returns one of the two examples, unchanged to that
  precision), and none is NaN. At α = 0.01 about 60% of float32 draws are exactly 0.0 or 1.0.

Devices: CPU and CUDA generators produce different random streams, so the same seed gives
different (identically distributed) draws on the two devices; the GPU tests check the
distribution, not the values.
"""

from __future__ import annotations

import functools

import torch

from . import _checks, _random

__all__ = ["log_gamma", "beta", "dirichlet"]


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype samples are drawn in: ``dtype``, or float32 for fp16/bf16.

    CPU Gamma sampling has no fp16/bf16 kernel, and the smallest normal fp16 (6e-5) would
    clamp ``U`` far too early for the small-α boost; the result is cast back to ``dtype``.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


def _log_uniform(shape: tuple[int, ...] | torch.Size, *, device: torch.device, dtype: torch.dtype,
                 generator: torch.Generator | None) -> torch.Tensor:
    """``log U`` for ``U ~ U[0, 1)`` of ``shape``, with ``U`` clamped to the smallest normal number
    (``U = 0`` would give ``−inf``): the boost term's ``log U`` before it is divided by ``a``."""
    u = _random.rand(shape, generator=generator, device=device, dtype=dtype)
    return u.clamp_min_(torch.finfo(dtype).tiny).log_()


def log_gamma(concentration: torch.Tensor, generator: torch.Generator | None = None, *,
              boost: bool | None = None) -> torch.Tensor:
    """``log`` of Gamma(concentration, 1) samples, one per element; same shape, dtype, device.

    Stable for any concentration > 0 (see the module docstring).

    Args:
        concentration: floating tensor of concentrations > 0.
        generator: optional ``torch.Generator`` on its device.
        boost: ``None`` decides per element whether to use the small-α boost; ``True`` /
            ``False`` says that every element is below / at least 1 (the caller knows it when
            the concentrations are Python floats). Same draws and values either way, in fewer
            kernels when given (it matters for one λ per batch, the hot path of small batches).
    """
    a = concentration
    if boost is None:
        small = a < 1
        g = _random.standard_gamma(torch.where(small, a + 1, a), generator)
        log_u = _log_uniform(a.shape, device=a.device, dtype=a.dtype, generator=generator)
        return g.log() + torch.where(small, log_u / a, torch.zeros_like(a))
    g = _random.standard_gamma(a + 1 if boost else a, generator)
    # drawn either way: the same stream whatever ``boost`` says
    log_u = _log_uniform(a.shape, device=a.device, dtype=a.dtype, generator=generator)
    lg = g.log() if g.requires_grad else g.log_()  # _standard_gamma's backward keeps its output
    if boost:
        lg += log_u.div_(a)
    return lg


def beta(a: float, b: float, shape: tuple[int, ...] | torch.Size, *, device: torch.device | str | None = None,
         dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of Beta(a, b) in the standard parameterisation (density ∝ λ^(a−1)(1−λ)^(b−1)).

    Returns a tensor of ``shape`` with values in ``[0, 1]``: ``λ = G_a / (G_a + G_b)`` with
    independent Gamma variates (the textbook construction), computed as the first entry of a
    softmax over ``(log G_a, log G_b)``. A concentration ``c < 1`` is boosted,
    ``log G_c = log G_{c+1} + log(U) / c`` (see the module docstring), one uniform per boosted
    entry.

    In few operators, because one λ a batch is the hot path of small batches (each operator is a
    kernel launch on a GPU): Beta(α, α) with α ≥ 1 is five (a fill, the Gamma draw, a log, the
    softmax and a view), with α < 1 nine; the concentrations are filled on the device, not
    copied from the host (``torch.tensor([a, b], device=...)`` would be a blocking copy on CUDA).
    """
    a = _checks.concentration("a", a)
    b = _checks.concentration("b", b)
    device = torch.device(device) if device is not None else torch.device("cpu")
    _checks.generator(generator, device)
    return _beta(a, b, tuple(shape), device, dtype, generator)


def _beta(a: float, b: float, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
          generator: torch.Generator | None) -> torch.Tensor:
    """:func:`beta` for arguments the caller has checked (the samplers' hot path): the same draws."""
    work = _work_dtype(dtype)
    if (a == 1.0 or b == 1.0) and _random.sorts_keys(device):
        # Off the CPU (CUDA), where each operator is a kernel launch: Beta(a, 1) is U^(1/a) and
        # Beta(1, b) is 1 − U^(1/b) (inverse CDFs), so mixup's default α = 1 (uniform λ) is one
        # uniform draw and the reformulation's Beta(2, 1) a draw and a power; U ∈ [0, 1).
        u = _random.rand(shape, device=device, dtype=work, generator=generator)
        if a != 1.0:
            u = u.pow_(1.0 / a)
        elif b != 1.0:
            u = u.pow_(1.0 / b).neg_().add_(1.0)
        return u if work == dtype else u.to(dtype)
    if torch.compiler.is_compiling():
        conc = _concentrations(a, b, shape, device, work)
    else:   # a constant of (a, b, shape, device, dtype): filled once, then reused (one kernel less a draw)
        conc = _cached_concentrations(a, b, shape, device, work,
                                      torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE))
    lg = _random.standard_gamma(conc, generator).log_()
    if a == b and a < 1:          # both columns boosted: one uniform an entry
        lg.add_(_log_uniform(conc.shape, device=device, dtype=work, generator=generator), alpha=1.0 / a)
    else:                         # only the columns whose concentration is below 1
        for column, c in ((0, a), (1, b)):
            if c < 1:
                log_u = _log_uniform(shape, device=device, dtype=work, generator=generator)
                lg.select(-1, column).add_(log_u, alpha=1.0 / c)
    lam = torch.softmax(lg, dim=-1).select(-1, 0)
    return lam if work == dtype else lam.to(dtype)


def _concentrations(a: float, b: float, shape: tuple[int, ...], device: torch.device, work: torch.dtype) -> torch.Tensor:
    """The ``(*shape, 2)`` Gamma concentrations of Beta(a, b), each below 1 raised by 1 (the boost)."""
    conc = torch.full((*shape, 2), a + 1.0 if a < 1 else a, device=device, dtype=work)
    if b != a:
        conc.select(-1, 1).fill_(b + 1.0 if b < 1 else b)
    return conc


@functools.lru_cache(maxsize=128)
def _cached_concentrations(a: float, b: float, shape: tuple[int, ...], device: torch.device, work: torch.dtype,
                           mode: object) -> torch.Tensor:
    """:func:`_concentrations`, cached (read-only: the Gamma draw only reads them). ``mode``: the
    active fake-tensor mode (its tensors belong to it), else ``None``."""
    return _concentrations(a, b, shape, device, work)


def dirichlet(
    alpha: float,
    shape: tuple[int, ...] | torch.Size,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Samples of the symmetric Dirichlet(α, …, α) over the *last* dimension of ``shape``.

    Returns a tensor of ``shape`` whose slices along the last dimension are non-negative and
    sum to 1 (a softmax of log-gamma variates). For α = 1 (uniform on the simplex, MultiMix's
    default) Gamma(1) is the unit exponential, drawn as ``−log(1 − U)`` from uniforms instead of
    the general Gamma sampler and normalised by its row sum (several times faster on the CPU;
    same distribution, another stream). Off the CPU (CUDA) and for α ≥ 1, one Gamma (or
    exponential) draw an entry divided by its row sum: fewer kernels, the same distribution.
    """
    alpha = _checks.concentration("alpha", alpha)
    device = torch.device(device) if device is not None else torch.device("cpu")
    _checks.generator(generator, device)
    work = _work_dtype(dtype)
    if alpha >= 1.0 and _random.sorts_keys(device):
        # Off the CPU (CUDA), where each operator is a kernel launch: one Gamma(α) draw per entry
        # (Exp(1) for α = 1), normalised by its row sum: three or four kernels instead of seven.
        # For α >= 1 a draw underflows float32 with probability below 2^-126 / Γ(α + 1), so the
        # log space of the small-α path buys nothing; the clamp keeps a row of b = 1 at weight 1.
        if alpha == 1.0:
            e = _random.exponential(tuple(shape), device=device, dtype=work, generator=generator)
        else:
            e = _random.standard_gamma(torch.full(tuple(shape), alpha, device=device, dtype=work), generator)
        e = e.clamp_min_(torch.finfo(work).tiny)
        return e.div_(e.sum(-1, keepdim=True)).to(dtype)
    if alpha == 1.0:
        # Exp(1) is −log(1 − U), U ~ U[0, 1) (1 − U is in (0, 1], so the log is finite); normalised
        # exponentials are the Dirichlet(1, …, 1), and the sign cancels in the ratio, so the weights
        # are log(1 − U) over its row sum. On the CPU this is 3–4× faster than exponential_ with a
        # generator (which dominated MultiMix's cost; log1p has no vectorised CPU kernel, log has).
        # The clamp keeps a row of b = 1, or of all-zero draws, at weight 1.
        e = _random.rand(tuple(shape), device=device, dtype=work, generator=generator)
        e = e.neg_().add_(1).log_().clamp_max_(-torch.finfo(work).tiny)
        return e.div_(e.sum(-1, keepdim=True)).to(dtype)
    conc = torch.full(tuple(shape), alpha, device=device, dtype=work)
    return torch.softmax(log_gamma(conc, generator, boost=alpha < 1), dim=-1).to(dtype)
