"""Equal tuning budgets: every arm of a comparison, the baseline included, tuned on the validation split.

Chapter 6 (digits, two moons and MNIST-1D head-to-heads).

An *arm* is a training method with one knob (mixup's α, ζ-mixup's γ, the dropout rate of the
classical baseline; ERM has none). Every arm gets the same budget, chosen on the validation split
and never on the test set:

* **its knob**, over the arm's grid;
* **weight decay**, over one grid shared by every arm (AdamW's decoupled decay, as
  :func:`mixbook.training.train.fit` applies it);
* **training length**, by early stopping: each run is evaluated every ``eval_every`` epochs and the
  record kept is that of its best validation epoch (:meth:`mixbook.training.train.History.best`);
  the last epoch's record is kept beside it, so a table can show both.

:func:`run` trains a set of configurations (arm × knob × weight decay) on a set of seeds for every
regime in vectorised populations (:func:`mixbook.training.population.repeat`, several regimes side by
side with :func:`~mixbook.training.population.run_all`), and returns one row per (regime,
configuration, seed) with the best-epoch and last-epoch metrics, plus the logits at both epochs.
:func:`choose` picks, per regime and arm, the configuration with the highest mean best-epoch
validation accuracy over the tuning seeds (ties: the lower mean validation NLL); :func:`on_edge`
names the chosen knobs that sit on an end of their grid (a grid too narrow to show the optimum).
The protocol is two-stage when the chapter asks for it: the grid on a few tuning seeds, then the
chosen configurations on every evaluation seed (:func:`run` again, with ``configs`` the chosen ones).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Arm", "Config", "configurations", "run", "choose", "on_edge", "per_example", "with_examples", "calibrated", "two_stage"]


@dataclass(frozen=True)
class Arm:
    """One arm: ``name``, its knob's symbol (``""``: no knob) and grid, and how to build it.

    ``method(value)`` returns the training method (a registered name or a method instance) for a
    knob value (``None`` for an arm without a knob). With ``dropout=True`` the knob is the dropout
    rate of the model instead (``method`` is then called with ``None``). Which arms run in which
    regime is :func:`run`'s ``arms`` (e.g. CutMix only where the inputs are images).
    """

    name: str
    knob: str
    values: tuple[float, ...]
    method: Callable[[float | None], Any]
    dropout: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("Arm.name must be a non-empty string")
        vals = tuple(float(v) for v in self.values)
        if any(not math.isfinite(v) or v < 0 for v in vals) or len(set(vals)) != len(vals):
            raise ValueError(f"Arm {self.name!r}: values must be distinct finite numbers >= 0, got {self.values!r}")
        if bool(self.knob) != bool(vals):
            raise ValueError(f"Arm {self.name!r}: a knob needs values and values need a knob "
                             f"(knob={self.knob!r}, values={self.values!r})")
        if self.dropout and any(v >= 1 for v in vals):
            raise ValueError(f"Arm {self.name!r}: dropout rates must be in [0, 1), got {self.values!r}")
        object.__setattr__(self, "values", tuple(sorted(vals)))


@dataclass(frozen=True)
class Config:
    """One configuration of an arm: its knob value (``nan``: none), weight decay, and label."""

    arm: str
    knob: str
    value: float
    weight_decay: float
    dropout: float

    @property
    def label(self) -> str:
        knob = f"{self.knob}={self.value:g}, " if self.knob else ""
        return f"{self.arm} ({knob}wd={self.weight_decay:g})"


def configurations(arms: Sequence[Arm], weight_decays: Sequence[float]) -> list[Config]:
    """Every (arm, knob value, weight decay) of the grid, in the arms' order."""
    decays = [float(w) for w in weight_decays]
    if not decays or any(not math.isfinite(w) or w < 0 for w in decays) or len(set(decays)) != len(decays):
        raise ValueError(f"weight_decays must be distinct finite numbers >= 0, got {weight_decays!r}")
    out = []
    for arm in arms:
        for v in arm.values or (math.nan,):
            for w in decays:
                out.append(Config(arm.name, arm.knob, v, w, v if arm.dropout else 0.0))
    return out


def run(
    splits: Mapping[str, Any],
    arms: Sequence[Arm] | Mapping[str, Sequence[Arm]],
    configs: Mapping[str, Sequence[Config]],
    seeds: Sequence[int],
    model: Callable[[str, float], Callable[[], Any]],
    *,
    epochs: Mapping[str, int],
    eval_points: int = 12,
    workers: int = 1,
    split_seeds: int = 1,
    **repeat_kwargs: Any,
):
    """Train ``configs[regime]`` on ``seeds`` in every regime; one row a (regime, configuration, seed).

    Args:
        splits: ``{regime: Split}`` with validation parts.
        arms: the arms the configurations belong to (for their methods), or ``{regime: arms}`` when
            regimes differ in which arms run or how an arm is built (a configuration whose arm is
            not among its regime's arms is skipped).
        configs: ``{regime: configurations}`` (e.g. :func:`configurations`, or the chosen ones).
        seeds: the seeds every configuration of a regime runs.
        model: ``model(regime, dropout) -> model_fn`` (a picklable zero-argument builder, e.g. a
            ``functools.partial`` of a model class).
        epochs: ``{regime: epochs}``.
        eval_points: evaluations along training (every ``max(1, epochs // eval_points)`` epochs and
            the last): the resolution of early stopping.
        workers: processes (:func:`mixbook.training.population.run_all`).
        split_seeds: split each regime's seeds into this many populations (keeps the workers busy).
        repeat_kwargs: the rest of :func:`mixbook.training.population.repeat`'s arguments
            (``batch_size``, ``lr``, ``device``…).

    Returns:
        ``(runs, outputs, curves)``: a DataFrame with ``regime, arm, knob, value, weight_decay, label,
        seed, best_epoch, epochs`` and the metrics of the best validation epoch as ``<metric>`` and of
        the last epoch as ``<metric> (last)``; ``{(regime, label, seed): History.outputs}`` (the
        logits at both epochs); and the learning curves, one row per (regime, label, seed, evaluated
        epoch).
    """
    import pandas as pd

    from ..training import population

    arms_of = arms if isinstance(arms, Mapping) else {regime: arms for regime in splits}
    jobs, meta = {}, {}
    seeds = list(seeds)
    parts = [p for p in np.array_split(np.asarray(seeds), max(1, min(split_seeds, len(seeds)))) if len(p)]
    for regime, split in splits.items():
        by_name = {a.name: a for a in arms_of.get(regime, ())}
        todo = [c for c in configs.get(regime, ()) if c.arm in by_name]
        for rate in sorted({c.dropout for c in todo}):
            group = [c for c in todo if c.dropout == rate]
            methods = {c.label: by_name[c.arm].method(None if by_name[c.arm].dropout or not c.knob else c.value)
                       for c in group}
            meta.update({(regime, c.label): c for c in group})
            for part, part_seeds in enumerate(parts):
                jobs[regime, rate, part] = dict(
                    model_fn=model(regime, rate), data=split, methods=methods, seeds=[int(s) for s in part_seeds],
                    weight_decay={c.label: c.weight_decay for c in group}, epochs=epochs[regime],
                    eval_every=max(1, epochs[regime] // eval_points), histories=True, keep_outputs=True,
                    progress=False, **repeat_kwargs)
    done = population.run_all(jobs, workers=workers)
    rows, outputs, curves = [], {}, []
    for (regime, _, _), (_, hist) in done.items():
        for (label, seed), h in hist.items():
            curves.append(h.frame().dropna(subset=["accuracy"]).assign(regime=regime, label=label, arm=meta[regime, label].arm))
            c = meta[regime, label]
            best, last = h.best(), h.final
            row = {"regime": regime, "arm": c.arm, "knob": c.knob, "value": c.value, "weight_decay": c.weight_decay,
                   "dropout": c.dropout, "label": label, "seed": seed, "best_epoch": best["epoch"], "epochs": last["epoch"]}
            row.update({k: v for k, v in best.items() if k not in ("epoch", "seconds", "train_loss")})
            row.update({f"{k} (last)": v for k, v in last.items() if k not in ("epoch", "seconds")})
            rows.append(row)
            outputs[regime, label, seed] = h.outputs
    order = {regime: i for i, regime in enumerate(splits)}
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(["regime", "arm", "value", "weight_decay", "seed"],
                              key=lambda s: s.map(order) if s.name == "regime" else s, kind="stable")
    return frame.reset_index(drop=True), outputs, pd.concat(curves, ignore_index=True)


def two_stage(
    splits: Mapping[str, Any],
    arms: Sequence[Arm] | Mapping[str, Sequence[Arm]],
    seeds: Sequence[int],
    model: Callable[[str, float], Callable[[], Any]],
    *,
    tuning_seeds: int,
    weight_decays: Sequence[float],
    **run_kwargs: Any,
):
    """The equal-budget protocol of chapters 1, 5 and 6, in three calls of :func:`run`.

    1. every arm's knob grid at no weight decay, on the first ``tuning_seeds`` seeds;
    2. the other weight decays at each arm's chosen knob, on the same seeds;
    3. each arm's chosen configuration (:func:`choose` over stages 1 and 2) on the remaining seeds.

    Every record is that of the run's best validation epoch (early stopping), with the last epoch's
    beside it. An arm without a knob gets its weight decay chosen over the whole grid. Arguments
    are :func:`run`'s (``run_kwargs``: ``epochs``, ``eval_points``, ``workers``, ``batch_size``…).

    Returns:
        ``(final, chosen, runs, outputs, curves)``: ``final`` holds one row per (regime, arm, seed),
        the chosen configuration's, with a ``method`` column (the arm's name); ``chosen`` is
        ``{(regime, arm): Config}``; ``runs`` every run of the three stages; ``outputs`` and
        ``curves`` as :func:`run` returns them, over the three stages.
    """
    import pandas as pd

    seeds = [int(s) for s in seeds]
    if not 1 <= tuning_seeds <= len(seeds):
        raise ValueError(f"tuning_seeds must be in [1, {len(seeds)}] (the number of seeds), got {tuning_seeds}")
    decays = sorted(float(w) for w in weight_decays)
    if 0.0 not in decays:
        raise ValueError(f"weight_decays must include 0 (stage 1 searches the knobs without decay), got {weight_decays!r}")
    arms_of = arms if isinstance(arms, Mapping) else {regime: arms for regime in splits}
    tune = seeds[:tuning_seeds]
    grid = {r: configurations(arms_of.get(r, ()), [0.0]) for r in splits}
    runs_1, out_1, curves_1 = run(splits, arms_of, grid, tune, model, **run_kwargs)
    knob = choose(runs_1)
    more = {r: [Config(c.arm, c.knob, c.value, w, c.dropout) for (rr, _), c in knob.items() if rr == r
                for w in decays if w != 0.0] for r in splits}
    stages = [(runs_1, out_1, curves_1)]
    if any(more.values()):
        stages.append(run(splits, arms_of, more, tune, model, **run_kwargs))
    chosen = choose(pd.concat([s[0] for s in stages], ignore_index=True))
    if len(seeds) > tuning_seeds:
        rest = {r: [c for (rr, _), c in chosen.items() if rr == r] for r in splits}
        stages.append(run(splits, arms_of, rest, seeds[tuning_seeds:], model, **run_kwargs))
    runs = pd.concat([s[0] for s in stages], ignore_index=True)
    outputs = {k: v for s in stages for k, v in s[1].items()}
    curves = pd.concat([s[2] for s in stages], ignore_index=True)
    labels = {(r, a): c.label for (r, a), c in chosen.items()}
    keep = [labels.get((r, a)) == l for r, a, l in zip(runs.regime, runs.arm, runs.label)]
    final = runs[keep]
    final = final.assign(method=final.arm).reset_index(drop=True)
    return final, chosen, runs, outputs, curves


def choose(runs, *, metric: str = "val_accuracy", tie_break: str = "val_nll") -> dict[tuple[str, str], Config]:
    """``{(regime, arm): Config}``: per regime and arm, the configuration with the best mean ``metric``
    over its seeds (best-epoch records; ties to the lower mean ``tie_break``)."""
    means = runs.groupby(["regime", "arm", "label"], sort=False)[[metric, tie_break]].mean()
    out = {}
    for (regime, arm), sub in means.groupby(level=[0, 1], sort=False):
        ranked = sub.sort_values([metric, tie_break], ascending=[False, True], kind="stable")
        label = ranked.index[0][2]
        row = runs[(runs.regime == regime) & (runs.label == label)].iloc[0]
        out[regime, arm] = Config(arm, row.knob, float(row.value), float(row.weight_decay),
                                  float(row.dropout) if "dropout" in runs.columns else 0.0)
    return out


def on_edge(chosen: Mapping[tuple[str, str], Config], arms: Sequence[Arm],
            weight_decays: Sequence[float]) -> list[str]:
    """The chosen knobs (and weight decays) at an end of their grid, as ``"regime / arm: knob = v"``.

    A weight decay of 0 is not counted: no decay is the grid's natural floor, not a truncation.
    """
    by_name = {a.name: a for a in arms}
    decays = sorted(float(w) for w in weight_decays)
    found = []
    for (regime, arm), c in chosen.items():
        vals = by_name[arm].values
        if vals and len(vals) > 1 and c.value in (vals[0], vals[-1]):
            found.append(f"{regime} / {arm}: {c.knob} = {c.value:g}")
        if len(decays) > 1 and c.weight_decay == decays[-1] or (decays[0] > 0 and c.weight_decay == decays[0]):
            found.append(f"{regime} / {arm}: weight decay = {c.weight_decay:g}")
    return found


def per_example(outputs: Mapping, runs, y_test, at: str = "best") -> dict[str, np.ndarray]:
    """Per-example test values of each row of ``runs``: ``{"correct": (rows, n) 0/1, "nll": (rows, n)}``
    from the logits kept at epoch ``at`` (``"best"`` or ``"last"``), in ``runs``' row order."""
    import torch

    y = torch.as_tensor(np.asarray(y_test)).long()
    correct, nll = [], []
    for regime, label, seed in zip(runs.regime, runs.label, runs.seed):
        logits = torch.from_numpy(outputs[regime, label, seed][at]["test_logits"]).double()
        correct.append((logits.argmax(1) == y).double().numpy())
        nll.append(torch.nn.functional.cross_entropy(logits, y, reduction="none").numpy())
    return {"correct": np.stack(correct), "nll": np.stack(nll)}


def with_examples(frame, outputs: Mapping, splits: Mapping[str, Any], at: str = "best"):
    """``frame`` with two object columns of per-example test values from the logits kept at ``at``:
    ``correct`` (0/1 a test example) and ``nll_examples`` (its cross-entropy), each a ``(n_test,)``
    array, as :func:`mixbook.chapters.stats.compare`'s ``examples`` expects for a bootstrap over seeds
    and test examples. ``splits`` is ``{regime: Split}`` (the test labels)."""
    if at not in ("best", "last"):
        raise ValueError(f"at must be 'best' or 'last', got {at!r}")
    correct, nll = [None] * len(frame), [None] * len(frame)
    regimes = frame.regime.to_numpy()
    for regime in dict.fromkeys(regimes):
        idx = np.flatnonzero(regimes == regime)
        ex = per_example(outputs, frame.iloc[idx], splits[regime].y_test, at=at)
        for k, i in enumerate(idx):
            correct[i], nll[i] = ex["correct"][k], ex["nll"][k]
    return frame.assign(correct=correct, nll_examples=nll)


def calibrated(frame, outputs: Mapping, splits: Mapping[str, Any], at: str = "best"):
    """Calibration of each row of ``frame`` before and after temperature scaling (Guo et al. 2017).

    The temperature is fitted on the row's validation logits kept at ``at``
    (:func:`mixbook.training.calibration.fit_temperature`) and applied to its test logits. Returns
    ``frame`` with ``temperature``, ``at_bound`` (the fit stopped at its bound), ``ece_ts`` and
    ``nll_ts`` (test ECE and NLL after scaling), ``confidence`` (mean top probability) and
    ``confidence_wrong`` (the same over misclassified test examples; NaN when none is).
    """
    import torch

    from ..training import calibration, metrics

    if at not in ("best", "last"):
        raise ValueError(f"at must be 'best' or 'last', got {at!r}")
    cols = {k: [] for k in ("temperature", "at_bound", "ece_ts", "nll_ts", "confidence", "confidence_wrong")}
    for regime, label, seed in zip(frame.regime, frame.label, frame.seed):
        o, split = outputs[regime, label, seed][at], splits[regime]
        test, val = torch.from_numpy(o["test_logits"]), torch.from_numpy(o["val_logits"])
        t = calibration.fit_temperature(val, split.y_val)
        scaled = calibration.temperature_scale(test, t.value)
        prob = torch.softmax(test.double(), 1)
        wrong = prob.argmax(1) != split.y_test
        top = prob.max(1).values
        cols["temperature"].append(t.value)
        cols["at_bound"].append(t.at_bound)
        cols["ece_ts"].append(float(metrics.ece(scaled, split.y_test)))
        cols["nll_ts"].append(float(metrics.nll(scaled, split.y_test)))
        cols["confidence"].append(float(top.mean()))
        cols["confidence_wrong"].append(float(top[wrong].mean()) if bool(wrong.any()) else math.nan)
    return frame.assign(**cols)
