"""Manifold mixup: the hook, its equivalences, the gradient decomposition, flatness, training."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
import torchvision
from scipy import stats
from torch import nn

from _stats import cpu_gen
from mixbook.training import data, models, train
from mixbook.core import losses, registry
from mixbook.methods import manifold, mixup
from mixbook.chapters import manifold_gradient
from mixbook.methods.manifold import ManifoldMixup
from mixbook.chapters.manifold_gradient import decomposed_loss, gradient_terms
from mixbook.training.metrics import flatness
from mixbook.core.mixing import Mixing

MLP_LAYERS = ["input", "features.1", "features.3"]


def _mlp(seed: int = 0, num_classes: int = 3) -> models.MLP:
    torch.manual_seed(seed)
    return models.MLP(2, num_classes, (8, 8))


def _batch(b: int = 6, c: int = 3, seed: int = 0, shape=(2,), dtype=torch.float32):
    g = cpu_gen(seed)
    return torch.randn(b, *shape, generator=g, dtype=dtype), torch.randint(0, c, (b,), generator=g)


def _all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ====================================================================== hooks never leak
class Boom(nn.Module):
    """A model whose forward raises after the hooked module has run."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        self.features(x)
        raise RuntimeError("boom inside forward")


def test_hooks_removed_after_exception_in_forward():
    model = Boom()
    mm = ManifoldMixup(model, ["features.0", "features"], generator=cpu_gen(0))
    x, y = _batch(c=2)
    for _ in range(4):
        with pytest.raises(RuntimeError, match="boom inside forward"):
            mm(x, y)
        assert mm.last_layer in ("features.0", "features")
        assert len(model.features._forward_hooks) == 0 and len(model.features[0]._forward_hooks) == 0
        assert _all_hooks(model) == 0


class TupleOut(nn.Module):
    def forward(self, x):
        return x, x


class Net(nn.Module):
    """Hooks on odd modules: a tuple output, a non-batch output, a shared activation, an unused one."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = TupleOut()
        self.lin = nn.Linear(2, 3)
        self.act = nn.Tanh()
        self.unused = nn.Linear(3, 3)
        self.stat = nn.Identity()
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        x, _ = self.pair(x)
        h = self.act(self.lin(x))
        h = self.act(h)  # the same module twice
        h = h + self.stat(h.mean(0))  # an output without the batch dimension
        return self.head(h)


@pytest.mark.parametrize("layer, error, match", [
    ("pair", TypeError, "returned a tuple"),
    ("stat", TypeError, "batch of 6 first"),
    ("act", RuntimeError, "called more than once"),
    ("unused", RuntimeError, "never called"),
])
def test_bad_hooked_modules_raise_and_leave_no_hook(layer, error, match):
    model = Net()
    mm = ManifoldMixup(model, [layer], generator=cpu_gen(1))
    x, y = _batch(c=2)
    with pytest.raises(error, match=match):
        mm(x, y)
    assert _all_hooks(model) == 0
    # A good layer still works on the same model afterwards.
    logits, m = ManifoldMixup(model, ["lin"], generator=cpu_gen(1))(x, y)
    assert logits.shape == (6, 2) and _all_hooks(model) == 0


def test_no_hook_left_and_inputs_untouched_after_a_normal_call():
    model = _mlp()
    x, y = _batch()
    x0 = x.clone()
    mm = ManifoldMixup(model, MLP_LAYERS, generator=cpu_gen(0))
    for _ in range(6):
        logits, m = mm(x, y)
        assert logits.shape == (6, 3) and isinstance(m, Mixing) and m.is_pairwise
    assert _all_hooks(model) == 0 and torch.equal(x, x0)
    assert type(model) is models.MLP and type(model).forward is models.MLP.forward


# ====================================================================== equivalences
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_sample", [False, True])
def test_input_layer_is_input_mixup(seed, per_sample):
    model = _mlp(seed)
    x, y = _batch(8, seed=seed)
    mm = ManifoldMixup(model, ["input"], alpha=0.4, per_sample=per_sample, generator=cpu_gen(seed))
    logits, m = mm(x, y)
    ref = mixup.sample(x, y, alpha=0.4, per_sample=per_sample, generator=cpu_gen(seed))
    assert torch.equal(m.partner, ref.partner) and torch.equal(m.lam, ref.lam)
    assert mm.last_layer == "input"
    assert torch.equal(logits, model(ref.apply(x)))
    assert not torch.allclose(logits, model(x))  # it did mix


def _mlp_by_hand(model, x, m, layer):
    f = model.features
    if layer == "features":  # the embedding
        return model.head(m.apply(f(x)))
    k = int(layer.split(".")[1]) + 1
    return model.head(f[k:](m.apply(f[:k](x))))


@pytest.mark.parametrize("layer", ["features.1", "features.2", "features.3", "features"])
def test_hidden_layer_equals_running_the_halves_by_hand(layer):
    model = _mlp(3)
    x, y = _batch(8, seed=3)
    logits, m = ManifoldMixup(model, [layer], alpha=1.0, generator=cpu_gen(3))(x, y)
    assert torch.equal(logits, _mlp_by_hand(model, x, m, layer))
    # One representative of each other class of layers (an affine layer mixes like its input).
    kind = {"features.1": 0, "features.2": 1, "features.3": 1, "features": 2}
    others = [l for l in ["features.1", "features.2", "features"] if kind[l] != kind[layer]]
    for other in others:  # mixing elsewhere gives other logits (the comparison can fail)
        assert not torch.allclose(logits, _mlp_by_hand(model, x, m, other))


def test_mixing_after_an_affine_layer_is_mixing_before_it():
    """A convex combination commutes with an affine map: in the MLP, mixing the output of
    features.1 (the first Linear) is input mixup, and features.3 is features.2 (post-ReLU)."""
    model = _mlp(3)
    x, y = _batch(8, seed=3)
    m = mixup.sample(x, y, alpha=1.0, generator=cpu_gen(3))
    mm = ManifoldMixup(model, ["input"])
    out = {layer: mm.mix_at(x, m, layer) for layer in ["input", "features.1", "features.2", "features.3"]}
    torch.testing.assert_close(out["features.1"], out["input"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out["features.3"], out["features.2"], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out["features.2"], out["input"], atol=1e-3)  # ReLU is not affine


def test_mix_at_with_a_dense_mixing_changes_the_batch_there():
    model = _mlp(4)
    x, _ = _batch(5, seed=4)
    w = torch.softmax(torch.randn(7, 5, generator=cpu_gen(4)), 1)
    m = Mixing.from_dense(w)
    out = ManifoldMixup(model, ["features.3"]).mix_at(x, m, "features.3")
    assert out.shape == (7, 3)
    torch.testing.assert_close(out, _mlp_by_hand(model, x, m, "features.3"))
    # mix_at accepts any valid path, and checks it.
    torch.testing.assert_close(ManifoldMixup(model, ["input"]).mix_at(x, m, "features"), _mlp_by_hand(model, x, m, "features"))
    with pytest.raises(ValueError, match="'features.7'"):
        ManifoldMixup(model, ["input"]).mix_at(x, m, "features.7")


def test_targets_match_the_mixing():
    model = _mlp(5)
    x, y = _batch(10, seed=5)
    mm = ManifoldMixup(model, MLP_LAYERS, per_sample=True, generator=cpu_gen(5))
    for _ in range(3):
        logits, m = mm(x, y)
        oh = F.one_hot(y, 3).float()
        lam = m.lam[:, None]
        expected = lam * oh + (1 - lam) * oh[m.partner]
        torch.testing.assert_close(m.targets(y, 3), expected)
        assert not torch.equal(expected, oh)  # mixed labels, not the original ones
        soft = losses.soft_cross_entropy(logits, m.targets(y, 3))
        mixed = losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam)
        torch.testing.assert_close(soft, mixed)


def test_batch_of_one_is_a_no_op():
    model = _mlp(6)
    x, y = _batch(1, seed=6)
    mm = ManifoldMixup(model, MLP_LAYERS, generator=cpu_gen(6))
    for _ in range(4):
        logits, m = mm(x, y)
        torch.testing.assert_close(logits, model(x))


# ====================================================================== the layer choice
def test_layer_choice_is_uniform_and_reproducible():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    x, y = _batch(4, c=2)
    layers = ["input", "0", "1", "2"]
    mm = ManifoldMixup(model, layers, seed=7)
    seq = []
    for _ in range(2000):
        mm(x, y)
        seq.append(mm.last_layer)
    counts = Counter(seq)
    assert set(counts) == set(layers)
    assert stats.chisquare([counts[l] for l in layers]).pvalue > 1e-3
    twin = ManifoldMixup(model, layers, seed=7)
    assert [twin(x, y) and twin.last_layer for _ in range(200)] == seq[:200]
    other = ManifoldMixup(model, layers, seed=8)
    assert [other(x, y) and other.last_layer for _ in range(200)] != seq[:200]
    # The layer sequence does not depend on the generator of λ.
    g = ManifoldMixup(model, layers, seed=7, generator=cpu_gen(123))
    assert [g(x, y) and g.last_layer for _ in range(50)] == seq[:50]
    assert ManifoldMixup(model, layers).last_layer is None


# ====================================================================== bad arguments
def test_bad_layer_names():
    model = _mlp()
    for bad, hint in [("features.9", None), ("feature", "features"), ("head.weight", None), ("", None)]:
        with pytest.raises(ValueError, match=f"layers: '{re.escape(bad)}' is not a submodule of MLP") as err:
            ManifoldMixup(model, ["input", bad])
        assert "features.1" in str(err.value) and "'input'" in str(err.value)
        if hint:
            assert f"did you mean '{hint}'" in str(err.value)
    net = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(ValueError, match="'layer5'.*did you mean 'layer4'.*'layer1'.*68 in all"):
        ManifoldMixup(net, ["layer1", "layer5"])
    with pytest.raises(TypeError, match="sequence of module paths"):
        ManifoldMixup(model, "features.1")
    with pytest.raises(TypeError, match="module paths"):
        ManifoldMixup(model, ["input", 1])
    with pytest.raises(ValueError, match="at least one"):
        ManifoldMixup(model, [])
    with pytest.raises(ValueError, match="twice"):
        ManifoldMixup(model, ["input", "input"])
    with pytest.raises(TypeError, match="model"):
        ManifoldMixup(lambda x: x, ["input"])
    with pytest.raises(ValueError, match="alpha"):
        ManifoldMixup(model, ["input"], alpha=0.0)
    with pytest.raises(TypeError, match="per_sample"):
        ManifoldMixup(model, ["input"], per_sample=1)
    with pytest.raises(TypeError, match="generator"):
        ManifoldMixup(model, ["input"], generator=0)
    with pytest.raises(TypeError, match="seed"):
        ManifoldMixup(model, ["input"], seed=1.5)
    with pytest.raises(ValueError, match="pairing"):
        ManifoldMixup(model, ["input"], pairing="nope")
    x, y = _batch()
    with pytest.raises(ValueError, match="y must have batch size 6"):
        ManifoldMixup(model, ["input"])(x, y[:3])
    with pytest.raises(TypeError, match="mixing"):
        ManifoldMixup(model, ["input"]).mix_at(x, "m", "input")
    assert _all_hooks(model) == 0


# ====================================================================== other architectures
def _resnet(seed: int = 0):
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=10)


def _resnet_by_hand(net, x, m, layer):
    h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(net, name)(h)
        if name == layer:
            h = m.apply(h)
    return net.fc(torch.flatten(net.avgpool(h), 1))


def test_resnet18():
    net = _resnet()
    x, y = _batch(2, c=10, shape=(3, 32, 32), seed=8)
    layers = ["layer1", "layer2", "layer3"]
    mm = ManifoldMixup(net, layers, alpha=2.0, generator=cpu_gen(8))
    net.eval()
    m = Mixing.pairwise(torch.tensor([1, 0]), torch.tensor([0.3, 0.6]))
    with torch.no_grad():
        outs = {}
        for layer in layers:
            outs[layer] = mm.mix_at(x, m, layer)
            torch.testing.assert_close(outs[layer], _resnet_by_hand(net, x, m, layer), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(outs["layer1"], outs["layer3"])
    net.train()
    seen = set()
    for _ in range(6):
        net.zero_grad()
        logits, m = mm(x, y)
        seen.add(mm.last_layer)
        assert logits.shape == (2, 10)
        losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam).backward()
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in net.parameters())
        assert _all_hooks(net) == 0
    assert seen <= set(layers) and len(seen) >= 2


def test_small_cnn():
    torch.manual_seed(10)
    cnn = models.SmallCNN(in_channels=1, num_classes=10, width=4)
    x, y = _batch(5, c=10, shape=(1, 8, 8), seed=10)
    mm = ManifoldMixup(cnn, ["input", "features.4", "features"], generator=cpu_gen(10))
    m = mixup.sample(x, y, alpha=2.0, generator=cpu_gen(11))
    f = cnn.features
    torch.testing.assert_close(mm.mix_at(x, m, "features.4"), cnn.head(f[5:](m.apply(f[:5](x)))))
    torch.testing.assert_close(mm.mix_at(x, m, "features"), cnn.head(m.apply(f(x))))
    torch.testing.assert_close(mm.mix_at(x, m, "input"), cnn(m.apply(x)))
    # Average pooling and flattening are linear: mixing after features.6 (ReLU) is mixing the embedding,
    # while max-pooling is not: features.4 differs from features.3.
    torch.testing.assert_close(mm.mix_at(x, m, "features.6"), mm.mix_at(x, m, "features"), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(mm.mix_at(x, m, "features.4"), mm.mix_at(x, m, "features.3"), atol=1e-4)
    logits, m = mm(x, y)
    losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam).backward()
    assert cnn.features[0].weight.grad is not None and _all_hooks(cnn) == 0


# ====================================================================== gradient terms
D, H, K = 3, 5, 2


def _f_and_g(seed: int = 0):
    torch.manual_seed(seed)
    feature = nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh()).double()
    head = nn.Linear(H, K).double()
    return feature, head


def _pair_data(b: int | None, seed: int = 0):
    g = cpu_gen(100 + seed)
    shape = (D,) if b is None else (b, D)
    yshape = (K,) if b is None else (b, K)
    return (torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64),
            torch.randn(yshape, generator=g, dtype=torch.float64), torch.randn(yshape, generator=g, dtype=torch.float64))


def _plain_loss(feature, head, x1, x2, y1, y2, lam):
    """The manifold-mixup squared loss by hand, averaged over a batch."""
    if x1.ndim == 1:
        x1, x2, y1, y2 = x1[None], x2[None], y1[None], y2[None]
    lam = torch.as_tensor(lam, dtype=torch.float64).reshape(-1, 1)
    out = head(lam * feature(x1) + (1 - lam) * feature(x2))
    return 0.5 * ((lam * y1 + (1 - lam) * y2 - out) ** 2).sum(1).mean()


def _grad(loss, params, retain_graph=False):
    params = list(params)
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


LAMS = [0.0, 0.2, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("b", [None, 4])
def test_gradient_terms_sum_to_the_autograd_gradient(lam, b):
    feature, head = _f_and_g(1)
    x1, x2, y1, y2 = _pair_data(b, 1)
    t = gradient_terms(feature, head, x1, x2, y1, y2, lam)
    n_params = sum(p.numel() for p in feature.parameters())
    assert set(t) == {"usual_1", "usual_2", "cross_1", "cross_2", "usual", "cross", "total"}
    assert all(v.shape == (n_params,) and v.dtype == torch.float64 and not v.requires_grad for v in t.values())
    reference = _grad(_plain_loss(feature, head, x1, x2, y1, y2, lam), feature.parameters())
    assert _rel(t["total"], reference) < 1e-12
    total = t["usual_1"] + t["usual_2"] + t["cross_1"] + t["cross_2"]
    assert _rel(total, t["total"]) < 1e-10
    assert torch.equal(t["usual"], t["usual_1"] + t["usual_2"]) and torch.equal(t["cross"], t["cross_1"] + t["cross_2"])
    if lam in (0.0, 1.0):
        assert float(t["cross"].norm()) == 0.0
        assert float(t["usual_1" if lam == 0 else "usual_2"].norm()) == 0.0
    else:  # the cross terms matter: the usual terms alone are not the gradient
        assert _rel(t["usual"], t["total"]) > 1e-3
    assert all(p.grad is None for p in [*feature.parameters(), *head.parameters()])


def _jacobian(feature, head, x):
    """J(x) = ∂G(F(x))/∂θ_F, (K, P), one output at a time."""
    out = head(feature(x[None]))[0]
    return torch.stack([_grad(out[j], feature.parameters(), retain_graph=True) for j in range(K)])


@pytest.mark.parametrize("lam", [0.3, 0.9])
def test_each_gradient_term_is_its_jacobian_product(lam):
    feature, head = _f_and_g(2)
    x1, x2, y1, y2 = _pair_data(None, 2)
    t = gradient_terms(feature, head, x1, x2, y1, y2, lam)
    J1, J2 = _jacobian(feature, head, x1), _jacobian(feature, head, x2)
    with torch.no_grad():
        r1, r2 = y1 - head(feature(x1[None]))[0], y2 - head(feature(x2[None]))[0]
    mu = 1 - lam
    expected = {"usual_1": -lam**2 * J1.T @ r1, "usual_2": -mu**2 * J2.T @ r2,
                "cross_1": -lam * mu * J2.T @ r1, "cross_2": -lam * mu * J1.T @ r2}
    for name, value in expected.items():
        assert _rel(t[name], value) < 1e-10, name
    assert _rel(t["cross_1"], expected["cross_2"]) > 1e-3  # the two cross terms differ


def test_batched_gradient_terms_are_the_mean_of_single_ones():
    feature, head = _f_and_g(3)
    x1, x2, y1, y2 = _pair_data(4, 3)
    lam = torch.tensor([0.0, 0.3, 0.6, 1.0], dtype=torch.float64)
    batched = gradient_terms(feature, head, x1, x2, y1, y2, lam)
    singles = [gradient_terms(feature, head, x1[i], x2[i], y1[i], y2[i], float(lam[i])) for i in range(4)]
    for name, value in batched.items():
        torch.testing.assert_close(value, torch.stack([s[name] for s in singles]).mean(0), atol=1e-14, rtol=0)


def test_exact_fit_of_both_pairs_zeroes_the_gradient_not_the_interpolation_error():
    """F(x) = tanh(A x), G fitted by least squares to both pairs: r = r' = 0, so every term and
    the gradient vanish at every λ, and the loss along the *hidden* segment is zero, while along
    the *input* segment G(F(λx1 + (1−λ)x2)) is far from λy1 + (1−λ)y2."""
    A = torch.tensor([[3.0, 0.5], [-1.0, 2.5], [2.0, -2.0]], dtype=torch.float64)
    feature = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Tanh()).double()
    head = nn.Linear(3, 2).double()
    with torch.no_grad():
        feature[0].weight.copy_(A)
    x1 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    x2 = torch.tensor([-0.5, 1.0], dtype=torch.float64)
    y1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    y2 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        Hmat = torch.cat([feature(torch.stack([x1, x2])), torch.ones(2, 1, dtype=torch.float64)], 1)  # (2, 4)
        Wc = torch.linalg.pinv(Hmat) @ torch.stack([y1, y2])  # minimum-norm exact solution (4, 2)
        head.weight.copy_(Wc[:3].T)
        head.bias.copy_(Wc[3])
        assert float((head(feature(torch.stack([x1, x2]))) - torch.stack([y1, y2])).abs().max()) < 1e-12
    lams = torch.linspace(0, 1, 21, dtype=torch.float64)
    for lam in lams.tolist():
        t = gradient_terms(feature, head, x1, x2, y1, y2, lam)
        assert all(float(v.norm()) < 1e-12 for v in t.values())
        assert float(decomposed_loss(feature, head, x1, x2, y1, y2, lam).detach()) < 1e-24
    with torch.no_grad():
        xs = lams[:, None] * x1 + (1 - lams[:, None]) * x2
        err = (head(feature(xs)) - (lams[:, None] * y1 + (1 - lams[:, None]) * y2)).norm(dim=1)
    assert float(err.max()) > 0.1
    assert float(err[0]) < 1e-12 and float(err[-1]) < 1e-12


# ====================================================================== gradient surgery
@pytest.mark.parametrize("keep", ["all", "usual", "cross", "none"])
@pytest.mark.parametrize("lam_kind", ["float", "tensor"])
def test_decomposed_loss_gradients(keep, lam_kind):
    feature, head = _f_and_g(4)
    x1, x2, y1, y2 = _pair_data(6, 4)
    lam = 0.35 if lam_kind == "float" else torch.tensor([0.0, 0.1, 0.35, 0.5, 0.9, 1.0], dtype=torch.float64)
    t = gradient_terms(feature, head, x1, x2, y1, y2, lam)
    loss = decomposed_loss(feature, head, x1, x2, y1, y2, lam, keep=keep)
    plain = _plain_loss(feature, head, x1, x2, y1, y2, lam)
    torch.testing.assert_close(loss, plain, atol=1e-14, rtol=0)  # the value is the loss itself
    n_f = sum(p.numel() for p in feature.parameters())
    params = [*feature.parameters(), *head.parameters()]
    sizes = [n_f, sum(p.numel() for p in head.parameters())]
    g_f, g_g = _grad(loss, params).split(sizes)
    p_f, p_g = _grad(plain, params).split(sizes)
    expected_f = {"all": t["total"], "usual": t["usual"], "cross": t["cross"], "none": torch.zeros_like(t["total"])}[keep]
    torch.testing.assert_close(g_f, expected_f, atol=1e-10, rtol=0)
    torch.testing.assert_close(g_g, p_g, atol=1e-10, rtol=0)  # G: the full manifold-mixup gradient
    if keep == "all":
        torch.testing.assert_close(g_f, p_f, atol=1e-10, rtol=0)
    else:
        assert float((g_f - p_f).norm()) > 1e-4  # the surgery changed F's gradient


def test_gradient_argument_errors():
    feature, head = _f_and_g()
    x1, x2, y1, y2 = _pair_data(3)
    with pytest.raises(TypeError, match="head must be a torch.nn.Linear"):
        gradient_terms(feature, nn.Sequential(head), x1, x2, y1, y2, 0.5)
    with pytest.raises(ValueError, match="lam must be in"):
        gradient_terms(feature, head, x1, x2, y1, y2, 1.5)
    with pytest.raises(ValueError, match="lam must lie in"):
        decomposed_loss(feature, head, x1, x2, y1, y2, torch.tensor([0.5, -0.1, 0.2], dtype=torch.float64))
    with pytest.raises(ValueError, match="lam must be a float or have shape"):
        gradient_terms(feature, head, x1, x2, y1, y2, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="y1 must have shape"):
        gradient_terms(feature, head, x1, x2, y1[:, :1], y2, 0.5)
    with pytest.raises(ValueError, match="x1 and x2"):
        gradient_terms(feature, head, x1, x2[:2], y1, y2, 0.5)
    with pytest.raises(ValueError, match="keep must be one of"):
        decomposed_loss(feature, head, x1, x2, y1, y2, 0.5, keep="both")
    with pytest.raises(ValueError, match="no parameters"):
        gradient_terms(nn.Identity(), nn.Linear(D, K).double(), x1, x2, y1, y2, 0.5)


# ====================================================================== flatness
def _class_data(n_per: int, d: int, rank: int, classes: int = 3, seed: int = 0):
    """Class c: a random mean plus isotropic noise in a random rank-``rank`` subspace of R^d."""
    g = cpu_gen(seed)
    feats, labels = [], []
    for c in range(classes):
        basis = torch.linalg.qr(torch.randn(d, rank, generator=g, dtype=torch.float64))[0]  # (d, rank)
        z = torch.randn(n_per, rank, generator=g, dtype=torch.float64) @ basis.T
        feats.append(5 * torch.randn(d, generator=g, dtype=torch.float64) + z)
        labels.append(torch.full((n_per,), c))
    return torch.cat(feats).float(), torch.cat(labels)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_flatness_counts_the_directions_of_each_class(rank):
    d = 8
    x, y = _class_data(4000, d, rank)
    out = flatness(x, y)
    assert out["classes"].tolist() == [0, 1, 2]
    sv = out["singular_values"]
    assert sv.shape == (3, d) and sv.dtype == torch.float64
    torch.testing.assert_close(sv.sum(1), torch.ones(3, dtype=torch.float64))
    assert bool((sv[:, :-1] >= sv[:, 1:]).all())
    assert float(sv[:, rank:].max()) < 1e-5
    assert out["effective_rank"].shape == (3,)
    assert out["mean_effective_rank"] == pytest.approx(rank, abs=0.1)
    assert isinstance(out["mean_effective_rank"], float)


def test_flatness_isotropic_and_edge_cases():
    d = 6
    g = cpu_gen(1)
    x = torch.randn(6000, d, generator=g)
    y = torch.randint(0, 2, (6000,), generator=g)
    assert flatness(x, y)["mean_effective_rank"] == pytest.approx(d, abs=0.1)
    # Stretching one direction makes the classes flatter: a smaller effective rank.
    assert flatness(x * torch.tensor([10.0, 1, 1, 1, 1, 1]), y)["mean_effective_rank"] < 0.8 * d
    # A singleton class is skipped, a class of identical points has effective rank 0.
    x2 = torch.cat([x[:10], torch.ones(3, d), torch.zeros(1, d)])
    y2 = torch.cat([torch.zeros(10, dtype=torch.long), torch.full((3,), 5), torch.full((1,), 7)])
    out = flatness(x2, y2)
    assert out["classes"].tolist() == [0, 5]
    assert float(out["effective_rank"][1]) == 0.0 and out["singular_values"].shape == (2, d)
    assert float(out["singular_values"][0, 6 - 1]) > 0  # 10 points in R^6: full rank, padded to d
    with pytest.raises(ValueError, match="features must have shape"):
        flatness(x[:, 0], y)
    with pytest.raises(ValueError, match="labels must have batch size"):
        flatness(x, y[:5])
    with pytest.raises(TypeError, match="labels must hold integer"):
        flatness(x, y.float())
    with pytest.raises(ValueError, match="two or more"):
        flatness(x[:2], torch.tensor([0, 1]))


# ====================================================================== training
@pytest.fixture(scope="module")
def moons():
    return data.two_moons(n_train=128, n_test=64, seed=0)


def _fit(moons, method, seed=0, epochs=3):
    torch.manual_seed(seed)
    model = models.MLP(2, 2, (16, 16))
    hist = train.fit(model, moons, method, epochs=epochs, batch_size=32, lr=1e-2, seed=seed,
                     device="cpu", progress=False)
    return model, hist


def test_registered_method_trains_deterministically(moons):
    assert registry.SPECS["manifold_mixup"] is manifold.spec
    make = lambda **kw: train.make_method("manifold_mixup", layers=MLP_LAYERS, **kw)  # noqa: E731
    m1, h1 = _fit(moons, make())
    m2, h2 = _fit(moons, make())
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    losses_1 = [e["train_loss"] for e in h1.epochs]
    assert losses_1 == [e["train_loss"] for e in h2.epochs] and all(math.isfinite(v) for v in losses_1)
    assert h1.method == "manifold_mixup(layers=['input', 'features.1', 'features.3'], alpha=2.0, per_sample=False, seed=0)"
    _, h3 = _fit(moons, make(seed=1))  # another layer sequence, same λ stream
    assert h3.final["train_loss"] != h1.final["train_loss"]
    # The same method object on a second model starts the layer sequence again: same run.
    method = make()
    _, h4 = _fit(moons, method)
    _, h5 = _fit(moons, method)
    assert [e["train_loss"] for e in h4.epochs] == [e["train_loss"] for e in h5.epochs] == losses_1


def test_input_only_method_is_input_mixup(moons):
    _, a = _fit(moons, train.make_method("manifold_mixup", layers=["input"], alpha=0.5))
    _, b = _fit(moons, train.make_method("mixup", alpha=0.5))
    assert [e["train_loss"] for e in a.epochs] == [e["train_loss"] for e in b.epochs]


def test_method_arguments(moons):
    with pytest.raises(TypeError, match="layers"):
        train.make_method("manifold_mixup", layers="features.1")
    with pytest.raises(TypeError, match="layers"):
        train.make_method("manifold_mixup", layers=[])
    with pytest.raises(ValueError, match="alpha"):
        train.make_method("manifold_mixup", layers=["input"], alpha=-1.0)
    with pytest.raises(ValueError, match="'features.8' is not a submodule"):
        _fit(moons, train.make_method("manifold_mixup", layers=["features.8"]), epochs=1)


def test_module_exports():
    assert set(manifold.__all__) <= set(dir(manifold))
    assert manifold.INPUT == "input" and manifold_gradient.KEEP == ("all", "usual", "cross", "none")


# ---------------------------------------------------------------------- fit_decomposed
def _toy_regression():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 2, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:])
    return x[:64], y[:64], x[64:], y[64:]


def _toy_model(seed=0):
    torch.manual_seed(seed)
    return (torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh()).double(),
            torch.nn.Linear(16, 1).double())


@pytest.mark.parametrize("mode", manifold_gradient.MODES)
def test_fit_decomposed_runs_and_is_deterministic(mode):
    x, y, xt, yt = _toy_regression()
    runs = []
    for _ in range(2):
        f, g = _toy_model()
        runs.append(manifold_gradient.fit_decomposed(f, g, x, y, xt, yt, mode=mode, epochs=3, batch_size=16, lr=1e-2, seed=3))
    assert runs[0].equals(runs[1])
    h = runs[0]
    assert list(h.epoch) == [1, 2, 3]
    assert (h.usual_norm > 0).all() and (h.cross_norm >= 0).all()
    assert h.test_accuracy.isna().all()  # regression targets: no accuracy


def test_fit_decomposed_erm_learns_and_classification_accuracy():
    x, y, xt, yt = _toy_regression()
    f, g = _toy_model()
    h = manifold_gradient.fit_decomposed(f, g, x, y, xt, yt, mode="erm", epochs=60, batch_size=16, lr=1e-2)
    assert h.test_mse.iloc[-1] < 0.5 * h.test_mse.iloc[0]
    labels = (y[:, 0] > 0).long()
    onehot = torch.nn.functional.one_hot(labels, 2).double()
    f, _ = _toy_model()
    h = manifold_gradient.fit_decomposed(f, torch.nn.Linear(16, 2).double(), x, onehot, x, onehot, mode="all", epochs=2,
                                batch_size=16)
    assert h.test_accuracy.between(0, 1).all()


def test_fit_decomposed_bad_arguments():
    x, y, xt, yt = _toy_regression()
    f, g = _toy_model()
    with pytest.raises(ValueError, match="mode"):
        manifold_gradient.fit_decomposed(f, g, x, y, xt, yt, mode="some")
    with pytest.raises(ValueError, match="y must be"):
        manifold_gradient.fit_decomposed(f, g, x, y[:, 0], xt, yt, mode="erm")
    with pytest.raises(ValueError, match="y_test"):
        manifold_gradient.fit_decomposed(f, g, x, y, xt, yt[:-1], mode="erm")


def test_the_class_and_the_registered_method_are_one_manifold_mixup():
    """ManifoldMixup draws from the registered spec with the same layer draw: for the same generator
    and seed, the class and the training method pick the same λ, partners and layers."""
    torch.manual_seed(0)
    model = models.MLP(2, 2, (8, 8))
    mm = ManifoldMixup(model, MLP_LAYERS, alpha=0.7, seed=3)
    method = train.make_method("manifold_mixup", layers=MLP_LAYERS, alpha=0.7, seed=3)
    assert mm.spec.sampler is method.sampler is mixup.sample
    assert {k: v for k, v in mm.spec.hyper_parameters.items() if k != "pairing"} == method.hp
    x, y = torch.randn(16, 2), torch.arange(16) % 2
    chosen = set()
    for step in range(12):
        m, layer = mm.draw(x, y, generator=cpu_gen(step))
        s = method.prepare(model, x, y, 2, cpu_gen(step))
        chosen.add(layer)
        assert s.layer == layer
        if layer == "input":
            torch.testing.assert_close(s.inputs, m.apply(x), rtol=0, atol=0)
        else:
            assert torch.equal(s.args[0], m.partner) and torch.equal(s.args[1], m.lam)
    assert len(chosen) > 1
