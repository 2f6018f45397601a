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

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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

__all__ = ["History", "NonFiniteLoss", "predict", "evaluate_split", "generators", "optimizer_and_schedule", "fit", "repeat", "summarize"]


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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    on_nonfinite: str = "raise",
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
        checkpoint: a file to checkpoint the run to (see *Long runs* below), or ``None``.
        checkpoint_every: write the checkpoint every this many epochs (and after the last).
        on_nonfinite: what a NaN or infinite training loss does: ``"raise"`` (default) stops the
            run with a :class:`~mixbook.training.train.NonFiniteLoss` error naming the epoch and step (on the CPU at that
            step; on an accelerator, where a per-step check would synchronise, at the end of that
            epoch, naming the first bad step); ``"record"`` goes on, leaves those steps out of
            ``train_loss`` and records their number as ``nonfinite_steps`` in the epoch's record.

    Returns:
        A :class:`~mixbook.training.train.History`. The model keeps the weights of the last epoch (``History.best()``
        says which evaluated epoch early stopping would have kept, and what it scored).

    **Across processes** (``torchrun``: an initialised ``torch.distributed`` process group,
    gloo on CPUs, NCCL on GPUs). ``fit`` then trains data-parallel:

    * create the group with a timeout (:func:`mixbook.training.distributed.init_from_env` does,
      5 minutes by default): a rank that dies or stops then fails the others' collectives after
      it, where gloo would wait 30 minutes;
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

    **Long runs.** With ``checkpoint``, ``fit`` writes (atomically: :func:`mixbook.core.files.atomic_write`)
    the model, optimiser and schedule states, the data-order, augmentation and mixing generators,
    the method's own random state (a manifold layer draw), the :class:`~mixbook.training.train.History` and the position
    (epoch, and step within it) every ``checkpoint_every`` epochs; called again with the same
    arguments and the file present, it resumes from it, and the run ends with the *same* weights
    and history as an uninterrupted one (its ``seconds`` aside). A checkpoint of another run (other
    method, seed, epochs, learning rate, ...) is refused. On SIGTERM or SIGINT the step in progress
    finishes, the checkpoint is written with the position inside the epoch (a ``Split``'s epoch
    order is saved with it; a ``DataLoader``'s epoch is replayed and its first batches skipped,
    exact when the loader's order is a function of the epoch), and ``fit`` exits: SIGTERM with
    ``SystemExit(143)``, SIGINT with ``KeyboardInterrupt``, each saying where the checkpoint is.
    In a process group every rank writes its own file (``name.rank<r>.ext``). The model is
    trained *in place*: after an interruption it holds the weights of the last step taken. Without
    ``checkpoint`` an interrupting ``KeyboardInterrupt`` carries the run so far as ``err.history``.
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
    checkpoint_every = _checks.positive_int("checkpoint_every", checkpoint_every)
    on_nonfinite = _checks.choice("on_nonfinite", on_nonfinite, ("raise", "record"))
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path or None, got {type(checkpoint).__name__}")

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
    saver = None
    if checkpoint is not None:
        fingerprint = {"method": repr(method_obj), "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                       "weight_decay": weight_decay, "optimizer": optimizer, "eval_every": eval_every,
                       "steps_per_epoch": source.steps, "world_size": world, "num_classes": num_classes,
                       "augment": augment is not None, "keep_outputs": keep_outputs}
        gens = {"order": order_gen, "mixing": mix_gen, **({} if aug_gen is order_gen else {"augment": aug_gen})}
        saver = _Checkpoint(_rank_path(checkpoint, rank if group else None), fingerprint, net=net, run=run, opt=opt,
                            sched=sched, generators=gens, method=method_obj, history=history, every=checkpoint_every)
    return _epochs(run, net, source, method_obj, num_classes, history, opt=opt, sched=sched, mix_gen=mix_gen,
                   augment=augment, aug_gen=aug_gen, evaluated=evaluated, epochs=epochs, eval_every=eval_every,
                   progress=progress, rank=rank, group=group, keep_outputs=keep_outputs, saver=saver,
                   on_nonfinite=on_nonfinite)


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

    def epoch(self, epoch: int, order: torch.Tensor | None = None,
              start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch ``epoch`` (1-based), from step ``start`` on; ``order``: the epoch's order
        as a checkpoint saved it (:attr:`order` after the first batch), instead of a new draw."""
        raise NotImplementedError

    order: torch.Tensor | None = None


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

    def epoch(self, epoch: int, order: torch.Tensor | None = None,
              start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, per, world, size = self.n, self.per, self.world, self.batch_size
        if order is None:
            order = torch.randperm(n, device=self.dev, generator=self.order_gen)   # the same on every rank
            if per * world > n:
                order = order.repeat(-(-per * world // n))[:per * world]
        self.order = order
        local = order[self.rank::world]
        for i in range(start * size, per, size):
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

    def epoch(self, epoch: int, order: torch.Tensor | None = None,
              start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch - 1)
        return self._batches(start)

    def _batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, batch in enumerate(self.loader):
            if i < start:                          # a resumed epoch: the steps already taken
                continue
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError("data: the DataLoader must yield (x, y) pairs, got "
                                f"{type(batch).__name__} of {len(batch) if hasattr(batch, '__len__') else '?'} items")
            xb, yb = (t.to(self.dev, non_blocking=True) for t in batch)
            yield xb, yb


class NonFiniteLoss(FloatingPointError):
    """A training loss was NaN or infinite (``fit(..., on_nonfinite="raise")``); names the epoch and step."""

    def __init__(self, epoch: int, step: int, value: float | None = None) -> None:
        shown = "" if value is None else f" ({value})"
        super().__init__(f"the training loss is not finite{shown} at epoch {epoch}, step {step} (1-based): the run is "
                         "stopped rather than trained to NaN. Lower the learning rate, check the inputs "
                         "(mixbook.set_value_checks('always') finds NaN inputs), or pass on_nonfinite='record' "
                         "to go on and count such steps")
        self.epoch, self.step = epoch, step


def _epochs(run: nn.Module, net: nn.Module, source: _Batches, method_obj: Method, num_classes: int,
            history: History, *, opt, sched, mix_gen: torch.Generator, augment, aug_gen: torch.Generator,
            evaluated: Split | None, epochs: int, eval_every: int, progress: bool, rank: int,
            group: bool, keep_outputs: bool = False, saver: "_Checkpoint | None" = None,
            on_nonfinite: str = "raise") -> History:
    """:func:`fit`'s epoch loop, whatever the batch source; appends an epoch's record to ``history``.

    Every batch ``(x (b, *), y (b,))`` of ``source``: ``augment(x, aug_gen)``, the method's loss
    on ``run`` (the model, or its DDP wrapper) with ``mix_gen``, one optimiser and schedule step.
    With ``group``, the summed loss (and, for a counted source, the example count) is reduced over
    the ranks and the evaluation is sharded (:func:`_predict_sharded`); the progress bar shows on
    rank 0. ``evaluated`` (``None``: training loss only) is evaluated on ``net`` every
    ``eval_every`` epochs and after the last. ``saver``: resume from its checkpoint if there is
    one, write it every ``saver.every`` epochs and on SIGTERM/SIGINT (then exit).
    """
    first_epoch, first_step, partial = 1, 0, None
    if saver is not None:
        resumed = saver.load(source.dev)
        if resumed is not None:
            first_epoch, first_step, partial = resumed["epoch"] + 1, resumed["step"], resumed["partial"]
    per_step = source.dev.type == "cpu"            # a per-step finiteness check costs nothing on the CPU
    bar = tqdm(range(first_epoch, epochs + 1), desc=repr(method_obj), disable=not progress or rank != 0, leave=False)
    with _Interrupts(saver is not None) as interrupts:
        try:
            for epoch in bar:
                here = partial is not None and epoch == first_epoch
                step = first_step if here else 0
                batches = source.epoch(epoch, order=partial["order"] if here else None, start=step)
                run.train()
                start = time.perf_counter() - (partial["seconds"] if here else 0.0)
                dev = source.dev
                total = partial["total"].to(dev) if here else torch.zeros((), device=dev)
                # the examples of the finite steps (for a Split, without a bad step: source.examples over the ranks)
                count = partial["count"].to(dev) if here else torch.zeros((), device=dev)
                bad = partial["bad"].to(dev) if here else torch.zeros((), dtype=torch.int64, device=dev)
                first_bad = partial["first_bad"].to(dev) if here else torch.full((), -1, dtype=torch.int64, device=dev)
                for xb, yb in batches:
                    if augment is not None:
                        xb = augment(xb, aug_gen)
                    loss = method_obj.loss(run, xb, yb, num_classes, mix_gen)
                    step += 1
                    finite = torch.isfinite(loss.detach())
                    if per_step and on_nonfinite == "raise" and not bool(finite):
                        raise NonFiniteLoss(epoch, step, float(loss.detach()))   # before the step: weights untouched
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    # on the device, no host synchronisation: the loss of the finite steps, their examples,
                    # and the count and first step of the non-finite ones (read at the epoch's end)
                    total += torch.where(finite, loss.detach(), 0.0) * yb.shape[0]
                    count += finite * yb.shape[0]
                    first_bad = torch.where((first_bad < 0) & ~finite, step, first_bad)
                    bad += ~finite
                    if interrupts.signal is not None:
                        path = saver.save(epoch - 1, step, {
                            "order": getattr(source, "order", None), "total": total, "count": count, "bad": bad,
                            "first_bad": first_bad, "seconds": time.perf_counter() - start})
                        interrupts.leave(path, epoch, step)
                if group:
                    torch.distributed.all_reduce(total)
                    torch.distributed.all_reduce(bad)
                    torch.distributed.all_reduce(count)
                n_bad = int(bad)
                if n_bad and on_nonfinite == "raise":
                    raise NonFiniteLoss(epoch, int(first_bad))
                examples = max(float(count), 1.0)
                record: dict[str, float] = {"epoch": epoch, "train_loss": float(total) / examples,
                                            "seconds": time.perf_counter() - start}
                if n_bad:
                    record["nonfinite_steps"] = n_bad
                logits: dict[str, torch.Tensor] | None = None
                if evaluated is not None and (epoch % eval_every == 0 or epoch == epochs):
                    logits = {} if keep_outputs else None
                    record.update(evaluate_split(net, evaluated, _predict=_predict_sharded if group else None,
                                                 logits=logits))
                history.epochs.append(record)
                if logits is not None:
                    history.keep(record, logits, last=epoch == epochs)
                bar.set_postfix(loss=f"{record['train_loss']:.3f}")
                if saver is not None and (epoch % saver.every == 0 or epoch == epochs):
                    saver.save(epoch, 0, None)
        except KeyboardInterrupt as err:
            err.history = history                  # the run so far; the model holds the last step's weights
            raise
    return history


class _Interrupts:
    """While :func:`fit` checkpoints: SIGTERM and SIGINT set :attr:`signal` (the step in progress
    finishes, then the checkpoint is written and :meth:`leave` exits); a second SIGINT interrupts at
    once. Only in the main thread (where Python delivers signals); the previous handlers come back."""

    def __init__(self, enabled: bool) -> None:
        import threading

        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_Interrupts":
        import signal

        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt("interrupted twice: stopped without a checkpoint of the step in progress")
        self.signal = signum

    def leave(self, path: Path, epoch: int, step: int) -> None:
        import signal
        import sys

        message = (f"fit: {signal.Signals(self.signal).name} at epoch {epoch}, step {step}; checkpoint written to "
                   f"{path}. Call fit again with the same arguments to resume from it.")
        if self.signal == signal.SIGINT:
            raise KeyboardInterrupt(message)
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(128 + int(self.signal))

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _rank_path(path: str | os.PathLike, rank: int | None) -> Path:
    """The checkpoint file of a run (``rank``: its rank in a process group, which writes ``name.rank<r>.ext``)."""
    path = Path(path)
    return path if rank is None else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def _method_rngs(method: object, depth: int = 0) -> dict[str, object]:
    """The random state a training method holds besides ``fit``'s streams, by attribute name: its
    generators and host layer draws (:class:`mixbook.core.hooks.LayerDraw`), and those of a method it wraps."""
    from ..core.hooks import LayerDraw

    found: dict[str, object] = {}
    for name, value in vars(method).items() if hasattr(method, "__dict__") else ():
        if isinstance(value, torch.Generator):
            found[name] = value
        elif isinstance(value, LayerDraw):
            found[name] = value
        elif isinstance(value, Method) and depth < 2:
            found.update({f"{name}.{k}": v for k, v in _method_rngs(value, depth + 1).items()})
    return found


def _owner(method: object, dotted: str) -> tuple[object, str]:
    *parents, last = dotted.split(".")
    for p in parents:
        method = getattr(method, p)
    return method, last


class _Checkpoint:
    """:func:`fit`'s checkpoint file: what a resume needs, and the fingerprint of the run it belongs to."""

    FORMAT = "mixbook.training.train.fit checkpoint, version 1"

    def __init__(self, path: Path, fingerprint: dict[str, Any], *, net: nn.Module, run: nn.Module, opt, sched,
                 generators: dict[str, torch.Generator], method: Method, history: History, every: int) -> None:
        self.path, self.fingerprint, self.every = path, fingerprint, every
        self.net, self.run, self.opt, self.sched = net, run, opt, sched
        self.generators, self.method, self.history = generators, method, history

    def save(self, epoch: int, step: int, partial: dict[str, Any] | None) -> Path:
        """Write the state after ``epoch`` complete epochs and ``step`` steps of the next (atomically)."""
        from ..core.files import atomic_write

        rngs = {}
        for name, rng in _method_rngs(self.method).items():
            rngs[name] = rng.get_state() if isinstance(rng, torch.Generator) else rng.getstate()
        state = {
            "format": self.FORMAT, "fingerprint": self.fingerprint, "epoch": epoch, "step": step,
            "model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "schedule": self.sched.state_dict(),
            "generators": {k: g.get_state() for k, g in self.generators.items()}, "method": rngs,
            "history": {"epochs": self.history.epochs, "outputs": self.history.outputs},
            "partial": None if partial is None else {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                                                     for k, v in partial.items()},
        }
        return atomic_write(self.path, lambda fh: torch.save(state, fh))

    def load(self, dev: torch.device) -> dict[str, Any] | None:
        """Restore the run from the file, if there is one: ``{"epoch", "step", "partial"}``, else ``None``."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as err:                     # noqa: BLE001 - any unreadable file is the same error
            raise ValueError(f"checkpoint {self.path} cannot be read ({type(err).__name__}: {err}); "
                             "delete it to start the run afresh") from None
        if not isinstance(state, dict) or state.get("format") != self.FORMAT:
            raise ValueError(f"checkpoint {self.path} is not a mixbook fit checkpoint")
        theirs = state["fingerprint"]
        differ = sorted(k for k in set(theirs) | set(self.fingerprint) if theirs.get(k) != self.fingerprint.get(k))
        if differ:
            shown = ", ".join(f"{k}: {theirs.get(k)!r} there, {self.fingerprint.get(k)!r} here" for k in differ)
            raise ValueError(f"checkpoint {self.path} belongs to another run ({shown}); delete it, or pass another "
                             "checkpoint path")
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["schedule"])
        for name, gen in self.generators.items():
            gen.set_state(state["generators"][name])
        rngs = _method_rngs(self.method)
        for name, value in state["method"].items():
            if name not in rngs:
                raise ValueError(f"checkpoint {self.path} holds random state {name!r} the method does not have")
            rng = rngs[name]
            if isinstance(rng, torch.Generator):
                rng.set_state(value)
            else:
                rng.setstate(value)
            owner, _ = _owner(self.method, name)
            if hasattr(owner, "_model"):
                owner._model = self.run              # the layer draws continue; a new model would restart them
        self.history.epochs[:] = state["history"]["epochs"]
        self.history.outputs.clear()
        self.history.outputs.update(state["history"]["outputs"])
        partial = state["partial"]
        if partial is not None and isinstance(partial.get("order"), torch.Tensor):
            partial["order"] = partial["order"].to(dev)
        return {"epoch": state["epoch"], "step": state["step"], "partial": partial}


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
