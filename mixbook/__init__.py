"""mixbook: mixup and its descendants as one operation, a row-stochastic mixing matrix.

Every method produces ``n`` new examples as convex combinations of the ``b`` examples of a
batch, ``X_new = W @ X`` and ``Y_new = W @ Y``. :class:`Mixing` is that ``W``; each method is
a sampler of it.

The package is built in floors; each imports only the floors below it (``tests/test_layers.py``
reads the import graph and fails on a cycle or an upward import)::

    mixbook.core       Mixing and its kernels, the transform base, distributions, generator draws,
                       losses, the hook engine, the training step and the registry of method specs
    mixbook.methods    one module a method: its sampler(s) -> Mixing, its transform, its spec
    mixbook.training   the steps built from specs, the one fit loop, population (vmap), distributed,
                       data, models, metrics, MixCollate
    mixbook.chapters   what only the book uses (each module names its chapter); loaded on first use
    mixbook.bench      python -m mixbook.bench; loaded on first use

The public face, imported here (``import mixbook`` loads torch, NumPy and tqdm, and no plotting,
pandas, SciPy, scikit-learn or chapter module)::

    Mixing                          the mixing value (pairwise or dense)
    MixingTransform                 the base every transform is built on (DenseMixingTransform: n outputs)
    MixUp                           input mixup (Zhang et al. 2018)
    ZetaMixup                       ζ-mixup (Abhishek et al. 2024): p-series weights over the batch
    MultiMix                        MultiMix (Venkataramanan et al. 2023): Dirichlet mixes, n > b
    ManifoldMixup                   manifold mixup (Verma et al. 2019): mixing at hidden layers by hooks
    CutMix, MixUpCutMix             CutMix (Yun et al. 2019) and timm's mixup-or-CutMix switch
    MixCollate                      mixing at collate time in DataLoader workers, on uint8 images
    SoftTargetCrossEntropy          the soft-target loss as a module
    soft_cross_entropy, mixed_cross_entropy, one_hot
    fit, repeat, make_method        the one training loop, seeds repeated, a method by name
    setup, resolve_device           seeds, device (and the book's plot style)
    set_value_checks, value_checks  when tensor values are checked (CPU only by default)

The samplers are in :mod:`mixbook.methods` (``mixbook.methods.mixup.sample``,
``mixbook.methods.zeta.weights``, …).
"""

import importlib as _importlib

from . import core, methods, training
from .core._checks import set_value_checks, value_checks
from .core.losses import SoftTargetCrossEntropy, mixed_cross_entropy, one_hot, soft_cross_entropy
from .core.mixing import DenseMixingTransform, Mixing, MixingTransform
from .core.runtime import resolve_device, setup
from .methods.cutmix import CutMix, MixUpCutMix
from .methods.manifold import ManifoldMixup
from .methods.mixup import MixUp
from .methods.multimix import MultiMix
from .methods.zeta import ZetaMixup
from .training.collate import MixCollate
from .training.steps import make_method
from .training.train import fit, repeat

__version__ = "0.1.0"

_ON_FIRST_USE = ("chapters", "bench")


def __getattr__(name: str):
    # The book's floor and the bench load on first use: an importer who wants MixUp does not pay
    # for matplotlib, pandas or SciPy.
    if name in _ON_FIRST_USE:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Mixing", "MixingTransform", "DenseMixingTransform", "ManifoldMixup", "MixUp", "ZetaMixup", "MultiMix", "CutMix",
    "MixUpCutMix", "MixCollate", "SoftTargetCrossEntropy", "soft_cross_entropy", "mixed_cross_entropy", "one_hot",
    "fit", "repeat", "make_method", "setup", "resolve_device", "set_value_checks", "value_checks",
    "core", "methods", "training", "chapters", "bench",
]
