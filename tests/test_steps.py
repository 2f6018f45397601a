"""mixbook.training.steps: the generic training method built from a sampler, and the registry.

Each registered mixing method is a SamplerMethod; its loss is checked against the same
computation written out by hand with the same generator state (the sampler's draw, the layer,
the loss form), so the registry entries are the methods the chapters describe."""

import functools
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixbook.training import data, models, steps, train
from mixbook.core import hooks, losses, registry
from mixbook.methods import cutmix, manifold, mixup, multimix, reformulation, zeta
from mixbook.chapters import synthetic
from mixbook.core.mixing import Mixing

import test_layers

ROOT = Path(__file__).resolve().parents[1]


def _setup(seed=0, b=12):
    torch.manual_seed(seed)
    model = models.MLP(6, 3, (8, 8))
    x = torch.randn(b, 6)
    y = torch.arange(b) % 3
    return model, x, y


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_mixup_is_its_sampler_at_the_input_with_the_mixed_loss():
    model, x, y = _setup()
    got = train.make_method("mixup", alpha=0.4, per_sample=True).loss(model, x, y, 3, _gen(1))
    m = mixup.sample(x, y, alpha=0.4, per_sample=True, generator=_gen(1))
    want = losses.mixed_cross_entropy(model(m.apply(x)), y, y[m.partner], m.lam)
    torch.testing.assert_close(got, want)
    soft = train.make_method("mixup", alpha=0.4, per_sample=True, loss="soft").loss(model, x, y, 3, _gen(1))
    torch.testing.assert_close(soft, want)            # the two loss forms agree for a pairwise mixing


def test_reformulation_keeps_the_first_label_and_draws_from_a_pool():
    model, x, y = _setup()
    got = train.make_method("reformulation", alpha=0.7).loss(model, x, y, 3, _gen(2))
    m = reformulation.sample(x, alpha=0.7, generator=_gen(2))
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(model(m.apply(x)), y))
    pool = torch.randn(30, 6)
    before = pool.clone()
    got = train.make_method("reformulation", alpha=0.7, unlabelled=pool).loss(model, x, y, 3, _gen(3))
    m = reformulation.sample(x, alpha=0.7, partners=pool, generator=_gen(3))
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(model(m.apply(x, pool)), y))
    assert torch.equal(pool, before)


def test_zeta_is_dense_at_the_input_with_soft_targets():
    model, x, y = _setup()
    got = train.make_method("zeta", gamma=2.0).loss(model, x, y, 3, _gen(4))
    m = zeta.sample(x, y, gamma=2.0, generator=_gen(4))
    torch.testing.assert_close(got, losses.soft_cross_entropy(model(m.apply(x)), m.targets(y, 3)))


@pytest.mark.parametrize("clean", [True, False])
def test_multimix_mixes_the_embedding_with_the_clean_term(clean):
    model, x, y = _setup()
    got = train.make_method("multimix", alpha=1.0, n=20, clean=clean).loss(model, x, y, 3, _gen(5))
    m = multimix.sample(x, y, alpha=1.0, n=20, generator=_gen(5))
    fn = (lambda h: torch.cat([h, m.apply(h)])) if clean else m.apply
    logits = hooks.transform_at(model, x, "features", fn)
    targets = m.targets(y, 3)
    want = losses.soft_cross_entropy(logits[12:], targets) + torch.nn.functional.cross_entropy(logits[:12], y) \
        if clean else losses.soft_cross_entropy(logits, targets)
    torch.testing.assert_close(got, want)


def test_manifold_mixup_draws_the_mixing_then_the_layer_from_its_seed():
    model, x, y = _setup()
    layers = ["input", "features.1", "features.3"]
    method = train.make_method("manifold_mixup", layers=layers, alpha=2.0, seed=7)
    rng = random.Random(7)
    for step in range(6):
        got = method.loss(model, x, y, 3, _gen(10 + step))
        m = mixup.sample(x, y, alpha=2.0, generator=_gen(10 + step))
        layer = layers[rng.randrange(3)]
        logits = model(m.apply(x)) if layer == "input" else hooks.transform_at(model, x, layer, m.apply)
        torch.testing.assert_close(got, losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam))
    # a new model restarts the layer sequence, as a separate run would
    other, _, _ = _setup(1)
    first = method.prepare(other, x, y, 3, _gen(0)).layer
    assert first == layers[random.Random(7).randrange(3)]


def test_a_partial_of_any_sample_is_a_training_method():
    split = data.two_moons(n_train=64, n_test=64, seed=0)
    method = steps.SamplerMethod(functools.partial(zeta.sample, gamma=2.0), loss="soft")
    hist = train.fit(models.MLP(2, 2, (8,)), split, method, epochs=2, batch_size=16, seed=0, device="cpu",
                     progress=False)
    erm = train.fit(models.MLP(2, 2, (8,)), split, "erm", epochs=2, batch_size=16, seed=0, device="cpu",
                    progress=False)
    assert hist.epochs[-1]["train_loss"] != erm.epochs[-1]["train_loss"]
    assert repr(method) == "SamplerMethod(mixbook.methods.zeta.sample(gamma=2.0), at='input', loss='soft')"


def _readme_blocks() -> tuple[str, str]:
    """README's "Adding a mixing method": the module and the line for ``mixbook/methods/__init__.py``."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Adding a mixing method"):]
    section = section[: section.index("\n## ", 3)] if "\n## " in section[3:] else section
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    module = next(b for b in blocks if b.startswith("# mixbook/methods/flipmix.py"))
    line = next(b for b in blocks if b.strip().startswith("from . import flipmix")).strip()
    return module, line


def test_the_readme_method_touches_what_the_readme_says(tmp_path):
    """Done as README says (the module, one line in the methods package), in a copy of the package:
    the new name is registered, trains with fit, is made by make_method, runs in population.repeat,
    is in the methods package's __all__ and in the bench, and the floors still hold."""
    module, line = _readme_blocks()
    pkg = tmp_path / "mixbook"
    shutil.copytree(ROOT / "mixbook", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "methods" / "flipmix.py").write_text(module)
    init = pkg / "methods" / "__init__.py"
    text = init.read_text()
    last = max(m.end() for m in re.finditer(r"^from \. import \w+$", text, re.M))
    init.write_text(text[:last] + "\n" + line + text[last:])
    changed = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py")
                     if not (ROOT / p.relative_to(tmp_path)).exists()
                     or (ROOT / p.relative_to(tmp_path)).read_bytes() != p.read_bytes())
    assert changed == ["mixbook/methods/__init__.py", "mixbook/methods/flipmix.py"]
    graph = test_layers.import_graph(tmp_path)
    assert "mixbook.methods.flipmix" in graph["mixbook.methods"]
    assert test_layers.upward_imports(graph) == [] and test_layers.cycles(graph) == []
    script = """
import functools, torch, mixbook
from mixbook.chapters import synthetic
from mixbook.methods import flipmix
from mixbook.training import data, models, population
assert mixbook.__file__.startswith(%r), mixbook.__file__
assert "flipmix" in mixbook.methods.__all__ and "flipmix" in mixbook.core.registry.names()
assert repr(mixbook.make_method("flipmix")) == "flipmix(lam=0.7)"
try:
    mixbook.make_method("flipmix", lam=2.0)
    raise SystemExit("lam=2.0 was accepted")
except ValueError as e:
    assert "lam" in str(e)
x, y = torch.rand(6, 2), torch.arange(6) %% 2
torch.testing.assert_close(flipmix.sample(x, y, lam=0.6).apply(x), 0.6 * x + 0.4 * x.flip(0))
split = data.two_moons(n_train=32, n_test=32, seed=0)
hist = mixbook.fit(models.MLP(2, 2, (8,)), split, "flipmix", epochs=1, batch_size=8, seed=0, device="cpu",
                   progress=False)
assert hist.method == "flipmix(lam=0.7)" and len(hist.epochs) == 1
frame = population.repeat(lambda: models.MLP(2, 2, (8,)), split, {"flip": "flipmix"}, [0, 1], epochs=1,
                          batch_size=8, device="cpu", progress=False)
assert list(frame.method) == ["flip", "flip"]
s = synthetic.synthetic_set(x, y, 2, functools.partial(flipmix.sample, lam=0.6), size=5, batch_size=6,
                            generator=torch.Generator().manual_seed(0))
assert s.x.shape == (5, 2)
assert "mixbook_flipmix" in [e.op for e in mixbook.bench.entries()]
print("the README method: registered, fit, make_method, population.repeat, synthetic_set, methods.__all__, bench")
""" % str(tmp_path)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"files a new method touches: {changed} (and its test file)\n{run.stdout.strip()}")


def test_registered_reprs_name_the_method_and_its_options():
    assert repr(train.make_method("zeta")) == "zeta(gamma=2.8)"
    assert repr(train.make_method("mixup", alpha=0.2)) == \
        "mixup(alpha=0.2, per_sample=False, pairing='random', loss='mixed')"
    assert repr(train.make_method("manifold_mixup", layers=("input", "features.2"))) == \
        "manifold_mixup(layers=['input', 'features.2'], alpha=2.0, per_sample=False, seed=0)"
    assert repr(train.make_method("reformulation", alpha=0.4, unlabelled=torch.zeros(9, 2))) == \
        "reformulation(alpha=0.4, unlabelled=<9 examples>)"
    assert repr(train.make_method("multimix")) == "multimix(alpha=1.0, n=None, layer='features', clean=True)"


@pytest.mark.parametrize("build, err, match", [
    (lambda: steps.SamplerMethod(3), TypeError, "sampler must be callable"),
    (lambda: steps.SamplerMethod(mixup.sample, at=3), TypeError, "at must be"),
    (lambda: steps.SamplerMethod(mixup.sample, at=[]), TypeError, "at must be"),
    (lambda: steps.SamplerMethod(mixup.sample, loss="hinge"), ValueError, "loss"),
    (lambda: steps.SamplerMethod(zeta.sample, loss="mixed"), ValueError, "needs a pairwise sampler"),
    (lambda: steps.SamplerMethod(multimix.sample, loss="kept", n=5), ValueError, "one output per input"),
    (lambda: steps.SamplerMethod(mixup.sample, clean=True), ValueError, "clean=True is for dense"),
    (lambda: steps.SamplerMethod(lambda x, y, *, generator: x), TypeError, "must return a mixbook.core.mixing.Mixing"),
    (lambda: train.make_method("mixup", alpha=-1.0), ValueError, "alpha"),
    (lambda: train.make_method("mixup", loss="kept"), ValueError, "loss"),
    (lambda: train.make_method("multimix", n=0), ValueError, "n"),
    (lambda: train.make_method("multimix", layer=3), TypeError, "layer"),
    (lambda: train.make_method("manifold_mixup", layers="features"), TypeError, "layers"),
    (lambda: train.make_method("manifold_mixup", layers=["input"], seed=-1), ValueError, "seed"),
    (lambda: train.make_method("reformulation", unlabelled=[[0.0]]), TypeError, "unlabelled"),
    (lambda: train.make_method("nope"), ValueError, "method must be one of"),
])
def test_bad_arguments(build, err, match):
    with pytest.raises(err, match=match):
        build()


def test_bad_layer_is_reported_at_the_first_step():
    model, x, y = _setup()
    method = train.make_method("multimix", layer="features.9")
    with pytest.raises(ValueError, match="features.9"):
        method.loss(model, x, y, 3, _gen(0))


def test_register_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("mixup")(lambda: None)
    with pytest.raises(TypeError, match="name"):
        registry.register("")


def test_every_mixing_module_registers_its_spec():
    for name, module in (("mixup", mixup), ("reformulation", reformulation), ("zeta", zeta),
                         ("multimix", multimix), ("manifold_mixup", manifold), ("cutmix", cutmix)):
        assert registry.SPECS[name] is module.spec
        assert isinstance(module.spec(**({"layers": ["input"]} if name == "manifold_mixup" else {})),
                          registry.MethodSpec)
