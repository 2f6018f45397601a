"""The timing harness and the benchmark built on it (``python -m mixbook.bench``).

``time_ops``: frame layout, ratios, medians, interleaving, calls per repeat, bad arguments.
Real clocks only decide "slower or not" with a wide margin (a 2 ms sleep against a no-op);
the exact statistics are checked against a fake clock that each operation advances by a
known amount.

The benchmark: the byte formulas on known cases, which cases run or are skipped, that the
peers compute the same mixing as mixbook when given the same λ and pairing (torchvision's
``MixUp`` is a roll, timm's ``Mixup`` a flip), the NumPy references, the target verdicts on
known numbers (CPU and CUDA rules), and one ``--quick`` run of the command line whose JSON is
checked key by key. No assertion depends on a measured time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

from mixbook import bench
from mixbook.core.benchmark import BenchEntry, Limit, Target
from mixbook.methods import reformulation

ROOT = Path(__file__).resolve().parents[1]


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
    monkeypatch.setattr(bench.timing, "time", SimpleNamespace(perf_counter=clock.perf_counter))
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
    monkeypatch.setattr(bench.timing, "time", SimpleNamespace(perf_counter=clock.perf_counter))

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


def test_min_time_raises_calls_per_repeat(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(bench.timing, "time", SimpleNamespace(perf_counter=clock.perf_counter))

    def fast():
        clock.now += 0.001

    def slow():
        clock.now += 0.5

    frame = bench.time_ops({"fast": fast, "slow": slow}, repeats=3, number=2, warmup=0, min_time=0.01)
    assert frame.attrs["number"] == {"fast": 10, "slow": 2}
    assert frame.loc["fast", "median_s"] == pytest.approx(0.001) and frame.loc["slow", "median_s"] == 0.5
    with pytest.raises(ValueError, match="min_time"):
        bench.time_ops({"fast": fast}, min_time=0.0)


# ---------------------------------------------------------------------- the harness: bytes, cases, peers
def test_bytes_formula_on_known_cases():
    # pairwise: 2 b D s + 8 b + 4 b C = 2*2*3*4 + 8*2 + 4*2*5
    assert bench.bytes_moved("pairwise", batch=2, features=3, itemsize=4, num_classes=5) == 48 + 16 + 40
    # dense: (b + n) D s + 4 n b = (2 + 3)*4*2 + 4*3*2
    assert bench.bytes_moved("dense", batch=2, features=4, itemsize=2, n=3) == 40 + 24
    assert bench.bytes_moved("dense", batch=2, features=4, itemsize=2) == (2 + 2) * 4 * 2 + 4 * 2 * 2
    assert bench.bytes_moved("copy", batch=256, features=3 * 224 * 224, itemsize=4) == 2 * 256 * 150528 * 4


@pytest.mark.parametrize("call, exc, match", [
    (lambda: bench.bytes_moved("matmul", batch=2, features=3, itemsize=4), ValueError, "family"),
    (lambda: bench.bytes_moved("copy", batch=0, features=3, itemsize=4), ValueError, "batch"),
    (lambda: bench.bytes_moved("copy", batch=2, features=3, itemsize=2.5), TypeError, "itemsize"),
    (lambda: bench.bytes_moved("pairwise", batch=2, features=3, itemsize=4, num_classes=-1), ValueError, "num_classes"),
    (lambda: bench.bytes_moved("dense", batch=2, features=3, itemsize=4, n=0), ValueError, r"\bn\b"),
    (lambda: bench.make_cases("cpu", batches=[32, 0]), ValueError, "batches"),
    (lambda: bench.make_cases("cpu", batches=32), TypeError, "batches"),
    (lambda: bench.make_cases("cpu", dtypes=["float8"]), ValueError, "dtypes"),
    (lambda: bench.make_cases("cpu", quick="yes"), TypeError, "quick"),
    (lambda: bench.run(device="tpu"), ValueError, "device"),
    (lambda: bench.run(device=3), TypeError, "device"),
    (lambda: bench.run(device="cpu", repeats=0), ValueError, "repeats"),
    (lambda: bench.run(device="cpu", min_time=-1.0), ValueError, "min_time"),
    (lambda: bench.run(device="cpu", warmup=-1), ValueError, "warmup"),
    (lambda: bench.run(device="cpu", seed=1.5), TypeError, "seed"),
    (lambda: bench.multimix_numpy_reference(np.ones((4, 2), np.float32), 0, 1.0, np.random.default_rng()),
     ValueError, r"\bn\b"),
    (lambda: bench.multimix_numpy_reference(np.ones((4, 2), np.float32), 3, -1.0, np.random.default_rng()),
     ValueError, "alpha"),
    (lambda: bench.multimix_numpy_reference(np.ones((4, 2), np.int64), 3, 1.0, np.random.default_rng()),
     TypeError, r"\bz\b"),
    (lambda: bench.multimix_numpy_reference(np.ones((4, 2), np.float32), 3, 1.0, 0), TypeError, "rng"),
])
def test_harness_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_cases_and_what_is_skipped_on_cpu():
    cases, skipped = bench.make_cases("cpu")
    names = {c.name for c in cases}
    assert len(cases) == 4 * 2 - 1 + 4 and all(c.dtype == "float32" for c in cases)
    assert skipped == [{"case": "image3x224x224_b1024_float32", "reason": skipped[0]["reason"]}]
    assert "617 MB" in skipped[0]["reason"] and "--include-large" in skipped[0]["reason"]
    assert "embedding512_b256_n1000_float32" in names and "image3x32x32_b1024_float32" in names
    cases, skipped = bench.make_cases("cpu", include_large=True)
    assert len(cases) == 12 and skipped == []
    cases, skipped = bench.make_cases("cpu", quick=True)
    assert [c.name for c in cases] == ["image3x32x32_b32_float32", "embedding512_b32_n1000_float32"]
    assert cases[0].num_classes == 100 and cases[0].features == 3072 and cases[0].tensor_bytes == 32 * 3072 * 4


def _case_inputs(b=8, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 4, 4, generator=g), torch.randint(0, c, (b,), generator=g)


def test_torchvision_mixup_equals_mixbook_with_roll_pairing_and_the_same_lambda(monkeypatch):
    from torchvision.transforms import v2

    from mixbook.methods import mixup
    from mixbook.core.mixing import Mixing

    x, y = _case_inputs()
    tv = v2.MixUp(alpha=1.0, num_classes=5)
    monkeypatch.setattr(tv, "make_params", lambda flat_inputs: {"lam": 0.3})
    x_tv, y_tv = tv(x, y)
    m = Mixing.pairwise(mixup.pair(8, "roll"), torch.full((8,), 0.3))
    torch.testing.assert_close(m.apply(x), x_tv)
    torch.testing.assert_close(m.targets(y, 5), y_tv)


def test_timm_batch_and_elem_equal_mixbook_with_flip_pairing(monkeypatch):
    from timm.data import Mixup

    from mixbook.methods import mixup
    from mixbook.core.mixing import Mixing

    x, y = _case_inputs()
    flip = mixup.pair(8, "flip")
    batch = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode="batch", label_smoothing=0.0, num_classes=5)
    monkeypatch.setattr(batch, "_params_per_batch", lambda: (0.3, False))
    buf = x.clone()
    x_timm, y_timm = batch(buf, y)
    assert x_timm is buf, "timm mixes in place (the harness times it on a persistent buffer)"
    m = Mixing.pairwise(flip, torch.full((8,), 0.3))
    torch.testing.assert_close(m.apply(x), x_timm)
    torch.testing.assert_close(m.targets(y, 5), y_timm)

    lam = np.linspace(0.1, 0.9, 8).astype(np.float32)
    elem = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode="elem", label_smoothing=0.0, num_classes=5)
    monkeypatch.setattr(elem, "_params_per_elem", lambda b: (lam.copy(), np.zeros(b, dtype=bool)))
    x_timm, y_timm = elem(x.clone(), y)
    m = Mixing.pairwise(flip, torch.from_numpy(lam))
    torch.testing.assert_close(m.apply(x), x_timm)
    torch.testing.assert_close(m.targets(y, 5), y_timm)


def test_numpy_multimix_reference_is_a_row_stochastic_mix():
    z = np.random.default_rng(0).standard_normal((16, 7)).astype(np.float32)
    mixed, w = bench.multimix_numpy_reference(z, 40, 0.5, np.random.default_rng(1), return_weights=True)
    assert mixed.shape == (40, 7) and mixed.dtype == np.float32 and w.shape == (40, 16)
    assert (w >= 0).all() and np.allclose(w.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(mixed, w @ z, rtol=1e-5, atol=1e-5)
    again = bench.multimix_numpy_reference(z, 40, 0.5, np.random.default_rng(1))
    np.testing.assert_array_equal(again, mixed)


def test_zeta_numpy_reference_rows_are_pseries_permutations():
    b, gamma = 6, 2.8
    x = np.eye(b, dtype=np.float32)  # mixing the identity returns W itself
    w = bench.zeta_numpy_reference(x, gamma, np.random.default_rng(0))
    series = np.arange(1, b + 1, dtype=np.float64) ** -gamma
    series /= series.sum()
    np.testing.assert_allclose(np.sort(w, axis=1)[:, ::-1], np.broadcast_to(series, (b, b)), rtol=1e-6)


def _fake_case(kind, batch, dtype, ops):
    return {"name": f"{kind}_b{batch}_{dtype}", "kind": kind, "batch": batch, "dtype": dtype, "ops": ops}


def test_targets_pass_and_fail_on_known_numbers():
    image = _fake_case("image", 256, "float32", {
        "mixbook_mixup": {"role": "mixbook", "speedup_vs": {"torchvision_mixup": 2.0, "timm_batch": 0.9,
                                                            "timm_batch_clone": 1.6},
                          "copy_fraction": 0.9, "bytes": 200e6, "median_s": 1.0},
        "mixbook_mixup_per_sample": {"role": "mixbook", "speedup_vs": {"timm_elem": 30.0},
                                     "copy_fraction": 0.5, "bytes": 50e6, "median_s": 1.0},
        "mixbook_zeta": {"role": "mixbook", "speedup_vs": {"numpy_zeta": 4.0}, "median_s": 1.6},
        "matmul": {"role": "peer", "median_s": 1.0},
    })
    got = {t["name"]: t for t in bench.evaluate_targets([image], "cpu")}
    assert got["pairwise >= 1.0x torchvision MixUp"]["pass"] is True
    assert got["pairwise >= 1.0x timm batch (in place)"]["pass"] is False
    assert got["pairwise >= 1.0x timm batch (fresh clone)"]["pass"] is True
    assert got["per-sample lambda >= 1.0x timm elem"]["measured"] == 30.0
    assert got["zeta >= 1.0x NumPy reference"]["pass"] is True
    # limits: the gather-and-interpolate bound at >= 100 MB moved (1.5 x 0.9 copy fraction, no copy on
    # record; the per-sample op moves 50 MB: not evaluated), the matmul ratio; per-call limits: CUDA only
    bound = "pairwise >= 80% of the gather-and-interpolate bound (>= 100 MB moved)"
    assert got[bound]["measured"] == pytest.approx(1.35) and got[bound]["pass"] is True
    assert "per-sample lambda >= 80% of the gather-and-interpolate bound (>= 100 MB moved)" not in got
    assert not any("us a call on CUDA" in name for name in got)
    assert got["zeta <= 1.5x one matmul of its shape (sampling included)"]["measured"] == pytest.approx(1.6)
    assert got["zeta <= 1.5x one matmul of its shape (sampling included)"]["pass"] is False
    assert {t.name for e in bench.entries() if e.kind == "image" for t in e.targets} <= set(got)
    # NumPy scalars (what ratios of pandas medians are) come out as plain Python values: --json writes them
    image["ops"]["mixbook_mixup"]["copy_fraction"] = np.float64(0.9)
    numpy_got = bench.evaluate_targets([image], "cpu")
    json.dumps(numpy_got, allow_nan=False)
    assert all(type(t["pass"]) is bool for t in numpy_got)
    assert set(got) - {t.name for t in bench.TARGETS_CPU} <= \
        {lim.name for e in bench.entries() if e.kind == "image" for lim in e.limits}

    gpu = _fake_case("image", 256, "bfloat16", {
        "copy": {"role": "baseline", "median_s": 0.5},
        "mixbook_mixup": {"role": "mixbook", "copy_fraction": 0.8, "bytes": 300e6, "median_s": 1.0,
                          "host_sync_free": True, "speedup_vs": {"timm_batch": 1.2, "torchvision_mixup": 0.9}},
        "mixbook_mixup_sample": {"role": "mixbook", "median_s": 35e-6, "bytes": 0, "host_sync_free": True},
        "mixbook_mixup_targets": {"role": "mixbook", "median_s": 45e-6, "bytes": 0, "host_sync_free": True},
        "mixbook_zeta": {"role": "mixbook", "median_s": 1.2, "host_sync_free": False, "host_sync_error": "sync!"},
        "matmul": {"role": "peer", "median_s": 1.0},
    })
    got = bench.evaluate_targets([gpu], "cuda")
    by = {(t["name"], t["note"].split(" ")[0]): t for t in got}
    assert by[(bound, "")]["measured"] == pytest.approx(0.75) and by[(bound, "")]["pass"] is False   # 1.5 x 0.5 / 1.0
    assert by[("mixup.sample <= 40 us a call on CUDA", "")]["measured"] == pytest.approx(35.0)
    assert by[("mixup.sample <= 40 us a call on CUDA", "")]["pass"] is True
    assert by[("Mixing.targets <= 30 us a call on CUDA", "")]["pass"] is False
    # the peer speed-ups that name CUDA are judged there too; the NumPy ones are not
    assert by[("pairwise >= 1.0x timm batch (in place)", "")]["pass"] is True
    assert by[("pairwise >= 1.0x torchvision MixUp", "")]["pass"] is False
    assert by[("zeta <= 1.5x one matmul of its shape (sampling included)", "")]["pass"] is True
    assert by[("no host sync in mixbook ops", "mixbook_mixup")]["pass"] is True
    assert by[("no host sync in mixbook ops", "mixbook_zeta")]["pass"] is False
    assert "sync!" in by[("no host sync in mixbook ops", "mixbook_zeta")]["note"]
    assert not any(t["name"].startswith(("zeta >= 1.0x NumPy", "multimix >= 1.0x NumPy")) for t in got)
    assert {t["name"] for t in got} <= set(bench.TARGETS_CUDA)


OP_KEYS = {"role", "family", "median_s", "min_s", "number", "ops_per_s", "bytes", "gb_per_s", "copy_fraction",
           "peak_extra_bytes", "note"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``python -m mixbook.bench --quick`` in a subprocess: (completed process, parsed JSON)."""
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run([sys.executable, "-m", "mixbook.bench", "--quick", "--device", "cpu", "--json", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(path.read_text())


def test_quick_cli_writes_the_documented_json(quick_run):
    proc, result = quick_run
    assert set(result) == {"provenance", "parameters", "skipped", "cases", "targets", "rows"}
    # one flat row per (case, op), so the file loads with mixbook.chapters.results.load
    assert len(result["rows"]) == sum(len(c["ops"]) for c in result["cases"])
    assert {(r["case"], r["op"]) for r in result["rows"]} == {(c["name"], op) for c in result["cases"] for op in c["ops"]}
    prov = result["provenance"]
    for key in ("device", "device_name", "torch", "torchvision", "timm", "date_utc", "git_commit", "torch_threads",
                "cpu_count", "load_average"):
        assert key in prov
    assert prov["torch"] == torch.__version__ and prov["date_utc"].endswith("+00:00")
    assert result["parameters"]["quick"] is True and result["parameters"]["device"] == "cpu"
    assert result["parameters"]["compiled"] is False                       # the CPU default: eager only
    assert [c["name"] for c in result["cases"]] == ["image3x32x32_b32_float32", "embedding512_b32_n1000_float32"]
    image, emb = result["cases"]
    for case, kind in ((image, "image"), (emb, "embedding")):   # every declared entry of the kind, and only those
        declared = {e.op for e in bench.entries() if e.kind == kind}
        assert {k for k, r in case["ops"].items() if r["role"] == "mixbook"} == declared and declared
        assert case["ops"]["copy"]["role"] == "baseline" and "matmul" in case["ops"]
    for case in result["cases"]:
        copy = case["ops"]["copy"]
        assert copy["copy_fraction"] == pytest.approx(1.0)
        for name, rec in case["ops"].items():
            assert OP_KEYS <= set(rec), name
            assert rec["median_s"] > 0 and rec["ops_per_s"] == pytest.approx(1 / rec["median_s"])
            assert rec["gb_per_s"] == pytest.approx(rec["bytes"] / rec["median_s"] / 1e9)
            assert rec["peak_extra_bytes"] is None  # not measurable on CPU
            if rec["role"] == "mixbook":
                assert rec["host_sync_free"] is None  # a CUDA check
                assert set(rec["speedup_vs"]) == {k for k, r in case["ops"].items()
                                                  if r["role"] == "peer" and r["family"] == rec["family"]}
    mix = image["ops"]["mixbook_mixup"]
    assert mix["bytes"] == bench.bytes_moved("pairwise", batch=32, features=3072, itemsize=4, num_classes=100)
    names = {t["name"] for t in result["targets"]}
    assert {t.name for t in bench.TARGETS_CPU} <= names                  # every speed-up, at every size
    # the quick cases move less than 100 MB: only the matmul limits apply
    assert {lim.name for lim in bench.LIMITS if lim.measure == "matmul_ratio"} <= names
    for t in result["targets"]:
        assert set(t) == {"name", "case", "measured", "target", "pass", "note"} and isinstance(t["pass"], bool)
    assert "mixbook_mixup" in proc.stdout and "targets:" in proc.stdout
    assert "torch threads" in proc.stdout and "columns:" in proc.stdout and "peakMB" not in next(l for l in proc.stdout.splitlines() if l.startswith("case "))
    assert ("PASS" in proc.stdout) or ("MISS" in proc.stdout)


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--batch", "0"])
    assert "--batch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--dtype", "int8"])
    assert "--dtype" in capsys.readouterr().err
    with pytest.raises(ValueError, match="device"):
        bench.main(["--device", "tpu", "--quick"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_run_on_cuda_uses_events_memory_and_sync_checks():
    result = bench.run(device="cuda", quick=True)
    assert {c["dtype"] for c in result["cases"]} == {"float32", "bfloat16"}
    for case in result["cases"]:
        for rec in case["ops"].values():
            assert rec["peak_extra_bytes"] is not None and rec["peak_extra_bytes"] >= 0
            if rec["role"] == "mixbook":
                assert rec["host_sync_free"] is True, rec.get("host_sync_error")
    names = {t["name"] for t in result["targets"]}
    # What a quick run evaluates (not every CUDA target: TARGETS_CUDA lists those of a full run):
    # the host-sync check, and each limit judged on CUDA on every case where its op ran, eager and
    # compiled ("[compiled]"; an op that failed to compile has no compiled variant), except where
    # the op moves less than the limit's min_mb. The quick cases (b = 32) move well under 100 MB,
    # so the bandwidth limits, stated for >= 100 MB moved, are evaluated only by a full run's
    # b = 1024 cases.
    assert result["parameters"]["compiled"] is True                     # the CUDA default
    assert "no host sync in mixbook ops" in names
    moved = max(rec["bytes"] for c in result["cases"] for rec in c["ops"].values())
    assert moved < 100e6
    for entry in bench.entries():
        for lim in entry.limits:
            devices = getattr(lim, "devices", None)          # None: judged on every device
            on_cuda = devices is None or "cuda" in devices
            for suffix, label in (("", ""), ("_compiled", " [compiled]")):
                op = entry.op + suffix
                ran = [c for c in result["cases"] if c["kind"] == entry.kind and op in c["ops"]]
                applies = {c["name"] for c in ran if lim.min_mb is None or c["ops"][op]["bytes"] >= lim.min_mb * 1e6}
                evaluated = {t["case"] for t in result["targets"] if t["name"] == lim.name + label}
                assert evaluated == (applies if on_cuda else set()), lim.name + label
            if on_cuda and lim.min_mb is None:
                assert lim.name in names, lim.name                        # e.g. the matmul limits
    assert {n.removesuffix(" [compiled]") for n in names} <= set(bench.TARGETS_CUDA)


@pytest.mark.parametrize("alpha", [0.01, 0.4, 1.0, 2.5])
@pytest.mark.parametrize("per_sample", [False, True])
def test_mixup_lambda_sampler_is_distributions_beta_bit_for_bit(alpha, per_sample):
    """mixup.sample draws λ with fewer kernels (for speed) but the same numbers and RNG stream."""
    from mixbook.core import distributions
    from mixbook.methods import mixup

    x = torch.empty(16, 3)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    m = mixup.sample(x, alpha=alpha, per_sample=per_sample, pairing="flip", generator=g1)
    ref = distributions.beta(alpha, alpha, (16 if per_sample else 1,), generator=g2).expand(16)
    assert torch.equal(m.lam, ref)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_image_sizes_select_the_image_cases():
    cases, skipped = bench.make_cases("cpu", batches=[8], image_sizes=[224])
    assert {c.shape for c in cases if c.kind == "image"} == {(3, 224, 224)} and not skipped
    with pytest.raises(ValueError, match="image_sizes"):
        bench.make_cases("cpu", batches=[8], image_sizes=[64])


# ---------------------------------------------------------------------- declared entries
class _FakeModule:
    """A method module with one declared benchmark entry: the harness must pick it up."""
    __name__ = "fake_method"

    @staticmethod
    def _make(x, y, num_classes, n):
        return lambda: x.mul(0.5)                       # a "pairwise" op for the harness's purposes

    BENCH = (BenchEntry(op="mixbook_fake", kind="image", family="pairwise", make=_make.__func__,
                        targets=(Target("fake >= 1000x torchvision MixUp", peer="torchvision_mixup", minimum=1000.0),
                                 Target("fake >= 1x timm elem at b = 64", peer="timm_elem", minimum=1.0, batches=(64,))),
                        limits=(Limit("fake >= 99% of copy", measure="copy_fraction", bound=0.99),)),)


def test_the_harness_runs_what_the_modules_declare(monkeypatch):
    from mixbook.methods import multimix, mixup, zeta

    assert [e.op for e in bench.entries()] == \
        [e.op for m in (mixup, zeta, multimix) for e in m.BENCH]   # discovered, in mixbook.methods.__all__ order
    assert all(isinstance(e, BenchEntry) for e in bench.entries())
    monkeypatch.setattr(bench.targets, "BENCH_MODULES", (mixup, zeta, multimix, _FakeModule))
    cases, _ = bench.make_cases("cpu", quick=True, batches=(8,), image_sizes=(32,))
    case = next(c for c in cases if c.kind == "image")
    rec = bench.harness._run_case(case, torch.device("cpu"), repeats=2, warmup=0, min_time=1e-4, seed=0)
    fake = rec["ops"]["mixbook_fake"]
    assert fake["role"] == "mixbook" and fake["family"] == "pairwise"
    assert set(fake["speedup_vs"]) == {k for k, r in rec["ops"].items() if r["role"] == "peer" and r["family"] == "pairwise"}
    targets = bench.evaluate_targets([rec], "cpu")
    mine = [t for t in targets if t["name"] == "fake >= 1000x torchvision MixUp"]
    assert len(mine) == 1 and mine[0]["pass"] is False and mine[0]["measured"] == fake["speedup_vs"]["torchvision_mixup"]
    assert [t for t in targets if t["name"] == "fake >= 99% of copy"][0]["measured"] == fake["copy_fraction"]
    assert "fake >= 99% of copy" in {lim.name for e in bench.entries() for lim in e.limits}
    assert not any(t["name"].startswith("fake >= 1x timm elem") for t in targets)   # batches=(64,): not at b = 8


def test_compiled_variants_are_timed_against_the_same_peers_and_targets(monkeypatch):
    from mixbook.methods import mixup

    monkeypatch.setattr(bench.targets, "BENCH_MODULES", (mixup,))
    cases, _ = bench.make_cases("cpu", quick=True, batches=(8,), image_sizes=(32,))
    case = next(c for c in cases if c.kind == "image")
    rec = bench.harness._run_case(case, torch.device("cpu"), repeats=1, warmup=0, min_time=1e-4, seed=0, compiled=True)
    assert not rec["notes"], rec["notes"]
    for op in ("mixbook_mixup", "mixbook_mixup_per_sample"):
        eager, compiled = rec["ops"][op], rec["ops"][op + bench.COMPILED_SUFFIX]
        assert compiled["role"] == "mixbook" and compiled["family"] == eager["family"]
        assert set(compiled["speedup_vs"]) == set(eager["speedup_vs"]) and compiled["dispatched_ops"] is None
        assert eager["dispatched_ops"] > 0
    names = {t["name"] for t in bench.evaluate_targets([rec], "cpu")}
    assert {"pairwise >= 1.0x torchvision MixUp", "pairwise >= 1.0x torchvision MixUp [compiled]",
            "per-sample lambda >= 1.0x timm elem [compiled]"} <= names
    # what the compiled call computes is a mixup: convex combinations of the batch and soft targets
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 100, (8,))
    out, targets = bench.timing._compiled_call(mixup.BENCH[0].make(x, y, 100, None), "mixup", [])()
    assert out.shape == x.shape and out.min() >= x.min() and out.max() <= x.max()
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    assert int((targets > 0).sum(1).max()) <= 2


def test_a_call_that_does_not_compile_is_noted_not_timed():
    x, notes = torch.ones(4), []
    assert bench.timing._compiled_call(lambda: x + 1 if x.sum() > 0 else x, "mixbook_host_read", notes) is None  # data-dependent
    assert len(notes) == 1 and notes[0].startswith("mixbook_host_read: torch.compile failed")


def _entry(**fields):
    return BenchEntry(**{"op": "x", "kind": "image", "family": "pairwise", "make": lambda x, y, c, n: x.clone,
                         **fields})


@pytest.mark.parametrize("make, error, match", [
    (lambda: _entry(kind="video"), ValueError, r"BenchEntry\.kind must be one of \('image', 'embedding'\)"),
    (lambda: _entry(family="nope"), ValueError, r"BenchEntry\.family must be one of \('pairwise', 'dense', 'copy', 'call'\)"),
    (lambda: _entry(op=""), TypeError, r"BenchEntry\.op"),
    (lambda: _entry(make=None), TypeError, r"BenchEntry\.make must be callable"),
    (lambda: _entry(targets=(("name", "peer", 1.0, None),)), TypeError, r"BenchEntry\.targets must hold Target"),
    (lambda: _entry(limits=Limit("l", "matmul_ratio", 1.5)), TypeError, r"BenchEntry\.limits must be a tuple"),
    (lambda: Limit("l", "bandwidth", 0.85), ValueError,
     r"Limit\.measure must be one of \('copy_fraction', 'bound_fraction', 'matmul_ratio', 'us_per_call'\)"),
    (lambda: Limit("l", "copy_fraction", 0.0), ValueError, r"Limit\.bound"),
    (lambda: Limit("l", "matmul_ratio", 1.5, min_mb=100.0), ValueError, r"Limit\.min_mb"),
    (lambda: Limit("l", "copy_fraction", 0.85, min_mb=-1.0), ValueError, r"Limit\.min_mb"),
    (lambda: Target("t", "timm_elem", -1.0), ValueError, r"Target\.minimum"),
    (lambda: Target("t", "timm_elem", 1.0, devices=("tpu",)), ValueError, r"Target\.devices"),
    (lambda: Limit("l", "us_per_call", 40.0, devices="cuda"), TypeError, r"Limit\.devices"),
    (lambda: Limit("l", "us_per_call", 40.0, min_mb=1.0), ValueError, r"Limit\.min_mb"),
    (lambda: Target("t", "timm_elem", "1"), TypeError, r"Target\.minimum"),
    (lambda: Target("t", "timm_elem", 1.0, batches=(32, 0)), ValueError, r"Target\.batches"),
    (lambda: Target("t", "", 1.0), TypeError, r"Target\.peer"),
])
def test_bad_entries_are_refused_naming_the_field(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_entries_are_frozen_and_normalised():
    e = _entry(targets=[Target("t", "timm_elem", 1, batches=[32, 256])], limits=[Limit("l", "copy_fraction", 1)])
    assert isinstance(e.targets, tuple) and isinstance(e.limits, tuple)
    assert e.targets[0].batches == (32, 256) and type(e.targets[0].minimum) is float and e.limits[0].bound == 1.0
    with pytest.raises(AttributeError):
        e.op = "y"


def test_bad_modules_are_refused():
    as_dict = ModuleType("m")
    as_dict.BENCH = ({"op": "x", "kind": "image", "family": "pairwise", "make": None},)   # the old dict form
    with pytest.raises(TypeError, match=r"m\.BENCH must hold mixbook\.core\.benchmark\.BenchEntry"):
        bench.entries([as_dict])
    twice = type("M", (), {"BENCH": (_entry(),) * 2})
    with pytest.raises(ValueError, match="distinct"):
        bench.entries([twice])
    assert bench.entries([type("M", (), {})]) == ()                     # a module without BENCH declares nothing
