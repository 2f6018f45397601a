"""Benchmark harness: mixbook's mixing ops against their peers, in one process.

Speed claims in mixbook are ratios against peers measured in the same run, never absolute
times in a test. :func:`time_ops` runs every operation ``number`` times per repeat, cycling
through the operations in each repeat (so that drift in the machine's load affects them
alike), and reports the median over repeats. On CPU it reads ``time.perf_counter``; on CUDA it
times each block with CUDA events (``torch.cuda.Event(enable_timing=True)``) recorded on the
current stream, after a synchronisation that empties the queue.

``python -m mixbook.bench`` (:func:`main`) runs the whole comparison and writes a table and a
JSON file (:func:`run` is the same from Python):

* **mixbook ops**: whatever the method modules declare in their ``BENCH`` tuples
  (:data:`BENCH_MODULES`, :func:`entries`): today pairwise mixup with one λ a batch
  (``mixup.sample`` + ``Mixing.apply`` + ``Mixing.targets``), the same with one λ per example,
  ζ-mixup (``zeta.sample`` + ``apply``, dense) and MultiMix (``multimix.sample`` with
  ``n = 1000`` outputs + ``apply`` on ``d = 512`` embeddings). An entry names its op, the kind
  of case it runs on, its bytes family, how to build the call, and its targets; the harness
  compares it with every peer of its family in the case, so adding a method's benchmark is a
  ``BENCH`` tuple in its module.
* **compiled variants** (``run(compiled=True)``, ``--compiled``; the default on CUDA):
  ``<op>_compiled`` is the same call under ``torch.compile(fullgraph=True, dynamic=False)``,
  compiled before it is timed, against the same peers and targets (``[compiled]``). It shows
  what compiling the training step buys for the per-call cost: one fused kernel instead of a
  dozen operators, no Python argument checks (value checks are skipped while tracing).
* **peers**: torchvision ``transforms.v2.MixUp`` and ``v2.CutMix``; timm ``timm.data.Mixup`` in
  ``batch`` and ``elem`` mode; :func:`zeta_numpy_reference` and :func:`multimix_numpy_reference`
  (NumPy, CPU only); one plain matmul ``W @ X`` of the dense ops' shape; and the baseline, a
  plain copy ``x.clone()`` of the batch.

**timm mixes in place.** ``Mixup.__call__(x, target)`` overwrites ``x`` (and needs an even
batch). Two variants are timed: ``timm_batch`` mixes one persistent buffer in place, again and
again (a convex combination of a bounded batch stays bounded, so the values stay sane), which
charges timm nothing for keeping the input — the most favourable reading for timm and the
cost in a loader that hands over a fresh batch anyway; ``timm_batch_clone`` gives it a fresh
``clone`` each call, the cost under mixbook's contract (the input is left unmodified). The
``elem`` mode is timed in place only (it clones internally for its source anyway).

**Bytes moved** (:func:`bytes_moved`) count the minimum traffic of the *result*, the same for
every implementation of a family, so GB/s ratios are speed ratios; ``b`` examples of ``D``
elements of ``s`` bytes, ``C`` classes, ``n`` outputs:

* ``pairwise`` (mixup, per-sample λ, CutMix, timm): read ``x`` once and write the output once,
  read int64 labels and write float32 soft targets: ``2·b·D·s + 8·b + 4·b·C``;
* ``dense`` (ζ-mixup, MultiMix, the matmul): read ``x`` once, write ``n`` outputs, write the
  float32 weights once: ``(b + n)·D·s + 4·n·b`` (targets not included: the dense ops time
  "weights + mixing", like their NumPy references);
* ``copy``: ``2·b·D·s``.

``copy_fraction`` is an op's GB/s over that of the copy of the same case, measured in the same
run. **Peak extra bytes** (CUDA only; ``None`` on CPU, where PyTorch keeps no allocator
statistics) is ``torch.cuda.max_memory_allocated()`` during one call minus the allocated bytes
before it; it includes the op's outputs.

**Measuring on a CPU.** Two things outside the ops move CPU numbers a lot, so the provenance
records them (thread count, load average at start and end, ``THP_MEM_ALLOC_ENABLE``, the
kernel's transparent-huge-page mode):

* *threads*: with more busy threads than cores (another job on the machine), every
  OpenMP-parallel kernel waits for its descheduled sibling thread, in scheduler-quantum steps
  of milliseconds; ``--threads 1`` times every op on one thread and stays meaningful there;
* *allocation*: a fresh CPU tensor of many MB is ``mmap``-ed and first touched page by page;
  that page-fault cost is most of a large ``clone`` (and of every op that allocates its output,
  as mixbook's must), while an in-place op (timm) pays it once. ``THP_MEM_ALLOC_ENABLE=1``
  (read by PyTorch's CPU allocator) backs large allocations with huge pages.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import _checks
from ..methods import multimix, zeta
from ..chapters.results import provenance

__all__ = ["time_ops", "dispatched_ops", "COMPILED_SUFFIX", "zeta_numpy_reference", "multimix_numpy_reference", "bytes_moved", "Case", "make_cases",
           "run", "format_table", "main", "evaluate_targets", "provenance", "FAMILIES", "TARGETS_CPU", "LIMITS",
           "TARGETS_CUDA", "BENCH_MODULES", "ENTRY_KEYS", "entries"]


# ---------------------------------------------------------------------- timing
def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_block(fn: Callable[[], object], number: int, dev: torch.device | None) -> float:
    """Seconds per call of ``number`` back-to-back calls of ``fn``.

    CPU: ``time.perf_counter`` around the block. CUDA: the queue is emptied first, then a
    start and an end event are recorded on the current stream around the block and the time
    between them is read after the end event completes (host launch gaps inside the block
    count, as they would in a training step).
    """
    _sync(dev)
    if dev is not None and dev.type == "cuda":
        stream = torch.cuda.current_stream(dev)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for _ in range(number):
            fn()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / number
    start_s = time.perf_counter()
    for _ in range(number):
        fn()
    _sync(dev)
    return (time.perf_counter() - start_s) / number


def time_ops(
    ops: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 7,
    number: int = 10,
    warmup: int = 2,
    baseline: str | None = None,
    device: torch.device | str | None = None,
    min_time: float | None = None,
) -> Any:
    """Median seconds per call of each operation, and its ratio to ``baseline``.

    Args:
        ops: name → zero-argument callable.
        repeats: number of timed repeats (the median is reported); ≥ 7 recommended.
        number: calls per repeat (the minimum, with ``min_time``).
        warmup: untimed calls of each op before timing.
        baseline: name of the op the others are divided by (default: the first).
        device: the device the ops run on; on CUDA each block is timed with CUDA events.
        min_time: if given (seconds > 0), each op's calls per repeat are raised from
            ``number`` so that one timed block lasts at least this long, judged from one
            extra timed call after warm-up (slow ops stay at ``number``, fast ones are
            repeated enough to rise above the clock's resolution and the call overhead).

    Returns:
        A pandas DataFrame indexed by op name with ``median_s``, ``min_s`` and
        ``ratio_to_<baseline>`` (``median / median[baseline]``; > 1 means slower);
        ``frame.attrs["number"]`` maps each op to its calls per repeat.
    """
    import pandas as pd

    if not isinstance(ops, Mapping):
        raise TypeError(f"ops must be a mapping name -> zero-argument callable, got {type(ops).__name__}")
    if not ops:
        raise ValueError("ops must name at least one operation")
    not_callable = [k for k, fn in ops.items() if not callable(fn)]
    if not_callable:
        raise TypeError(f"ops must map names to zero-argument callables; not callable: {not_callable}")
    repeats = _checks.positive_int("repeats", repeats)
    number = _checks.positive_int("number", number)
    warmup = _checks.non_negative_int("warmup", warmup)
    if min_time is not None:
        min_time = _checks.positive_float("min_time", min_time)
    baseline = baseline or next(iter(ops))
    if baseline not in ops:
        raise ValueError(f"baseline must be one of {list(ops)}, got {baseline!r}")
    dev = torch.device(device) if device is not None else None
    for fn in ops.values():
        for _ in range(warmup):
            fn()
    numbers = {k: number for k in ops}
    if min_time is not None:
        for name, fn in ops.items():
            once = _timed_block(fn, 1, dev)
            numbers[name] = max(number, math.ceil(min_time / max(once, 1e-9)))
    times: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(repeats):
        for name, fn in ops.items():
            times[name].append(_timed_block(fn, numbers[name], dev))
    frame = pd.DataFrame({
        "median_s": {k: float(pd.Series(v).median()) for k, v in times.items()},
        "min_s": {k: min(v) for k, v in times.items()},
    })
    frame[f"ratio_to_{baseline}"] = frame["median_s"] / frame.loc[baseline, "median_s"]
    frame.attrs["number"] = numbers
    return frame


# ---------------------------------------------------------------------- NumPy references
def zeta_numpy_reference(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """A straightforward NumPy ζ-mixup, the peer that mixbook's version is timed against.

    Random orderings from the argsort of a uniform ``(b, b)`` matrix, p-series weights
    ``s^(−γ) / Σ_j j^(−γ)`` gathered by rank, and one ``einsum`` over the flattened batch.
    Unlike :func:`mixbook.methods.zeta.weights` it does not fix which example dominates each row.

    Args:
        x: ``(b, *)`` NumPy array (float32).
        gamma: γ > 0.
        rng: a ``numpy.random.Generator``.

    Returns:
        ``(b, *)`` mixed array of ``x``'s dtype.
    """
    b = x.shape[0]
    ranks = np.argsort(np.argsort(rng.random((b, b)), axis=1), axis=1) + 1
    series = np.arange(1, b + 1, dtype=np.float64) ** -gamma
    w = (ranks.astype(np.float64) ** -gamma / series.sum()).astype(x.dtype)
    return np.einsum("nb,bd->nd", w, x.reshape(b, -1)).reshape(x.shape)


def multimix_numpy_reference(
    z: np.ndarray,
    n: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    return_weights: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A straightforward NumPy MultiMix, the peer that :func:`mixbook.methods.multimix.sample` is timed against.

    ``W`` ``(n, b)``: every row an independent Dirichlet(α 1_b) (``rng.dirichlet``), rounded to
    ``z``'s dtype; then one ``einsum`` ``W @ Z`` over the flattened batch.

    Args:
        z: ``(b, *)`` floating NumPy array (embeddings, e.g. ``(b, 512)`` float32).
        n: number of outputs, ``n >= 1`` (may exceed ``b``).
        alpha: Dirichlet concentration α > 0.
        rng: a ``numpy.random.Generator``.
        return_weights: also return ``W``.

    Returns:
        ``(n, *)`` mixed array of ``z``'s dtype; with ``return_weights``, ``(mixed, W)``.
    """
    if not isinstance(z, np.ndarray) or not np.issubdtype(z.dtype, np.floating):
        raise TypeError(f"z must be a floating NumPy array, got {type(z).__name__} "
                        f"{getattr(z, 'dtype', '')}".rstrip())
    if z.ndim < 1 or z.shape[0] == 0:
        raise ValueError(f"z must have a non-empty batch dimension, got shape {z.shape}")
    n = _checks.positive_int("n", n)
    alpha = _checks.positive_float("alpha", alpha)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    b = z.shape[0]
    w = rng.dirichlet(np.full(b, alpha), size=n).astype(z.dtype)
    mixed = np.einsum("nb,bd->nd", w, z.reshape(b, -1)).reshape(n, *z.shape[1:])
    return (mixed, w) if return_weights else mixed


# ---------------------------------------------------------------------- bytes
FAMILIES = ("pairwise", "dense", "copy")
"""Byte-count families of :func:`bytes_moved`."""


def bytes_moved(
    family: str,
    *,
    batch: int,
    features: int,
    itemsize: int,
    num_classes: int = 0,
    n: int | None = None,
) -> int:
    """Minimum bytes an op of ``family`` must move (see the module docstring).

    * ``"pairwise"``: ``2·b·D·s + 8·b + 4·b·C`` (inputs read once, outputs written once,
      int64 labels read, float32 soft targets written);
    * ``"dense"``: ``(b + n)·D·s + 4·n·b`` (inputs read once, ``n`` outputs written, float32
      weights written once; ``n`` defaults to ``b``);
    * ``"copy"``: ``2·b·D·s``.

    Args:
        family: one of :data:`FAMILIES`.
        batch: ``b >= 1``.
        features: ``D >= 1``, elements per example (``3·32·32``, ``512``…).
        itemsize: ``s``, bytes per element (4 for fp32, 2 for bf16).
        num_classes: ``C >= 0`` (pairwise only).
        n: outputs (dense only), default ``b``.
    """
    family = _checks.choice("family", family, FAMILIES)
    b = _checks.positive_int("batch", batch)
    d = _checks.positive_int("features", features)
    s = _checks.positive_int("itemsize", itemsize)
    num_classes = _checks.non_negative_int("num_classes", num_classes)
    if family == "pairwise":
        return 2 * b * d * s + 8 * b + 4 * b * num_classes
    if family == "dense":
        n = b if n is None else _checks.positive_int("n", n)
        return (b + n) * d * s + 4 * n * b
    return 2 * b * d * s


# ---------------------------------------------------------------------- cases
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FULL_BATCHES = (32, 128, 256, 1024)
IMAGE_SHAPES = ((3, 32, 32), (3, 224, 224))
NUM_CLASSES = {32: 100, 224: 1000}  # CIFAR-100-like and ImageNet-like label spaces
EMBED_DIM = 512
MULTIMIX_N = 1000
EMBED_CLASSES = 1000
ZETA_GAMMA = 2.8
ALPHA = 1.0
CPU_MAX_TENSOR_MB = 512.0


@dataclass(frozen=True)
class Case:
    """One benchmark case: a batch of ``batch`` examples of ``shape`` in ``dtype``.

    ``kind`` is ``"image"`` (pairwise and ζ ops, ``(b, 3, H, W)``) or ``"embedding"``
    (MultiMix, ``(b, d)`` with ``n`` outputs).
    """

    kind: str
    batch: int
    shape: tuple[int, ...]
    dtype: str
    num_classes: int
    n: int | None = None

    @property
    def name(self) -> str:
        dims = "x".join(map(str, self.shape))
        extra = f"_n{self.n}" if self.n is not None else ""
        return f"{self.kind}{dims}_b{self.batch}{extra}_{self.dtype}"

    @property
    def features(self) -> int:
        """``D``, elements per example."""
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return torch.empty(0, dtype=_DTYPES[self.dtype]).element_size()

    @property
    def tensor_bytes(self) -> int:
        """Bytes of one batch tensor ``(b, *shape)``."""
        return self.batch * self.features * self.itemsize

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "batch": self.batch, "shape": list(self.shape),
                "dtype": self.dtype, "num_classes": self.num_classes, "n": self.n}


def _positive_ints(name: str, values: object) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of ints >= 1, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{name} must name at least one value")
    return tuple(_checks.positive_int(name, v) for v in values)


def _resolve_device(device: object) -> torch.device:
    """:func:`mixbook.core.runtime.resolve_device`, restricted to the devices the harness times."""
    from ..core.runtime import resolve_device

    dev = resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return dev


def make_cases(
    device: torch.device | str = "cpu",
    *,
    quick: bool = False,
    batches: Sequence[int] | None = None,
    dtypes: Sequence[str] | None = None,
    include_large: bool = False,
    max_tensor_mb: float | None = None,
    image_sizes: Sequence[int] | None = None,
) -> tuple[list[Case], list[dict[str, str]]]:
    """The cases to run and the ones skipped (with the reason).

    Full: batch ∈ {32, 128, 256, 1024} × images 3×32×32 (100 classes) and 3×224×224 (1000
    classes), plus MultiMix embeddings ``(b, 512)`` with ``n = 1000`` outputs (1000 classes);
    float32, and bfloat16 as well on CUDA. Quick: batch 32, 3×32×32 images and embeddings.

    Skipped: on CPU, a case whose batch tensor exceeds ``max_tensor_mb`` (default 512 MB, which
    drops 3×224×224 at b = 1024: 616 MB a tensor, a few GB with outputs and the peers'
    temporaries, minutes per repeat) unless ``include_large``; on CUDA, a case whose tensor
    times 8 (input, outputs, temporaries, the clone peers) does not fit in free memory.

    ``image_sizes`` restricts the image cases to these sides (from 32 and 224; default: both,
    quick: 32).

    Returns:
        ``(cases, skipped)``; ``skipped`` entries are ``{"case": name, "reason": text}``.
    """
    dev = _resolve_device(device)
    quick = _checks.boolean("quick", quick)
    include_large = _checks.boolean("include_large", include_large)
    if batches is None:
        batches = (32,) if quick else FULL_BATCHES
    batches = _positive_ints("batches", batches)
    if dtypes is None:
        dtypes = ("float32", "bfloat16") if dev.type == "cuda" else ("float32",)
    if isinstance(dtypes, str) or not isinstance(dtypes, Sequence) or not dtypes:
        raise TypeError(f"dtypes must be a non-empty sequence of names from {tuple(_DTYPES)}, got {dtypes!r}")
    for d in dtypes:
        _checks.choice("dtypes", d, tuple(_DTYPES))
    if max_tensor_mb is None:
        max_tensor_mb = CPU_MAX_TENSOR_MB if dev.type == "cpu" else math.inf
    elif isinstance(max_tensor_mb, bool) or not isinstance(max_tensor_mb, (int, float)) or max_tensor_mb <= 0:
        raise ValueError(f"max_tensor_mb must be a number > 0, got {max_tensor_mb!r}")
    if image_sizes is None:
        shapes = IMAGE_SHAPES[:1] if quick else IMAGE_SHAPES
    else:
        sizes = _positive_ints("image_sizes", image_sizes)
        known = {s[-1]: s for s in IMAGE_SHAPES}
        for side in sizes:
            if side not in known:
                raise ValueError(f"image_sizes must be taken from {sorted(known)}, got {side}")
        shapes = tuple(known[side] for side in sizes)
    candidates = [Case("image", b, s, dt, NUM_CLASSES[s[-1]]) for dt in dtypes for s in shapes for b in batches]
    candidates += [Case("embedding", b, (EMBED_DIM,), dt, EMBED_CLASSES, MULTIMIX_N) for dt in dtypes for b in batches]
    free = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else None
    cases, skipped = [], []
    for c in candidates:
        mb = c.tensor_bytes / 1e6
        if dev.type == "cpu" and mb > max_tensor_mb and not include_large:
            skipped.append({"case": c.name, "reason": f"{mb:.0f} MB a tensor > {max_tensor_mb:g} MB on CPU "
                                                      "(pass --include-large to run it)"})
        elif free is not None and 8 * c.tensor_bytes > free:
            skipped.append({"case": c.name, "reason": f"8 x {mb:.0f} MB exceeds the {free / 1e6:.0f} MB free on {dev}"})
        else:
            cases.append(c)
    return cases, skipped


# ---------------------------------------------------------------------- ops of a case
BENCH_MODULES: tuple[object, ...] | None = None
"""The modules whose ``BENCH`` tuples the harness runs (:func:`entries`); ``None``: every imported
``mixbook.*`` module that has one (``import mixbook`` imports them all), in name order, so a new
method's module is benchmarked without editing this one."""

ENTRY_KEYS = {
    "op": "the op's name in the results (``mixbook_<method>``)",
    "kind": "the cases it runs on: 'image' (b, 3, H, W) or 'embedding' (b, d) -> (n, d)",
    "family": "its bytes family (FAMILIES): it is compared with every peer of that family",
    "make": "make(x, y, num_classes, n) -> a zero-argument call that runs the op once",
    "targets": "CPU speed-up targets: (name, peer op, minimum speedup, batches or None for every case)",
    "limits": "optional targets against the physical limit, on every device: (name, 'copy_fraction', minimum, "
              "min MB moved or None) or (name, 'matmul_ratio', maximum, None)",
}
"""The keys of a benchmark entry (``limits`` optional).

A *limit* compares an op with what the machine can do in the same run: ``copy_fraction`` is the
op's bandwidth over a plain copy's (a memory-bound op cannot exceed 1; evaluated on the cases
where the op moves at least ``min MB``, the sizes at which the per-call cost no longer
dominates); ``matmul_ratio`` is the op's time over one matmul of the same shape (a dense mix is
that matmul plus its sampling)."""


def entries(modules: Sequence[object] | None = None) -> tuple[dict[str, Any], ...]:
    """Every declared benchmark entry of ``modules`` (default :data:`BENCH_MODULES`), checked.

    An entry is a dict with the keys of :data:`ENTRY_KEYS`, declared in a method module's ``BENCH``
    tuple next to its sampler (see :data:`mixbook.methods.mixup.BENCH`)."""
    if modules is None:
        modules = BENCH_MODULES
    if modules is None:
        import mixbook  # noqa: F401  (imports every module of the package)

        modules = [m for name, m in sorted(sys.modules.items()) if name.startswith("mixbook.") and hasattr(m, "BENCH")]
    out = []
    for module in modules:
        for entry in getattr(module, "BENCH", ()):
            missing = {k for k in ENTRY_KEYS if k != "limits"} - set(entry)
            if missing or set(entry) - set(ENTRY_KEYS):
                raise ValueError(f"{getattr(module, '__name__', module)}: a BENCH entry needs the keys "
                                 f"{sorted(ENTRY_KEYS)} ('limits' optional), got {sorted(entry)}")
            if entry["kind"] not in ("image", "embedding") or entry["family"] not in FAMILIES:
                raise ValueError(f"{entry['op']}: kind must be 'image' or 'embedding' and family one of {FAMILIES}")
            out.append(entry)
    names = [e["op"] for e in out]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmark entries must have distinct op names, got {names}")
    return tuple(out)


COMPILED_SUFFIX = "_compiled"
"""Suffix of the compiled variant of a mixbook op (``run(compiled=True)``): the same call under
``torch.compile(fullgraph=True, dynamic=False)``, timed against the same peers."""


def _compiled_call(fn: Callable[[], object], name: str, notes: list[str]) -> Callable[[], object] | None:
    """``torch.compile(fn, fullgraph=True, dynamic=False)``, compiled now by one call (so that the
    timing excludes compilation), or ``None`` with a note when compiling fails (no C++ compiler or
    Triton, an unsupported op): the eager op is still timed."""
    compiled = torch.compile(fn, fullgraph=True, dynamic=False)
    try:
        compiled()
    except Exception as err:  # Dynamo/Inductor failures share no base class
        notes.append(f"{name}: torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
                     "compiled variant not timed")
        return None
    return compiled


def _declared_ops(kind: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, n: int | None, *,
                  compiled: bool = False, notes: list[str] | None = None) -> dict[str, "_Op"]:
    ops = {}
    for e in entries():
        if e["kind"] != kind:
            continue
        fn = e["make"](x, y, num_classes, n)
        ops[e["op"]] = _Op(fn, "mixbook", e["family"], True)
        if compiled:
            cfn = _compiled_call(fn, e["op"], notes if notes is not None else [])
            if cfn is not None:
                ops[e["op"] + COMPILED_SUFFIX] = _Op(cfn, "mixbook", e["family"], True,
                                                     note="torch.compile(fullgraph=True, dynamic=False)")
    return ops


@dataclass
class _Op:
    fn: Callable[[], object]
    role: str  # "mixbook" | "peer" | "baseline"
    family: str
    mixbook: bool = False
    note: str = ""


@dataclass
class _Inputs:
    x: torch.Tensor
    y: torch.Tensor
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)


def _timm_mixup(mode: str, num_classes: int):
    try:
        from timm.data import Mixup
    except ImportError:  # pragma: no cover - timm is in the test extras
        return None
    return Mixup(mixup_alpha=ALPHA, cutmix_alpha=0.0, prob=1.0, mode=mode, label_smoothing=0.0,
                 num_classes=num_classes)


def _image_ops(case: Case, dev: torch.device, inp: _Inputs, notes: list[str], compiled: bool = False) -> dict[str, _Op]:
    """Ops of an image case; see the module docstring for what each one is."""
    from torchvision.transforms import v2

    x, y, c = inp.x, inp.y, case.num_classes
    b = case.batch

    tv_mixup, tv_cutmix = v2.MixUp(alpha=ALPHA, num_classes=c), v2.CutMix(alpha=ALPHA, num_classes=c)
    w = zeta.weights(b, gamma=ZETA_GAMMA, device=dev).to(x.dtype)
    flat = x.reshape(b, -1)
    ops = {
        "copy": _Op(x.clone, "baseline", "copy"),
        **_declared_ops("image", x, y, c, None, compiled=compiled, notes=notes),
        "torchvision_mixup": _Op(lambda: tv_mixup(x, y), "peer", "pairwise"),
        "torchvision_cutmix": _Op(lambda: tv_cutmix(x, y), "peer", "pairwise", note="CutMix: a different op, for scale"),
    }
    timm_batch, timm_elem = _timm_mixup("batch", c), _timm_mixup("elem", c)
    if timm_batch is None:
        notes.append("timm not installed: timm peers skipped")
    elif b % 2:
        notes.append(f"timm needs an even batch: timm peers skipped at b={b}")
    else:
        buf = inp.buffers.setdefault("timm", x.clone())
        ops["timm_batch"] = _Op(lambda: timm_batch(buf, y), "peer", "pairwise",
                                note="in place on a persistent buffer (no clone charged)")
        ops["timm_batch_clone"] = _Op(lambda: timm_batch(x.clone(), y), "peer", "pairwise",
                                      note="fresh clone each call (input kept, as mixbook)")
        ops["timm_elem"] = _Op(lambda: timm_elem(buf, y), "peer", "pairwise", note="in place, per-example loop")
    if dev.type == "cpu" and x.dtype == torch.float32:
        x_np, rng = x.numpy(), np.random.default_rng(0)
        ops["numpy_zeta"] = _Op(lambda: zeta_numpy_reference(x_np, ZETA_GAMMA, rng), "peer", "dense")
    ops["matmul"] = _Op(lambda: w @ flat, "peer", "dense", note=f"one {case.dtype} matmul (b,b)@(b,D)")
    return ops


def _embedding_ops(case: Case, dev: torch.device, inp: _Inputs, notes: list[str], compiled: bool = False) -> dict[str, _Op]:
    """Ops of a MultiMix embedding case ``(b, d)`` → ``(n, d)``."""
    z, b, n = inp.x, case.batch, case.n
    w = multimix.weights(b, n=n, alpha=ALPHA, device=dev).to(z.dtype)
    ops = {
        "copy": _Op(z.clone, "baseline", "copy"),
        **_declared_ops("embedding", z, inp.y, case.num_classes, n, compiled=compiled, notes=notes),
    }
    if dev.type == "cpu" and z.dtype == torch.float32:
        z_np, rng = z.numpy(), np.random.default_rng(0)
        ops["numpy_multimix"] = _Op(lambda: multimix_numpy_reference(z_np, n, ALPHA, rng), "peer", "dense")
    ops["matmul"] = _Op(lambda: w @ z, "peer", "dense", note=f"one {case.dtype} matmul (n,b)@(b,d)")
    return ops


def _peak_extra_bytes(fn: Callable[[], object], dev: torch.device) -> int | None:
    """CUDA: peak allocated bytes during one call minus those allocated before (outputs included)."""
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    out = fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - before
    del out
    return int(peak)


def dispatched_ops(fn: Callable[[], object]) -> dict[str, int]:
    """The ATen operators one call of ``fn`` dispatches, counted by name (a ``TorchDispatchMode``).

    On a GPU each is (at least) one kernel launch, which dominates the cost of a mixing call at
    small batch sizes; the bench reports the total for every mixbook op (``dispatched_ops``) and
    a test bounds it. ``_local_scalar_dense`` entries are reads of a value to the host (the
    label-range checks on the CPU; skipped on CUDA, see :mod:`mixbook.core._checks`).
    """
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Counter[str] = Counter()

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with _Count():
        fn()
    return dict(counts)


def _host_sync_free(fn: Callable[[], object], dev: torch.device) -> tuple[bool | None, str]:
    """CUDA: run one call under ``torch.cuda.set_sync_debug_mode("error")``; ``(ok, message)``."""
    if dev.type != "cuda":
        return None, "not applicable on CPU"
    torch.cuda.synchronize(dev)
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return True, ""
    except RuntimeError as err:
        return False, str(err).splitlines()[0][:200]
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize(dev)


def _run_case(case: Case, dev: torch.device, *, repeats: int, warmup: int, min_time: float,
              seed: int, compiled: bool = False) -> dict[str, Any]:
    """Time every op of ``case`` (interleaved) and derive ops/s, GB/s, copy fraction, speedups.

    With ``compiled``, Dynamo's caches are reset first: every case compiles its variants afresh
    (specialised to its shapes), so the per-function recompile limit is never reached."""
    if compiled:
        torch.compiler.reset()
    gen = torch.Generator().manual_seed(seed)
    dtype = _DTYPES[case.dtype]
    x = torch.randn(case.batch, *case.shape, generator=gen).to(device=dev, dtype=dtype)
    y = torch.randint(0, case.num_classes, (case.batch,), generator=gen).to(dev)
    inp, notes = _Inputs(x, y), []
    ops = (_image_ops if case.kind == "image" else _embedding_ops)(case, dev, inp, notes, compiled)
    frame = time_ops({k: op.fn for k, op in ops.items()}, repeats=repeats, number=1, warmup=warmup,
                     baseline="copy", device=dev, min_time=min_time)
    copy_bytes = bytes_moved("copy", batch=case.batch, features=case.features, itemsize=case.itemsize)
    copy_gbs = copy_bytes / float(frame.loc["copy", "median_s"]) / 1e9
    peers = {fam: [k for k, op in ops.items() if op.role == "peer" and op.family == fam] for fam in FAMILIES}
    results: dict[str, Any] = {}
    for name, op in ops.items():
        med = float(frame.loc[name, "median_s"])
        nbytes = bytes_moved(op.family, batch=case.batch, features=case.features, itemsize=case.itemsize,
                             num_classes=case.num_classes if op.family == "pairwise" else 0, n=case.n)
        gbs = nbytes / med / 1e9
        rec: dict[str, Any] = {
            "role": op.role, "family": op.family, "median_s": med, "min_s": float(frame.loc[name, "min_s"]),
            "number": int(frame.attrs["number"][name]), "ops_per_s": 1.0 / med, "bytes": nbytes,
            "gb_per_s": gbs, "copy_fraction": gbs / copy_gbs, "peak_extra_bytes": _peak_extra_bytes(op.fn, dev),
            "note": op.note,
        }
        if op.mixbook:
            rec["speedup_vs"] = {p: float(frame.loc[p, "median_s"]) / med for p in peers[op.family]}
            # a compiled call runs Inductor's kernels, not ATen operators one by one: not counted
            rec["dispatched_ops"] = None if name.endswith(COMPILED_SUFFIX) else sum(dispatched_ops(op.fn).values())
            rec["host_sync_free"], msg = _host_sync_free(op.fn, dev)
            if msg and rec["host_sync_free"] is False:
                rec["host_sync_error"] = msg
        results[name] = rec
    del inp
    return {**case.to_dict(), "notes": notes, "ops": results}


# ---------------------------------------------------------------------- targets
def _targets_cpu() -> tuple[tuple[str, str, str, float, tuple[int, ...] | None, str], ...]:
    return tuple((name, e["op"], peer, minimum, batches, e["kind"])
                 for e in entries() for name, peer, minimum, batches in e["targets"])


def _limits() -> tuple[tuple[str, str, str, float, float | None, str], ...]:
    return tuple((name, e["op"], measure, bound, min_mb, e["kind"])
                 for e in entries() for name, measure, bound, min_mb in e.get("limits", ()))


TARGETS_CPU = _targets_cpu()
"""Speed-up targets, from the entries: ``(name, mixbook op, peer op, minimum speedup, batches, kind)``
(evaluated on the CPU, where every peer runs)."""

LIMITS = _limits()
"""Targets against the physical limit, from the entries: ``(name, mixbook op, measure, bound, min MB
moved, kind)``, evaluated on every device."""

TARGETS_CUDA = tuple(t[0] for t in LIMITS) + ("no host sync in mixbook ops",)
"""The targets evaluated on CUDA: the limits, and the host-sync check of every mixbook op."""


def _target(name: str, case: str, measured: float | bool | None, target: str, ok: bool | None,
            note: str = "") -> dict[str, Any]:
    # plain Python types: ratios of pandas/NumPy medians are NumPy scalars, which json cannot write
    if measured is not None:
        measured = bool(measured) if isinstance(measured, (bool, np.bool_)) else float(measured)
    return {"name": name, "case": case, "measured": measured, "target": target,
            "pass": None if ok is None else bool(ok), "note": note}


def evaluate_targets(cases: list[dict[str, Any]], device: torch.device | str) -> list[dict[str, Any]]:
    """One entry per (target, case): ``{"name", "case", "measured", "target", "pass", "note"}``.

    On the CPU the speed-ups over the peers (:data:`TARGETS_CPU`, peer median / mixbook median);
    on every device the limits (:data:`LIMITS`: fraction of a copy's bandwidth at large sizes, time
    over one matmul of the same shape); on CUDA also whether each mixbook op ran under
    ``torch.cuda.set_sync_debug_mode("error")``. When the cases hold compiled variants
    (``run(compiled=True)``), each target is evaluated on them too, named ``<target> [compiled]``.
    """
    dev = torch.device(device)
    out: list[dict[str, Any]] = []
    compiled_run = any(op.endswith(COMPILED_SUFFIX) for c in cases for op in c["ops"])
    variants = (("", ""), (COMPILED_SUFFIX, " [compiled]")) if compiled_run else (("", ""),)
    for base_name, base_op, peer, minimum, batches, kind in _targets_cpu():
        if dev.type != "cpu":
            continue
        for suffix, label in variants:
            name, op = base_name + label, base_op + suffix
            for c in cases:
                if c["kind"] != kind or (batches is not None and c["batch"] not in batches):
                    continue
                if op not in c["ops"] or peer not in c["ops"][op].get("speedup_vs", {}):
                    out.append(_target(name, c["name"], None, f">= {minimum:g}", None, f"{op} or {peer} not run in this case"))
                    continue
                s = c["ops"][op]["speedup_vs"][peer]
                out.append(_target(name, c["name"], s, f">= {minimum:g}", s >= minimum))
    for (base_name, base_op, measure, bound, min_mb, kind), (suffix, label) in itertools.product(_limits(), variants):
        name, op = base_name + label, base_op + suffix
        for c in cases:
            ops = c["ops"]
            if c["kind"] != kind or op not in ops:
                continue
            if measure == "copy_fraction":
                if min_mb is not None and ops[op].get("bytes", math.inf) < min_mb * 1e6:
                    continue
                f = ops[op]["copy_fraction"]
                out.append(_target(name, c["name"], f, f">= {bound:g}", f >= bound))
            elif measure == "matmul_ratio":
                if "matmul" not in ops:
                    out.append(_target(name, c["name"], None, f"<= {bound:g}", None, "no matmul in this case"))
                    continue
                r = ops[op]["median_s"] / ops["matmul"]["median_s"]
                out.append(_target(name, c["name"], r, f"<= {bound:g}", r <= bound))
    if dev.type == "cuda":
        for c in cases:
            for op, rec in c["ops"].items():
                if rec["role"] == "mixbook":
                    ok = rec.get("host_sync_free")
                    out.append(_target("no host sync in mixbook ops", c["name"], ok, "True", ok,
                                       f"{op} {rec.get('host_sync_error', '')}".strip()))
    return out


# ---------------------------------------------------------------------- run, table, CLI
def run(
    *,
    device: torch.device | str = "auto",
    repeats: int | None = None,
    warmup: int | None = None,
    min_time: float | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    quick: bool = False,                          # the case list, as make_cases
    batches: Sequence[int] | None = None,
    dtypes: Sequence[str] | None = None,
    image_sizes: Sequence[int] | None = None,
    include_large: bool = False,
    compiled: bool | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-ready result (see :func:`main` for the layout).

    Args:
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda[:i]"``.
        quick: a small subset with few repeats, for tests and live notebook cells (its numbers
            are for smoke tests, not for quoting).
        batches: override the batch sizes (default: 32, 128, 256, 1024; quick: 32).
        dtypes: override the dtypes (default float32, plus bfloat16 on CUDA).
        include_large: run cases above the CPU size limit too (:func:`make_cases`).
        repeats: timed repeats, median reported (default 7; quick 3).
        warmup: untimed calls of each op first (default 2; quick 1).
        min_time: seconds a timed block should last at least (default 0.05; quick 0.002).
        seed: seed of the inputs.
        log: called with a line of progress per case (e.g. ``print``), or ``None``.
        image_sizes: image sides to run, from 32 and 224 (default both; quick: 32).
        compiled: also time every mixbook op compiled, ``<op>_compiled`` (the same call under
            ``torch.compile(fullgraph=True, dynamic=False)``, compiled before timing; its targets
            are the eager op's, marked ``[compiled]``). ``None`` (default): on CUDA yes, on the
            CPU no (Inductor's C++ compile costs seconds per op and case there).

    Returns:
        ``{"provenance", "parameters", "skipped", "cases", "targets"}``.
    """
    dev = _resolve_device(device)
    quick = _checks.boolean("quick", quick)
    repeats = _checks.positive_int("repeats", (3 if quick else 7) if repeats is None else repeats)
    warmup = _checks.non_negative_int("warmup", (1 if quick else 2) if warmup is None else warmup)
    min_time = _checks.positive_float("min_time", (0.002 if quick else 0.05) if min_time is None else min_time)
    _checks.seed("seed", seed)
    compiled = dev.type == "cuda" if compiled is None else _checks.boolean("compiled", compiled)
    if log is not None and not callable(log):
        raise TypeError(f"log must be callable or None, got {type(log).__name__}")
    cases, skipped = make_cases(dev, quick=quick, batches=batches, dtypes=dtypes, include_large=include_large,
                                image_sizes=image_sizes)
    params = {"device": str(dev), "quick": quick, "batches": sorted({c.batch for c in cases}),
              "dtypes": sorted({c.dtype for c in cases}), "include_large": include_large,
              "image_sizes": sorted({c.shape[-1] for c in cases if c.kind == "image"}), "repeats": repeats,
              "warmup": warmup, "min_time_s": min_time, "seed": seed, "alpha": ALPHA, "zeta_gamma": ZETA_GAMMA,
              "multimix_n": MULTIMIX_N, "embed_dim": EMBED_DIM, "num_classes": {f"{k}x{k}": v for k, v in NUM_CLASSES.items()},
              "embedding_classes": EMBED_CLASSES, "compiled": compiled}
    result: dict[str, Any] = {"provenance": provenance(dev), "parameters": params, "skipped": skipped, "cases": []}
    for s in skipped:
        if log:
            log(f"skipped {s['case']}: {s['reason']}")
    for i, case in enumerate(cases):
        t0 = time.perf_counter()
        result["cases"].append(_run_case(case, dev, repeats=repeats, warmup=warmup, min_time=min_time, seed=seed + i,
                                         compiled=compiled))
        if log:
            log(f"[{i + 1}/{len(cases)}] {case.name}: {time.perf_counter() - t0:.1f} s")
    result["targets"] = evaluate_targets(result["cases"], dev)
    result["provenance"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


def _fmt_speedups(rec: dict[str, Any]) -> str:
    return " ".join(f"{p}={s:.2f}x" for p, s in rec.get("speedup_vs", {}).items())


def format_table(result: Mapping[str, Any]) -> str:
    """A plain-text table: a header (device, threads, dtypes, the columns' meaning), one line per
    (case, op), then every target with PASS/MISS and the skipped cases."""
    prov = result.get("provenance", {})
    dtypes = sorted({c.get("dtype", "?") for c in result.get("cases", [])})
    lines = [f"mixbook.bench on {prov.get('device_name', '?')} ({prov.get('device', '?')}), "
             f"{prov.get('torch_threads', '?')} torch threads, dtypes {', '.join(dtypes) or '-'}, "
             f"torch {prov.get('torch', '?')}, commit {(prov.get('git_commit') or '?')[:10]}",
             "columns: ms = median time of one call; GB/s = the family's minimum bytes (bytes_moved) over that time; "
             "copy% = GB/s over a plain copy's in the same case; peakMB (CUDA) = peak extra memory of a call; "
             "aten = ATen operators one call dispatches (mixbook ops); speedup = peer time / mixbook time",
             ""]
    show_peak = any(r["peak_extra_bytes"] is not None for c in result["cases"] for r in c["ops"].values())
    peak_head = f" {'peakMB':>7}" if show_peak else ""
    lines += [f"{'case':<34} {'op':<33} {'ms':>9} {'ops/s':>9} {'GB/s':>7} {'copy%':>6}{peak_head} {'aten':>5}  speedup vs peers"]
    for c in result["cases"]:
        for name, r in c["ops"].items():
            peak, aten = "", r.get("dispatched_ops")
            if show_peak:
                peak = " " + ("-" if r["peak_extra_bytes"] is None else f"{r['peak_extra_bytes'] / 1e6:.1f}").rjust(7)
            lines.append(f"{c['name']:<34} {name:<33} {r['median_s'] * 1e3:9.3f} {r['ops_per_s']:9.1f} "
                         f"{r['gb_per_s']:7.2f} {100 * r['copy_fraction']:5.0f}%{peak} {'' if aten is None else aten:>5}  "
                         f"{_fmt_speedups(r)}")
    if result.get("targets"):
        lines.append("")
        lines.append("targets:")
        for t in result["targets"]:
            m = t["measured"]
            shown = f"{m:.2f}" if isinstance(m, float) else str(m)
            verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["pass"]]
            lines.append(f"  {verdict:<4} {t['name']:<55} {t['case']:<34} {shown:>7} (target {t['target']}) {t['note']}")
    for s in result.get("skipped", []):
        lines.append(f"skipped {s['case']}: {s['reason']}")
    return "\n".join(lines)


def _positive_int_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mixbook.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:i] (default auto)")
    p.add_argument("--quick", action="store_true", help="small subset, few repeats (smoke tests, notebook cells)")
    p.add_argument("--json", type=Path, default=None, help="write the result here as JSON")
    p.add_argument("--batch", type=_positive_int_arg, nargs="+", default=None,
                   help="batch sizes (default 32 128 256 1024; quick: 32)")
    p.add_argument("--dtype", nargs="+", choices=tuple(_DTYPES), default=None,
                   help="dtypes (default float32, plus bfloat16 on CUDA)")
    p.add_argument("--image-size", type=_positive_int_arg, nargs="+", default=None, choices=(32, 224),
                   help="image sides to run (default 32 224; quick: 32)")
    p.add_argument("--include-large", action="store_true",
                   help=f"on CPU also run cases whose batch tensor exceeds {CPU_MAX_TENSOR_MB:g} MB (224x224 at b=1024)")
    p.add_argument("--repeats", type=_positive_int_arg, default=None, help="timed repeats, median reported (default 7)")
    p.add_argument("--threads", type=_positive_int_arg, default=None, help="torch.set_num_threads before running")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="also time every mixbook op under torch.compile (default: on CUDA only)")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: run, print the table, write ``--json``. Returns the result dict.

    JSON layout: ``provenance`` (device name, torch/torchvision/timm/numpy versions, UTC date,
    git commit, thread count, load average), ``parameters``, ``skipped`` (case, reason),
    ``cases`` (each: case fields, ``notes``, ``ops`` → name → ``role``, ``family``,
    ``median_s``, ``min_s``, ``number``, ``ops_per_s``, ``bytes``, ``gb_per_s``,
    ``copy_fraction``, ``peak_extra_bytes``, ``note``, and for mixbook ops ``speedup_vs`` (peer →
    peer time / mixbook time), ``dispatched_ops`` (ATen operators per call, :func:`dispatched_ops`)
    and ``host_sync_free``), ``targets`` (name, case, measured, target,
    pass, note).
    """
    args = _parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = run(device=args.device, quick=args.quick, batches=args.batch, dtypes=args.dtype,
                 include_large=args.include_large, repeats=args.repeats, seed=args.seed, image_sizes=args.image_size,
                 compiled=args.compiled, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return result

