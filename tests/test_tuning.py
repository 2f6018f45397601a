"""mixbook.chapters.tuning: the equal-budget protocol of chapter 6 (grids, choice, edges, per-example values)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mixbook.chapters import tuning
from mixbook.training import data, models, train


def _arms():
    return [tuning.Arm("ERM", "", (), lambda v: "erm"),
            tuning.Arm("mixup", "α", (1.0, 0.2, 4.0), lambda v: train.make_method("mixup", alpha=v))]


def test_configurations_cover_knob_times_decay_and_label_them():
    configs = tuning.configurations(_arms(), [0.0, 0.5])
    assert [c.label for c in configs] == ["ERM (wd=0)", "ERM (wd=0.5)", "mixup (α=0.2, wd=0)", "mixup (α=0.2, wd=0.5)",
                                          "mixup (α=1, wd=0)", "mixup (α=1, wd=0.5)", "mixup (α=4, wd=0)",
                                          "mixup (α=4, wd=0.5)"]
    assert math.isnan(configs[0].value)


@pytest.mark.parametrize("kwargs, word", [
    (dict(name="", knob="α", values=(1.0,)), "name"),
    (dict(name="a", knob="α", values=()), "knob needs values"),
    (dict(name="a", knob="", values=(1.0,)), "knob needs values"),
    (dict(name="a", knob="α", values=(1.0, 1.0)), "distinct"),
    (dict(name="a", knob="α", values=(float("nan"),)), "finite"),
    (dict(name="a", knob="p", values=(1.0,), dropout=True), "dropout rates"),
])
def test_bad_arms(kwargs, word):
    with pytest.raises(ValueError, match=word):
        tuning.Arm(method=lambda v: "erm", **kwargs)


def test_bad_decays():
    with pytest.raises(ValueError, match="weight_decays"):
        tuning.configurations(_arms(), [0.0, -1.0])
    with pytest.raises(ValueError, match="weight_decays"):
        tuning.configurations(_arms(), [])


def _runs(val):
    rows = []
    for (arm, knob, value, wd), accs in val.items():
        label = tuning.Config(arm, knob, value, wd, 0.0).label
        for seed, acc in enumerate(accs):
            rows.append(dict(regime="r", arm=arm, knob=knob, value=value, weight_decay=wd, label=label, seed=seed,
                             val_accuracy=acc, val_nll=1 - acc))
    return pd.DataFrame(rows)


def test_choose_takes_the_best_mean_validation_accuracy_and_on_edge_flags_grid_ends():
    runs = _runs({("ERM", "", math.nan, 0.0): [0.8, 0.8], ("ERM", "", math.nan, 0.5): [0.9, 0.7],
                  ("mixup", "α", 0.2, 0.0): [0.80, 0.82], ("mixup", "α", 1.0, 0.0): [0.85, 0.83],
                  ("mixup", "α", 4.0, 0.0): [0.84, 0.80]})
    chosen = tuning.choose(runs)
    # ERM: equal means 0.8 -> the tie goes to the lower mean validation NLL, the same here -> the first
    assert chosen["r", "mixup"].value == 1.0
    assert tuning.on_edge(chosen, _arms(), [0.0, 0.5]) == []
    runs.loc[(runs.arm == "mixup") & (runs.value == 4.0), "val_accuracy"] = 0.99
    chosen = tuning.choose(runs)
    assert chosen["r", "mixup"].value == 4.0
    assert tuning.on_edge(chosen, _arms(), [0.0, 0.5]) == ["r / mixup: α = 4"]
    runs.loc[(runs.arm == "ERM") & (runs.weight_decay == 0.5), "val_accuracy"] = 0.95
    assert "r / ERM: weight decay = 0.5" in tuning.on_edge(tuning.choose(runs), _arms(), [0.0, 0.5])


def test_run_trains_each_configuration_and_keeps_best_and_last():
    split = data.validation_split(data.with_label_noise(data.digits(), 0.3, seed=0), 0.2, seed=0)
    arms = _arms() + [tuning.Arm("dropout", "p", (0.3,), lambda v: "erm", dropout=True)]
    configs = {"noisy": tuning.configurations(arms, [0.0, 1.0])[:4] + [tuning.configurations(arms, [0.0])[-1]]}
    model = lambda regime, p: functools.partial(models.MLP, 64, 10, (16,), dropout=p)
    configs["noisy"].append(tuning.Config("CutMix", "α", 1.0, 0.0, 0.0))      # not among the arms: skipped
    runs, outputs, curves = tuning.run({"noisy": split}, {"noisy": arms}, configs, [0, 1], model, epochs={"noisy": 4},
                                       eval_points=2, batch_size=128, lr=3e-3, device="cpu")
    assert len(runs) == 5 * 2 and not runs.duplicated(["label", "seed"]).any()
    assert set(runs.arm) == {"ERM", "mixup", "dropout"}
    assert (runs.best_epoch <= runs.epochs).all() and set(runs.epochs) == {4}
    for row in runs.itertuples():
        o = outputs["noisy", row.label, row.seed]
        assert o["best"]["epoch"] == row.best_epoch and o["last"]["epoch"] == 4
    ex = tuning.per_example(outputs, runs, split.y_test, at="last")
    assert ex["correct"].shape == (10, split.x_test.shape[0])
    assert np.allclose(ex["correct"].mean(1), runs["accuracy (last)"].to_numpy(), atol=1e-6)
    assert set(curves.epoch) == {2, 4}
    # the weight decay reached the members: same seed and method, other decay, other result
    erm = runs[runs.arm == "ERM"].set_index(["weight_decay", "seed"])["val_nll (last)"]
    assert abs(erm[0.0, 0] - erm[1.0, 0]) > 1e-4


def test_with_examples_and_calibrated_agree_with_the_kept_logits():
    split = data.validation_split(data.digits(), 0.2, seed=0)
    arms = _arms()
    configs = {"clean": tuning.configurations(arms, [0.0])[:2]}
    model = lambda regime, p: functools.partial(models.MLP, 64, 10, (16,), dropout=p)
    runs, outputs, _ = tuning.run({"clean": split}, arms, configs, [0, 1], model, epochs={"clean": 3},
                                  eval_points=3, batch_size=128, lr=3e-3, device="cpu")
    shuffled = runs.iloc[::-1].reset_index(drop=True)             # rows in any order keep their own values
    ex = tuning.with_examples(shuffled, outputs, {"clean": split}, at="last")
    for _, row in ex.iterrows():
        assert row["correct"].shape == (split.x_test.shape[0],)
        assert abs(row["correct"].mean() - row["accuracy (last)"]) < 1e-6
    cal = tuning.calibrated(shuffled, outputs, {"clean": split})
    for row in cal.itertuples():
        o = outputs["clean", row.label, row.seed]["best"]
        logits = torch.from_numpy(o["test_logits"]).double()
        val = torch.from_numpy(o["val_logits"]).double()
        # the fitted temperature minimises the validation NLL: no grid value does better
        nll = lambda t: torch.nn.functional.cross_entropy(val / t, split.y_val).item()
        assert nll(row.temperature) <= min(nll(t) for t in np.linspace(0.2, 5, 97)) + 1e-6
        scaled = torch.nn.functional.cross_entropy(logits / row.temperature, split.y_test).item()
        assert abs(scaled - row.nll_ts) < 1e-5
        prob = torch.softmax(logits, 1)
        assert abs(prob.max(1).values.mean().item() - row.confidence) < 1e-9
        wrong = prob.argmax(1) != split.y_test
        assert abs(prob.max(1).values[wrong].mean().item() - row.confidence_wrong) < 1e-9
    with pytest.raises(ValueError, match="at must be"):
        tuning.with_examples(runs, outputs, {"clean": split}, at="middle")


def test_two_stage_chooses_on_tuning_seeds_and_evaluates_the_choice_on_every_seed():
    split = data.validation_split(data.digits(), 0.2, seed=0)
    arms = _arms()
    model = lambda regime, p: functools.partial(models.MLP, 64, 10, (16,), dropout=p)
    final, chosen, runs, outputs, curves = tuning.two_stage(
        {"clean": split}, arms, [0, 1, 2], model, tuning_seeds=2, weight_decays=[0.0, 1.0], epochs={"clean": 2},
        eval_points=2, batch_size=128, lr=3e-3, device="cpu")
    # stage 1: ERM + 3 alphas at wd 0; stage 2: the other decay at the chosen knob of each arm; both on seeds 0, 1
    tune = runs[runs.seed < 2]
    assert len(tune) == (1 + 3) * 2 + 2 * 2
    assert set(tune[tune.weight_decay == 1.0].arm) == {"ERM", "mixup"}
    # the choice is the best mean validation accuracy over the tuning runs, and only it runs on seed 2
    assert {k: c.label for k, c in chosen.items()} == {k: c.label for k, c in tuning.choose(tune).items()}
    assert sorted(runs[runs.seed == 2].label) == sorted(c.label for c in chosen.values())
    assert len(final) == 2 * 3 and set(final.method) == {"ERM", "mixup"}
    assert final.groupby("method").seed.nunique().eq(3).all()
    assert all((r, l, s) in outputs for r, l, s in zip(final.regime, final.label, final.seed))
    with pytest.raises(ValueError, match="tuning_seeds"):
        tuning.two_stage({"clean": split}, arms, [0], model, tuning_seeds=2, weight_decays=[0.0], epochs={"clean": 1})
    with pytest.raises(ValueError, match="include 0"):
        tuning.two_stage({"clean": split}, arms, [0], model, tuning_seeds=1, weight_decays=[1.0], epochs={"clean": 1})
