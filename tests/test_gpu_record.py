"""mixbook.chapters.gpu_record: recorded GPU files read into tidy tables (small files written here),
and the committed H200 run of 2026-12-04 giving the numbers its README states."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mixbook.chapters import gpu_record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "book" / "results"

PROFILER_TEXT = """\
-----------------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------
                   Name    Self CPU %      Self CPU   CPU total %     CPU total  CPU time avg     Self CUDA   Self CUDA %    CUDA total  CUDA time avg    # of Calls
-----------------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------
       cudaLaunchKernel        40.00%       1.000ms        40.00%       1.000ms      10.000us       0.000us         0.00%       0.000us       0.000us           100
         cuLaunchKernel        10.00%     200.000us        10.00%     200.000us      10.000us       0.000us         0.00%       0.000us       0.000us            20
aten::index_select lerp         5.00%     100.000us        20.00%       2.000ms     100.000us      30.000us        60.00%      30.000us       1.500us            20
-----------------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------  ------------
Self CPU time total: 2.500ms
Self CUDA time total: 50.000us
"""


def _prov(date: str, commit: str) -> dict:
    return {"device_name": "Test GPU", "date_utc": f"{date}T10:00:00+00:00", "git_commit": commit * 40,
            "git_dirty": False, "torch": "2.0", "cuda": "12.0", "command": "python -m mixbook.bench", "note": "test"}


def _op(us: float, role: str, family: str, **more) -> dict:
    return {"role": role, "family": family, "median_s": us * 1e-6, "copy_fraction": None, "note": "", **more}


def _write_run(folder: Path, date: str, commit: str, scale: float = 1.0) -> None:
    """A bench (eager and compiled files), a profile and a step-cost file of one run; times × scale."""
    big = {"name": "image3x224x224_b1024_float32", "kind": "image", "batch": 1024, "shape": [3, 224, 224],
           "dtype": "float32", "n": None,
           "ops": {"copy": _op(300 * scale, "baseline", "copy"),
                   "mixbook_mixup": _op(900 * scale, "mixbook", "pairwise", dispatched_ops=16, copy_fraction=0.334),
                   "torchvision_cutmix": _op(1000 * scale, "peer", "pairwise"),
                   "mixbook_zeta": _op(580 * scale, "mixbook", "dense"),
                   "matmul": _op(400 * scale, "peer", "dense")}}
    small = {"name": "image3x32x32_b32_float32", "kind": "image", "batch": 32, "shape": [3, 32, 32],
             "dtype": "float32", "n": None,
             "ops": {"copy": _op(10 * scale, "baseline", "copy"),
                     "mixbook_mixup": _op(400 * scale, "mixbook", "pairwise", dispatched_ops=16),
                     "timm_batch": _op(200 * scale, "peer", "pairwise"),
                     "timm_batch_clone": _op(250 * scale, "peer", "pairwise")}}
    compiled = {**big, "ops": {"copy": _op(300 * scale, "baseline", "copy"),
                               "mixbook_mixup_compiled": _op(450 * scale, "mixbook", "pairwise")}}
    tag = f"{date}_{commit}"
    (folder / f"07_bench_nvidia-test_{tag}_eager.json").write_text(json.dumps(
        {"provenance": _prov(date, commit), "parameters": {"compiled": False}, "cases": [small, big], "targets": []}))
    (folder / f"07_bench_nvidia-test_{tag}_compiled.json").write_text(json.dumps(
        {"provenance": _prov(date, commit), "parameters": {"compiled": True}, "cases": [compiled], "targets": []}))
    rows = []
    for backend, mix in (("auto", 300), ("eager", 200)):
        for variant, us in (("copy x.clone()", 8), ("mixbook.MixUp(x, y)", mix), ("mixup.sample", 100),
                            ("timm Mixup (in place, + clone)", 120), ("minimal eager lerp(x, x[perm], w)", 20)):
            rows.append({"b": 32, "side": 32, "dtype": "torch.float32", "fused_backend": backend, "variant": variant,
                         "us": us * scale})
        for variant, us in (("copy x.clone()", 300), ("Mixing.apply", 500)):
            rows.append({"b": 1024, "side": 224, "dtype": "torch.float32", "fused_backend": backend,
                         "variant": variant, "us": us * scale})
    rows += [{"b": 32, "n": 1000, "d": 512, "variant": v, "us": us * scale}
             for v, us in (("matmul W@z", 20), ("multimix.sample", 100), ("multimix Mixing.apply", 20),
                           ("zeta.sample", 260), ("zeta Mixing.apply", 20))]
    (folder / f"07_profile_nvidia-test_{tag}.json").write_text(json.dumps(
        {"provenance": _prov(date, commit), "parameters": {"profiled_calls": 20}, "rows": rows,
         "profiler_table": PROFILER_TEXT}))
    steps = [{"precision": p, "method": m, "ms": 10 * r * scale, "ratio_to_ERM": r}
             for p in ("fp32", "bf16") for m, r in (("ERM", 1.0), ("mixup", 1.1 if p == "fp32" else 1.2))]
    (folder / f"07_stepcost_nvidia-test_{tag}.json").write_text(json.dumps(
        {"provenance": _prov(date, commit), "batch": 128, "rows": steps}))


@pytest.fixture
def one_run(tmp_path: Path) -> Path:
    _write_run(tmp_path, "2030-01-01", "a")
    return tmp_path


def test_run_key_and_its_checks():
    assert gpu_record.run_key(_prov("2030-01-01", "a")) == "2030-01-01 aaaaaaaaaa"
    assert gpu_record.run_key({**_prov("2030-01-01", "a"), "git_dirty": True}).endswith("+dirty")
    with pytest.raises(ValueError, match="git_commit"):
        gpu_record.run_key({"date_utc": "2030-01-01"})
    with pytest.raises(TypeError, match="provenance"):
        gpu_record.run_key(["2030-01-01"])


def test_bound_fraction_is_one_and_a_half_copies():
    assert gpu_record.bound_fraction(100.0, 150.0) == pytest.approx(1.0)
    assert gpu_record.bound_fraction(100.0, 300.0) == pytest.approx(0.5)
    for bad in (0.0, -1.0, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match="t_copy"):
            gpu_record.bound_fraction(bad, 1.0)


def test_a_file_without_provenance_is_refused(tmp_path: Path):
    (tmp_path / "07_stepcost_x.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="07_stepcost_x.json"):
        gpu_record.stepcost_frame(tmp_path)
    assert gpu_record.bench_frame(tmp_path / "missing").empty


def test_tables_of_one_run(one_run: Path):
    bench, profile = gpu_record.bench_frame(one_run), gpu_record.profile_frame(one_run)
    assert set(bench["run"]) == {"2030-01-01 aaaaaaaaaa"} and set(profile["dtype"].dropna()) == {"float32"}

    per_call = gpu_record.per_call_table(bench, profile)
    run = "2030-01-01 aaaaaaaaaa"
    assert list(per_call.columns) == [(run, "profile, fused auto"), (run, "profile, fused eager"), (run, "bench")]
    assert per_call.loc["mixbook MixUp(x, y)", (run, "profile, fused eager")] == pytest.approx(200)
    assert per_call.loc["timm Mixup, in place", (run, "bench")] == pytest.approx(200)
    assert math.isnan(per_call.loc["timm Mixup, in place", (run, "profile, fused auto")])

    bound = gpu_record.bound_table(bench, profile)
    eager = bound.loc[(run, "float32", "bench, eager run", "mixbook_mixup")]
    assert eager["copy %"] == pytest.approx(33.4) and eager["% of bound"] == pytest.approx(50.0)  # copy % as recorded
    apply = bound.loc[(run, "float32", "profile, fused auto", "Mixing.apply")]
    assert apply["copy %"] == pytest.approx(60.0)                    # no bytes recorded: t_copy / t_op
    assert bound.loc[(run, "float32", "bench, compiled run", "mixbook_mixup_compiled"), "% of bound"] \
        == pytest.approx(100.0)
    assert bound.loc[(run, "float32", "profile, fused auto", "Mixing.apply"), "% of bound"] == pytest.approx(90.0)
    assert not any("cutmix" in op for op in bound.index.get_level_values("op"))   # a box paste, not a lerp

    dense = gpu_record.dense_table(bench)
    assert dense.loc[(run, "bench, eager run", "image3x224x224_b1024_float32", "mixbook_zeta"), "× matmul"] \
        == pytest.approx(1.45)
    parts = gpu_record.dense_parts_table(profile)
    assert parts.loc[(run, 32, 1000, 512), "MultiMix × matmul"] == pytest.approx(6.0)
    assert parts.loc[(run, 32, 1000, 512), "ζ-mixup × matmul"] == pytest.approx(14.0)

    steps = gpu_record.stepcost_table(gpu_record.stepcost_frame(one_run))
    assert list(steps.columns) == [(run, "fp32"), (run, "bf16")]
    assert steps.loc["mixup", (run, "bf16")] == pytest.approx(1.2)

    prov = gpu_record.provenance_frame(one_run)
    assert len(prov) == 4 and set(prov["commit"]) == {"aaaaaaaaaa"} and set(prov["date"]) == {"2030-01-01"}


def test_a_later_run_appears_beside_the_first(one_run: Path):
    _write_run(one_run, "2030-02-01", "b", scale=0.5)
    before, after = "2030-01-01 aaaaaaaaaa", "2030-02-01 bbbbbbbbbb"
    bench, profile = gpu_record.bench_frame(one_run), gpu_record.profile_frame(one_run)
    per_call = gpu_record.per_call_table(bench, profile)
    assert per_call.columns.get_level_values("run").unique().tolist() == [before, after]
    assert per_call.loc["mixbook MixUp(x, y)", (after, "bench")] == pytest.approx(200)
    steps = gpu_record.stepcost_table(gpu_record.stepcost_frame(one_run))
    assert list(steps.columns) == [(before, "fp32"), (before, "bf16"), (after, "fp32"), (after, "bf16")]
    bound = gpu_record.bound_table(bench, profile)
    assert set(bound.index.get_level_values("run")) == {before, after}
    assert gpu_record.summary(one_run)["run"] == before
    assert gpu_record.summary(one_run, after)["mixup_eager_us"] == pytest.approx(100)
    with pytest.raises(ValueError, match="not recorded"):
        gpu_record.summary(one_run, "1999-01-01 0000000000")


def test_stepcost_as_the_bench_module_writes_it(tmp_path: Path):
    """``python -m mixbook.bench.stepcost --json``: batch and classes in ``parameters``, a failed method."""
    rows = [{"precision": "fp32", "method": "ERM", "ms": 10.0, "ratio_to_ERM": 1.0},
            {"precision": "fp32", "method": "mixup", "ms": 10.2, "ratio_to_ERM": 1.02},
            {"precision": "fp32", "method": "zeta", "error": "RuntimeError: no"}]
    (tmp_path / "07_stepcost_nvidia-test_2030-03-01.json").write_text(json.dumps(
        {"provenance": _prov("2030-03-01", "c"), "parameters": {"batch": 128, "num_classes": 100}, "rows": rows,
         "targets": []}))
    frame = gpu_record.stepcost_frame(tmp_path)
    assert set(frame["batch"]) == {128} and set(frame["classes"]) == {100}
    table = gpu_record.stepcost_table(frame)
    assert list(table.index) == ["ERM", "mixup"] and table.loc["mixup", ("2030-03-01 cccccccccc", "fp32")] == 1.02
    s = gpu_record.summary(tmp_path)
    assert (s["step_batch"], s["step_classes"], s["mixup_step_fp32"]) == (128, 100, 1.02)
    assert dict(gpu_record.verdicts(tmp_path))["2030-03-01 cccccccccc (Test GPU): every pairwise method's step "
                                               "within 1.03× ERM's, fp32 and bf16"]


def test_profiler_table_and_launches():
    table = gpu_record.parse_profiler_table(PROFILER_TEXT)
    assert list(table["name"]) == ["cudaLaunchKernel", "cuLaunchKernel", "aten::index_select lerp"]
    assert table.loc[2, "cpu_total_us"] == pytest.approx(2000) and table.loc[2, "calls"] == 20
    assert table.attrs == {"self_cpu_total_us": pytest.approx(2500), "self_cuda_total_us": pytest.approx(50)}
    s = gpu_record.launch_summary(table, 20)
    assert s == {"launches_per_call": 6.0, "cpu_us_per_launch": pytest.approx(10.0),
                 "gpu_us_per_call": pytest.approx(2.5), "cpu_us_per_call": pytest.approx(125.0)}
    with pytest.raises(ValueError, match="calls"):
        gpu_record.launch_summary(table, 0)
    with pytest.raises(ValueError, match="cudaLaunchKernel"):
        gpu_record.launch_summary(table[table["name"] == "aten::index_select lerp"], 20)


def test_summary_of_one_run(one_run: Path):
    s = gpu_record.summary(one_run)
    assert (s["device"], s["date"], s["commit"]) == ("Test GPU", "2030-01-01", "aaaaaaaaaa")
    assert s["mixup_auto_us"] == pytest.approx(300) and s["mixup_eager_us"] == pytest.approx(200)
    assert s["timm_inplace_us"] == pytest.approx(200) and s["dispatched_ops"] == 16
    assert s["bound_fp32_eager_pct"] == pytest.approx(50) and s["bound_max_pct"] == pytest.approx(100)
    assert s["mixup_step_fp32"] == pytest.approx(1.1) and s["erm_ms"] == pytest.approx(10)
    assert s["launches_per_call"] == 6.0
    # a b = 128, 3x32x32 fp32 gather-and-interpolate at the copy bandwidth of the 1024x3x224x224 case
    copy_bytes_per_us = 2 * 1024 * 3 * 224 * 224 * 4 / 300
    assert s["arith_us"] == pytest.approx(1.5 * 2 * 128 * 3 * 32 * 32 * 4 / copy_bytes_per_us)
    empty = gpu_record.summary(one_run / "none")
    assert empty["run"] is None and set(gpu_record.SUMMARY_KEYS) <= set(empty)
    assert all(math.isnan(empty[k]) for k in gpu_record.SUMMARY_KEYS)


def test_verdicts_can_say_false(one_run: Path):
    lines = dict(gpu_record.verdicts(one_run))
    run = "2030-01-01 aaaaaaaaaa (Test GPU)"
    assert lines["the bound fraction is 1.5 × the bench's recorded copy fraction, within the labels' bytes (1%)"]
    assert lines["no recorded pairwise op beats the gather-and-interpolate bound (fraction ≤ 1)"]
    assert not lines[f"{run}: MixUp(x, y) at b = 32 no slower than timm's Mixup on a fresh clone, fused auto"]
    assert not lines[f"{run}: every pairwise method's step within 1.03× ERM's, fp32 and bf16"]
    assert lines[f"{run}: every dense op within 1.5 matmuls of its shape, every case"]       # ζ-mixup at 1.45×
    # an op faster than two reads and a write at a copy's bandwidth cannot be a gather-and-interpolate
    f = one_run / "07_bench_nvidia-test_2030-01-01_a_compiled.json"
    rec = json.loads(f.read_text())
    rec["cases"][0]["ops"]["mixbook_mixup_compiled"]["median_s"] = 400e-6
    f.write_text(json.dumps(rec))
    assert not dict(gpu_record.verdicts(one_run))["no recorded pairwise op beats the gather-and-interpolate bound "
                                                  "(fraction ≤ 1)"]


# ------------------------------------------------------------------ the committed H200 run
H200 = "2026-12-04 bdb4e137dc"


def test_committed_h200_files_load_and_carry_their_provenance():
    from mixbook.chapters import results

    frame = results.load(RESULTS)                       # every result file, the bench's included
    h200 = frame[frame["file"].str.contains("nvidia-h200")]
    assert set(h200["file"]) == {"07_bench_nvidia-h200_2026-12-04_eager.json",
                                 "07_bench_nvidia-h200_2026-12-04_compiled.json",
                                 "07_stepcost_nvidia-h200_2026-12-04.json", "07_profile_nvidia-h200_2026-12-04.json"}
    assert set(h200["commit"]) == {"bdb4e137dc"} and set(h200["device"]) == {"NVIDIA H200"}
    prov = gpu_record.provenance_frame(RESULTS)
    h = prov[prov["run"] == H200]
    assert len(h) == 4 and h["note"].str.contains("corrected by hand").all()
    assert h["command"].str.startswith("python3 ").all() and set(h["torch"]) == {"2.11.0+cu130"}


def test_committed_h200_numbers_are_the_readmes():
    """The figures gpu-runs/2026-12-04-nvidia-h200/README.md states, read back from book/results."""
    s = gpu_record.summary(RESULTS, H200)
    assert round(s["mixup_auto_us"]) == 408 and round(s["mixup_eager_us"]) == 229   # README: 409 / 229
    per_call = gpu_record.per_call_table(gpu_record.bench_frame(RESULTS), gpu_record.profile_frame(RESULTS))
    auto = per_call[(H200, "profile, fused auto")]
    assert round(auto["torchvision v2.MixUp"]) == 165 and round(auto["timm Mixup, fresh clone"]) == 115
    assert round(auto["minimal torch.lerp(x, x[perm], w)"]) == 19 and round(auto["copy x.clone()"]) == 8
    bound = gpu_record.bound_table(gpu_record.bench_frame(RESULTS), gpu_record.profile_frame(RESULTS))
    copy_pct = bound.xs("mixbook_mixup", level="op")["copy %"]
    assert round(copy_pct[(H200, "float32", "bench, eager run")]) == 33        # README: 33% fp32 eager
    assert round(copy_pct[(H200, "bfloat16", "bench, eager run")]) == 23       # 23% bf16 eager
    assert round(bound.loc[(H200, "bfloat16", "bench, compiled run", "mixbook_mixup_compiled"), "copy %"]) == 62
    assert round(s["copy_bf16_us"]) == 148 and round(s["copy_fp32_us"]) == 295    # README (profile): 147 / 291
    assert round(s["mixup_step_fp32"], 2) == 1.12 and round(s["mixup_step_bf16"], 2) == 1.18
    assert round(s["step_ratio_min"], 2) == 1.05 and round(s["step_ratio_max"], 2) == 1.31
    dense = gpu_record.dense_table(gpu_record.bench_frame(RESULTS)).xs((H200, "bench, eager run"))
    multimix = dense.xs("mixbook_multimix", level="op")["× matmul"]
    zeta = dense.xs("mixbook_zeta", level="op")["× matmul"]
    assert (round(multimix.min(), 1), round(multimix.max(), 1)) == (3.1, 8.4)
    assert (round(zeta.min(), 1), round(zeta.max(), 1)) == (1.0, 23.7)
    assert s["launches_per_call"] == 17.0 and s["dispatched_ops"] == 16           # 300 + 40 launches / 20 calls


def test_claims_judge_the_committed_h200_run():
    """Chapter 7's claims on the recorded run: each a yes/no with the numbers behind it."""
    rows = gpu_record.claims(RESULTS, 0.8)
    assert [r["holds here"] for r in rows] == ["no", "no", "no", "no"]
    assert all("NVIDIA H200" in r["claim"] and r["numbers"] != "not measured" for r in rows)
    assert rows[0]["numbers"] == "408 µs (compiled kernel), 229 µs (eager) vs 115 µs"
    assert rows[2]["numbers"].startswith("49% (fp32), 34% (bf16)")
    # a lower target for the bound would be met in fp32 and bf16 by the eager call (49%, 34%)
    assert gpu_record.claims(RESULTS, 0.3)[2]["holds here"] == "yes"


def test_claims_without_a_recorded_run_are_not_testable(tmp_path: Path):
    rows = gpu_record.claims(tmp_path, 0.8)
    assert len(rows) == 4 and {r["holds here"] for r in rows} == {"not testable here"}
    assert all("no GPU run recorded" in r["claim"] for r in rows)
    for bad in (0, 1.5, "0.8", True):
        with pytest.raises(ValueError, match="bound_target"):
            gpu_record.claims(tmp_path, bad)
