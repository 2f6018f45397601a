"""The methods: one module a method, each importing only :mod:`mixbook.core`.

A method module holds its sampler(s) (``sample(x, y=None, *, generator=None, **hp) -> Mixing``),
its transform (a :class:`~mixbook.core.mixing.MixingTransform`) and its registered spec
(:func:`mixbook.core.registry.register`): importing this package fills the registry. A new method
is one module here, one line below, and its test file (README, "Adding a mixing method").
"""

import types as _types

from . import erm
from . import mixup
from . import reformulation
from . import zeta
from . import multimix
from . import manifold
from . import cutmix
from . import smoothing

__all__ = [name for name, value in list(globals().items())
           if isinstance(value, _types.ModuleType) and value.__name__ == f"{__name__}.{name}"]
