"""Issue 16, point 5: mixbook's own CutMix, the mixup-or-CutMix switch, ``prob``, timm's modes
and ``correct_lam``; equal to torchvision's ``v2.CutMix`` for the same box and λ."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

import mixbook
from mixbook.methods import cutmix
from mixbook.methods.cutmix import BoxMixing


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _torchvision_draws(seed: int, alpha: float, h: int, w: int):
    """The λ and centre ``v2.CutMix`` draws from torch's global RNG after ``manual_seed(seed)``."""
    torch.manual_seed(seed)
    lam = torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha])).sample(())
    r_x = torch.randint(w, size=(1,))
    r_y = torch.randint(h, size=(1,))
    return lam, r_y, r_x


@pytest.mark.parametrize("shape", [(6, 3, 9, 7), (5, 2, 16, 16), (4, 2, 3, 8, 5)])
@pytest.mark.parametrize("seed", range(6))
def test_equal_to_torchvision_cutmix_for_the_same_box_and_lambda(shape, seed):
    x = torch.rand(shape, generator=_gen(100 + seed))
    if len(shape) == 5:
        from torchvision import tv_tensors

        x = tv_tensors.Video(x)
    y = torch.arange(shape[0]) % 4
    torch.manual_seed(seed)
    tx, ty = v2.CutMix(alpha=1.0, num_classes=4)(x, y)
    h, w = shape[-2:]
    lam, cy, cx = _torchvision_draws(seed, 1.0, h, w)
    boxes, area_lam = cutmix.box(lam, cy, cx, (h, w))
    b = shape[0]
    m = BoxMixing(batch_size=b, partner=torch.arange(b).roll(1), lam=area_lam.float().expand(b),
                  boxes=boxes.expand(b, 4), use_box=torch.ones(b, dtype=torch.bool), size=(h, w))
    assert torch.equal(m.apply(x.as_subclass(torch.Tensor)), tx.as_subclass(torch.Tensor))
    torch.testing.assert_close(m.targets(y, 4), ty, rtol=0, atol=1e-6)


def test_sampled_box_is_torchvisions_box_for_its_lambda_and_centre():
    x = torch.rand(8, 3, 12, 10)
    m = cutmix.sample(x, alpha=1.0, mode="elem", generator=_gen(0))
    y1, x1, y2, x2 = m.boxes.unbind(1)
    inside = m.weight_map() == 0
    assert torch.equal(inside.sum((1, 2)), (y2 - y1) * (x2 - x1))
    torch.testing.assert_close(m.lam, 1 - ((y2 - y1) * (x2 - x1)).float() / 120)   # correct_lam: the area left
    out = m.apply(x)
    for k in range(8):
        expect = x[k].clone()
        expect[:, y1[k]:y2[k], x1[k]:x2[k]] = x[m.partner[k], :, y1[k]:y2[k], x1[k]:x2[k]]
        assert torch.equal(out[k], expect)


def test_transform_uses_the_sampler_stream_and_leaves_inputs_alone():
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 5, (6,))
    x0 = x.clone()
    t = mixbook.CutMix(alpha=1.0, num_classes=5, pairing="roll", generator=_gen(3))
    out, targets = t(x, y)
    m = cutmix.sample(x, y, alpha=1.0, pairing="roll", generator=_gen(3))
    assert torch.equal(out, m.apply(x)) and torch.equal(targets, m.targets(y, 5))
    assert torch.equal(x, x0)
    assert targets.shape == (6, 5) and torch.allclose(targets.sum(1), torch.ones(6))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    x = torch.rand(4, 3, 8, 8).to(dtype)
    out, targets = mixbook.MixUpCutMix(num_classes=3, mode="elem", generator=_gen(0))(x, torch.tensor([0, 1, 2, 0]))
    assert out.dtype == dtype


def test_pair_mode_swaps_one_box_per_pair():
    x = torch.rand(8, 2, 10, 10)
    m = cutmix.sample(x, mode="pair", generator=_gen(1))
    assert torch.equal(m.partner, torch.arange(7, -1, -1))
    assert torch.equal(m.boxes, m.boxes.flip(0)) and torch.equal(m.lam, m.lam.flip(0))
    out = m.apply(x)
    for i in range(4):
        j = 7 - i
        y1, x1, y2, x2 = m.boxes[i].tolist()
        assert torch.equal(out[i, :, y1:y2, x1:x2], x[j, :, y1:y2, x1:x2])
        assert torch.equal(out[j, :, y1:y2, x1:x2], x[i, :, y1:y2, x1:x2])
    assert len({tuple(box) for box in m.boxes[:4].tolist()}) == 4   # one box drawn per pair


def test_batch_and_elem_modes():
    x = torch.rand(16, 1, 16, 16)
    mb = cutmix.sample(x, mode="batch", generator=_gen(0))
    assert (mb.boxes == mb.boxes[0]).all() and (mb.lam == mb.lam[0]).all()
    me = cutmix.sample(x, mode="elem", generator=_gen(0))
    assert len(set(me.lam.tolist())) > 8


def test_switch_prob_zero_is_mixup_and_one_is_cutmix():
    x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 4, (8,))
    m0 = cutmix.sample_switch(x, mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.0, mode="elem", generator=_gen(0))
    assert not m0.use_box.any()
    lam = m0.lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(m0.apply(x), lam * x + (1 - lam) * x[m0.partner])
    m1 = cutmix.sample_switch(x, switch_prob=1.0, mode="elem", generator=_gen(0))
    assert m1.use_box.all()
    assert set(m1.apply(x).unique().tolist()) <= set(x.unique().tolist())    # pasted, never blended


def test_switch_frequency_and_per_element_choice():
    x = torch.rand(4000, 1, 4, 4)
    m = cutmix.sample_switch(x, switch_prob=0.3, mode="elem", generator=_gen(0))
    assert abs(m.use_box.float().mean().item() - 0.3) < 0.03
    t = mixbook.MixUpCutMix(num_classes=2, switch_prob=0.5, generator=_gen(1))
    kinds = [bool(t.sample(x[:8]).use_box[0]) for _ in range(200)]
    assert 70 < sum(kinds) < 130


def test_prob_zero_leaves_the_batch_and_returns_soft_targets():
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    for t in (mixbook.CutMix(num_classes=4, prob=0.0, generator=_gen(0)),
              mixbook.MixUpCutMix(num_classes=4, prob=0.0, mode="elem", generator=_gen(0))):
        out, targets = t(x, y)
        assert torch.equal(out, x)
        assert targets.dtype == torch.float32 and torch.equal(targets, mixbook.one_hot(y, 4))


def test_prob_applies_to_that_fraction_and_label_type_never_changes():
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    t = mixbook.MixUpCutMix(num_classes=4, prob=0.5, generator=_gen(0))
    mixed = 0
    for _ in range(200):
        out, targets = t(x, y)
        assert targets.shape == (4, 4) and targets.is_floating_point()
        mixed += not torch.equal(out, x)
    assert 70 < mixed < 130
    m = cutmix.sample(torch.rand(4000, 1, 4, 4), prob=0.25, mode="elem", generator=_gen(0))
    assert abs(m.use_box.float().mean().item() - 0.25) < 0.03      # (a tiny box may still round to empty)


def test_correct_lam():
    x = torch.rand(64, 1, 10, 10)
    a = cutmix.sample(x, mode="elem", correct_lam=True, generator=_gen(5))
    b = cutmix.sample(x, mode="elem", correct_lam=False, generator=_gen(5))
    assert torch.equal(a.boxes, b.boxes)                       # same draws, same boxes
    y1, x1, y2, x2 = a.boxes.unbind(1)
    torch.testing.assert_close(a.lam, 1 - ((y2 - y1) * (x2 - x1)).float() / 100)
    assert (a.lam != b.lam).any()                              # clipped boxes: the drawn λ differs from the area


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "block"}, "mode"), ({"prob": 1.5}, "prob"), ({"alpha": 0.0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"), ({"mode": "pair", "pairing": "random"}, "pair"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cutmix.sample(torch.rand(4, 3, 8, 8), **kwargs)
    with pytest.raises(ValueError, match=match):
        mixbook.CutMix(num_classes=3, **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="switch_prob"):
        mixbook.MixUpCutMix(num_classes=3, switch_prob=-0.1)
    with pytest.raises(ValueError, match="even batch"):
        cutmix.sample(torch.rand(5, 3, 8, 8), mode="pair")
    with pytest.raises(ValueError, match="images"):
        mixbook.CutMix(num_classes=3)(torch.rand(4, 6), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(TypeError, match="floating"):
        mixbook.CutMix(num_classes=3)(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 0]))
    m = cutmix.sample(torch.rand(4, 3, 8, 8), generator=_gen(0))
    with pytest.raises(ValueError, match=r"\(H, W\) = \(8, 8\)"):
        m.apply(torch.rand(4, 3, 6, 6))


NEW_TRANSFORMS = {
    "CutMix": lambda g: mixbook.CutMix(num_classes=5, generator=g),
    "CutMix(elem, prob=0.5, correct_lam=False)": lambda g: mixbook.CutMix(num_classes=5, mode="elem", prob=0.5,
                                                                           correct_lam=False, generator=g),
    "MixUpCutMix": lambda g: mixbook.MixUpCutMix(num_classes=5, generator=g),
    "MixUpCutMix(pair, prob=0.8)": lambda g: mixbook.MixUpCutMix(num_classes=5, mode="pair", prob=0.8, generator=g),
    "MixUpCutMix(elem)": lambda g: mixbook.MixUpCutMix(num_classes=5, mode="elem", generator=g),
}


@pytest.mark.parametrize("name", NEW_TRANSFORMS)
def test_zero_graph_breaks_with_a_generator(name):
    torch._dynamo.reset()
    x, y = torch.randn(8, 3, 6, 6, generator=_gen(10)), torch.randint(0, 5, (8,), generator=_gen(11))
    explanation = torch._dynamo.explain(NEW_TRANSFORMS[name](_gen(0)))(x, y)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("name", ["CutMix", "MixUpCutMix(elem)"])
def test_fullgraph_compile_draws_what_eager_draws(name):
    torch._dynamo.reset()
    x, y = torch.randn(8, 3, 6, 6, generator=_gen(10)), torch.randint(0, 5, (8,), generator=_gen(11))
    g = _gen(0)
    t = NEW_TRANSFORMS[name](g)
    compiled = torch.compile(t, fullgraph=True, backend="aot_eager")
    g.manual_seed(5)
    eager = [t(x, y) for _ in range(3)]
    g.manual_seed(5)
    traced = [compiled(x, y) for _ in range(3)]
    for e, c in zip(eager, traced):
        torch.testing.assert_close(e[0], c[0])
        torch.testing.assert_close(e[1], c[1])


def _timm_loop(x: torch.Tensor, m: BoxMixing, mode: str) -> torch.Tensor:
    """timm's ``Mixup._mix_elem`` / ``_mix_pair`` loops (flip pairing) for the λ, boxes and choices of ``m``."""
    b = x.shape[0]
    out, orig = x.clone(), x.clone()
    rows = range(b // 2) if mode == "pair" else range(b)
    for i in rows:
        j = b - i - 1
        lam = float(m.lam[i])
        if m.use_box[i]:
            y1, x1, y2, x2 = m.boxes[i].tolist()
            out[i][:, y1:y2, x1:x2] = orig[j][:, y1:y2, x1:x2]
            if mode == "pair":
                out[j][:, y1:y2, x1:x2] = orig[i][:, y1:y2, x1:x2]
        elif lam != 1.0:
            out[i] = orig[i] * lam + orig[j] * (1 - lam)
            if mode == "pair":
                out[j] = orig[j] * lam + orig[i] * (1 - lam)
    return out


@pytest.mark.parametrize("mode", ["pair", "elem"])
def test_modes_equal_timms_loops_for_the_same_draws(mode):
    x, y = torch.rand(10, 3, 12, 12, generator=_gen(4)), torch.randint(0, 5, (10,), generator=_gen(5))
    t = mixbook.MixUpCutMix(num_classes=5, mode=mode, pairing="flip", prob=0.8, generator=_gen(6))
    m = mixbook.MixUpCutMix(num_classes=5, mode=mode, pairing="flip", prob=0.8, generator=_gen(6)).sample(x, y)
    assert m.use_box.any() and (~m.use_box).any()
    out, targets = t(x, y)
    torch.testing.assert_close(out, _timm_loop(x, m, mode))
    lam = m.lam[:, None]                                            # timm's mixup_target with the flipped labels
    expected = mixbook.one_hot(y, 5) * lam + mixbook.one_hot(y.flip(0), 5) * (1 - lam)
    torch.testing.assert_close(targets, expected)


def test_sample_switch_takes_the_options_of_sample_and_no_others():
    x = torch.rand(6, 3, 8, 8)
    m = cutmix.sample_switch(x, prob=0.0, mode="elem", generator=_gen(0))
    assert torch.equal(m.apply(x), x)                       # prob = 0: no example mixed
    with pytest.raises(TypeError, match="probability"):
        cutmix.sample_switch(x, probability=0.5)
    with pytest.raises(ValueError, match="mode"):
        cutmix.sample_switch(x, mode="rows")
