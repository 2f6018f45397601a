"""The four silent traps of issue 16 for people who import mixbook.

1. a seeded transform as a DataLoader ``collate_fn`` in workers: distinct, reproducible streams;
2. ``fit`` in an initialised process group (one rank): trains data-parallel; ``population.repeat`` refuses it;
3. wrong inputs (an unbatched image, boxes, masks) refused instead of mixed;
4. ``torch.compile(fullgraph=True)``: zero graph breaks with a generator; a compiled model in
   manifold mixup refused with an error that names compilation.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

import mixbook
from mixbook.core import hooks
from mixbook.methods import manifold, mixup, multimix, reformulation, zeta
from mixbook.training import models, train
from mixbook.core.mixing import Mixing


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ====================================================================== 1. DataLoader workers
class _DrawCollate:
    """A collate_fn that returns the draws of a seeded transform (λ and partners) for the batch."""

    def __init__(self, transform: mixbook.core.mixing.MixingTransform) -> None:
        self.transform = transform

    def __call__(self, samples):
        x, y = default_collate(samples)
        x_mix, y_soft = self.transform(x, y)            # the public call path
        w = self.transform.sample(x, y).dense()         # and one more draw from the same stream
        return x_mix, y_soft, w


def _epochs(transform_factory, *, persistent: bool, loader_seed: int, epochs: int = 2):
    ds = TensorDataset(torch.randn(32, 3, 4, 4, generator=_gen(0)), torch.randint(0, 4, (32,), generator=_gen(1)))
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=_DrawCollate(transform_factory()),
                        persistent_workers=persistent, generator=_gen(loader_seed), shuffle=False)
    return [list(loader) for _ in range(epochs)]


def _key(batch) -> tuple:
    x_mix, y_soft, w = batch                            # the draws only: the data differ by batch anyway
    return tuple(round(v, 6) for v in w.flatten().tolist())


@pytest.mark.parametrize("persistent", [False, True])
def test_seeded_transform_in_workers_differs_across_workers_and_epochs(persistent):
    factory = lambda: mixbook.MixUp(alpha=1.0, num_classes=4, per_sample=True, generator=_gen(0))  # noqa: E731
    run = _epochs(factory, persistent=persistent, loader_seed=123)
    keys = [_key(b) for epoch in run for b in epoch]
    assert len(keys) == 8
    assert len(set(keys)) == len(keys), "two batches (workers or epochs) drew the same λ and partners"
    # batches 0 and 1 come from different workers, as do 2 and 3
    assert _key(run[0][0]) != _key(run[0][1]) and _key(run[0][2]) != _key(run[0][3])
    # every epoch gets new draws
    assert [_key(b) for b in run[0]] != [_key(b) for b in run[1]]


@pytest.mark.parametrize("persistent", [False, True])
def test_seeded_transform_in_workers_is_reproducible(persistent):
    factory = lambda: mixbook.ZetaMixup(num_classes=4, generator=_gen(0))  # noqa: E731
    a = _epochs(factory, persistent=persistent, loader_seed=7)
    b = _epochs(factory, persistent=persistent, loader_seed=7)
    for ea, eb in zip(a, b):
        for ba, bb in zip(ea, eb):
            for ta, tb in zip(ba, bb):
                assert torch.equal(ta, tb)
    c = _epochs(factory, persistent=persistent, loader_seed=8)
    assert not torch.equal(a[0][0][0], c[0][0][0])


def test_worker_streams_depend_on_the_user_seed():
    a = _epochs(lambda: mixbook.MultiMix(num_classes=4, generator=_gen(0)), persistent=False, loader_seed=5, epochs=1)
    b = _epochs(lambda: mixbook.MultiMix(num_classes=4, generator=_gen(1)), persistent=False, loader_seed=5, epochs=1)
    assert not torch.equal(a[0][0][0], b[0][0][0])


def test_main_process_draws_are_unchanged():
    """Outside a worker the transform draws from its generator exactly as before."""
    x, y = torch.randn(8, 3), torch.randint(0, 4, (8,))
    t = mixbook.MixUp(alpha=1.0, num_classes=4, generator=_gen(3))
    assert t.stream() is t.generator
    m = t.sample(x, y)
    ref = mixup.sample(x, y, alpha=1.0, generator=_gen(3))
    assert torch.equal(m.partner, ref.partner) and torch.equal(m.lam, ref.lam)
    assert mixbook.MixUp(alpha=1.0, num_classes=4).stream() is None


def test_worker_generator_is_a_pure_function():
    from mixbook.core._random import worker_generator

    g = _gen(0)
    state = g.get_state()
    a = torch.rand(4, generator=worker_generator(g, 11))
    b = torch.rand(4, generator=worker_generator(g, 11))
    c = torch.rand(4, generator=worker_generator(g, 12))
    assert torch.equal(g.get_state(), state)  # the user's generator is not advanced
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, torch.rand(4, generator=worker_generator(_gen(1), 11)))


# ====================================================================== 2. distributed
@pytest.fixture()
def gloo_group(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_fit_trains_in_a_process_group_and_population_refuses_it(gloo_group):
    """A world of one: fit wraps the model in DDP (or takes the caller's DDP) and trains; the
    vectorised population is single-process and refuses the group (tests/test_distributed.py
    runs two ranks)."""
    from mixbook.training import population

    moons = mixbook.training.data.two_moons(n_train=32, n_test=16, seed=0)
    model = models.MLP(2, 2, (8,))
    hist = train.fit(model, moons, "mixup", epochs=1, device="cpu", progress=False)
    assert len(hist.epochs) == 1 and 0 <= hist.final["accuracy"] <= 1
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    method = train.make_method("manifold_mixup", layers=["features.1"])   # the user's path, on DDP's module
    hist = train.fit(ddp, moons, method, epochs=1, device="cpu", progress=False)
    assert len(hist.epochs) == 1
    frame = train.repeat(lambda: models.MLP(2, 2, (8,)), moons, {"erm": "erm"}, [0], epochs=1, device="cpu",
                         progress=False)
    assert len(frame) == 1
    with pytest.raises(RuntimeError, match=r"process group.*population\.repeat is single-process"):
        population.repeat(lambda: models.MLP(2, 2, (8,)), moons, {"erm": "erm"}, [0], epochs=1, device="cpu",
                          progress=False)


def test_fit_runs_again_after_the_group_is_destroyed(tmp_path):
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    dist.destroy_process_group()
    moons = mixbook.training.data.two_moons(n_train=32, n_test=16, seed=0)
    hist = train.fit(models.MLP(2, 2, (8,)), moons, "erm", epochs=1, device="cpu", progress=False)
    assert len(hist.epochs) == 1


# ====================================================================== 3. wrong inputs
TRANSFORMS = {
    "MixUp": lambda: mixbook.MixUp(alpha=1.0, num_classes=3),
    "ZetaMixup": lambda: mixbook.ZetaMixup(num_classes=3),
    "MultiMix": lambda: mixbook.MultiMix(num_classes=3),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_unbatched_image_is_refused(name):
    mix = TRANSFORMS[name]()
    image, y = torch.rand(3, 8, 8), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"\bx\b must be a batch of .*\(b, C, H, W\).*got shape \(3, 8, 8\).*unsqueeze\(0\)"):
        mix(image, y)
    with pytest.raises(ValueError, match=r"\bx\b must be a batch of .*got shape \(3,\)"):
        mix(torch.rand(3), y)
    with pytest.raises(ValueError, match=r"\bx\b must be a batch"):
        mix(torch.rand(3, 1, 1, 1, 1, 1), y)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_valid_batches_still_mix(name):
    mix = TRANSFORMS[name]()
    y = torch.tensor([0, 1, 2, 1])
    for shape in ((4, 5), (4, 3, 6, 6), (4, 2, 3, 6, 6)):      # features, images, videos
        x = torch.rand(*shape)
        x0 = x.clone()
        x_mix, y_soft = mix(x, y)
        assert x_mix.shape[1:] == x.shape[1:] and y_soft.shape[1] == 3
        assert torch.equal(x, x0)


def test_boxes_and_masks_are_refused():
    tv_tensors = pytest.importorskip("torchvision.tv_tensors")
    y = torch.tensor([0, 1])
    boxes = tv_tensors.BoundingBoxes(torch.rand(2, 4), format="XYXY", canvas_size=(8, 8))
    masks = tv_tensors.Mask(torch.rand(2, 1, 8, 8))
    for name, make in TRANSFORMS.items():
        for bad in (boxes, masks):
            with pytest.raises(ValueError, match=rf"\bx\b is a torchvision.tv_tensors.{type(bad).__name__}"):
                make()(bad, y)
    m = mixup.sample(torch.rand(2, 3), generator=_gen(0))
    with pytest.raises(ValueError, match="bounding boxes, masks"):
        m.apply(masks)
    with pytest.raises(ValueError, match="Mask"):
        reformulation.mix(masks, y)
    # Images are tensors too, and are mixed as before.
    image = tv_tensors.Image(torch.rand(2, 3, 8, 8))
    x_mix, _ = mixbook.MixUp(alpha=1.0, num_classes=3)(image, y)
    assert x_mix.shape == (2, 3, 8, 8)


def test_samplers_and_apply_keep_taking_any_batch():
    """(b, d, r) embeddings and hidden features go through the samplers, Mixing.apply and reformulation.mix."""
    z = torch.rand(6, 4, 5)
    assert reformulation.mix(z, torch.arange(6), generator=_gen(0))[0].shape == z.shape
    for m in (mixup.sample(z, generator=_gen(0)), zeta.sample(z, generator=_gen(0)),
              multimix.sample(z, generator=_gen(0)), reformulation.sample(z, generator=_gen(0))):
        assert m.apply(z).shape[1:] == (4, 5)


# ====================================================================== 4. torch.compile
SAMPLERS = {
    "MixUp": lambda g: mixbook.MixUp(alpha=1.0, num_classes=5, generator=g),
    "ZetaMixup": lambda g: mixbook.ZetaMixup(num_classes=5, generator=g),
    "MultiMix": lambda g: mixbook.MultiMix(num_classes=5, generator=g),
    "mixup.sample": lambda g: (lambda x, y: mixup.sample(x, y, generator=g).apply(x)),
    "mixup.sample(per_sample)": lambda g: (lambda x, y: mixup.sample(x, y, per_sample=True, generator=g).apply(x)),
    "mixup.sample(same_class)": lambda g: (lambda x, y: mixup.sample(x, y, pairing="same_class", generator=g).apply(x)),
    "reformulation.sample": lambda g: (lambda x, y: reformulation.sample(x, generator=g).apply(x)),
    "reformulation.mix": lambda g: (lambda x, y: reformulation.mix(x, y, generator=g)),
    "zeta.sample": lambda g: (lambda x, y: zeta.sample(x, y, generator=g).apply(x)),
    "multimix.sample": lambda g: (lambda x, y: multimix.sample(x, y, generator=g).apply(x)),
    "multimix.sample(alpha=0.5)": lambda g: (lambda x, y: multimix.sample(x, y, alpha=0.5, generator=g).apply(x)),
    "Mixing.targets": lambda g: (lambda x, y: mixup.sample(x, y, generator=g).targets(y, 5, 0.1)),
}


def _batch():
    return torch.randn(8, 3, 4, 4, generator=_gen(10)), torch.randint(0, 5, (8,), generator=_gen(11))


@pytest.mark.parametrize("name", SAMPLERS)
def test_zero_graph_breaks_with_a_generator(name):
    torch._dynamo.reset()
    x, y = _batch()
    explanation = torch._dynamo.explain(SAMPLERS[name](_gen(0)))(x, y)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("name", ["MixUp", "mixup.sample(same_class)", "reformulation.sample", "ZetaMixup", "MultiMix"])
def test_fullgraph_compile_draws_what_eager_draws(name):
    """The compiled step draws the same numbers from the generator as the eager step, in order."""
    torch._dynamo.reset()
    x, y = _batch()
    g = _gen(0)
    fn = SAMPLERS[name](g)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    g.manual_seed(5)
    eager = [fn(x, y) for _ in range(3)]
    g.manual_seed(5)
    traced = [compiled(x, y) for _ in range(3)]
    for e, t in zip(eager, traced):
        for a, b in zip(e if isinstance(e, tuple) else (e,), t if isinstance(t, tuple) else (t,)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(eager[0][0] if isinstance(eager[0], tuple) else eager[0],
                              eager[1][0] if isinstance(eager[1], tuple) else eager[1])


def test_compiled_training_step_with_inductor():
    """A whole step (transform, model, loss, backward) under fullgraph Inductor, as an importer writes it."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = models.SmallCNN(in_channels=3, num_classes=5, width=4)
    mix = mixbook.MixUp(alpha=0.4, num_classes=5, per_sample=True, generator=_gen(0))

    def loss_fn(x, y):
        x_mix, y_soft = mix(x, y)
        return mixbook.soft_cross_entropy(model(x_mix), y_soft)

    x, y = torch.randn(8, 3, 8, 8, generator=_gen(1)), torch.randint(0, 5, (8,), generator=_gen(2))
    compiled = torch.compile(loss_fn, fullgraph=True)
    mix.generator.manual_seed(3)
    eager = [loss_fn(x, y).detach() for _ in range(2)]
    mix.generator.manual_seed(3)
    losses = [compiled(x, y) for _ in range(2)]
    losses[0].backward()
    assert all(p.grad is not None for p in model.parameters())
    torch.testing.assert_close(torch.stack([l.detach() for l in losses]), torch.stack(eager), rtol=1e-5, atol=1e-5)


def test_value_checks_are_skipped_only_while_tracing():
    from mixbook.core import _checks

    y = torch.tensor([0, 1, 7])
    with pytest.raises(ValueError, match="num_classes"):
        _checks.labels("y", y, 3)                      # eager: still checked

    def f(labels):
        return _checks.check_values(labels)

    assert f(y) is True
    assert torch.compile(f, fullgraph=True, backend="eager")(y) is False


def test_manifold_mixup_refuses_a_compiled_model():
    model = models.MLP(2, 3, (8, 8))
    compiled = torch.compile(model)
    with pytest.raises(TypeError, match=r"compiled \(torch.compile.*_orig_mod"):
        manifold.ManifoldMixup(compiled, ["features.2"])
    x = torch.randn(4, 2)
    with pytest.raises(TypeError, match="compiled"):
        hooks.transform_at(compiled, x, "features.2", lambda h: h)
    part = models.MLP(2, 3, (8, 8))
    part.features.compile()
    with pytest.raises(TypeError, match=r"module 'features' of the model is compiled"):
        manifold.ManifoldMixup(part, ["input", "features.2"])
    # input mixup needs no hook, and layers outside the compiled part still work
    mm = manifold.ManifoldMixup(compiled, ["input"], generator=_gen(0))
    assert mm(x)[0].shape == (4, 3)
    assert manifold.ManifoldMixup(part, ["head"], generator=_gen(0))(x)[0].shape == (4, 3)
    with pytest.raises(TypeError, match="compiled"):
        train.fit(compiled, mixbook.training.data.two_moons(n_train=16, n_test=8, seed=0),
                  mixbook.make_method("manifold_mixup", layers=["features.2"]), epochs=1, device="cpu", progress=False)


def test_constant_marker_is_what_torch_sets():
    """mixbook marks its trace-time helpers as torch.compiler.assume_constant_result does."""
    from mixbook.core import _checks, _random

    marked = torch.compiler.assume_constant_result(lambda g: 0)
    assert getattr(marked, "_dynamo_marked_constant", False) is True
    for fn in (_checks._generator_device, _random._handle):
        assert fn._dynamo_marked_constant is True
