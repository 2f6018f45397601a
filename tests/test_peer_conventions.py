"""Issue 16, points 6-10: what users of torchvision, timm and kornia expect of mixbook.

6. labels: (b, C) soft / one-hot targets, multi-hot targets, int32 labels, NumPy scalars, a loss module;
7. torchvision v2 calling conventions: packed tuples, dict samples with labels_getter, tv_tensors, Compose;
8. collate-time mixing of uint8 images in DataLoader workers (timm's FastCollateMixup);
9. channels_last in, channels_last out (transforms and ManifoldMixup);
10. checkpointing: state_dict holds the generator state (and ManifoldMixup's layer choice).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import mixbook
from mixbook.methods import cutmix, manifold, mixup
from mixbook.training import models


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b=6, c=4, h=8, w=8, seed=0):
    return torch.rand(b, 3, h, w, generator=_gen(seed)), torch.randint(0, c, (b,), generator=_gen(seed + 1))


TRANSFORMS = {
    "MixUp": lambda g: mixbook.MixUp(alpha=1.0, num_classes=4, generator=g),
    "MixUp(per_sample)": lambda g: mixbook.MixUp(alpha=1.0, num_classes=4, per_sample=True, generator=g),
    "ZetaMixup": lambda g: mixbook.ZetaMixup(num_classes=4, generator=g),
    "MultiMix": lambda g: mixbook.MultiMix(num_classes=4, generator=g),
    "CutMix": lambda g: mixbook.CutMix(num_classes=4, generator=g),
    "MixUpCutMix(elem)": lambda g: mixbook.MixUpCutMix(num_classes=4, mode="elem", generator=g),
}


# ====================================================================== 6. labels
@pytest.mark.parametrize("name", TRANSFORMS)
def test_one_hot_and_soft_labels_in_the_transforms(name):
    x, y = _batch()
    out_int, t_int = TRANSFORMS[name](_gen(0))(x, y)
    out_hot, t_hot = TRANSFORMS[name](_gen(0))(x, F.one_hot(y, 4))             # integer one-hot
    out_f, t_f = TRANSFORMS[name](_gen(0))(x, F.one_hot(y, 4).float())        # float one-hot
    assert torch.equal(out_int, out_hot) and torch.equal(out_int, out_f)
    torch.testing.assert_close(t_hot, t_int)
    torch.testing.assert_close(t_f, t_int)
    soft = torch.softmax(torch.randn(6, 4, generator=_gen(3)), 1)
    t = TRANSFORMS[name](_gen(0))
    m = TRANSFORMS[name](_gen(0)).sample(x, y)
    torch.testing.assert_close(t(x, soft)[1], m.targets(soft, 4))


def test_soft_labels_are_checked():
    x, y = _batch()
    t = mixbook.MixUp(num_classes=4)
    with pytest.raises(ValueError, match="num_classes=4"):
        t(x, torch.full((6, 5), 0.2))
    with pytest.raises(ValueError, match="sum to 1"):
        t(x, torch.full((6, 4), 0.5))
    with pytest.raises(ValueError, match=r"\(b,\) integer labels or \(b, C\)"):
        t(x, torch.zeros(6, 4, 1))


@pytest.mark.parametrize("name", ["MixUp", "CutMix", "MixUpCutMix(elem)", "ZetaMixup"])
def test_multi_label_targets_smoothed_as_timm(name):
    x, _ = _batch()
    multi_hot = (torch.rand(6, 4, generator=_gen(7)) < 0.5).float()
    eps = 0.1
    t = TRANSFORMS[name](_gen(0))
    t.multi_label, t.smoothing = True, eps
    out, targets = t(x, multi_hot)
    m = TRANSFORMS[name](_gen(0)).sample(x)
    on, off = 1 - eps / 2, eps / 2                                 # timm's: each label smoothed towards 1/2
    expected = m.dense() @ (multi_hot * on + (1 - multi_hot) * off)
    torch.testing.assert_close(targets, expected)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        t(x, multi_hot * 2)


def test_multi_label_keyword():
    x, _ = _batch()
    multi_hot = torch.tensor([[1, 1, 0, 0]] * 6)
    for t in (mixbook.MixUp(num_classes=4, multi_label=True, generator=_gen(0)),
              mixbook.CutMix(num_classes=4, multi_label=True, generator=_gen(0))):
        targets = t(x, multi_hot)[1]
        torch.testing.assert_close(targets, multi_hot.float())          # mixing identical rows changes nothing
    with pytest.raises(TypeError, match="multi_label"):
        mixbook.MixUp(num_classes=4, multi_label="yes")


@pytest.mark.parametrize("name", TRANSFORMS)
def test_int32_labels_in_the_transforms(name):
    x, y = _batch()
    a = TRANSFORMS[name](_gen(0))(x, y)
    b = TRANSFORMS[name](_gen(0))(x, y.int())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_int32_labels_everywhere():
    x, y = _batch()
    y32 = y.int()
    m = mixup.sample(x, y32, pairing="same_class", generator=_gen(0))
    assert torch.equal(m.partner, mixup.sample(x, y, pairing="same_class", generator=_gen(0)).partner)
    logits = torch.randn(6, 4, requires_grad=True)
    ref = mixbook.mixed_cross_entropy(logits, y, y[m.partner], m.lam)
    got = mixbook.mixed_cross_entropy(logits, y32, y32[m.partner], m.lam, smoothing=0.0)
    torch.testing.assert_close(got, ref)
    got.backward()
    torch.testing.assert_close(mixbook.one_hot(y32, 4), mixbook.one_hot(y, 4))
    torch.testing.assert_close(m.targets(y32, 4), m.targets(y, 4))
    torch.testing.assert_close(mixbook.SoftTargetCrossEntropy()(logits, y32), F.cross_entropy(logits, y))


def test_numpy_scalars_for_hyper_parameters():
    x, y = _batch()
    t = mixbook.MixUp(alpha=np.float32(0.4), num_classes=np.int64(4), per_sample=np.bool_(True),
                      smoothing=np.float64(0.1), generator=_gen(0))
    ref = mixbook.MixUp(alpha=0.4, num_classes=4, per_sample=True, smoothing=0.1, generator=_gen(0))
    assert type(t.num_classes) is int and type(t.alpha) is float
    for a, b in zip(t(x, y), ref(x, y)):
        torch.testing.assert_close(a, b)
    mixbook.CutMix(alpha=np.float32(1.0), num_classes=np.int32(4), prob=np.float64(0.5))(x, y)
    mixbook.MixUpCutMix(mixup_alpha=np.float16(0.8), switch_prob=np.float32(0.5), num_classes=np.uint8(4))(x, y)
    mixbook.ZetaMixup(gamma=np.float64(2.4), num_classes=np.int64(4))(x, y)
    mixup.sample(x, alpha=np.float32(0.2))
    mixbook.one_hot(y, np.int16(4), smoothing=np.float32(0.1))
    with pytest.raises(ValueError, match="alpha"):
        mixbook.MixUp(alpha=np.float32(-1), num_classes=4)
    with pytest.raises(TypeError, match="num_classes"):
        mixbook.MixUp(num_classes=np.float32(4))


def test_soft_target_cross_entropy_module():
    x, y = _batch()
    logits = torch.randn(6, 4, requires_grad=True)
    _, soft = mixbook.MixUp(num_classes=4, generator=_gen(0))(x, y)
    loss_fn = mixbook.SoftTargetCrossEntropy()
    timm_style = torch.sum(-soft * F.log_softmax(logits, dim=-1), dim=-1).mean()    # timm's definition
    torch.testing.assert_close(loss_fn(logits, soft), timm_style)
    torch.testing.assert_close(mixbook.SoftTargetCrossEntropy(reduction="none")(logits, soft),
                               mixbook.soft_cross_entropy(logits, soft, reduction="none"))
    torch.testing.assert_close(mixbook.SoftTargetCrossEntropy(smoothing=0.1)(logits, y),
                               F.cross_entropy(logits, y, label_smoothing=0.1))
    loss_fn(logits, soft).backward()
    assert logits.grad is not None
    with pytest.raises(ValueError, match="reduction"):
        mixbook.SoftTargetCrossEntropy(reduction="avg")
    with pytest.raises(ValueError, match="num_classes"):
        loss_fn(logits, torch.tensor([0, 1, 2, 3, 4, 9]))


# ====================================================================== 7. torchvision conventions
def test_packed_tuple_and_list():
    x, y = _batch()
    ref = mixbook.MixUp(num_classes=4, generator=_gen(0))(x, y)
    out = mixbook.MixUp(num_classes=4, generator=_gen(0))((x, y))
    assert isinstance(out, tuple) and all(torch.equal(a, b) for a, b in zip(out, ref))
    out = mixbook.MixUp(num_classes=4, generator=_gen(0))([x, y])
    assert isinstance(out, list) and all(torch.equal(a, b) for a, b in zip(out, ref))


def test_dict_sample_with_default_and_callable_labels_getter():
    x, y = _batch()
    ref = mixbook.CutMix(num_classes=4, generator=_gen(0))(x, y)
    out = mixbook.CutMix(num_classes=4, generator=_gen(0))({"image": x, "Labels": y, "path": "a.png"})
    assert out.keys() == {"image", "Labels", "path"} and out["path"] == "a.png"
    assert torch.equal(out["image"], ref[0]) and torch.equal(out["Labels"], ref[1])
    t = mixbook.CutMix(num_classes=4, labels_getter=lambda s: s["target"], generator=_gen(0))
    out = t({"img": x, "target": y, "index": torch.arange(6)})
    assert torch.equal(out["img"], ref[0]) and torch.equal(out["target"], ref[1])
    assert torch.equal(out["index"], torch.arange(6))                 # integer tensors pass through
    with pytest.raises(ValueError, match="Could not infer where the labels are"):
        mixbook.MixUp(num_classes=4)({"image": x, "y": y})
    with pytest.raises(ValueError, match="labels_getter"):
        mixbook.MixUp(num_classes=4, labels_getter=3)


def test_tv_tensors_preserved_and_boxes_in_a_sample_refused():
    from torchvision import tv_tensors

    x, y = _batch()
    for t in (mixbook.MixUp(num_classes=4, generator=_gen(0)), mixbook.CutMix(num_classes=4, generator=_gen(0))):
        out, _ = t(tv_tensors.Image(x), y)
        assert type(out) is tv_tensors.Image
        video = tv_tensors.Video(torch.rand(6, 2, 3, 8, 8))
        assert type(t(video, y)[0]) is tv_tensors.Video
        assert type(t({"image": tv_tensors.Image(x), "labels": y})["image"]) is tv_tensors.Image
    boxes = tv_tensors.BoundingBoxes(torch.zeros(6, 4), format="XYXY", canvas_size=(8, 8))
    with pytest.raises(ValueError, match="BoundingBoxes"):
        mixbook.MixUp(num_classes=4)({"image": x, "boxes": boxes, "labels": y})


def test_twice_in_a_compose_and_random_choice():
    from torchvision.transforms import v2

    x, y = _batch()
    both = v2.Compose([mixbook.MixUp(num_classes=4, generator=_gen(0)), mixbook.CutMix(num_classes=4, generator=_gen(1))])
    out, soft = both(x, y)
    assert out.shape == x.shape and soft.shape == (6, 4)
    torch.testing.assert_close(soft.sum(1), torch.ones(6))
    m1 = mixbook.MixUp(num_classes=4, generator=_gen(0)).sample(x, y)
    m2 = mixbook.CutMix(num_classes=4, generator=_gen(1)).sample(x, y)
    torch.testing.assert_close(soft, m2.targets(m1.targets(y, 4), 4))
    choice = v2.RandomChoice([mixbook.MixUp(num_classes=4), mixbook.CutMix(num_classes=4)])
    for _ in range(4):
        out, soft = choice(x, y)
        assert soft.shape == (6, 4)


# ====================================================================== 8. collate-time mixing on uint8
class _Uint8Images(Dataset):
    def __init__(self, n=24):
        self.x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=_gen(0))
        self.y = torch.randint(0, 4, (n,), generator=_gen(1))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.mark.parametrize("name", ["MixUp(per_sample)", "CutMix", "MixUpCutMix(elem)"])
def test_collate_mix_on_uint8_equals_mixing_the_float_images(name):
    ds = _Uint8Images(8)
    samples = [ds[i] for i in range(8)]
    x = torch.stack([s[0] for s in samples])
    y = torch.tensor([s[1] for s in samples])
    out, targets = mixbook.MixCollate(TRANSFORMS[name](_gen(0)))(samples)
    ref_x, ref_t = TRANSFORMS[name](_gen(0))(x.float(), y)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, ref_x.round().clamp(0, 255).to(torch.uint8))
    assert (out.float() - ref_x).abs().max() <= 0.5
    torch.testing.assert_close(targets, ref_t)
    f_out, f_t = mixbook.MixCollate(TRANSFORMS[name](_gen(0)), dtype=torch.float32)(samples)
    assert f_out.dtype == torch.float32 and torch.equal(f_out, ref_x) and torch.equal(f_t, ref_t)


def test_collate_mix_in_dataloader_workers():
    ds = _Uint8Images(24)
    collate = mixbook.MixCollate(mixbook.MixUpCutMix(num_classes=4, mode="elem", generator=_gen(0)))
    loader = DataLoader(ds, batch_size=6, num_workers=2, collate_fn=collate, generator=_gen(3))
    batches = list(loader)
    assert len(batches) == 4
    for x, t in batches:
        assert x.dtype == torch.uint8 and x.shape == (6, 3, 8, 8) and t.shape == (6, 4)
        torch.testing.assert_close(t.sum(1), torch.ones(6))
    again = list(DataLoader(ds, batch_size=6, num_workers=2, collate_fn=collate, generator=_gen(3)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))            # reproducible
    assert not torch.equal(batches[0][1], batches[1][1]) or not torch.equal(batches[0][0], batches[1][0])


def test_collate_bad_arguments():
    with pytest.raises(TypeError, match="transform"):
        mixbook.MixCollate(lambda x, y: (x, y))
    with pytest.raises(ValueError, match="dtype"):
        mixbook.MixCollate(mixbook.MixUp(num_classes=4), dtype=torch.int32)


# ====================================================================== 9. memory format
@pytest.mark.parametrize("name", TRANSFORMS)
def test_channels_last_in_channels_last_out(name):
    x, y = _batch()
    xl = x.contiguous(memory_format=torch.channels_last)
    ref, ref_t = TRANSFORMS[name](_gen(0))(x, y)
    out, t = TRANSFORMS[name](_gen(0))(xl, y)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(t, ref_t)
    assert ref.is_contiguous()                                          # NCHW stays NCHW


@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_channels_last_3d_video(name):
    x = torch.rand(4, 3, 2, 6, 6)
    y = torch.tensor([0, 1, 2, 3])
    xl = x.contiguous(memory_format=torch.channels_last_3d)
    out = TRANSFORMS[name](_gen(0))(xl, y)[0]
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, TRANSFORMS[name](_gen(0))(x, y)[0])


def test_channels_last_inside_manifold_mixup():
    torch.manual_seed(0)
    model = models.SmallCNN(in_channels=3, num_classes=4, width=4).to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    seen = {}
    model.features[2].register_forward_hook(lambda mod, inp, out: seen.__setitem__("in", inp[0]))
    mm = manifold.ManifoldMixup(model, ["features.1"], generator=_gen(0))
    logits, m = mm(x)
    assert seen["in"].is_contiguous(memory_format=torch.channels_last)   # the mixed features of features.1
    ref = model.features[1](model.features[0](x))
    torch.testing.assert_close(seen["in"], m.apply(ref.contiguous()))


# ====================================================================== 10. checkpointing
@pytest.mark.parametrize("name", TRANSFORMS)
def test_state_dict_restores_the_next_draws(name):
    x, y = _batch()
    t = TRANSFORMS[name](_gen(0))
    t(x, y)
    buffer = io.BytesIO()
    torch.save(t.state_dict(), buffer)
    expected = [t(x, y) for _ in range(3)]
    restored = TRANSFORMS[name](_gen(123))
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for a, b in zip(expected, (restored(x, y) for _ in range(3))):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    fresh = TRANSFORMS[name](None)                 # no generator: it gets one from the checkpoint
    fresh.load_state_dict(t.state_dict())
    assert fresh.generator is not None and torch.equal(fresh(x, y)[0], t(x, y)[0])


def test_state_dict_without_a_generator_and_bad_state():
    t = mixbook.MixUp(num_classes=4)
    assert t.state_dict()["_extra_state"] == {"generator": None}
    with pytest.raises(ValueError, match="state"):
        t.set_extra_state({"nothing": 1})


def test_manifold_mixup_state_dict_restores_layers_and_draws():
    model = models.MLP(2, 3, (8, 8))
    layers = ["input", "features.2", "features.4"]
    mm = manifold.ManifoldMixup(model, layers, generator=_gen(0), seed=1)
    x = torch.randn(8, 2)
    for _ in range(3):
        mm(x)
    state = mm.state_dict()
    expected = [mm.draw(x) for _ in range(6)]
    restored = manifold.ManifoldMixup(model, layers, generator=_gen(99), seed=7)
    restored.load_state_dict(state)
    assert restored.last_layer == state["last_layer"]
    for (m_a, layer_a), (m_b, layer_b) in zip(expected, (restored.draw(x) for _ in range(6))):
        assert layer_a == layer_b
        assert torch.equal(m_a.partner, m_b.partner) and torch.equal(m_a.lam, m_b.lam)
    assert len({layer for _, layer in expected}) > 1
    with pytest.raises(ValueError, match="layers"):
        manifold.ManifoldMixup(model, ["input"]).load_state_dict(state)


# ====================================================================== README
def test_readme_workers_switch_and_compiled_step_example_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "MixUpCutMix" in b)
    torch._dynamo.reset()
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["step"] == 7 and torch.isfinite(namespace["loss"])
    assert namespace["y_soft"].shape == (64, 10) and namespace["x"].shape == (64, 1, 8, 8)
    restored = mixbook.MixUp(alpha=0.4, num_classes=10)
    restored.load_state_dict(namespace["checkpoint"]["mix"])
    assert torch.equal(restored.generator.get_state(), namespace["mix"].generator.get_state())
    assert namespace["checkpoint"]["collate"]["epoch"] == 0                 # the resume recipe's epoch


def test_every_transform_takes_multi_label_and_labels_getter_keywords():
    x, _ = _batch()
    multi_hot = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 6)
    getter = lambda s: s["t"]  # noqa: E731
    for cls, kw in ((mixbook.MixUp, {}), (mixbook.ZetaMixup, {}), (mixbook.MultiMix, {"n": 6}), (mixbook.CutMix, {}),
                    (mixbook.MixUpCutMix, {})):
        t = cls(num_classes=4, multi_label=True, labels_getter=getter, generator=_gen(0), **kw)
        out = t({"x": x, "t": multi_hot})
        torch.testing.assert_close(out["t"], multi_hot)


COMPILED_CONVENTIONS = {
    "soft labels": lambda t: (lambda x, y: t(x, F.one_hot(y, 4).float())),
    "multi-hot labels": lambda t: (lambda x, y: t(x, (F.one_hot(y, 4) + F.one_hot((y + 1) % 4, 4)).float())),
    "int32 labels": lambda t: (lambda x, y: t(x, y.int())),
    "tuple": lambda t: (lambda x, y: t((x, y))),
    "dict": lambda t: (lambda x, y: t({"image": x, "labels": y})),
    "channels_last": lambda t: (lambda x, y: t(x.contiguous(memory_format=torch.channels_last), y)),
    "SoftTargetCrossEntropy": lambda t: (lambda x, y: mixbook.SoftTargetCrossEntropy()(x.flatten(1)[:, :4], t(x, y)[1])),
}


@pytest.mark.parametrize("transform", ["MixUp", "ZetaMixup", "CutMix", "MixUpCutMix(elem)"])
@pytest.mark.parametrize("convention", COMPILED_CONVENTIONS)
def test_conventions_compile_without_graph_breaks(transform, convention):
    torch._dynamo.reset()
    t = TRANSFORMS[transform](_gen(0))
    if convention == "multi-hot labels":
        t.multi_label = True
    explanation = torch._dynamo.explain(COMPILED_CONVENTIONS[convention](t))(*_batch())
    assert explanation.graph_break_count == 0, explanation.break_reasons
