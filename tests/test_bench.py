"""The timing harness: frame layout, ratios, medians, interleaving, bad arguments.

Real clocks only decide "slower or not" with a wide margin (a 2 ms sleep against a no-op);
the exact statistics are checked against a fake clock that each operation advances by a
known amount.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from mixbook import bench, reformulation


def _noop() -> None:
    return None


def test_frame_layout_and_baseline_ratio():
    frame = bench.time_ops({"noop": _noop, "sleep": lambda: time.sleep(0.002)}, repeats=3, number=2, warmup=1)
    assert list(frame.index) == ["noop", "sleep"]
    assert list(frame.columns) == ["median_s", "min_s", "ratio_to_noop"]
    assert frame.loc["noop", "ratio_to_noop"] == 1.0
    assert bool((frame["min_s"] > 0).all())
    assert bool((frame["min_s"] <= frame["median_s"]).all())
    assert frame.loc["sleep", "median_s"] >= 0.002
    assert frame.loc["sleep", "ratio_to_noop"] > 1.0
    assert frame.loc["sleep", "ratio_to_noop"] == frame.loc["sleep", "median_s"] / frame.loc["noop", "median_s"]


def test_named_baseline():
    frame = bench.time_ops({"noop": _noop, "sleep": lambda: time.sleep(0.002)}, repeats=3, number=1,
                           warmup=0, baseline="sleep")
    assert "ratio_to_sleep" in frame.columns and "ratio_to_noop" not in frame.columns
    assert frame.loc["sleep", "ratio_to_sleep"] == 1.0
    assert frame.loc["noop", "ratio_to_sleep"] < 1.0


def test_single_op_and_device_argument():
    x = torch.randn(64, 3)
    frame = bench.time_ops({"mix": lambda: reformulation.sample(x, alpha=1.0).apply(x)}, repeats=2, number=1,
                           device="cpu")
    assert list(frame.index) == ["mix"] and frame.loc["mix", "ratio_to_mix"] == 1.0


class FakeClock:
    """perf_counter that only moves when an op says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_median_min_and_ratio_on_a_fake_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    # 2 warm-up calls, then 5 repeats; skewed, so that the median is not the mean (12 and 23).
    durations = {"a": iter([90.0, 90.0, 1.0, 50.0, 3.0, 4.0, 2.0]),
                 "b": iter([90.0, 90.0, 2.0, 4.0, 6.0, 95.0, 8.0])}

    def op(name):
        def run():
            clock.now += next(durations[name])
        return run

    frame = bench.time_ops({"a": op("a"), "b": op("b")}, repeats=5, number=1, warmup=2)
    assert frame.loc["a", "median_s"] == 3.0 and frame.loc["a", "min_s"] == 1.0
    assert frame.loc["b", "median_s"] == 6.0 and frame.loc["b", "min_s"] == 2.0
    assert frame.loc["b", "ratio_to_a"] == 2.0 and frame.loc["a", "ratio_to_a"] == 1.0


def test_per_call_time_divides_by_number(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=clock.perf_counter))

    def op():
        clock.now += 0.5

    frame = bench.time_ops({"op": op}, repeats=3, number=4, warmup=0)
    assert frame.loc["op", "median_s"] == 0.5 and frame.loc["op", "min_s"] == 0.5


def test_warmup_then_interleaved_repeats():
    calls: list[str] = []
    ops = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    bench.time_ops(ops, repeats=2, number=3, warmup=1)
    warm = ["a", "b", "c"]
    one_repeat = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert calls == warm + one_repeat * 2
    calls.clear()
    bench.time_ops(ops, repeats=1, number=1, warmup=0)
    assert calls == ["a", "b", "c"]


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"ops": {}}, ValueError, r"\bops\b"),
    ({"ops": [_noop]}, TypeError, r"\bops\b"),
    ({"ops": {"x": 1}}, TypeError, r"\bops\b.*callable"),
    ({"baseline": "missing"}, ValueError, r"baseline.*missing"),
    ({"repeats": 0}, ValueError, "repeats"),
    ({"repeats": -2}, ValueError, "repeats"),
    ({"repeats": 2.5}, TypeError, "repeats"),
    ({"repeats": True}, TypeError, "repeats"),
    ({"number": 0}, ValueError, "number"),
    ({"number": "3"}, TypeError, "number"),
    ({"warmup": -1}, ValueError, "warmup"),
    ({"warmup": 1.5}, TypeError, "warmup"),
])
def test_bad_arguments(kwargs, exc, match):
    calls = []
    args = {"ops": {"noop": lambda: calls.append(1)}, "repeats": 1, "number": 1, "warmup": 0, **kwargs}
    with pytest.raises(exc, match=match):
        bench.time_ops(args.pop("ops"), **args)
    assert calls == [], "an op ran before the arguments were checked"
