"""The one transform base: every transform is its module's sampler plus declared hyper-parameters;
a per-call generator; a repr from the hyper-parameters; the same object as a training method."""

import pytest
import torch

import mixbook
from mixbook.training import data, models, population, train

TRANSFORMS = {
    "MixUp": lambda g: mixbook.MixUp(alpha=0.4, num_classes=3, pairing="flip", generator=g),
    "ZetaMixup": lambda g: mixbook.ZetaMixup(gamma=2.0, num_classes=3, n=9, generator=g),
    "MultiMix": lambda g: mixbook.MultiMix(alpha=1.0, num_classes=3, n=11, smoothing=0.1, generator=g),
    "CutMix": lambda g: mixbook.CutMix(alpha=1.0, num_classes=3, mode="elem", generator=g),
    "MixUpCutMix": lambda g: mixbook.MixUpCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=3, generator=g),
}


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 8, 8, generator=g), torch.arange(6) % 3


@pytest.mark.parametrize("name", TRANSFORMS)
def test_a_per_call_generator_draws_as_a_built_in_one_would(name):
    x, y = _batch()
    own = torch.Generator().manual_seed(5)
    t = TRANSFORMS[name](own)
    before = own.get_state()
    x1, y1 = t(x, y, generator=torch.Generator().manual_seed(9))
    assert torch.equal(own.get_state(), before)                    # the transform's own stream did not move
    x2, y2 = TRANSFORMS[name](torch.Generator().manual_seed(9))(x, y)
    torch.testing.assert_close(x1, x2)
    torch.testing.assert_close(y1, y2)
    x3, _ = t((x, y), generator=torch.Generator().manual_seed(9))   # packed inputs take it too
    torch.testing.assert_close(x3, x1)
    with pytest.raises(TypeError, match="generator"):
        t.sample(x, y, generator=3)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_repr_shows_every_declared_hyper_parameter(name):
    t = TRANSFORMS[name](None)
    assert type(t).hyper_parameters and type(t).sampler is not None
    text = repr(t)
    for hp in type(t).hyper_parameters:
        assert f"{hp}={getattr(t, hp)!r}" in text
    assert f"num_classes={t.num_classes}" in text and f"smoothing={t.smoothing}" in text


def test_the_transform_trains_as_the_registered_method_does():
    """fit(..., MixUp(...)) draws from fit's mixing stream: the same run as the registered "mixup"
    with soft targets, step for step."""
    split = data.two_moons(n_train=64, n_test=64, seed=0)
    kw = dict(epochs=2, batch_size=16, seed=3, device="cpu", progress=False)
    torch.manual_seed(0)
    a = train.fit(models.MLP(2, 2, (8,)), split, mixbook.MixUp(alpha=0.4, num_classes=2), **kw)
    torch.manual_seed(0)
    b = train.fit(models.MLP(2, 2, (8,)), split, train.make_method("mixup", alpha=0.4, loss="soft"), **kw)
    assert [e["train_loss"] for e in a.epochs] == [e["train_loss"] for e in b.epochs]
    with pytest.raises(ValueError, match="num_classes"):
        train.fit(models.MLP(2, 2, (8,)), split, mixbook.MixUp(alpha=0.4, num_classes=3), **kw)


def test_a_transform_is_a_population_member():
    split = data.two_moons(n_train=64, n_test=64, seed=0)
    t = mixbook.ZetaMixup(gamma=2.0, num_classes=2)
    assert population.supports(t, models.MLP(2, 2, (8,)))
    frame = population.repeat(lambda: models.MLP(2, 2, (8,)), split, {"zeta": t, "ERM": "erm"}, [0, 1], epochs=1,
                              batch_size=16, device="cpu", progress=False)
    assert set(frame.method) == {"zeta", "ERM"} and len(frame) == 4


def test_a_dense_transform_is_a_sampler_and_its_hyper_parameters():
    """DenseMixingTransform owns ``n``: a subclass declares its sampler and hyper-parameters only."""
    from mixbook.core.mixing import DenseMixingTransform, Mixing

    def uniform(x, y=None, *, generator=None, n=None):
        b = x.shape[0]
        return Mixing(batch_size=b, weights=torch.full((n or b, b), 1.0 / b))

    class Uniform(DenseMixingTransform):
        sampler = staticmethod(uniform)
        hyper_parameters = ("n",)

    t = Uniform(num_classes=3, n=5)
    x_mix, y_soft = t(torch.rand(4, 2), torch.tensor([0, 1, 2, 0]))
    assert x_mix.shape == (5, 2) and "n=5" in repr(t)
    torch.testing.assert_close(y_soft, torch.tensor([[0.5, 0.25, 0.25]]).expand(5, 3))
    assert Uniform(num_classes=3).n is None
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        Uniform(num_classes=3, n=0)
    assert isinstance(mixbook.ZetaMixup(num_classes=3), DenseMixingTransform)
    assert isinstance(mixbook.MultiMix(num_classes=3), DenseMixingTransform)
