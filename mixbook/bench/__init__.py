"""The benchmark, the top floor: mixbook's mixing ops against their peers, ``python -m mixbook.bench``.

:mod:`~mixbook.bench.harness` times what the method modules declare in their ``BENCH`` entries
against torchvision, timm, NumPy references, a plain copy and a matmul, in one process. Nothing
below imports this package.
"""

from . import harness
from .harness import *  # noqa: F401,F403  (the harness is the package's interface)
from .harness import __all__ as _harness_all

__all__ = ["harness", *_harness_all]
