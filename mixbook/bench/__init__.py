"""The benchmark, the top floor: mixbook's mixing ops against their peers, ``python -m mixbook.bench``.

:mod:`~mixbook.bench.harness` times what the method modules declare in their ``BENCH`` entries
(:class:`mixbook.core.benchmark.BenchEntry`, collected by :mod:`~mixbook.bench.targets`) against
torchvision, timm, NumPy references (:mod:`~mixbook.bench.peers`), a plain copy and a matmul, in
one process (:mod:`~mixbook.bench.timing`), on the cases of :mod:`~mixbook.bench.cases`. Nothing
below imports this package.
"""

from . import cases, harness, peers, targets, timing
from .harness import *  # noqa: F401,F403  (the harness re-exports the package's interface)
from .harness import __all__ as _harness_all

__all__ = ["harness", "timing", "cases", "peers", "targets", *_harness_all]
