"""mixbook: mixup and its descendants as one operation, a row-stochastic mixing matrix.

Every method produces ``n`` new examples as convex combinations of the ``b`` examples of a
batch, ``X_new = W @ X`` and ``Y_new = W @ Y``. :class:`Mixing` is that ``W``; each method is
a sampler of it.

Public names::

    Mixing                          the mixing value (pairwise or dense)
    MixUp, mixup.sample             input mixup (Zhang et al. 2018)
    reformulation.sample / .mix     keep the first label, λ ~ Beta(α+1, α); unlabelled partners
    ZetaMixup, zeta.sample          ζ-mixup (Abhishek et al. 2024): p-series weights over the batch
    MultiMix, multimix.sample       MultiMix (Venkataramanan et al. 2023): Dirichlet mixes, n > b
    ManifoldMixup                   manifold mixup (Verma et al. 2019): mixing at hidden layers by hooks
    MixingTransform                 the base every transform above is built on
    CutMix, MixUpCutMix, cutmix.sample   CutMix (Yun et al. 2019) and timm's mixup-or-CutMix switch
    MixCollate                      mixing at collate time in DataLoader workers, on uint8 images
    SoftTargetCrossEntropy          the soft-target loss as a module
    soft_cross_entropy, mixed_cross_entropy, one_hot
    fit, repeat                     the training loop every chapter uses
    population.repeat               many (method, seed) runs trained at once (vectorised)
    stats.compare                   paired differences over seeds, with intervals and verdicts
    setup                           seeds, device, plot style
    set_value_checks                when tensor values are checked (CPU only by default)

Modules: mixing, fused, distributions, mixup, cutmix, collate, reformulation, zeta, multimix, manifold, hooks, steps,
synthetic, losses, metrics, stats, data, models, train, population, distributed, results, plotting, notebook, runtime,
bench; chapter 6: cifar_grid (the CIFAR grid as a script, under torchrun too); chapter 2: reformulation_checks (Monte Carlo checks of the reformulation); chapter 3: manifold_gradient (the
gradient's four terms, gradient surgery, the decomposed runs);
chapter 4: toy_manifolds (noise-free moons and helix with exact point-to-manifold distances);
chapter 8: attacks (FGSM, PGD), bayes (two-moons densities, p_aug, q_aug), regression (mixed-target
bias, nearest pairing), smoothing (label smoothing as a training method), gan (2-D GANs: plain,
instance noise, mixup of real and generated samples).
"""

from . import (collate, cutmix, data, distributions, fused, hooks, losses, manifold, manifold_gradient, metrics, mixing,
               mixup, models, multimix, notebook, plotting, population, reformulation, reformulation_checks, results,
               runtime, stats, steps, synthetic, train, zeta)
from . import attacks, bayes, gan, regression, smoothing  # chapter 8 (smoothing registers two training methods)
from . import distributed, toy_manifolds
from ._checks import set_value_checks, value_checks
from .collate import MixCollate
from .cutmix import CutMix, MixUpCutMix
from .losses import SoftTargetCrossEntropy, mixed_cross_entropy, one_hot, soft_cross_entropy
from .manifold import ManifoldMixup
from .mixing import DenseMixingTransform, Mixing, MixingTransform
from .mixup import MixUp
from .multimix import MultiMix
from .zeta import ZetaMixup
from .runtime import resolve_device, setup
from .train import fit, repeat

__version__ = "0.1.0"


def __getattr__(name: str):
    # The two command-line modules are imported on first use, so that ``python -m mixbook.bench``
    # and ``python -m mixbook.cifar_grid`` run them fresh.
    if name in ("bench", "cifar_grid"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Mixing", "MixingTransform", "ManifoldMixup", "MixUp", "ZetaMixup", "MultiMix", "CutMix", "MixUpCutMix", "MixCollate", "SoftTargetCrossEntropy", "fit", "repeat", "setup", "resolve_device", "set_value_checks", "value_checks",
    "soft_cross_entropy", "mixed_cross_entropy", "one_hot",
    "bench", "collate", "cutmix", "data", "distributions", "losses", "metrics", "mixing", "mixup", "models", "notebook",
    "fused", "manifold", "multimix", "plotting", "population", "reformulation", "results", "runtime", "stats",
    "synthetic", "train", "zeta", "attacks", "bayes", "regression", "smoothing", "distributed", "toy_manifolds",
    "hooks", "steps", "gan", "manifold_gradient", "reformulation_checks", "cifar_grid",
]
