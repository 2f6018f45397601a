"""Chapter 6's CIFAR grid as a script: a CIFAR ResNet-18 per (method, seed) with the papers' knobs.

One process, one node or many (``torchrun``), and split over machines by method and seed::

    python -m mixbook.chapters.cifar_grid --root /data --dataset cifar10
    torchrun --nproc_per_node=8 -m mixbook.chapters.cifar_grid --root /data --dataset cifar100 --methods mixup cutmix
    python -m mixbook.chapters.cifar_grid --root /data --dataset cifar10 --seeds 3 4 --out book/results

Every (method, seed) is one part: trained with a :func:`mixbook.training.train.fit` checkpoint in
``<out>/checkpoints/`` and saved, as soon as it finishes, to its own :func:`mixbook.chapters.results.save`
file (:func:`part_name`, e.g. ``06_comparison_cifar10_mixup_seeds0.json``), so an interrupted grid
loses at most the part in progress, and parts run on other machines never overwrite each other;
:func:`mixbook.chapters.results.load` with ``unique=UNIQUE`` merges them into one table and refuses a
(data set, method, seed) recorded twice. Chapter 6 shows every ``06_comparison_*.json`` it finds.

Re-running into the same ``--out``: a part whose file exists is refused before any training,
unless ``--resume`` (skip finished parts, resume an interrupted part from its checkpoint) or
``--overwrite`` (train every part again and replace its file). ``--out`` is created and tested
writable before the data is read. Under ``torchrun`` the process group is joined with a timeout
(``--timeout-minutes``, default :data:`mixbook.training.distributed.DEFAULT_TIMEOUT_MINUTES`): a rank
that dies or stops makes the others fail after that long, not hang for gloo's 30 minutes; ``main``
is wrapped in ``torch.distributed.elastic``'s ``@record``, so a rank's error reaches torchrun's summary.

The hyper-parameters (:data:`DEFAULTS`) are those of ``book/params/06_comparison/full.yaml``
(a test keeps the two equal): SGD, lr 0.1, weight decay 5e-4, 200 epochs, batch 128, random
crop and flip, MultiMix's n = 1000. Under ``torchrun`` ``--batch-size`` is the *global* batch
(each of the ``world`` ranks trains on ``batch/world`` examples a step, so a run's optimisation
does not depend on how many GPUs it had); mixing is per rank by default, as in timm and
torchvision, and ``--global-mixing`` draws partners and MultiMix's rows from the global batch
(:class:`mixbook.training.distributed.GlobalBatch`), which reproduces a one-process run of the same
global batch. The file is written by rank 0 only.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from ..core import _checks
from ..core.files import check_writable
from ..training import data, models, train
from . import results
from ..training.distributed import DEFAULT_TIMEOUT_MINUTES, _group, init_from_env

__all__ = ["DEFAULTS", "METHODS", "UNIQUE", "methods", "result_name", "part_name", "run", "main"]

DEFAULTS: dict[str, Any] = {"cifar_epochs": 200, "cifar_batch": 128, "cifar_lr": 0.1, "cifar_weight_decay": 0.0005,
                            "multimix_n": 1000}
"""The grid's hyper-parameters, named as in chapter 6's parameters."""

METHODS = {"erm": "ERM", "mixup": "mixup", "reformulation": "reformulated mixup", "manifold_mixup": "manifold mixup",
           "zeta": "ζ-mixup", "multimix": "MultiMix", "dense_multimix": "Dense MultiMix", "cutmix": "CutMix"}
"""The grid's methods: command-line name -> the label of chapter 6's tables."""

UNIQUE = ("dataset", "method", "seed")
"""The columns that identify one trained network in a merged table."""

LAYERS = ("input", "features.1", "features.2", "features.3")
"""Manifold mixup's layers on :class:`mixbook.training.models.CifarResNet18` (input and the first three stages)."""
DENSE_LAYER = "features.4"
"""Dense MultiMix's layer: the last stage's ``(512, 4, 4)`` feature map."""


def methods(names: Sequence[str] | None = None, *, seed: int = 0, multimix_n: int = 1000,
            global_mixing: bool = False) -> dict[str, Any]:
    """The grid's training methods ``{label: method}``, the papers' knobs (not chosen on CIFAR data:
    a validation search would multiply the GPU hours): mixup α = 1, the reformulation α = 1,
    manifold mixup α = 2 over :data:`LAYERS`, ζ-mixup γ = 2.8, MultiMix and Dense MultiMix α = 1
    with ``multimix_n`` outputs, CutMix α = 1.

    Args:
        names: keys of :data:`METHODS` (default: all, in that order).
        seed: manifold mixup's layer stream (and the global-batch mixing stream).
        multimix_n: MultiMix's and Dense MultiMix's number of outputs per step.
        global_mixing: wrap each method in :class:`mixbook.training.distributed.GlobalBatch` (Dense MultiMix
            is not supported there and is refused).
    """
    names = list(METHODS) if names is None else list(names)
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ValueError(f"methods must be a non-empty list of {list(METHODS)}, got {names}")
    seed = _checks.seed("seed", seed)
    multimix_n = _checks.positive_int("multimix_n", multimix_n)
    built = {
        "erm": lambda: "erm",
        "mixup": lambda: train.make_method("mixup", alpha=1.0),
        "reformulation": lambda: train.make_method("reformulation", alpha=1.0),
        "manifold_mixup": lambda: train.make_method("manifold_mixup", layers=list(LAYERS), alpha=2.0, seed=seed),
        "zeta": lambda: train.make_method("zeta", gamma=2.8),
        "multimix": lambda: train.make_method("multimix", alpha=1.0, n=multimix_n),
        "dense_multimix": lambda: train.make_method("dense_multimix", layer=DENSE_LAYER, alpha=1.0, n=multimix_n),
        "cutmix": lambda: train.make_method("cutmix", alpha=1.0),
    }
    if global_mixing:
        if "dense_multimix" in names:
            raise ValueError("global_mixing does not support dense_multimix (mixing is per rank there); "
                             "run it without --global-mixing or leave it out")
        from ..training.distributed import GlobalBatch

        return {METHODS[n]: GlobalBatch(built[n](), seed=seed) for n in names}
    return {METHODS[n]: built[n]() for n in names}


def _slug(values: Sequence[Any]) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9]+", "", str(v)) for v in values)


def result_name(dataset: str, names: Sequence[str] | None, seeds: Sequence[int]) -> str:
    """``06_comparison_<dataset>_<methods>_seeds<seeds>.json``, e.g.
    ``06_comparison_cifar10_mixup-cutmix_seeds0-1.json``; all methods read ``all``."""
    part = "all" if names is None or list(names) == list(METHODS) else _slug(names)
    return f"06_comparison_{dataset}_{part}_seeds{_slug(seeds)}.json"


def part_name(dataset: str, name: str, seed: int) -> str:
    """The file of one part, ``06_comparison_<dataset>_<method>_seeds<seed>.json`` (:func:`result_name` of it)."""
    return result_name(dataset, [name], [seed])


def _check_hyper_parameters(params: dict[str, Any]) -> None:
    """Every grid hyper-parameter finite and in range, before any training."""
    _checks.positive_int("cifar_epochs", params["cifar_epochs"])
    _checks.positive_int("cifar_batch", params["cifar_batch"])
    _checks.positive_int("multimix_n", params["multimix_n"])
    _checks.positive_float("cifar_lr", params["cifar_lr"])
    _checks.non_negative_float("cifar_weight_decay", params["cifar_weight_decay"])


def run(root: str | os.PathLike, dataset: str = "cifar10", *, names: Sequence[str] | None = None,
        seeds: Sequence[int] = (0,), out: str | os.PathLike = "book/results", device: str = "auto",
        global_mixing: bool = False, model: Any = None, resume: bool = False, overwrite: bool = False,
        **hp: Any) -> tuple[Any, list[Path]]:
    """Train the grid's ``names`` × ``seeds`` on ``dataset``, saving each part as it finishes (rank 0).

    Args:
        root: the local CIFAR directory (:func:`mixbook.training.data.cifar`; nothing is downloaded).
        dataset: ``"cifar10"`` or ``"cifar100"``.
        names, global_mixing: as :func:`methods`.
        seeds: the seeds (one network per method and seed, every method from the same
            initialisation for a seed).
        out: the folder of the part files (:func:`part_name`) and of ``checkpoints/``.
        device: as :func:`mixbook.training.train.fit` (``"auto"``: this rank's GPU if there is one).
        model: ``num_classes -> nn.Module`` (default :class:`mixbook.training.models.CifarResNet18`; small
            models are for tests).
        resume: skip the parts already saved in ``out`` and resume an interrupted part from its
            checkpoint.
        overwrite: train every part again, replacing saved files and discarding checkpoints.
            Without ``resume`` or ``overwrite``, a saved part or a checkpoint in ``out`` is a
            ``FileExistsError`` before any training.
        hp: overrides of :data:`DEFAULTS` (``cifar_epochs``, ``cifar_batch`` — the global batch —,
            ``cifar_lr``, ``cifar_weight_decay``, ``multimix_n``), finite and in range.

    Returns:
        ``(table, paths)``: one row per (method, seed) of this call (the :func:`mixbook.training.train.repeat`
        columns and ``dataset``; parts skipped by ``resume`` read back from their files), and the
        part files written by this call (empty on ranks other than 0).
    """
    import pandas as pd

    unknown = sorted(set(hp) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown hyper-parameter(s) {unknown}; the grid takes {sorted(DEFAULTS)}")
    params = {**DEFAULTS, **hp}
    _check_hyper_parameters(params)
    seeds = [_checks.seed("seeds", s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    resume, overwrite = _checks.boolean("resume", resume), _checks.boolean("overwrite", overwrite)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume keeps saved parts, overwrite replaces them")
    rank, world = _group() or (0, 1)
    batch = params["cifar_batch"]
    if batch % world:
        raise ValueError(f"cifar_batch (the global batch, {batch}) must be divisible by the world size {world}")
    keys = list(METHODS) if names is None else list(names)
    grid = methods(keys, seed=seeds[0], multimix_n=params["multimix_n"], global_mixing=global_mixing)
    folder = check_writable(out, "out")
    checkpoints = folder / "checkpoints"
    parts = [(key, label, seed) for seed in seeds for key, label in zip(keys, grid)]
    done = {p: folder / part_name(dataset, p[0], p[2]) for p in parts}
    if not resume and not overwrite:
        present = [path.name for path in done.values() if path.exists()]
        present += [c.name for c in checkpoints.glob(f"06_comparison_{dataset}_*.pt*")] if checkpoints.is_dir() else []
        if present:
            raise FileExistsError(f"{folder} already holds parts of this grid ({sorted(present)}): pass resume=True "
                                  "(--resume) to skip the finished parts and resume the interrupted one, or "
                                  "overwrite=True (--overwrite) to train them again")
    split = data.cifar(root, dataset)
    build = model or models.CifarResNet18
    epochs = params["cifar_epochs"]
    recorded = {**params, "dataset": dataset, "world_size": world, "global_mixing": global_mixing}
    rows, written = [], []
    for part in parts:
        key, label, seed = part
        path = done[part]
        if resume and path.exists():
            rows.extend(results.load(folder, path.name).drop(columns=["device", "date_utc", "commit", "file"])
                        .to_dict(orient="records"))
            continue
        ckpt = checkpoints / (Path(part_name(dataset, key, seed)).stem + ".pt")
        if overwrite:
            for stale in checkpoints.glob(ckpt.stem + "*") if checkpoints.is_dir() else ():
                stale.unlink()
        torch.manual_seed(seed)
        net = build(split.num_classes)
        hist = train.fit(net, split, grid[label], epochs=epochs, batch_size=batch // world, lr=params["cifar_lr"],
                         weight_decay=params["cifar_weight_decay"], optimizer="sgd", augment=data.random_crop_flip,
                         device=device, eval_every=epochs, progress=False, seed=seed, checkpoint=ckpt)
        final = {k: v for k, v in hist.final.items() if k not in ("epoch", "seconds")}
        row = {"method": label, "seed": seed, **final,
               "seconds_per_epoch": sum(e["seconds"] for e in hist.epochs) / len(hist.epochs), "dataset": dataset}
        rows.append(row)
        if rank == 0:
            written.append(results.save(path, [row], {**recorded, "methods": [label], "seeds": [seed]},
                                        device=_device(device)))
        train._rank_path(ckpt, rank if world > 1 else None).unlink(missing_ok=True)   # the part is saved
    return pd.DataFrame(rows), written


def _device(device: str) -> torch.device:
    from ..core.runtime import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


@record
def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m mixbook.chapters.cifar_grid --help``); under torchrun it joins the
    process group (NCCL with GPUs, gloo without) and leaves it at the end."""
    p = argparse.ArgumentParser(prog="python -m mixbook.chapters.cifar_grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="local folder holding cifar-10-batches-py/ or cifar-100-python/")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=None, help="default: all")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", default="book/results", help="folder of the result file (default book/results)")
    p.add_argument("--device", default="auto")
    p.add_argument("--global-mixing", action="store_true", help="mix over the global batch of all ranks")
    p.add_argument("--epochs", type=int, default=DEFAULTS["cifar_epochs"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["cifar_batch"], help="the global batch")
    p.add_argument("--lr", type=float, default=DEFAULTS["cifar_lr"])
    p.add_argument("--weight-decay", type=float, default=DEFAULTS["cifar_weight_decay"])
    p.add_argument("--multimix-n", type=int, default=DEFAULTS["multimix_n"])
    p.add_argument("--resume", action="store_true", help="skip saved parts; resume an interrupted part")
    p.add_argument("--overwrite", action="store_true", help="train every part again, replacing saved files")
    p.add_argument("--timeout-minutes", type=float, default=DEFAULT_TIMEOUT_MINUTES,
                   help="process-group timeout under torchrun: a stopped or dead rank fails the others after it")
    args = p.parse_args(argv)
    dist = torch.distributed
    joined = init_from_env(timeout_minutes=args.timeout_minutes)   # under torchrun: join the group
    try:
        _, paths = run(args.root, args.dataset, names=args.methods, seeds=args.seeds, out=args.out,
                       device=args.device, global_mixing=args.global_mixing, resume=args.resume,
                       overwrite=args.overwrite, cifar_epochs=args.epochs, cifar_batch=args.batch_size,
                       cifar_lr=args.lr, cifar_weight_decay=args.weight_decay, multimix_n=args.multimix_n)
        for path in paths:
            print(f"saved {path}")
    finally:
        if joined:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
