"""The embedding-space MultiMix, dense MultiMix and CutMix training methods, `transform_at`,
the CIFAR ResNet-18 and the batch augmentation used by chapter 6."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mixbook
from mixbook.training import data, models, train
from mixbook.core import hooks, losses
from mixbook.methods import cutmix, multimix


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def images():
    g = _gen(0)
    return torch.randn(6, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])


# ---------------------------------------------------------------------- transform_at
def test_transform_at_replaces_the_output_and_may_change_the_batch():
    torch.manual_seed(0)
    model = models.MLP(3, 2, (5,))
    x = torch.randn(4, 3)
    w = multimix.weights(4, n=9, alpha=1.0, dtype=torch.float32, generator=_gen(1))
    out = hooks.transform_at(model, x, "features", lambda h: w @ h, batch_size=4)
    torch.testing.assert_close(out, model.head(w @ model.features(x)))
    assert out.shape == (9, 2)
    assert not model.features._forward_hooks
    torch.testing.assert_close(hooks.transform_at(model, x, "input", lambda t: 2 * t), model(2 * x))


def test_transform_at_errors():
    model = models.MLP(3, 2, (5,))
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="featurez"):
        hooks.transform_at(model, x, "featurez", lambda h: h)
    with pytest.raises(TypeError, match="fn must be callable"):
        hooks.transform_at(model, x, "features", None)
    with pytest.raises(TypeError, match="batch of 5"):
        hooks.transform_at(model, x, "features", lambda h: h, batch_size=5)
    with pytest.raises(TypeError, match="layer must be"):
        hooks.transform_at(model, x, 3, lambda h: h)
    assert not model.features._forward_hooks


# ---------------------------------------------------------------------- MultiMix in embedding space
def test_multimix_method_mixes_the_embedding_with_n_outputs(images):
    x, y = images
    before = x.clone()
    torch.manual_seed(0)
    model = models.SmallCNN(1, 3, width=4)
    method = train.make_method("multimix", alpha=1.0, n=50, clean=False)
    assert method.layers == ("features",) and method.options["layer"] == "features"
    loss = method.loss(model, x, y, 3, _gen(5))
    m = multimix.sample(x, y, n=50, alpha=1.0, generator=_gen(5))
    want = losses.soft_cross_entropy(model.head(m.apply(model.features(x))), m.targets(y, 3))
    torch.testing.assert_close(loss, want)
    # the default adds the clean cross-entropy
    clean = train.make_method("multimix", alpha=1.0, n=50).loss(model, x, y, 3, _gen(5))
    torch.testing.assert_close(clean, want + torch.nn.functional.cross_entropy(model(x), y))
    # at the input it is input MultiMix
    loss_in = train.make_method("multimix", n=50, layer="input", clean=False).loss(model, x, y, 3, _gen(5))
    torch.testing.assert_close(loss_in, losses.soft_cross_entropy(model(m.apply(x)), m.targets(y, 3)))


def test_multimix_method_bad_layer(images):
    x, y = images
    with pytest.raises(TypeError, match="layer"):
        train.make_method("multimix", layer=3)
    with pytest.raises(ValueError, match="nope"):
        train.make_method("multimix", layer="nope").loss(models.SmallCNN(1, 3, 4), x, y, 3, _gen(0))


# ---------------------------------------------------------------------- dense MultiMix
def test_dense_multimix_as_published_equals_a_loop_over_positions(images):
    """Per position j (paper's column convention): M^j = diag(a^j) Λ^j, columns ℓ1-normalised;
    z̃^j = Z^j M^j, Ỹ^j = Y M^j; the head at every position; CE averaged over the n·r terms."""
    x, y = images
    before = x.clone()
    torch.manual_seed(0)
    model = models.SmallCNN(1, 3, width=4)
    n, b = 5, x.shape[0]
    loss = train.make_method("dense_multimix", layer="features.6", n=n, alpha=0.5, clean=False).loss(model, x, y, 3, _gen(4))
    fmap = model.features[:7](x)                                     # (b, c, h, w)
    r = fmap.shape[2] * fmap.shape[3]
    lam = multimix.weights(b, n=r * n, alpha=0.5, dtype=torch.float32, generator=_gen(4)).reshape(r, n, b)
    a = multimix.cam_attention(fmap, model.head.weight, y)           # (b, r)
    Y = torch.nn.functional.one_hot(y, 3).float()                    # (b, C)
    terms = []
    for j in range(r):
        M = torch.diag(a[:, j]) @ lam[j].T                           # (b, n)
        M = M / M.sum(0, keepdim=True)
        z = fmap.flatten(2)[:, :, j].T @ M                           # (c, n)
        target = Y.T @ M                                             # (C, n)
        logits = model.head.weight @ z + model.head.bias[:, None]    # (C, n)
        terms.append(-(target * torch.log_softmax(logits, 0)).sum(0))
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert torch.equal(x, before)
    model.zero_grad()
    with_clean = train.make_method("dense_multimix", layer="features.6", n=n, alpha=0.5).loss(model, x, y, 3, _gen(4))
    torch.testing.assert_close(with_clean, torch.stack(terms).mean() + torch.nn.functional.cross_entropy(model(x), y))


def test_dense_multimix_targets_differ_per_position(images):
    x, y = images
    torch.manual_seed(0)
    model = models.SmallCNN(1, 3, width=4)
    fmap = model.features[:7](x)
    r = fmap.shape[2] * fmap.shape[3]
    lam = multimix.weights(x.shape[0], n=r * 4, alpha=1.0, dtype=torch.float64, generator=_gen(1)).reshape(r, 4, x.shape[0])
    w = multimix.dense_weights(lam, multimix.cam_attention(fmap.double(), model.head.weight.double(), y))
    t = multimix.dense_targets(torch.nn.functional.one_hot(y, 3).double(), w, per_position=True)
    assert t.shape == (r, 4, 3)
    torch.testing.assert_close(t.sum(-1), torch.ones(r, 4, dtype=torch.float64))
    assert (t.amax(0) - t.amin(0)).max() > 0.05                      # positions carry different targets
    with pytest.raises(ValueError, match="r ="):
        multimix.dense_weights(lam[:3], multimix.cam_attention(fmap.double(), model.head.weight.double(), y))


def test_dense_multimix_pooled_is_shared_weights_scored_after_pooling(images):
    x, y = images
    before = x.clone()
    torch.manual_seed(0)
    model = models.SmallCNN(1, 3, width=4)
    method = train.make_method("dense_multimix_pooled", layer="features.6", n=20, alpha=0.5, clean=False)
    loss = method.loss(model, x, y, 3, _gen(9))
    # by hand: the same draw, CAM from the head, per-position mixing, the rest of the network
    fmap = model.features[:7](x)
    base = multimix.weights(6, n=20, alpha=0.5, dtype=torch.float32, generator=_gen(9))
    w = multimix.dense_weights(base, multimix.cam_attention(fmap, model.head.weight, y))
    logits = model.head(model.features[7:](multimix.apply_dense(fmap, w)))
    want = losses.soft_cross_entropy(logits, multimix.dense_targets(losses.one_hot(y, 3), w))
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with_clean = train.make_method("dense_multimix_pooled", layer="features.6", n=20, alpha=0.5).loss(model, x, y, 3, _gen(9))
    torch.testing.assert_close(with_clean, want + torch.nn.functional.cross_entropy(model(x), y))


def test_dense_multimix_method_errors(images):
    x, y = images
    model = models.SmallCNN(1, 3, width=4)
    with pytest.raises(TypeError, match="layer"):
        train.make_method("dense_multimix", layer="input")
    with pytest.raises(TypeError, match="feature map"):
        train.make_method("dense_multimix", layer="features").loss(model, x, y, 3, _gen(0))
    with pytest.raises(TypeError, match="nn.Linear"):
        train.make_method("dense_multimix", layer="features.6", head="features").loss(model, x, y, 3, _gen(0))
    with pytest.raises(ValueError, match="alpha"):
        train.make_method("dense_multimix", layer="features.6", alpha=0.0)
    with pytest.raises(TypeError, match="clean"):
        train.make_method("dense_multimix", layer="features.6", clean="yes")
    with pytest.raises(TypeError, match="clean"):
        train.make_method("multimix", clean=1)


def test_dense_multimix_trains_on_digits_deterministically():
    d = data.digits()
    small = data.Split(d.x_train[:256], d.y_train[:256], d.x_test[:64], d.y_test[:64], num_classes=10, name="d")
    finals = []
    for _ in range(2):
        torch.manual_seed(0)
        hist = train.fit(models.SmallCNN(1, 10, 4), small, train.make_method("dense_multimix", layer="features.6", n=100),
                         epochs=2, batch_size=64, seed=0, device="cpu", progress=False)
        finals.append(hist.final["train_loss"])
    assert finals[0] == finals[1] and finals[0] == finals[0]


# ---------------------------------------------------------------------- CutMix reference
def test_cutmix_method_is_mixbooks_cutmix(images):
    """The registered "cutmix" is mixbook's own CutMix (mixbook.methods.cutmix.sample) drawn from fit's
    generator: the same box and targets as the CutMix transform with that generator, scored by
    soft-target cross-entropy; torch's global RNG and the input are untouched."""
    x, y = images
    before = x.clone()
    torch.manual_seed(0)
    model = models.SmallCNN(1, 3, width=4)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    loss = train.make_method("cutmix", alpha=1.0).loss(model, x, y, 3, _gen(0))
    assert torch.equal(torch.get_rng_state(), state)
    m = cutmix.sample(x, y, alpha=1.0, generator=_gen(0))
    xm, t = m.apply(x), m.targets(y, 3)
    assert not torch.equal(xm, x)                               # a box was pasted
    torch.testing.assert_close(loss, losses.soft_cross_entropy(model(xm), t))
    xt, tt = mixbook.CutMix(alpha=1.0, num_classes=3)(x, y, generator=_gen(0))
    torch.testing.assert_close(xt, xm) and torch.testing.assert_close(tt, t)
    assert torch.equal(x, before)  # not modified
    # the same generator state gives the same loss whatever the global seed; int32 labels work
    torch.manual_seed(999)
    again = train.make_method("cutmix", alpha=1.0).loss(model, x, y.int(), 3, _gen(0))
    assert torch.equal(loss, again)


def test_cutmix_method_needs_images():
    with pytest.raises(ValueError, match=r"H, W"):
        train.make_method("cutmix").loss(nn.Linear(2, 2), torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), 2, _gen(0))
    with pytest.raises(ValueError, match="alpha"):
        train.make_method("cutmix", alpha=-1.0)


# ---------------------------------------------------------------------- fit options
def test_fit_with_sgd_and_augmentation(images):
    d = data.digits()
    small = data.Split(d.x_train[:128], d.y_train[:128], d.x_test[:32], d.y_test[:32], num_classes=10, name="d")
    seen = []

    def augment(x, g):
        seen.append(x.shape[0])
        return data.random_crop_flip(x, g, padding=1)

    torch.manual_seed(0)
    hist = train.fit(models.SmallCNN(1, 10, 4), small, "erm", epochs=2, batch_size=64, lr=0.05,
                     weight_decay=5e-4, optimizer="sgd", augment=augment, device="cpu", progress=False)
    assert seen == [64, 64, 64, 64] and len(hist.epochs) == 2
    with pytest.raises(ValueError, match="optimizer"):
        train.fit(models.SmallCNN(1, 10, 4), small, "erm", optimizer="lbfgs", progress=False)
    with pytest.raises(TypeError, match="augment"):
        train.fit(models.SmallCNN(1, 10, 4), small, "erm", augment=3, progress=False)


# ---------------------------------------------------------------------- augmentation
def test_random_crop_flip_is_a_shifted_flipped_copy():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    out = data.random_crop_flip(x, _gen(0), padding=2)
    assert out.shape == x.shape and torch.equal(x, torch.arange(180, dtype=torch.float32).reshape(2, 3, 5, 6))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each output is one of the 5×5 crops of the padded image, maybe flipped
        crops = [padded[i, :, dy:dy + 5, dx:dx + 6] for dy in range(5) for dx in range(5)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.equal(out[i], c) for c in crops)
    assert torch.equal(data.random_crop_flip(x, _gen(0), padding=0, flip=False), x)
    # flips happen about half the time
    many = data.random_crop_flip(torch.arange(4.0).expand(2000, 1, 1, 4), _gen(1), padding=0)
    flipped = (many[:, 0, 0, 0] == 3).float().mean()
    assert 0.45 < flipped < 0.55


def test_random_crop_flip_shifts_are_uniform_over_the_range():
    """Pixel (p, p) of a crop is x[dy, dx]: every shift 0..2p occurs, each about 1/(2p+1) of the time."""
    p, n = 2, 4000
    x = (1 + torch.arange(64.0)).reshape(1, 1, 8, 8).expand(n, 1, 8, 8)
    out = data.random_crop_flip(x, _gen(2), padding=p, flip=False)
    code = out[:, 0, p, p].long() - 1
    dy, dx = code // 8, code % 8
    se = (0.2 * 0.8 / n) ** 0.5
    for shift in (dy, dx):
        freq = torch.bincount(shift, minlength=2 * p + 1).double() / n
        assert freq.shape == (2 * p + 1,)
        assert bool(((freq - 1 / (2 * p + 1)).abs() < 4 * se).all()), freq
    assert abs(float(torch.corrcoef(torch.stack([dy, dx]).double())[0, 1])) < 4 / n ** 0.5  # independent


def test_random_crop_flip_errors():
    with pytest.raises(ValueError, match="x must be"):
        data.random_crop_flip(torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        data.random_crop_flip(torch.zeros(2, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty batch"):
        data.random_crop_flip(torch.empty(0, 3, 4, 4))
    with pytest.raises(ValueError, match="padding"):
        data.random_crop_flip(torch.randn(2, 1, 4, 4), padding=-1)
    with pytest.raises(TypeError, match="padding"):
        data.random_crop_flip(torch.randn(2, 1, 4, 4), padding=2.0)
    with pytest.raises(TypeError, match="flip"):
        data.random_crop_flip(torch.randn(2, 1, 4, 4), flip=1)


# ---------------------------------------------------------------------- CIFAR ResNet-18
def test_cifar_resnet18_shapes_and_paths():
    torch.manual_seed(0)
    model = models.CifarResNet18(num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    assert model.features[:5](x).shape == (2, 512, 4, 4)
    assert model.features(x).shape == (2, 512)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 7
    method = train.make_method("dense_multimix", layer="features.4", n=5)
    loss = method.loss(model, x, torch.tensor([0, 6]), 7, _gen(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="num_classes"):
        models.CifarResNet18(num_classes=0)
