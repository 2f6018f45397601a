"""One sampler contract: every ``sample`` is ``sample(x, y=None, *, generator=None, **hp) -> Mixing``,
and every weights builder is ``weights(b, *, <hp>, n=None, device, dtype, generator)``; so a
``functools.partial`` of either, with its hyper-parameters, is a sampler wherever one is taken."""

import functools
import inspect

import pytest
import torch

from mixbook.methods import cutmix, multimix, mixup, reformulation, zeta
from mixbook.chapters import synthetic
from mixbook.core.mixing import Mixing

SAMPLERS = {
    "mixup.sample": (mixup.sample, {"alpha": 0.4}),
    "reformulation.sample": (reformulation.sample, {"alpha": 0.4}),
    "zeta.sample": (zeta.sample, {"gamma": 2.8}),
    "multimix.sample": (multimix.sample, {"alpha": 1.0, "n": 12}),
    "cutmix.sample": (cutmix.sample, {"alpha": 1.0}),
    "cutmix.sample_switch": (cutmix.sample_switch, {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_signature(name):
    fn, _ = SAMPLERS[name]
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params[:2]] == ["x", "y"], name
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and params[0].default is inspect.Parameter.empty
    assert params[1].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and params[1].default is None
    if params[-1].kind is inspect.Parameter.VAR_KEYWORD:      # options forwarded to a sibling sampler
        params = params[:-1]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:]), f"{name}: hyper-parameters keyword-only"
    gen = inspect.signature(fn).parameters["generator"]
    assert gen.default is None


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_partial_is_a_sampler(name):
    fn, hp = SAMPLERS[name]
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6) % 3
    sampler = functools.partial(fn, **hp)
    a = sampler(x, y, generator=torch.Generator().manual_seed(0))
    b = sampler(x, y, generator=torch.Generator().manual_seed(0))
    assert isinstance(a, Mixing) and a.batch_size == 6
    torch.testing.assert_close(a.dense(), b.dense())
    assert isinstance(sampler(x), Mixing)                      # y is optional everywhere
    s = synthetic.synthetic_set(x, y, 3, sampler, size=7, batch_size=6, generator=torch.Generator().manual_seed(1))
    assert s.x.shape == (7, 3, 8, 8)


@pytest.mark.parametrize("name", SAMPLERS)
def test_y_is_checked_against_x(name):
    fn, hp = SAMPLERS[name]
    with pytest.raises(ValueError, match="y"):
        fn(torch.rand(6, 3, 8, 8), torch.arange(5), **hp)


@pytest.mark.parametrize("fn, hp", [(zeta.weights, "gamma"), (multimix.weights, "alpha")])
def test_weights_builders_share_one_convention(fn, hp):
    params = inspect.signature(fn).parameters
    first, *rest = params.values()
    assert first.name == "b" and first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest)
    assert params["n"].default is None and params[hp].default is not inspect.Parameter.empty
    assert fn(5).shape == (5, 5) and fn(5, n=9).shape == (9, 5)
    with pytest.raises(TypeError):
        fn(5, 9)                                               # a positional n or hyper-parameter is refused
