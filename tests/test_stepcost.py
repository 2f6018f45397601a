"""python -m mixbook.bench.stepcost: a training step with each method against ERM's."""

import pytest

from mixbook.bench import stepcost


def test_verdicts_judge_the_pairwise_methods_only():
    rows = [{"precision": "fp32", "method": "ERM", "ms": 10.0, "ratio_to_ERM": 1.0},
            {"precision": "fp32", "method": "mixup", "ms": 10.2, "ratio_to_ERM": 1.02},
            {"precision": "bf16", "method": "mixup", "ms": 11.8, "ratio_to_ERM": 1.18},
            {"precision": "fp32", "method": "multimix n=1000", "ms": 10.9, "ratio_to_ERM": 1.09},
            {"precision": "fp32", "method": "cutmix", "error": "RuntimeError: boom"}]
    got = {t["name"]: t for t in stepcost.evaluate(rows)}
    assert set(got) == {"mixup step <= 1.03x ERM (fp32)", "mixup step <= 1.03x ERM (bf16)",
                        "cutmix step <= 1.03x ERM (fp32)"}
    assert got["mixup step <= 1.03x ERM (fp32)"]["pass"] is True
    assert got["mixup step <= 1.03x ERM (bf16)"]["pass"] is False
    assert got["cutmix step <= 1.03x ERM (fp32)"]["pass"] is None and "boom" in got["cutmix step <= 1.03x ERM (fp32)"]["note"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="methods must be names of"):
        stepcost.run(device="cpu", quick=True, methods=["mixup"])          # no ERM to compare with
    with pytest.raises(ValueError, match="methods must be names of"):
        stepcost.run(device="cpu", quick=True, methods=["ERM", "nope"])
    with pytest.raises(ValueError, match="precisions"):
        stepcost.run(device="cpu", quick=True, methods=["ERM"], precisions=["fp16"])


def test_a_quick_run_times_every_method_it_is_given(tmp_path):
    out = tmp_path / "s.json"
    assert stepcost.main(["--device", "cpu", "--quick", "--methods", "ERM", "mixup", "--json", str(out)]) == 0
    import json

    result = json.loads(out.read_text())
    assert {r["method"] for r in result["rows"]} == {"ERM", "mixup"}
    assert all(r["ms"] > 0 and "error" not in r for r in result["rows"])
    assert result["rows"][0]["ratio_to_ERM"] == 1.0 or any(r["method"] == "ERM" and r["ratio_to_ERM"] == 1.0
                                                         for r in result["rows"])
    assert [t["name"] for t in result["targets"]] == ["mixup step <= 1.03x ERM (fp32)"]
    assert result["provenance"]["device_type"] == "cpu" and result["parameters"]["batch"] == 8
