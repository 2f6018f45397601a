"""Tests of mixbook.training.metrics: known values, torchmetrics cross-check, binning, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixbook.training import metrics
from mixbook.training.metrics import accuracy, ece, evaluate, nll, overconfidence, reliability_bins


def _logits_from_probs(p: list[list[float]]) -> torch.Tensor:
    # softmax(log p) = p for rows of p summing to 1
    return torch.tensor(p, dtype=torch.float64).log()


def _random(n: int = 500, c: int = 10, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * scale, torch.randint(0, c, (n,), generator=g)


# ---------------------------------------------------------------------- known values
def test_perfect_confident_predictions():
    y = torch.tensor([0, 1, 2, 1, 0])
    logits = F.one_hot(y, 3).float() * 100.0  # softmax max is 1.0 in float32
    assert accuracy(logits, y).item() == 1.0
    assert ece(logits, y).item() == pytest.approx(0.0, abs=1e-6)
    assert nll(logits, y).item() == pytest.approx(0.0, abs=1e-6)


def test_all_wrong_confident_predictions():
    y = torch.tensor([0, 1, 2, 1])
    logits = F.one_hot((y + 1) % 3, 3).float() * 100.0
    assert accuracy(logits, y).item() == 0.0
    assert ece(logits, y).item() == pytest.approx(1.0, abs=1e-6)


def test_ece_hand_computed():
    # Two classes, class 0 predicted each time with confidence 0.95, 0.85, 0.65, 0.75;
    # labels 0, 1, 0, 0, so the predictions are right, wrong, right, right.
    logits = _logits_from_probs([[0.95, 0.05], [0.85, 0.15], [0.65, 0.35], [0.75, 0.25]])
    y = torch.tensor([0, 1, 0, 0])
    # 5 bins (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1]:
    #   bin (.8,1]: {0.95 right, 0.85 wrong}: acc 1/2, conf 0.9  -> 2/4 * |0.5 - 0.9| = 0.2
    #   bin (.6,.8]: {0.65 right, 0.75 right}: acc 1, conf 0.7   -> 2/4 * |1 - 0.7|   = 0.15
    #   ECE = 0.35
    assert ece(logits, y, n_bins=5).item() == pytest.approx(0.35, abs=1e-12)
    # 15 bins of width 1/15: every sample alone in its bin (0.95 in (14/15,1], 0.85 in
    # (12/15,13/15], 0.65 in (9/15,10/15], 0.75 in (11/15,12/15]):
    #   ECE = (|1-0.95| + |0-0.85| + |1-0.65| + |1-0.75|) / 4 = (0.05+0.85+0.35+0.25)/4 = 0.375
    assert ece(logits, y).item() == pytest.approx(0.375, abs=1e-12)
    assert accuracy(logits, y).item() == 0.75
    # NLL = -(log .95 + log .15 + log .65 + log .75) / 4
    expected = -(math.log(0.95) + math.log(0.15) + math.log(0.65) + math.log(0.75)) / 4
    assert nll(logits, y).item() == pytest.approx(expected, abs=1e-12)


def test_bins_are_closed_on_the_right():
    # confidence exactly 0.5 (equal logits) falls in (0, 0.5], exactly 1.0 in (0.5, 1]
    logits = torch.tensor([[0.0, 0.0], [200.0, -200.0]])
    y = torch.tensor([0, 0])
    r = reliability_bins(logits, y, n_bins=2)
    assert r["count"].tolist() == [1, 1]
    assert r["confidence"].tolist() == [0.5, 1.0]
    assert r["accuracy"].tolist() == [1.0, 1.0]


def test_nll_equals_cross_entropy():
    logits, y = _random()
    assert torch.allclose(nll(logits, y), F.cross_entropy(logits, y))
    # differentiable
    z = logits.clone().requires_grad_()
    nll(z, y).backward()
    assert z.grad is not None and z.grad.shape == z.shape


def test_accuracy_matches_argmax():
    logits, y = _random(n=300, c=4)
    expected = (logits.argmax(1) == y).double().mean().item()
    assert accuracy(logits, y).item() == pytest.approx(expected)


def test_metrics_are_zero_dim_tensors_and_keep_precision():
    logits, y = _random(n=50, c=3)
    for f in (accuracy, nll, ece):
        out = f(logits, y)
        assert isinstance(out, torch.Tensor) and out.ndim == 0 and out.dtype == torch.float32
        assert f(logits.double(), y).dtype == torch.float64
        assert f(logits.half(), y).dtype == torch.float32  # half is evaluated in float32


def test_int32_labels_accepted():
    logits, y = _random(n=40, c=5)
    assert ece(logits, y.int()).item() == pytest.approx(ece(logits, y).item())
    assert nll(logits, y.int()).item() == pytest.approx(nll(logits, y).item())


# ---------------------------------------------------------------------- torchmetrics
@pytest.mark.parametrize("seed,c,scale", [(0, 10, 3.0), (1, 3, 1.0), (2, 100, 5.0), (3, 2, 0.5)])
def test_ece_matches_torchmetrics(seed, c, scale):
    from torchmetrics.classification import MulticlassCalibrationError

    logits, y = _random(n=1000, c=c, seed=seed, scale=scale)
    ref = MulticlassCalibrationError(num_classes=c, n_bins=15, norm="l1")(logits, y)
    assert ece(logits, y).item() == pytest.approx(ref.item(), abs=1e-5)


# ---------------------------------------------------------------------- reliability bins
def test_reliability_bins_consistent_with_ece():
    logits, y = _random(n=700, c=6, seed=4)
    n_bins = 15
    r = reliability_bins(logits, y, n_bins=n_bins)
    assert r["edges"].shape == (n_bins + 1,)
    assert r["edges"][0].item() == 0.0 and r["edges"][-1].item() == 1.0
    assert r["count"].dtype == torch.int64 and r["count"].shape == (n_bins,)
    assert r["count"].sum().item() == len(y)
    empty = r["count"] == 0
    assert empty.any()  # random logits with 6 classes never reach confidence < 1/6
    assert torch.isnan(r["confidence"][empty]).all() and torch.isnan(r["accuracy"][empty]).all()
    full = ~empty
    conf, acc = r["confidence"][full], r["accuracy"][full]
    assert ((conf > r["edges"][:-1][full]) & (conf <= r["edges"][1:][full])).all()
    assert ((acc >= 0) & (acc <= 1)).all()
    weighted = (r["count"][full].float() / len(y) * (acc - conf).abs()).sum()
    assert ece(logits, y, n_bins=n_bins).item() == pytest.approx(weighted.item(), abs=1e-6)


def test_reliability_bins_against_python_loop():
    logits, y = _random(n=200, c=3, seed=5, scale=1.5)
    n_bins = 7
    r = reliability_bins(logits.double(), y, n_bins=n_bins)
    p = logits.double().softmax(1)
    conf, pred = p.max(1)
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        members = [i for i in range(len(y)) if lo < conf[i].item() <= hi]
        assert r["count"][m].item() == len(members)
        if members:
            mc = sum(conf[i].item() for i in members) / len(members)
            ma = sum(float(pred[i] == y[i]) for i in members) / len(members)
            assert r["confidence"][m].item() == pytest.approx(mc, abs=1e-12)
            assert r["accuracy"][m].item() == pytest.approx(ma, abs=1e-12)


def test_evaluate_returns_floats():
    logits, y = _random(n=100, c=4, seed=6)
    out = evaluate(logits, y)
    assert set(out) == {"accuracy", "nll", "ece", "overconfidence"}
    assert all(type(v) is float for v in out.values())
    assert out["accuracy"] == pytest.approx(accuracy(logits, y).item())
    assert out["nll"] == pytest.approx(nll(logits, y).item())
    assert out["ece"] == pytest.approx(ece(logits, y).item())
    assert out["overconfidence"] == pytest.approx(overconfidence(logits, y).item())
    assert evaluate(logits, y, n_bins=5)["ece"] == pytest.approx(ece(logits, y, n_bins=5).item())


def test_single_sample():
    logits = torch.tensor([[2.0, 0.0]])
    y = torch.tensor([0])
    p = torch.sigmoid(torch.tensor(2.0)).item()
    assert accuracy(logits, y).item() == 1.0
    assert ece(logits, y).item() == pytest.approx(1 - p, abs=1e-6)


def test_inputs_not_modified():
    logits, y = _random(n=30, c=3)
    lc, yc = logits.clone(), y.clone()
    evaluate(logits, y)
    reliability_bins(logits, y)
    assert torch.equal(logits, lc) and torch.equal(y, yc)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("f", [accuracy, nll, ece, reliability_bins, evaluate])
def test_bad_input(f):
    logits, y = _random(n=8, c=3)
    with pytest.raises(TypeError, match="^y "):
        f(logits, y.float())
    with pytest.raises(TypeError, match="^y "):
        f(logits, y.bool())
    with pytest.raises(ValueError, match=r"^y .*\[0, 3\)"):
        f(logits, torch.tensor([0, 1, 2, 3, 0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"^y .*\[0, 3\)"):
        f(logits, torch.tensor([0, 1, 2, -1, 0, 1, 2, 0]))
    with pytest.raises(ValueError, match="^y must have batch size 8"):
        f(logits, y[:5])
    with pytest.raises(ValueError, match="^y must be 1-D"):
        f(logits, y[:, None])
    with pytest.raises(TypeError, match="^logits "):
        f(logits.long(), y)
    with pytest.raises(TypeError, match="^logits "):
        f(logits.numpy(), y)
    with pytest.raises(ValueError, match="^logits "):
        f(logits[:, 0], y)
    with pytest.raises(ValueError, match="^logits "):
        f(logits[:0], y[:0])


@pytest.mark.parametrize("f", [ece, reliability_bins, evaluate])
def test_bad_n_bins(f):
    logits, y = _random(n=8, c=3)
    with pytest.raises(ValueError, match="n_bins"):
        f(logits, y, n_bins=0)
    with pytest.raises(TypeError, match="n_bins"):
        f(logits, y, n_bins=2.5)
    with pytest.raises(TypeError, match="n_bins"):
        f(logits, y, n_bins=True)


def test_metrics_imports_only_checks():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(metrics))
    relative = [
        (node.level, node.module, [a.name for a in node.names])
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == [(2, "core", ["_checks"])]          # from ..core import _checks


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_metrics_on_gpu_without_sync():
    logits, y = _random(n=1000, c=10)
    expected = {f.__name__: f(logits, y).item() for f in (accuracy, nll, ece)}
    lg, yg = logits.cuda(), y.cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = {f.__name__: f(lg, yg) for f in (accuracy, nll, ece)}
        r = reliability_bins(lg, yg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for k, v in out.items():
        assert v.device.type == "cuda"
        assert v.item() == pytest.approx(expected[k], abs=1e-5)
    assert r["count"].sum().item() == 1000


# ---------------------------------------------------------------------- overconfidence, smoothness
def test_overconfidence_sign_and_value():
    # two samples, both predicted class 0 with confidence 0.8; one is right: 0.8 - 0.5 = 0.3
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.8, 0.2]]))
    y = torch.tensor([0, 1])
    assert metrics.overconfidence(logits, y).item() == pytest.approx(0.3, abs=1e-6)
    # confident and always right: 0.8 - 1.0 = -0.2 (underconfident)
    assert metrics.overconfidence(logits, torch.tensor([0, 0])).item() == pytest.approx(-0.2, abs=1e-6)


def test_uncertain_fraction_counts_points_below_threshold():
    logits = torch.log(torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.5, 0.5], [0.01, 0.99]]))
    assert metrics.uncertain_fraction(logits, 0.9).item() == pytest.approx(0.5)
    assert metrics.uncertain_fraction(logits, 1.0).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="threshold"):
        metrics.uncertain_fraction(logits, 0.0)


def test_input_gradient_norm_matches_closed_form_for_logistic_model():
    # logits = [0, w.x] -> p1 = sigmoid(w.x), grad = p1 (1 - p1) w
    w = torch.tensor([[3.0, -4.0]])
    model = torch.nn.Linear(2, 1, bias=False)
    model.weight.data.copy_(w)
    two_class = torch.nn.Sequential(model, torch.nn.ConstantPad1d((1, 0), 0.0))
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    p1 = torch.sigmoid(x @ w.T).squeeze(1)
    expected = (p1 * (1 - p1) * 5.0).mean()
    got = metrics.input_gradient_norm(two_class, x, target_class=1)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    x_before = x.clone()
    metrics.input_gradient_norm(two_class, x)  # predicted class: same norm for two classes
    assert torch.equal(x, x_before)
    assert metrics.input_gradient_norm(two_class, x).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="target_class"):
        metrics.input_gradient_norm(two_class, x, target_class=2)
