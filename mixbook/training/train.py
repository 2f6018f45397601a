"""One training loop for the classifiers of every chapter: :func:`fit`, :func:`repeat`, :class:`History`.

:func:`fit` is one epoch loop over a batch source (a ``Split`` in the seed's order, its shard on
a rank of a process group, or a ``DataLoader``), with one optimiser and schedule
(:func:`optimizer_and_schedule`), one :class:`History` and one evaluation cadence. The loops
that cannot be it (the vmapped population of :mod:`mixbook.training.population`, gradient
surgery in :mod:`mixbook.chapters.manifold_gradient`, the regressions of
:mod:`mixbook.chapters.regression`, a GAN's two players in :mod:`mixbook.chapters.gan`) say why.

A *method* turns a mini-batch into a loss (:class:`mixbook.core.step.Method`). ERM is
``CE(f(x), y)``; every mixing method is declared by its module as a spec
(:class:`mixbook.core.registry.MethodSpec`) and made a training method by
:func:`mixbook.training.steps.make_method`. :func:`fit` and :func:`repeat` take a registered name
(:func:`mixbook.core.registry.names`) or an instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core import _checks
from ..core.runtime import resolve_device
from ..core.step import Method
from . import metrics
from .data import Split
from .steps import make_method

__all__ = ["History", "predict", "evaluate_split", "generators", "optimizer_and_schedule", "fit", "repeat", "summarize"]


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run: one dict per epoch.

    Keys: ``epoch``, ``train_loss``, ``seconds`` (training time of the epoch), and at the
    evaluated epochs the metrics of :func:`evaluate_split` (test, validation, memorisation).
    """

    method: str
    seed: int
    epochs: list[dict[str, float]] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's record."""
        return self.epochs[-1]

    def best(self, metric: str = "val_accuracy", higher_is_better: bool = True,
             tie_break: str | None = "val_nll") -> dict[str, float]:
        """The record of the evaluated epoch with the best ``metric``: post-hoc early stopping.

        Every evaluated epoch records the test metrics beside the validation ones, so the record
        at the best validation epoch is what a checkpoint taken there would report (with the
        evaluation cadence's resolution). Ties go to the lower ``tie_break`` (``None``: none),
        then to the earlier epoch.

        Raises:
            ValueError: no evaluated epoch recorded ``metric`` (e.g. no validation part).
        """
        rows = [e for e in self.epochs if metric in e]
        if not rows:
            raise ValueError(f"no epoch of this history recorded {metric!r}; recorded: "
                             f"{sorted(set().union(*self.epochs)) if self.epochs else 'nothing'}")
        sign = -1.0 if higher_is_better else 1.0

        def key(e):
            second = e.get(tie_break, 0.0) if tie_break else 0.0
            return (sign * e[metric], second, e["epoch"])

        return min(rows, key=key)

    def keep(self, record: dict[str, float], logits: Mapping[str, torch.Tensor], *, last: bool) -> None:
        """Record an evaluated epoch's logits (``{"test": (n, C), "val": (m, C)}``) in :attr:`outputs`:
        under ``"best"`` when ``record`` is the best so far by :meth:`best`'s rule, under ``"last"``
        when ``last``. Arrays are float32 NumPy copies on the CPU."""
        entry = {"epoch": int(record["epoch"]),
                 **{f"{part}_logits": t.detach().float().cpu().numpy() for part, t in logits.items()}}
        if self.best()["epoch"] == record["epoch"]:
            self.outputs["best"] = entry
        if last:
            self.outputs["last"] = entry

    def frame(self):
        """The history as a pandas DataFrame (one row an epoch)."""
        import pandas as pd

        return pd.DataFrame(self.epochs).assign(method=self.method, seed=self.seed)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits ``(n, C)`` of ``model`` on ``x`` ``(n, *)`` in eval mode, batched."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    finally:
        model.train(was_training)


def evaluate_split(model: nn.Module, data: Split, *, _predict: Callable | None = None,
                   logits: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """The metrics :func:`fit` records at an evaluation epoch.

    ``accuracy``, ``nll``, ``ece``, ``overconfidence`` on the test set
    (:func:`mixbook.training.metrics.evaluate`); with a validation part, the same four prefixed ``val_``;
    with label noise, ``noisy_fitted`` (the fraction of the corrupted training examples whose
    prediction is their corrupted label: memorisation) and ``noisy_clean`` (… whose prediction
    is their true label). With ``logits`` (a dict), the ``"test"`` and ``"val"`` logits are put in it.
    """
    pred_fn = predict if _predict is None else _predict   # fit's sharded predict in a process group
    test = pred_fn(model, data.x_test)
    out = metrics.evaluate(test, data.y_test)
    if logits is not None:
        logits["test"] = test
    if data.x_val is not None:
        val = pred_fn(model, data.x_val)
        out.update({f"val_{k}": v for k, v in metrics.evaluate(val, data.y_val).items()})
        if logits is not None:
            logits["val"] = val
    noisy = data.noisy
    if noisy is not None:
        pred = pred_fn(model, data.x_train[noisy]).argmax(1)
        count = max(int(noisy.sum()), 1)
        out["noisy_fitted"] = float((pred == data.y_train[noisy]).sum()) / count
        out["noisy_clean"] = float((pred == data.y_train_clean[noisy]).sum()) / count
    return out


def generators(seed: int, device: str | torch.device = "cpu", rank: int | None = None,
               ) -> tuple[torch.Generator, torch.Generator]:
    """The two independent streams :func:`fit` draws from: ``(data, mixing)`` generators on ``device``.

    Their seeds are spawned from ``seed`` by NumPy's ``SeedSequence``, so the data order does not
    depend on how many numbers a method draws for its mixing, and the two streams are not
    shifted copies of each other.

    With ``rank`` (a process group's rank, as :func:`fit` passes it under ``torchrun``), the
    data stream is the same on every rank (all ranks draw the same global order and each takes
    its shard), and the mixing stream is rank ``rank``'s child of the seed's mixing stream
    (``SeedSequence(seed).spawn(2)[1].spawn(rank + 1)[rank]``): distinct per rank, the same for
    a seed and rank whatever the world size.

    Args:
        seed: integer ≥ 0.
        device: the device the generators draw on.
        rank: ``None`` (one process) or an integer ≥ 0.
    """
    import numpy as np

    seed = _checks.seed("seed", seed)
    dev = torch.device(device)
    if rank is not None:
        return _rank_streams(seed, dev, rank)[::2]
    data_seed, mix_seed = (int(c.generate_state(1, np.uint64)[0] >> np.uint64(1))
                           for c in np.random.SeedSequence(int(seed)).spawn(2))
    return (torch.Generator(device=dev).manual_seed(data_seed),
            torch.Generator(device=dev).manual_seed(mix_seed))


def _rank_streams(seed: int, dev: torch.device, rank: int) -> tuple[torch.Generator, torch.Generator, torch.Generator]:
    """``(order, augment, mixing)`` of one rank: the shared data-order stream (that of one
    process), and the rank's children of the data and mixing streams."""
    import numpy as np

    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 0:
        raise ValueError(f"rank must be an integer >= 0, got {rank!r}")
    data, mix = np.random.SeedSequence(int(seed)).spawn(2)
    seeds = [data, data.spawn(int(rank) + 1)[int(rank)], mix.spawn(int(rank) + 1)[int(rank)]]
    return tuple(torch.Generator(device=dev).manual_seed(int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)))
                 for c in seeds)


def optimizer_and_schedule(params, optimizer: str, lr: float, weight_decay: float, total_steps: int):
    """:func:`fit`'s optimiser (AdamW, or SGD with Nesterov momentum 0.9) and cosine schedule over ``total_steps``."""
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)


def _single_process(name: str, model: object) -> None:
    """Refuse a DistributedDataParallel model or an initialised process group: ``name`` is single-process.

    Under DDP every rank would train on the whole training set in the same order, so the
    "distributed" run would silently repeat one run per rank. (:func:`fit` and :func:`repeat`
    train across a process group; :func:`mixbook.training.population.repeat` does not.)
    """
    todo = ("Run it in one process on an unwrapped model, or use mixbook.training.train.fit / mixbook.training.train.repeat, "
            "which shard the data over the ranks of a process group")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise TypeError(f"model is wrapped in torch.nn.parallel.DistributedDataParallel, but {name} is single-process: "
                        f"every rank would train on the whole data set in the same order. Pass model.module. {todo}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise RuntimeError(f"a torch.distributed process group is initialised (world size "
                           f"{torch.distributed.get_world_size()}), but {name} is single-process: every rank would "
                           f"train on the whole data set in the same order. {todo}; or call "
                           "torch.distributed.destroy_process_group() first if the group is not meant for this run")


def fit(
    model: nn.Module,
    data: Split | torch.utils.data.DataLoader,
    method: str | Method = "erm",
    *,
    num_classes: int | None = None,
    test: Split | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    eval_every: int = 1,
    progress: bool = True,
    optimizer: str = "adamw",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    keep_outputs: bool = False,
) -> History:
    """Train ``model`` on ``data`` with ``method`` (AdamW or SGD, cosine learning-rate schedule).

    Two ``torch.Generator`` streams on the training device, both derived from ``seed``
    (:func:`~mixbook.training.train.generators`): one for the data order and ``augment``, one for the method's mixing
    draws. Every method therefore sees the same batches in the same order for a seed (a paired
    comparison), and a run is deterministic for a seed (given the same model initialisation:
    seed torch before building the model, or use :func:`repeat`).

    Args:
        model: any ``nn.Module`` mapping ``(b, *)`` inputs to ``(b, C)`` logits; moved to
            ``device`` in place.
        data: a :class:`mixbook.training.data.Split`, or a ``torch.utils.data.DataLoader`` of ``(x, y)``
            batches (your own dataset, transforms and sampler, e.g. a ``DistributedSampler``). With
            a loader, ``num_classes`` is required, its batches are used as they come (``batch_size``
            is the loader's; a sampler with ``set_epoch`` gets the epoch, as DDP loops do), the
            data stream only drives ``augment``, and the test metrics come from ``test``.
        method: a registered name (:func:`mixbook.core.registry.names`) or a :class:`~mixbook.core.step.Method` instance.
        num_classes: the number of classes, with a ``DataLoader`` (a ``Split`` knows its own).
        test: with a ``DataLoader``, an optional :class:`~mixbook.training.data.Split` whose test (and
            validation) part is evaluated as for a ``Split``; ``None``: training loss only.
        epochs, batch_size, lr, weight_decay: the usual.
        seed: integer ≥ 0, the seed of the data order, augmentation and mixing.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``…
        eval_every: evaluate on the test set every this many epochs (and after the last).
        progress: show a tqdm progress bar over epochs.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov; the CIFAR recipes use it
            with ``lr=0.1, weight_decay=5e-4``).
        augment: optional ``augment(x, generator) -> x`` applied to every training batch on
            the device before the method mixes it (e.g. :func:`mixbook.training.data.random_crop_flip`);
            it gets the data-order generator, so the augmentation is the same for every method.
        keep_outputs: keep the test and validation logits of the best validation epoch so far
            and of the last epoch in ``History.outputs`` (``"best"``, ``"last"``; see
            :meth:`History.best <mixbook.training.train.History.best>`), for per-example statistics and temperature scaling. Needs a
            validation part (a ``Split`` from :func:`mixbook.training.data.validation_split`, or
            ``test`` with one).

    Returns:
        A :class:`~mixbook.training.train.History`. The model keeps the weights of the last epoch (``History.best()``
        says which evaluated epoch early stopping would have kept, and what it scored).

    **Across processes** (``torchrun``: an initialised ``torch.distributed`` process group,
    gloo on CPUs, NCCL on GPUs). ``fit`` then trains data-parallel:

    * the model is wrapped in ``DistributedDataParallel`` (rank 0's initial weights are
      broadcast; a model the caller already wrapped in DDP is used as it is); ``device="auto"``
      / ``"cuda"`` means ``cuda:LOCAL_RANK``;
    * every epoch all ranks draw the same permutation of the training set from the seed's data
      stream, pad it by repetition to a multiple of the world size and take every
      ``world_size``-th index from their rank on (``DistributedSampler`` semantics: every
      example once per epoch across ranks, plus the padding); ``batch_size`` is per rank, so a
      step's global batch is ``batch_size × world_size`` consecutive indices of the
      permutation, and the gradient is the mean over it, as a one-process run with that batch
      size (for ERM without padding: the same run up to float rounding);
    * mixing is per rank, over the local batch, from rank-specific streams
      (:func:`~mixbook.training.train.generators` with ``rank``); ``augment`` gets a per-rank stream too. To mix over
      the global batch, pass the method wrapped in :class:`mixbook.training.distributed.GlobalBatch`;
    * the evaluation shards the evaluated sets over the ranks and gathers the logits, so every
      rank records the same metrics (those of one process up to rounding); ``train_loss`` is
      the mean over all ranks' examples; the progress bar shows on rank 0 only. The returned
      :class:`~mixbook.training.train.History` is the same on every rank: save it (and the model) from rank 0.

    A one-process run (no group) is unchanged.
    """
    loader = isinstance(data, torch.utils.data.DataLoader)
    if not (loader or isinstance(data, Split)):
        raise TypeError(f"data must be a mixbook.training.data.Split or a torch.utils.data.DataLoader, got {type(data).__name__}")
    if loader:
        if num_classes is None:
            raise ValueError("num_classes is required when data is a DataLoader (a Split knows its own)")
        num_classes = _checks.num_classes(num_classes)
        if test is not None and not isinstance(test, Split):
            raise TypeError(f"test must be a mixbook.training.data.Split or None, got {type(test).__name__}")
    elif num_classes is not None or test is not None:
        raise ValueError("num_classes and test are for a DataLoader; a Split carries its classes and test set")
    method_obj = make_method(method) if isinstance(method, str) else method
    if not callable(getattr(method_obj, "loss", None)):
        raise TypeError(f"method must be a registered name or have a .loss(...) method, got {method!r}")
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    lr = _checks.positive_float("lr", lr)
    eval_every = _checks.positive_int("eval_every", eval_every)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not 0 <= weight_decay < float("inf"):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    optimizer = _checks.choice("optimizer", optimizer, ("adamw", "sgd"))
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a callable (x, generator) -> x or None, got {type(augment).__name__}")
    keep_outputs = _checks.boolean("keep_outputs", keep_outputs)
    if keep_outputs and (test if loader else data) is not None and (test if loader else data).x_val is None:
        raise ValueError("keep_outputs needs a validation part (mixbook.training.data.validation_split): "
                         "the best epoch is chosen on it")
    if keep_outputs and loader and test is None:
        raise ValueError("keep_outputs needs test= (a Split with a validation part) when data is a DataLoader")

    dev = resolve_device(device)
    dist = torch.distributed
    group = dist.is_available() and dist.is_initialized()
    if group:                                    # data-parallel: DDP, the rank's streams, the shard
        rank, world = dist.get_rank(), dist.get_world_size()
        run, net, dev = _ddp(model, dev)
        order_gen, aug_gen, mix_gen = _rank_streams(seed, dev, rank)
    else:
        if isinstance(model, nn.parallel.DistributedDataParallel):  # pragma: no cover - DDP needs a group
            raise TypeError("model is wrapped in DistributedDataParallel but no process group is initialised")
        rank, world = 0, 1
        run = net = model.to(dev)
        order_gen, mix_gen = generators(seed, dev)
        aug_gen = order_gen                      # one process: the order and augment share the data stream
    if loader:
        evaluated = None if test is None else test.to(dev)
        source: _Batches = _LoaderBatches(data, dev)
    else:
        data = evaluated = data.to(dev)
        num_classes = data.num_classes
        source = _SplitBatches(data, batch_size, order_gen, dev, rank, world)
    opt, sched = optimizer_and_schedule(run.parameters(), optimizer, lr, weight_decay, epochs * source.steps)
    history = History(method=repr(method_obj), seed=seed)
    return _epochs(run, net, source, method_obj, num_classes, history, opt=opt, sched=sched, mix_gen=mix_gen,
                   augment=augment, aug_gen=aug_gen, evaluated=evaluated, epochs=epochs, eval_every=eval_every,
                   progress=progress, rank=rank, group=group, keep_outputs=keep_outputs)


class _Batches:
    """A batch source of :func:`fit`'s one epoch loop (:func:`_epochs`).

    ``dev``: the training device; ``steps``: the optimiser steps of an epoch on this rank (the
    cosine schedule spans ``epochs × steps``); ``examples``: the examples of an epoch over all
    ranks, the denominator of ``train_loss`` (``None``: counted as the batches come);
    :meth:`epoch` gives the epoch's training batches ``(x (b, *), y (b,))`` on the device.
    """

    dev: torch.device
    steps: int
    examples: int | None

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch ``epoch`` (1-based)."""
        raise NotImplementedError


class _SplitBatches(_Batches):
    """The training part of a :class:`Split` on the device, in the order of :func:`fit`'s data stream.

    Each epoch draws one permutation of the ``n`` training examples from ``order_gen`` (lazily,
    when the first batch is asked for), pads it by repetition to ``per × world`` indices
    (``per = ceil(n / world)``), keeps every ``world``-th from ``rank`` on and cuts that into
    slices of ``batch_size``. One process is ``rank=0, world=1``: the whole permutation.
    """

    def __init__(self, data: Split, batch_size: int, order_gen: torch.Generator, dev: torch.device,
                 rank: int = 0, world: int = 1) -> None:
        self.data, self.batch_size, self.order_gen, self.dev = data, batch_size, order_gen, dev
        self.rank, self.world = rank, world
        self.n = data.x_train.shape[0]
        self.per = -(-self.n // world)                    # examples per rank and epoch (padded)
        self.steps = -(-self.per // batch_size)
        self.examples = self.per * world

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, per, world, size = self.n, self.per, self.world, self.batch_size
        order = torch.randperm(n, device=self.dev, generator=self.order_gen)   # the same on every rank
        if per * world > n:
            order = order.repeat(-(-per * world // n))[:per * world]
        local = order[self.rank::world]
        for i in range(0, per, size):
            idx = local[i:i + size]
            yield self.data.x_train[idx], self.data.y_train[idx]


class _LoaderBatches(_Batches):
    """A ``DataLoader`` of ``(x, y)`` batches, moved to the device as they come; its sampler gets
    ``set_epoch(epoch - 1)`` when it has one (a ``DistributedSampler``)."""

    def __init__(self, loader: torch.utils.data.DataLoader, dev: torch.device) -> None:
        try:
            self.steps = len(loader)
        except TypeError as err:  # an IterableDataset without __len__
            raise TypeError("data: the DataLoader must have a length (len(loader)) for the learning-rate schedule") from err
        self.loader, self.dev, self.examples = loader, dev, None
        self.sampler = getattr(loader, "sampler", None)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch - 1)
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError("data: the DataLoader must yield (x, y) pairs, got "
                                f"{type(batch).__name__} of {len(batch) if hasattr(batch, '__len__') else '?'} items")
            xb, yb = (t.to(self.dev, non_blocking=True) for t in batch)
            yield xb, yb


def _epochs(run: nn.Module, net: nn.Module, source: _Batches, method_obj: Method, num_classes: int,
            history: History, *, opt, sched, mix_gen: torch.Generator, augment, aug_gen: torch.Generator,
            evaluated: Split | None, epochs: int, eval_every: int, progress: bool, rank: int,
            group: bool, keep_outputs: bool = False) -> History:
    """:func:`fit`'s epoch loop, whatever the batch source; appends an epoch's record to ``history``.

    Every batch ``(x (b, *), y (b,))`` of ``source``: ``augment(x, aug_gen)``, the method's loss
    on ``run`` (the model, or its DDP wrapper) with ``mix_gen``, one optimiser and schedule step.
    With ``group``, the summed loss (and, for a counted source, the example count) is reduced over
    the ranks and the evaluation is sharded (:func:`_predict_sharded`); the progress bar shows on
    rank 0. ``evaluated`` (``None``: training loss only) is evaluated on ``net`` every
    ``eval_every`` epochs and after the last.
    """
    bar = tqdm(range(1, epochs + 1), desc=repr(method_obj), disable=not progress or rank != 0, leave=False)
    for epoch in bar:
        batches = source.epoch(epoch)
        run.train()
        start = time.perf_counter()
        total = torch.zeros((), device=source.dev)
        count = torch.zeros((), device=source.dev) if source.examples is None else None
        for xb, yb in batches:
            if augment is not None:
                xb = augment(xb, aug_gen)
            loss = method_obj.loss(run, xb, yb, num_classes, mix_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * yb.shape[0]
            if count is not None:
                count += yb.shape[0]
        if group:
            torch.distributed.all_reduce(total)
            if count is not None:
                torch.distributed.all_reduce(count)
        examples = source.examples if count is None else max(float(count), 1.0)
        record: dict[str, float] = {"epoch": epoch, "train_loss": float(total) / examples,
                                    "seconds": time.perf_counter() - start}
        logits: dict[str, torch.Tensor] | None = None
        if evaluated is not None and (epoch % eval_every == 0 or epoch == epochs):
            logits = {} if keep_outputs else None
            record.update(evaluate_split(net, evaluated, _predict=_predict_sharded if group else None, logits=logits))
        history.epochs.append(record)
        if logits is not None:
            history.keep(record, logits, last=epoch == epochs)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}")
    return history


def _predict_sharded(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """:func:`predict` over the ranks of the process group: each rank the rows ``rank::world`` of
    ``x`` (padded by repetition to a multiple of the world size), the logits all-gathered."""
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    n = x.shape[0]
    if n == 0:
        return predict(model, x, batch_size)
    per = -(-n // world)
    idx = torch.arange(per * world, device=x.device) % n
    local = predict(model, x[idx[rank::world]], batch_size).contiguous()
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local)
    return torch.stack(parts, 1).reshape(per * world, *local.shape[1:])[:n]


def _ddp(model: nn.Module, dev: torch.device) -> tuple[nn.Module, nn.Module, torch.device]:
    """``(ddp, net, device)``: the model wrapped in DDP on this rank's device (``cuda:LOCAL_RANK`` for a
    bare ``"cuda"``; a model the caller already wrapped is used as it is) and the network inside."""
    import os

    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model, model.module, dev
    net = model.to(dev)
    return nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None), net, dev


def repeat(
    model_fn: Callable[[], nn.Module],
    data: Split,
    methods: Mapping[str, str | Method],
    seeds: Iterable[int],
    *,
    return_models: bool = False,
    **fit_kwargs: Any,
):
    """Train a fresh model per (method, seed) and collect the final test metrics.

    The model is built by ``model_fn()`` right after ``torch.manual_seed(seed)``, so all
    methods start from the same initialisation for a given seed.

    Returns:
        A pandas DataFrame with one row per (method, seed) and the columns ``method`` (the mapping's key),
        ``seed``, ``accuracy``, ``nll``, ``ece``, ``overconfidence``, ``train_loss`` and
        ``seconds_per_epoch``; with ``return_models``, also a dict ``{(method, seed): trained model}``.
    """
    import pandas as pd

    rows, models = [], {}
    for seed in seeds:
        for label, method in methods.items():
            torch.manual_seed(seed)
            model = model_fn()
            hist = fit(model, data, method, seed=seed, **fit_kwargs)
            final = {k: v for k, v in hist.final.items() if k not in ("epoch", "seconds")}
            secs = sum(e["seconds"] for e in hist.epochs) / len(hist.epochs)
            rows.append({"method": label, "seed": seed, **final, "seconds_per_epoch": secs})
            if return_models:
                models[label, seed] = model
    frame = pd.DataFrame(rows)
    return (frame, models) if return_models else frame


def summarize(results, columns: Iterable[str] = ("accuracy", "nll", "ece"), *, as_text: bool = False,
              digits: int = 3):
    """Mean and standard deviation over seeds per method of a :func:`repeat`-like frame.

    Returns a DataFrame indexed by method: with ``as_text``, one ``"mean ± std"`` string per
    column (rounded to ``digits``); otherwise ``(column, "mean"|"std")`` numeric columns.
    """
    cols = list(columns)
    stats = results.groupby("method", sort=False)[cols].agg(["mean", "std"])
    if not as_text:
        return stats
    out = stats.xs("mean", axis=1, level=1).copy().astype(object)
    for c in cols:
        out[c] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(stats[c, "mean"], stats[c, "std"].fillna(0.0))]
    out.columns.name = f"mean ± std over {results.groupby('method').size().max()} seeds"
    return out
