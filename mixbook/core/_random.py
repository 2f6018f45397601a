"""Random draws from an explicit ``torch.Generator`` that also work inside ``torch.compile``.

Dynamo cannot put a ``torch.Generator`` into a graph: ``torch.rand(..., generator=g)`` is a
graph break (an error under ``fullgraph=True``), and so is every sampler of mixbook that takes
a generator. The functions here are the few draws mixbook makes (:func:`rand`,
:func:`randint`, :func:`randperm`, :func:`standard_gamma`, :func:`exponential`):

* **eager** (not compiling, or no generator): exactly the ``torch`` call, same stream, same
  values as before;
* **while tracing** (``torch.compiler.is_compiling()``) with a generator: a small custom operator
  (``torch.ops.mixbook.*``) that the compiled graph calls at run time, which makes the *same*
  ``torch`` call on the same generator. The graph holds an integer handle of the generator
  instead of the object (the generator is registered once, at trace time, and Dynamo guards on
  its identity); every draw also increments a small counter tensor of that generator in place,
  so the compiler can neither merge two identical draws nor reorder or drop them.

So a compiled step draws exactly the numbers the eager step draws for the same generator
state, and advances the generator the same way: compiled and eager runs of a seeded step agree
(up to the floating-point differences of the compiled arithmetic).

The registry keeps a strong reference to every generator seen while tracing (a handful of
small objects per process), so a handle can never point at a different, later generator.
"""

from __future__ import annotations

import torch

from . import _checks

__all__ = ["rand", "randint", "randperm", "sorts_keys", "KEY_BITS", "standard_gamma", "exponential", "worker_generator", "rank_generator",
           "process_rank"]

_GENERATORS: dict[int, torch.Generator] = {}
_STATES: dict[int, torch.Tensor] = {}


@_checks.constant_under_compile
def _handle(generator: torch.Generator) -> int:
    """Register ``generator`` (at trace time, outside the graph) and return its handle.

    Each registered generator also gets a 0-d counter tensor on its device, ``_STATES[handle]``,
    which every draw from it increments in place. The draws are ordered by that data
    dependency: a compiler may reorder independent operators (Inductor does reorder opaque
    ones, effect tokens notwithstanding), but not two mutations of one tensor.
    """
    key = id(generator)
    _GENERATORS[key] = generator
    if key not in _STATES:
        _STATES[key] = torch.zeros((), dtype=torch.int64, device=generator.device)
    return key


def _lookup(state: torch.Tensor, handle: int) -> torch.Generator:
    state.add_(1)
    try:
        return _GENERATORS[handle]
    except KeyError:  # pragma: no cover - only if the registry was cleared by hand
        raise RuntimeError("mixbook: a compiled graph refers to a generator that is no longer registered; "
                           "call torch._dynamo.reset() and compile again") from None


@torch.library.custom_op("mixbook::rand", mutates_args=("state",))
def _rand_op(state: torch.Tensor, handle: int, shape: list[int], dtype: torch.dtype,
             device: torch.device) -> torch.Tensor:
    return torch.rand(shape, dtype=dtype, device=device, generator=_lookup(state, handle))


@_rand_op.register_fake
def _(state: torch.Tensor, handle: int, shape: list[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


@torch.library.custom_op("mixbook::randint", mutates_args=("state",))
def _randint_op(state: torch.Tensor, handle: int, high: int, shape: list[int], device: torch.device) -> torch.Tensor:
    return torch.randint(high, shape, device=device, generator=_lookup(state, handle))


@_randint_op.register_fake
def _(state: torch.Tensor, handle: int, high: int, shape: list[int], device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.long, device=device)


@torch.library.custom_op("mixbook::randperm", mutates_args=("state",))
def _randperm_op(state: torch.Tensor, handle: int, n: int, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, device=device, generator=_lookup(state, handle))


@_randperm_op.register_fake
def _(state: torch.Tensor, handle: int, n: int, device: torch.device) -> torch.Tensor:
    return torch.empty(n, dtype=torch.long, device=device)


@torch.library.custom_op("mixbook::standard_gamma", mutates_args=("state",))
def _standard_gamma_op(state: torch.Tensor, handle: int, concentration: torch.Tensor) -> torch.Tensor:
    return torch._standard_gamma(concentration, generator=_lookup(state, handle))


@_standard_gamma_op.register_fake
def _(state: torch.Tensor, handle: int, concentration: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(concentration)


@torch.library.custom_op("mixbook::exponential", mutates_args=("state",))
def _exponential_op(state: torch.Tensor, handle: int, shape: list[int], dtype: torch.dtype,
                    device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device).exponential_(generator=_lookup(state, handle))


@_exponential_op.register_fake
def _(state: torch.Tensor, handle: int, shape: list[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


def _traced(generator: torch.Generator | None) -> bool:
    return generator is not None and torch.compiler.is_compiling()


def rand(shape: tuple[int, ...] | torch.Size, *, device: torch.device, dtype: torch.dtype = torch.float32,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.rand(shape, dtype=dtype, device=device, generator=generator)``."""
    if _traced(generator):
        h = _handle(generator)
        return _rand_op(_STATES[h], h, list(shape), dtype, torch.device(device))
    return torch.rand(shape, dtype=dtype, device=device, generator=generator)


def randint(high: int, shape: tuple[int, ...] | torch.Size, *, device: torch.device,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.randint(high, shape, device=device, generator=generator)`` (int64)."""
    if _traced(generator):
        h = _handle(generator)
        return _randint_op(_STATES[h], h, high, list(shape), torch.device(device))
    return torch.randint(high, shape, device=device, generator=generator)


KEY_BITS = 62
"""Bits of the random keys :func:`randperm` sorts off the CPU (``randint(2**KEY_BITS)``)."""

_DEVICE_PATHS_ON_CPU = False   # tests only: take the accelerator's sampling paths on the CPU too


def sorts_keys(device: torch.device | str) -> bool:
    """Whether mixbook draws on ``device`` with its accelerator paths (every device but the CPU):
    :func:`randperm` as the argsort of random keys, and the few-kernel Dirichlet of
    :func:`mixbook.core.distributions.dirichlet`. The CPU keeps the streams every seeded result of
    the book was computed with."""
    return _DEVICE_PATHS_ON_CPU or torch.device(device).type != "cpu"


def randperm(n: int, *, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random permutation of ``0 … n−1`` (int64), drawn on ``device``.

    * **CPU**: ``torch.randperm(n, generator=generator)`` (its stream: every seeded CPU result of
      the book depends on it).
    * **other devices** (CUDA): the ``argsort`` of ``n`` independent uniform integer keys in
      ``[0, 2^62)``. ``torch.randperm`` on CUDA is an ``arange``, a key draw, a CUB radix sort of
      pairs and a kernel that reshuffles tied keys (the largest single share of a mixup call's
      CPU time in the H200 profile, ``chapter 7``); a key draw and one sort are two operators,
      and a batch of up to 4096 is sorted by one kernel. Ties are the only departure from the
      uniform distribution: the total-variation distance is at most the probability of any
      tie, ``n(n−1)/2 · 2^-62`` (2e-13 at ``n = 1024``). CUDA's stream differs from the CPU's
      anyway (see :mod:`mixbook.core.distributions`).
    """
    if sorts_keys(device):
        return randint(2 ** KEY_BITS, (n,), device=device, generator=generator).argsort()
    if _traced(generator):
        h = _handle(generator)
        return _randperm_op(_STATES[h], h, n, torch.device(device))
    return torch.randperm(n, device=device, generator=generator)


def standard_gamma(concentration: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch._standard_gamma(concentration, generator=generator)``.

    While tracing with a generator the draw is not differentiable with respect to
    ``concentration`` (mixbook's concentrations are constants).
    """
    if _traced(generator):
        h = _handle(generator)
        return _standard_gamma_op(_STATES[h], h, concentration)
    return torch._standard_gamma(concentration, generator=generator)


def exponential(shape: tuple[int, ...] | torch.Size, *, device: torch.device, dtype: torch.dtype = torch.float32,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Unit exponential draws: ``torch.empty(shape).exponential_(generator=generator)``."""
    if _traced(generator):
        h = _handle(generator)
        return _exponential_op(_STATES[h], h, list(shape), dtype, torch.device(device))
    return torch.empty(tuple(shape), device=device, dtype=dtype).exponential_(generator=generator)


# ---------------------------------------------------------------------- DataLoader workers
def worker_generator(generator: torch.Generator, worker_seed: int) -> torch.Generator:
    """A generator for one DataLoader worker: a function of ``generator``'s state and ``worker_seed``.

    ``worker_seed`` is ``torch.utils.data.get_worker_info().seed``: the DataLoader draws a base
    seed from its own ``generator`` (or torch's global RNG) each time an iterator starts, and
    adds the worker id. The new generator (on ``generator``'s device) is seeded by NumPy's
    ``SeedSequence`` from that seed and the full state of ``generator``, so different workers,
    different epochs (without ``persistent_workers``) and different user seeds give independent
    streams, and the same DataLoader seeding gives the same streams. ``generator`` is not
    advanced.
    """
    return _derived(generator, [int(worker_seed) & (2**64 - 1)])


def _derived(generator: torch.Generator, prefix: list[int]) -> torch.Generator:
    """A new generator on ``generator``'s device seeded by NumPy's ``SeedSequence`` from ``prefix``, the
    generator's initial seed and its full state (``generator`` is not advanced): the one derivation of
    the worker, rank and epoch streams."""
    import numpy as np

    state = generator.get_state().numpy()
    words = np.frombuffer(state.tobytes() + b"\0" * (-len(state) % 4), dtype=np.uint32)
    entropy = [*prefix, int(generator.initial_seed()), *map(int, words)]
    seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))
    return torch.Generator(device=generator.device).manual_seed(seed)


# ---------------------------------------------------------------------- ranks of a process group
_RANK_TAG = 0x72616E6B  # "rank": keeps a rank's entropy apart from a worker seed's


def rank_generator(generator: torch.Generator, rank: int) -> torch.Generator:
    """A generator for one rank of a process group: a function of ``generator``'s state and ``rank``.

    As :func:`worker_generator`, with the rank in place of the worker seed (and a tag that keeps
    the two kinds of entropy apart): every rank holding a copy of one seeded generator gets a
    distinct stream, the same one for the same rank and seed. ``generator`` is not advanced.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be an integer >= 0, got {rank!r}")
    return _derived(generator, [_RANK_TAG, rank])


_EPOCH_TAG = 0x65706F63  # "epoc": keeps an epoch stream's entropy apart from the other kinds


def epoch_generator(generator: torch.Generator, epoch: int, worker: int) -> torch.Generator:
    """A generator for one epoch of one DataLoader worker (``worker = -1``: the main process): a
    function of ``generator``'s state, ``epoch`` and ``worker`` only (not of the DataLoader's own
    seeding), so a resumed run that sets the same epoch draws the same. ``generator`` is not advanced."""
    for name, value, low in (("epoch", epoch, 0), ("worker", worker, -1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return _derived(generator, [_EPOCH_TAG, epoch, worker + 1])


@_checks.constant_under_compile
def process_rank() -> int | None:
    """This process's rank in the default ``torch.distributed`` group, or ``None`` outside one.

    In a DataLoader worker of a rank (a child process, where the group is not initialised when
    the workers are spawned rather than forked), the ``RANK`` variable ``torchrun`` sets is read
    instead. Evaluated once at trace time under ``torch.compile``.
    """
    import os

    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    if torch.utils.data.get_worker_info() is not None and os.environ.get("RANK", "").isdigit():
        return int(os.environ["RANK"])
    return None
