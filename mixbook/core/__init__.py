"""The ground floor: what every other floor stands on, importing nothing above it.

:mod:`~mixbook.core.mixing` (the :class:`~mixbook.core.mixing.Mixing` value and the transform base),
:mod:`~mixbook.core.fused` (the pairwise kernel), :mod:`~mixbook.core.distributions` (Beta and
Dirichlet on the device), ``mixbook.core._random`` (generator draws that survive
``torch.compile``), :mod:`~mixbook.core.losses`, :mod:`~mixbook.core.files` (atomic writes), :mod:`~mixbook.core.hooks` (run a model with a
function at a layer), :mod:`~mixbook.core.step` (the training step and the one training-method
base), :mod:`~mixbook.core.registry` (the method specs, declared by the method modules),
:mod:`~mixbook.core.benchmark` (what a method declares about its speed, read by :mod:`mixbook.bench`),
``mixbook.core._checks`` (argument checks), :mod:`~mixbook.core.samples` (where a transform finds the
labels and the batches to mix in a packed sample, and what it refuses) and :mod:`~mixbook.core.runtime`
(seeds, devices).
"""

from . import _checks, _random, benchmark, distributions, files, fused, hooks, losses, mixing, registry, runtime, samples, step

__all__ = ["_checks", "_random", "benchmark", "distributions", "files", "fused", "hooks", "losses", "mixing", "registry", "runtime", "samples",
           "step"]
