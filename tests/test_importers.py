"""Issue 30: mixbook as a drop-in for timm's ``Mixup``/``FastCollateMixup`` and torchvision's v2 mixing,
safe with detection samples and DataLoader workers, precise in low precision.

1. detection- and segmentation-safe packed samples;
2. ``MixUpCutMix`` with timm's whole keyword set, equal to timm for the same draws in every mode;
3. torchvision's label-finding rule and its ``ValueError``s;
4. multi-hot smoothing as timm's ``mixup_target``;
5. ``MixCollate`` guards, dict samples, the spawn/forkserver start methods, persistent workers;
6. losses in float32 for fp16/bf16 logits;
7. ``prob`` on every transform, a fixed λ, one-hot/soft targets without ``num_classes``.
"""

from __future__ import annotations

import inspect
import math
import multiprocessing
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import mixbook
from mixbook.methods import cutmix, mixup

tv_tensors = pytest.importorskip("torchvision.tv_tensors")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b=8, c=4, h=8, w=8, seed=0):
    return torch.rand(b, 3, h, w, generator=_gen(seed)), torch.randint(0, c, (b,), generator=_gen(seed + 1))


# ====================================================================== 1. detection- and segmentation-safe
@pytest.mark.parametrize("transform", [mixbook.MixUp(num_classes=4), mixbook.CutMix(num_classes=4),
                                       mixbook.MixUpCutMix(num_classes=4)], ids=["MixUp", "CutMix", "MixUpCutMix"])
def test_detection_targets_are_refused_by_type_and_by_key(transform):
    x, y = _batch()
    boxes = [tv_tensors.BoundingBoxes(torch.zeros(2, 4), format="XYXY", canvas_size=(8, 8)) for _ in range(8)]
    with pytest.raises(ValueError, match=r"sample\['boxes'\]\[0\] is a torchvision.tv_tensors.BoundingBoxes"):
        transform({"image": x, "boxes": boxes, "labels": y})                      # a per-image list
    mask = tv_tensors.Mask(torch.zeros(8, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"sample\[1\]\['masks'\] is a torchvision.tv_tensors.Mask"):
        transform((x, {"labels": y, "masks": mask}))
    points = tv_tensors.KeyPoints(torch.zeros(8, 2), canvas_size=(8, 8))
    with pytest.raises(ValueError, match="KeyPoints"):
        transform({"image": x, "labels": y, "points": points})
    for key in ("boxes", "bbox", "gt_masks", "segmentation", "keypoints"):      # plain tensors, named like targets
        with pytest.raises(ValueError, match=rf"sample\['{key}'\] \(a Tensor of shape \(8, 4\)\) is named like a detection"):
            transform({"image": x, "labels": y, key: torch.rand(8, 4)})


def test_only_the_images_are_mixed_unless_mix_keys_says_so():
    x, y = _batch()
    x2 = torch.rand(8, 3, 8, 8)
    other = torch.rand(8, 4)
    ref_x, ref_t = mixbook.MixUp(num_classes=4, generator=_gen(0))(x, y)
    out = mixbook.MixUp(num_classes=4, generator=_gen(0))({"image": x, "labels": y, "aux": other, "view2": x2})
    assert torch.equal(out["image"], ref_x) and torch.equal(out["labels"], ref_t)
    assert out["aux"] is other and out["view2"] is x2                        # passed through, as torchvision does
    t = mixbook.MixUp(num_classes=4, mix_keys=("view2", "boxes"), generator=_gen(0))
    m = mixbook.MixUp(num_classes=4, generator=_gen(0)).sample(x, y)
    out = t({"image": x, "labels": y, "view2": x2, "boxes": torch.rand(8, 4)})
    torch.testing.assert_close(out["view2"], m.apply(x2))                   # the same mixing as the image
    assert out["boxes"].shape == (8, 4)                                      # named on purpose: mixed too
    image, other_image = tv_tensors.Image(x), tv_tensors.Image(x2)         # every torchvision Image is mixed
    out = mixbook.MixUp(num_classes=4, generator=_gen(0))({"a": image, "b": other_image, "feat": other, "labels": y})
    torch.testing.assert_close(out["b"].as_subclass(torch.Tensor), m.apply(x2))
    assert out["feat"] is other
    with pytest.raises(ValueError, match="mix_keys names"):
        mixbook.MixUp(num_classes=4, mix_keys=("nope",))({"image": x, "labels": y})
    with pytest.raises(TypeError, match="mix_keys"):
        mixbook.MixUp(num_classes=4, mix_keys="view2")


# ====================================================================== 3. torchvision's conventions
def test_torchvision_label_finding_rule():
    x, y = _batch()
    ref_x, ref_t = mixbook.CutMix(num_classes=4, generator=_gen(0))(x, y)
    out = mixbook.CutMix(num_classes=4, generator=_gen(0))({"img": x, "FooLaBeLBar": y})      # a key containing "label"
    assert torch.equal(out["FooLaBeLBar"], ref_t) and torch.equal(out["img"], ref_x)
    img, target = mixbook.CutMix(num_classes=4, generator=_gen(0))((x, {"labels": y, "id": 3}))
    assert torch.equal(img, ref_x) and torch.equal(target["labels"], ref_t) and target["id"] == 3
    names = y.clone()
    out = mixbook.CutMix(num_classes=4, generator=_gen(0))({"image": x, "label_names": names, "labels": y})
    assert torch.equal(out["labels"], ref_t) and out["label_names"] is names  # "labels" first, exactly


def _bad_inputs(x, y):
    boxes = tv_tensors.BoundingBoxes(torch.zeros(8, 4), format="XYXY", canvas_size=(8, 8))
    return {
        "labels not a tensor": ({"image": x, "labels": [0] * 8}, {}),
        "labels 3-D": ({"image": x, "labels": y[:, None, None]}, {}),
        "2-D labels, other num_classes": ({"image": x, "labels": F.one_hot(y, 5)}, {}),
        "1-D labels, no num_classes": ({"image": x, "labels": y}, {"num_classes": None}),
        "bounding boxes": ({"image": x, "boxes": boxes, "labels": y}, {}),
        "no label key": ({"image": x, "target": y}, {}),
        "not a sample": (3, {}),
        "unbatched image": ({"image": x[0], "labels": y[:3]}, {}),
        "batch size mismatch": ({"image": x, "labels": y[:5]}, {}),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(*_batch())))
def test_value_error_where_torchvision_raises_value_error(case):
    from torchvision.transforms import v2

    x, y = _batch()
    sample, options = _bad_inputs(x, y)[case]
    kw = {"num_classes": 4, **options}
    with pytest.raises(ValueError):
        v2.MixUp(**kw)(sample)
    with pytest.raises(ValueError):
        mixbook.MixUp(**kw)(sample)
    with pytest.raises(ValueError, match="labels_getter"):
        v2.MixUp(num_classes=4, labels_getter=3)
    with pytest.raises(ValueError, match="labels_getter"):
        mixbook.MixUp(num_classes=4, labels_getter=3)


# ====================================================================== 7. one-hot and soft targets without num_classes
@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_one_hot_targets_without_num_classes_as_torchvision(name):
    from torchvision.transforms import v2

    x, y = _batch()
    ours = getattr(mixbook, name)(pairing="roll", generator=_gen(0))
    theirs = getattr(v2, name)()
    torch.manual_seed(0)
    out, soft = theirs(x, F.one_hot(y, 4))
    assert soft.shape == (8, 4)
    got_x, got = ours(x, F.one_hot(y, 4))                              # num_classes inferred from the targets
    assert got.shape == (8, 4) and torch.allclose(got.sum(1), torch.ones(8))
    with pytest.raises(ValueError, match="num_classes must be passed if the labels are index-based"):
        ours(x, y)


# ====================================================================== 2. timm's Mixup and FastCollateMixup
def test_mixupcutmix_takes_timms_whole_keyword_set_and_defaults():
    timm_mixup = pytest.importorskip("timm.data.mixup")
    timm_sig = inspect.signature(timm_mixup.Mixup).parameters
    defaults = {k: p.default for k, p in timm_sig.items()}
    mixbook.MixUpCutMix(**defaults)                                         # every keyword, timm's meaning
    t = mixbook.MixUpCutMix.from_timm()
    for key, value in defaults.items():
        got = t.smoothing if key == "label_smoothing" else getattr(t, key)
        assert got == value, key
    assert (t.pairing, t.box, t.mixup_enabled) == ("flip", "timm", True)
    assert mixbook.MixUpCutMix(cutmix_minmax=(0.2, 0.8), cutmix_alpha=0.0).cutmix_alpha == 1.0   # timm forces it
    with pytest.raises(ValueError, match="both 0"):
        mixbook.MixUpCutMix(mixup_alpha=0.0, cutmix_alpha=0.0, num_classes=4)
    with pytest.raises(ValueError, match="cutmix_minmax"):
        mixbook.MixUpCutMix(cutmix_minmax=(0.8, 0.2), num_classes=4)
    with pytest.raises(ValueError, match="disagree"):
        mixbook.MixUpCutMix(label_smoothing=0.1, smoothing=0.2, num_classes=4)


def test_alpha_zero_turns_a_component_off_and_mixup_enabled_turns_all_off():
    x, y = _batch()
    only_mix = mixbook.MixUpCutMix(cutmix_alpha=0.0, num_classes=4, mode="elem", generator=_gen(0)).sample(x, y)
    assert not bool(only_mix.use_box.any())
    only_cut = mixbook.MixUpCutMix(mixup_alpha=0.0, num_classes=4, mode="elem", generator=_gen(0)).sample(x, y)
    assert bool(only_cut.use_box.all())
    t = mixbook.MixUpCutMix.from_timm(num_classes=4)
    t.mixup_enabled = False                                                # as timm's mixup_off_epoch does
    out, soft = t(x, y)
    assert torch.equal(out, x)
    torch.testing.assert_close(soft, mixbook.one_hot(y, 4, 0.1))          # still smoothed, still soft


class _ScriptedNumpy:
    """NumPy for timm's module, except that ``np.random.rand/beta/randint`` return scripted values in order."""

    def __init__(self, rand, beta, randint):
        queues = {"rand": list(rand), "beta": list(beta), "randint": list(randint)}
        self.queues = queues

        def pop(kind):
            def draw(*args, **kwargs):
                return queues[kind].pop(0)
            return draw
        self.random = types.SimpleNamespace(rand=pop("rand"), beta=pop("beta"), randint=pop("randint"))

    def __getattr__(self, name):
        return getattr(np, name)


def _script(mode, config, b, h, w, rng):
    """One draw of timm's parameters, as timm's NumPy calls (in order) and as mixbook's ``_Draws``."""
    k = {"batch": 1, "pair": b // 2, "elem": b, "half": b // 2}[mode]
    both = config in ("switch", "minmax", "prob")
    applied = rng.random(k) < (0.6 if config == "prob" else 2.0)
    use_cut = (rng.random(k) < 0.5) if both else np.full(k, config == "cutmix")
    lam_cut = rng.uniform(0.05, 0.95, k).astype(np.float32)
    lam_mix = rng.uniform(0.05, 0.95, k).astype(np.float32)
    lam = np.where(use_cut, lam_cut, lam_mix)
    if config == "minmax":
        lo_h, hi_h, lo_w, hi_w = int(h * 0.2), int(h * 0.8), int(w * 0.2), int(w * 0.8)
        cut_h, cut_w = rng.integers(lo_h, hi_h, k), rng.integers(lo_w, hi_w, k)
        cy, cx = rng.integers(0, h - cut_h + 1), rng.integers(0, w - cut_w + 1)
    else:
        cut_h = cut_w = None
        cy, cx = rng.integers(0, h, k), rng.integers(0, w, k)
    boxed = use_cut & applied

    def box_calls(i):
        if config == "minmax":
            return [int(cut_h[i]), int(cut_w[i]), int(cy[i]), int(cx[i])]
        return [int(cy[i]), int(cx[i])]

    rand, beta, randint = [], [], []
    if mode == "batch":
        rand.append(0.0 if applied[0] else 0.9999)
        if applied[0]:
            if both:
                rand.append(0.0 if use_cut[0] else 0.9999)
            beta.append(float(lam[0]))
            if boxed[0]:
                randint += box_calls(0)
    else:
        if both:
            rand.append(np.where(use_cut, 0.0, 0.9999))
            beta += [lam_cut.astype(np.float64), lam_mix.astype(np.float64)]
        else:
            beta.append((lam_cut if config == "cutmix" else lam_mix).astype(np.float64))
        rand.append(np.where(applied, 0.0, 0.9999))
        for i in range(k):
            if boxed[i]:
                randint += box_calls(i)
    t = torch.from_numpy
    draws = cutmix._Draws(use_box=t(boxed), lam=t(np.where(applied, lam, np.float32(1.0))), cy=t(cy).long(),
                          cx=t(cx).long(), cut_h=None if cut_h is None else t(cut_h).long(),
                          cut_w=None if cut_w is None else t(cut_w).long())
    return (rand, beta, randint), draws


_CONFIGS = {
    "mixup": dict(mixup_alpha=0.8, cutmix_alpha=0.0),
    "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
    "minmax": dict(mixup_alpha=0.8, cutmix_minmax=(0.2, 0.8), switch_prob=0.5),
    "prob": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=0.6),
}
_LARGEST = {}


@pytest.mark.parametrize("config", list(_CONFIGS))
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_equal_to_timm_mixup_for_the_same_draws(mode, config, monkeypatch):
    timm_mixup = pytest.importorskip("timm.data.mixup")
    b, c, h, w = 8, 5, 12, 10
    rng = np.random.default_rng(hash((mode, config)) % 2**32)
    for trial in range(4):
        x = torch.rand(b, 3, h, w, generator=_gen(trial))
        y = torch.randint(0, c, (b,), generator=_gen(trial + 100))
        (rand, beta, randint), draws = _script(mode, config, b, h, w, rng)
        kw = dict(_CONFIGS[config], mode=mode, num_classes=c, label_smoothing=0.1, correct_lam=trial % 2 == 0)
        scripted = _ScriptedNumpy(rand, beta, randint)
        monkeypatch.setattr(timm_mixup, "np", scripted)
        ref_x, ref_t = timm_mixup.Mixup(**kw)(x.clone(), y)
        assert not any(scripted.queues.values()), "timm drew other values than scripted"
        monkeypatch.setattr(cutmix, "_draw", lambda k, size, **_: draws)
        ours = mixbook.MixUpCutMix.from_timm(**kw)
        out, soft = ours(x, y)
        torch.testing.assert_close(out, ref_x, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(soft, ref_t, rtol=1e-6, atol=1e-6)
        _LARGEST[(mode, config)] = max(_LARGEST.get((mode, config), 0.0), float((out - ref_x).abs().max()),
                                       float((soft - ref_t).abs().max()))


@pytest.mark.parametrize("config", ["mixup", "cutmix", "switch", "minmax", "prob"])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_equal_to_timm_fast_collate_mixup_for_the_same_draws(mode, config, monkeypatch):
    timm_mixup = pytest.importorskip("timm.data.mixup")
    b, c, h, w = 8, 5, 12, 10
    rng = np.random.default_rng(hash((mode, config, "collate")) % 2**32)
    worst = 0
    for trial in range(4):
        images = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=_gen(trial))
        labels = torch.randint(0, c, (b,), generator=_gen(trial + 100))
        batch = [(images[i].clone(), int(labels[i])) for i in range(b)]
        (rand, beta, randint), draws = _script(mode, config, b, h, w, rng)
        kw = dict(_CONFIGS[config], mode=mode, num_classes=c, label_smoothing=0.1)
        monkeypatch.setattr(timm_mixup, "np", _ScriptedNumpy(rand, beta, randint))
        ref_x, ref_t = timm_mixup.FastCollateMixup(**kw)([(im.clone(), lab) for im, lab in batch])
        monkeypatch.setattr(cutmix, "_draw", lambda k, size, **_: draws)
        out, soft = mixbook.MixCollate(mixbook.MixUpCutMix.from_timm(**kw))(batch)
        assert out.dtype == torch.uint8 and out.shape == ref_x.shape == ((b // 2 if mode == "half" else b), 3, h, w)
        diff = (out.int() - ref_x.int()).abs()
        assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.01   # rounding at .5 only
        torch.testing.assert_close(soft, ref_t, rtol=1e-6, atol=1e-6)
        worst = max(worst, int(diff.max()))
    _LARGEST[(mode, config, "collate")] = worst


def test_random_pairing_fixed_points_and_the_derangement():
    b, trials = 32, 4000
    g = _gen(0)
    fixed = torch.stack([(mixup.pair(b, "random", generator=g) == torch.arange(b)).sum() for _ in range(trials)])
    mean = fixed.float().mean().item()
    assert abs(mean - 1.0) < 5 * math.sqrt(1.0 / trials)                     # one a batch on average
    share = (fixed > 0).float().mean().item()
    assert abs(share - (1 - math.exp(-1))) < 5 * math.sqrt(0.25 / trials)      # at least one in 63% of batches
    counts = torch.zeros(b, b)
    for _ in range(trials):
        partner = mixup.pair(b, "derangement", generator=g)
        assert not bool((partner == torch.arange(b)).any())
        assert torch.equal(partner.sort().values, torch.arange(b))           # every example a partner once
        counts[torch.arange(b), partner] += 1
    off = counts[~torch.eye(b, dtype=torch.bool)]
    expected = trials / (b - 1)
    assert float((off - expected).abs().max()) < 6 * math.sqrt(expected)      # uniform over the others
    assert torch.equal(mixup.pair(1, "derangement", generator=g), torch.tensor([0]))


# ====================================================================== 4. multi-label smoothing as timm
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_multi_label_targets_equal_timms_mixup_target(eps):
    timm_mixup = pytest.importorskip("timm.data.mixup")
    x = torch.rand(6, 3, 8, 8)
    multi_hot = (torch.rand(6, 5, generator=_gen(7)) < 0.5).float()
    t = mixbook.MixUp(num_classes=5, multi_label=True, smoothing=eps, pairing="flip", lam=0.3)
    _, ours = t(x, multi_hot)
    theirs = timm_mixup.mixup_target(multi_hot, 5, lam=0.3, smoothing=eps, multi_label=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


# ====================================================================== 5. MixCollate guards and workers
def test_collate_guards_name_the_entry():
    img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    collate = mixbook.MixCollate(mixbook.MixUp(num_classes=4, generator=_gen(0)))
    ref = collate([(img, 1), (img.flip(1), 2)])
    wide = collate.__class__(mixbook.MixUp(num_classes=4, generator=_gen(0)))([(img.short(), 1), (img.flip(1).short(), 2)])
    assert torch.equal(wide[0], ref[0])                                      # int16 in [0, 255]: as uint8
    with pytest.raises(ValueError, match=r"sample\[0\]: torch.int16 images must hold values in \[0, 255\]"):
        collate([(img.short() * 4, 1), (img.short(), 2)])
    floats = mixbook.MixCollate(mixbook.MixUp(num_classes=4), dtype=torch.float32)([(img.short() * 4, 1), (img.short(), 2)])
    assert floats[0].dtype == torch.float32                                 # unrounded floats: any 8+ bit scale
    hwc = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"sample\[0\] is a NumPy array of shape \(8, 8, 3\), channels last"):
        collate([(hwc, 1), (hwc, 2)])
    chw = [(np.asarray(img), 1), (np.asarray(img.flip(1)), 2)]
    assert torch.equal(mixbook.MixCollate(mixbook.MixUp(num_classes=4, generator=_gen(0)))(chw)[0], ref[0])
    with pytest.raises(ValueError, match="the labels are strings"):
        collate([(img, "cat"), (img, "dog")])
    from PIL import Image

    with pytest.raises(ValueError, match=r"sample\[0\] is a PIL image"):
        collate([(Image.new("RGB", (8, 8)), 1)])
    with pytest.raises(ValueError, match=r"sample\['boxes'\] .*named like a detection"):
        collate([{"image": img, "label": 1, "boxes": torch.zeros(4)}, {"image": img, "label": 2, "boxes": torch.zeros(4)}])


def test_collate_dict_and_long_tuple_samples():
    img = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=_gen(0))
    ref_x, ref_t = mixbook.MixCollate(mixbook.CutMix(num_classes=4, generator=_gen(1)))([(img[i], i) for i in range(4)])
    out = mixbook.MixCollate(mixbook.CutMix(num_classes=4, generator=_gen(1)))(
        [{"image": img[i], "label": i, "path": f"{i}.png"} for i in range(4)])
    assert torch.equal(out["image"], ref_x) and torch.equal(out["label"], ref_t)
    assert out["path"] == ["0.png", "1.png", "2.png", "3.png"]
    x, t, idx = mixbook.MixCollate(mixbook.CutMix(num_classes=4, generator=_gen(1)))([(img[i], i, i) for i in range(4)])
    assert torch.equal(x, ref_x) and torch.equal(t, ref_t) and torch.equal(idx, torch.arange(4))


def _dataset(n=24):
    return TensorDataset(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=_gen(0)),
                         torch.randint(0, 4, (n,), generator=_gen(1)))


def _epochs(collate, method, epochs, persistent=True, start=0):
    loader = DataLoader(_dataset(), batch_size=6, num_workers=2, collate_fn=collate, multiprocessing_context=method,
                        persistent_workers=persistent, generator=_gen(3))
    out = []
    for epoch in range(start, epochs):
        collate.set_epoch(epoch)
        out.append([x.clone() for x, _ in loader])
    return out


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_collate_with_every_start_method_and_a_resume_of_persistent_workers(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    make = lambda: mixbook.MixCollate(mixbook.MixUpCutMix(num_classes=4, mode="elem", generator=_gen(0)))  # noqa: E731
    run = _epochs(make(), method, 3)
    assert not all(torch.equal(a, b) for a, b in zip(run[0], run[1]))         # epochs differ
    resumed = _epochs(make(), method, 3, start=2)                            # a new process state, epoch 2 again
    assert all(torch.equal(a, b) for a, b in zip(run[2], resumed[0]))
    fresh = _epochs(make(), method, 3, persistent=False)                     # not persistent: the same draws
    assert all(torch.equal(a, b) for e in range(3) for a, b in zip(run[e], fresh[e]))


def test_collate_state_dict_and_set_epoch_in_the_main_process():
    collate = mixbook.MixCollate(mixbook.MixUp(num_classes=4, generator=_gen(0)))
    with pytest.raises(ValueError, match="set_epoch needs a transform built with a generator"):
        mixbook.MixCollate(mixbook.MixUp(num_classes=4)).set_epoch(0)
    run = _epochs_main(collate, 3)
    state = collate.state_dict()
    assert state["epoch"] == 2
    again = mixbook.MixCollate(mixbook.MixUp(num_classes=4, generator=_gen(5)))
    again.load_state_dict(state)
    assert torch.equal(_epochs_main(again, 3, start=2)[0][0], run[2][0])
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(collate)).epoch == 2 and copy.deepcopy(collate).epoch == 2
    with pytest.raises(ValueError, match="epoch"):
        collate.set_epoch(-1)


def _epochs_main(collate, epochs, start=0):
    loader = DataLoader(_dataset(), batch_size=6, collate_fn=collate)
    out = []
    for epoch in range(start, epochs):
        collate.set_epoch(epoch)
        out.append([x.clone() for x, _ in loader])
    return out


def test_a_seeded_transform_pickles_its_generator_as_bytes():
    import pickle

    t = mixbook.MixUp(num_classes=4, generator=_gen(0))
    state = t.__getstate__()
    assert isinstance(state["generator"].state, bytes)
    copy = pickle.loads(pickle.dumps(t))
    x, y = _batch()
    assert torch.equal(copy(x, y)[0], t(x, y)[0])


# ====================================================================== 6. precise losses
_LOSS_ERRORS = {}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_losses_compute_in_float32_for_low_precision_logits(dtype):
    g = _gen(0)
    logits = (4 * torch.randn(64, 100, generator=g)).to(dtype)
    y, y2 = torch.randint(0, 100, (64,), generator=g), torch.randint(0, 100, (64,), generator=g)
    lam = torch.rand(64, generator=g)
    targets = lam[:, None] * F.one_hot(y, 100) + (1 - lam[:, None]) * F.one_hot(y2, 100)
    ref = -(targets.double() * logits.double().log_softmax(1)).sum(1).mean()
    got = {
        "soft_cross_entropy": mixbook.soft_cross_entropy(logits, targets),
        "mixed_cross_entropy": mixbook.mixed_cross_entropy(logits, y, y2, lam),
        "SoftTargetCrossEntropy": mixbook.SoftTargetCrossEntropy()(logits, targets),
    }
    for name, loss in got.items():
        assert loss.dtype == torch.float32, name
        err = abs(float(loss) - float(ref))
        _LOSS_ERRORS[(name, str(dtype))] = err
        assert err < 1e-5 * max(1.0, float(ref)), (name, err)
    naive = F.cross_entropy(logits, targets.to(dtype))                       # what bf16 arithmetic gives
    assert abs(float(naive) - float(ref)) > 10 * max(_LOSS_ERRORS[("soft_cross_entropy", str(dtype))], 1e-7)
    logits.requires_grad_(True)
    mixbook.soft_cross_entropy(logits, targets).backward()
    assert logits.grad.dtype == dtype


# ====================================================================== 7. prob and a fixed λ
_PROB_TRANSFORMS = {
    "MixUp": (lambda p, g: mixbook.MixUp(num_classes=4, prob=p, generator=g), "batch"),
    # per example: no example paired with itself and λ never 1 when mixed (the drawn λ, not the box's area),
    # so an output is its own example exactly when prob left it unmixed
    "MixUp(per_sample)": (lambda p, g: mixbook.MixUp(num_classes=4, prob=p, per_sample=True, pairing="derangement",
                                                     generator=g), "elem"),
    "CutMix(elem)": (lambda p, g: mixbook.CutMix(num_classes=4, prob=p, mode="elem", pairing="derangement",
                                                 correct_lam=False, generator=g), "elem"),
    "MixUpCutMix": (lambda p, g: mixbook.MixUpCutMix(num_classes=4, prob=p, generator=g), "batch"),
    "ZetaMixup": (lambda p, g: mixbook.ZetaMixup(num_classes=4, prob=p, generator=g), "batch"),
    "MultiMix": (lambda p, g: mixbook.MultiMix(num_classes=4, prob=p, generator=g), "batch"),
}


@pytest.mark.parametrize("name", list(_PROB_TRANSFORMS))
def test_prob_is_the_fraction_of_batches_or_examples_mixed(name):
    make, unit = _PROB_TRANSFORMS[name]
    x = torch.rand(8, 3, 8, 8)
    t = make(0.3, _gen(0))
    draws = 1500
    mixed = []
    for _ in range(draws):
        m = t.sample(x)
        w = m.dense()
        unmixed = (w.diagonal() == 1) & torch.isclose(w.sum(1), torch.ones(8))
        mixed.append((~unmixed).float().mean() if unit == "elem" else (~unmixed).any().float())
    rate = torch.stack(mixed).mean().item()
    n = draws * (8 if unit == "elem" else 1)
    assert abs(rate - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n), rate
    assert make(1.0, _gen(0)).sample(x).dense().diagonal().lt(1).any()
    assert torch.equal(make(0.0, _gen(0)).sample(x).dense(), torch.eye(8))
    with pytest.raises(ValueError, match="prob"):
        make(1.5, None)


def test_prob_below_one_needs_n_equal_b_for_dense_mixings():
    with pytest.raises(ValueError, match="n == b"):
        mixbook.MultiMix(num_classes=4, n=16, prob=0.5, generator=_gen(0)).sample(torch.rand(8, 3))


def test_a_fixed_lambda_and_a_range():
    x, y = _batch()
    m = mixbook.MixUp(num_classes=4, lam=0.25, generator=_gen(0)).sample(x)
    assert torch.equal(m.lam, torch.full((8,), 0.25))
    m = mixbook.MixUp(num_classes=4, lam=(0.2, 0.4), per_sample=True, generator=_gen(0)).sample(x)
    assert bool(((m.lam >= 0.2) & (m.lam <= 0.4)).all()) and m.lam.unique().numel() == 8
    m = mixbook.CutMix(num_classes=4, lam=0.75, generator=_gen(0)).sample(x)   # a box of a quarter of the image
    y1, x1, y2, x2 = m.boxes[0].tolist()
    assert (y2 - y1) * (x2 - x1) <= 16
    for bad in (1.5, (0.5, 0.2), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="lam"):
            mixbook.MixUp(num_classes=4, lam=bad)
