"""The API reference (book/api.md) and the migration page (book/migration.md).

- the API page documents every class and function of ``mixbook.__all__`` under its own anchor
  (``id="mixbook.MixUp"`` in the built HTML) and every other name of ``mixbook.__all__`` (the
  sub-packages) has a module anchor;
- the migration page names only mixbook attributes that exist (every ``mixbook.X`` and every
  ``X(`` after "mixbook" in its code, tables and roles) and only keywords the named classes take;
- two of its equivalence claims hold numerically: ``MixUp(pairing="roll")`` is torchvision's
  ``v2.MixUp`` for the same λ, and ``MixUp(pairing="flip", smoothing=ε)`` gives timm's ``Mixup``
  targets (mixup only, ``label_smoothing=ε``) for the same λ (only where timm is installed).

The built-HTML checks use the ``built_book`` fixture (one build per session, shared with the book
and browser tests), so they are marked like tests/test_browser.py.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

import mixbook

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "book" / "api.md"
MIGRATION = ROOT / "book" / "migration.md"

FACE_OBJECTS = [n for n in mixbook.__all__ if inspect.isclass(getattr(mixbook, n)) or inspect.isfunction(getattr(mixbook, n))]
SUBPACKAGES = [n for n in mixbook.__all__ if n not in FACE_OBJECTS]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- the sources (no build)
def test_face_has_classes_functions_and_subpackages():
    assert len(FACE_OBJECTS) >= 20 and set(SUBPACKAGES) == {"core", "methods", "training", "chapters", "bench"}


def test_api_page_has_a_directive_for_every_public_class_and_function():
    text = API.read_text()
    documented = set(re.findall(r"^\.\. auto(?:class|function):: mixbook\.(\w+)\s*$", text, re.M))
    assert set(FACE_OBJECTS) <= documented, sorted(set(FACE_OBJECTS) - documented)
    for pkg in ("core", "methods", "training"):
        assert f".. automodule:: mixbook.{pkg}\n" in text


def test_migration_page_names_only_existing_mixbook_attributes():
    text = MIGRATION.read_text()
    names = set(re.findall(r"\bmixbook\.([A-Za-z_]\w*)", text))
    assert {"MixUp", "CutMix", "MixUpCutMix", "MixCollate", "SoftTargetCrossEntropy"} <= names
    missing = sorted(n for n in names if not hasattr(mixbook, n))
    assert not missing, f"book/migration.md names mixbook attributes that do not exist: {missing}"


KEYWORD_CALL = re.compile(r"\b(MixUp|CutMix|MixUpCutMix|MixCollate|SoftTargetCrossEntropy|ZetaMixup|MultiMix)\(([^()]*)\)")


def _accepted(cls) -> set[str]:
    """Keywords a mixbook class takes: its own and, through ``**options``, those of its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object or klass.__module__.startswith("torch"):
            continue
        names |= {p.name for p in inspect.signature(init).parameters.values()
                  if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
    return names


def test_migration_page_uses_only_keywords_the_mixbook_classes_take():
    text = MIGRATION.read_text()
    # every `Class(keyword=...)` written with a mixbook class name, in the tables and the code
    # blocks, must use keywords that class accepts (timm's classes are spelt differently: Mixup)
    checked = 0
    for match in KEYWORD_CALL.finditer(text):
        cls = getattr(mixbook, match.group(1))
        keywords = set(re.findall(r"\b(\w+)\s*=", match.group(2)))
        unknown = keywords - _accepted(cls)
        assert not unknown, f"{match.group(0)!r} on the migration page: {cls.__name__} takes no {sorted(unknown)}"
        checked += 1
    assert checked >= 8, checked


def test_migration_page_lists_the_deliberate_differences_and_maps_every_timm_keyword():
    text = MIGRATION.read_text()
    section = text.split("## What differs on purpose", 1)[1].split("\n## ", 1)[0]
    items = re.findall(r"^(\d+)\. \*\*", section, re.M)
    assert items == [str(i) for i in range(1, len(items) + 1)] and 1 <= len(items) <= 10, items
    timm_table = text.split("## timm `Mixup`", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in timm_table.splitlines() if line.startswith("| `")]
    timm_mixup = pytest.importorskip("timm.data.mixup", reason="timm is not installed here")
    for keyword in inspect.signature(timm_mixup.Mixup).parameters:
        assert any(f"`{keyword}=" in row for row in rows), f"no row for timm's {keyword}"
        assert keyword in inspect.signature(mixbook.MixUpCutMix).parameters or keyword in _accepted(mixbook.MixUpCutMix)
    assert "| none |" not in text                       # nothing of timm's or torchvision's is left unmapped
    assert mixbook.methods.cutmix.MODES == ("batch", "pair", "elem", "half")


# ---------------------------------------------------------------------- equivalences, numerically
def test_mixup_roll_is_torchvision_mixup_for_the_same_lambda():
    from torchvision.transforms import v2

    x, y = torch.rand(6, 3, 8, 8, generator=_gen(0)), torch.tensor([0, 1, 2, 3, 1, 0])
    ours = mixbook.MixUp(alpha=0.4, num_classes=4, pairing="roll")
    lam = ours.sample(x, y, generator=_gen(1)).lam[0]
    theirs = v2.MixUp(alpha=0.4, num_classes=4)

    class Fixed:                                  # torchvision draws λ with self._dist.sample(())
        def sample(self, shape):
            return lam.double()

    theirs._dist = Fixed()
    x_before = x.clone()
    out, soft = ours(x, y, generator=_gen(1))
    ref, ref_soft = theirs(x, y)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(soft, ref_soft)
    assert torch.equal(x, x_before)               # neither modifies the batch


def test_label_smoothing_is_timms_on_and_off_values():
    # timm's mixup_target: one_hot(y, on=1 - eps + eps/C, off=eps/C) mixed with the flipped batch
    x, y = torch.rand(8, 3, 4, 4, generator=_gen(2)), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    eps, c = 0.1, 5
    t = mixbook.MixUp(alpha=1.0, num_classes=c, pairing="flip", smoothing=eps)
    lam = t.sample(x, y, generator=_gen(3)).lam[0]
    _, soft = t(x, y, generator=_gen(3))
    off, on = eps / c, 1 - eps + eps / c
    hot = torch.full((8, c), off).scatter_(1, y[:, None], on)
    torch.testing.assert_close(soft, hot * lam + hot.flip(0) * (1 - lam))


def test_timm_mixup_targets_and_images_match_for_the_same_lambda():
    timm_mixup = pytest.importorskip("timm.data.mixup", reason="timm is not installed here")
    x, y = torch.rand(8, 3, 8, 8, generator=_gen(4)), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    ours = mixbook.MixUp(alpha=0.8, num_classes=5, pairing="flip", smoothing=0.1)
    lam = float(ours.sample(x, y, generator=_gen(5)).lam[0])
    theirs = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, num_classes=5)
    theirs._params_per_batch = lambda: (lam, False)          # the λ mixbook drew, mixup (not CutMix)
    out, soft = ours(x, y, generator=_gen(5))
    x_timm = x.clone()
    ref, ref_soft = theirs(x_timm, y)
    assert ref is x_timm                                     # timm mixes in place; mixbook does not
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(soft, ref_soft)


def test_timm_defaults_and_multi_label_smoothing_as_the_page_says():
    timm_mixup = pytest.importorskip("timm.data.mixup", reason="timm is not installed here")
    defaults = {k: p.default for k, p in inspect.signature(timm_mixup.Mixup).parameters.items()}
    assert defaults["label_smoothing"] == 0.1 and defaults["num_classes"] == 1000 and defaults["cutmix_minmax"] is None
    assert defaults["mixup_alpha"] == 1.0 and defaults["cutmix_alpha"] == 0.0 and defaults["switch_prob"] == 0.5
    multi_hot = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 4)
    eps = 0.2
    theirs = timm_mixup.mixup_target(multi_hot, 4, lam=1.0, smoothing=eps, multi_label=True)
    torch.testing.assert_close(theirs, multi_hot * (1 - eps) + 0.5 * eps)            # towards 0.5
    ours = mixbook.MixUp(num_classes=4, multi_label=True, smoothing=eps)(torch.rand(4, 3), multi_hot)[1]
    torch.testing.assert_close(ours, theirs)                                          # mixbook too


def test_timm_box_is_at_most_one_pixel_longer_a_side():
    timm_mixup = pytest.importorskip("timm.data.mixup", reason="timm is not installed here")
    import numpy as np

    from mixbook.methods.cutmix import box

    h, w = 17, 24
    for seed, lam in enumerate(np.linspace(0.05, 0.95, 19)):
        np.random.seed(seed)
        yl, yh, xl, xh = timm_mixup.rand_bbox((3, h, w), lam)
        np.random.seed(seed)
        cy, cx = np.random.randint(0, h), np.random.randint(0, w)         # the centre rand_bbox drew
        (y1, x1, y2, x2), = box(torch.tensor([lam]), torch.tensor([cy]), torch.tensor([cx]), (h, w))[0].tolist()
        assert (y1, x1) == (yl, xl)
        cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        assert yh - y2 == (cut_h % 2 if cy + (cut_h + 1) // 2 <= h else 0)
        assert xh - x2 == (cut_w % 2 if cx + (cut_w + 1) // 2 <= w else 0)


def test_timm_soft_target_cross_entropy_is_mixbooks():
    loss_mod = pytest.importorskip("timm.loss", reason="timm is not installed here")
    logits = torch.randn(6, 4, generator=_gen(6))
    soft = torch.softmax(torch.randn(6, 4, generator=_gen(7)), 1)
    torch.testing.assert_close(mixbook.SoftTargetCrossEntropy()(logits, soft), loss_mod.SoftTargetCrossEntropy()(logits, soft))


def test_mixup_only_with_prob_is_the_switch_at_zero():
    # the migration page's stand-in for timm's Mixup(mixup_alpha=a, cutmix_alpha=0, prob=p)
    x, y = torch.rand(64, 3, 4, 4, generator=_gen(8)), torch.randint(0, 3, (64,), generator=_gen(9))
    t = mixbook.MixUpCutMix(mixup_alpha=0.5, switch_prob=0.0, prob=0.5, mode="elem", num_classes=3)
    m = t.sample(x, y, generator=_gen(10))
    assert not bool(m.use_box.any())                        # never CutMix
    unmixed = m.lam == 1
    assert 0 < int(unmixed.sum()) < 64                      # some examples left unmixed, some mixed
    out = m.apply(x)
    torch.testing.assert_close(out[unmixed], x[unmixed])
    mixed = ~unmixed
    expected = m.lam[mixed, None, None, None] * x[mixed] + (1 - m.lam[mixed, None, None, None]) * x[m.partner[mixed]]
    torch.testing.assert_close(out[mixed], expected)


# ---------------------------------------------------------------------- the built pages
@pytest.mark.notebook
@pytest.mark.xdist_group("book")
def test_api_page_has_an_anchor_for_every_public_name(built_book):
    page = built_book.html / "book" / "api.html"
    assert page.exists(), built_book.log
    ids = set(re.findall(r'\bid="([^"]+)"', page.read_text()))
    missing = [n for n in FACE_OBJECTS if f"mixbook.{n}" not in ids]
    assert not missing, f"no anchor on the API page for {missing}"
    missing_modules = [n for n in SUBPACKAGES if f"module-mixbook.{n}" not in ids]
    assert not missing_modules, missing_modules
    for name in ("mixbook.Mixing.apply", "mixbook.Mixing.targets", "mixbook.MixingTransform.forward",
                 "mixbook.methods.mixup.sample", "mixbook.methods.cutmix.sample_switch",
                 "mixbook.core.registry.MethodSpec", "mixbook.training.train.History"):
        assert name in ids, name


@pytest.mark.notebook
@pytest.mark.xdist_group("book")
def test_migration_page_links_its_mixbook_names_into_the_api_page(built_book):
    page = built_book.html / "book" / "migration.html"
    assert page.exists(), built_book.log
    hrefs = set(re.findall(r'href="api\.html#([^"]+)"', page.read_text()))
    assert {"mixbook.MixUp", "mixbook.CutMix", "mixbook.MixUpCutMix", "mixbook.MixCollate",
            "mixbook.SoftTargetCrossEntropy"} <= hrefs, hrefs
