"""Training: the steps built from method specs, the one :func:`~mixbook.training.train.fit` loop, and what it runs on.

:mod:`~mixbook.training.steps` (:class:`~mixbook.training.steps.SamplerMethod`, :func:`~mixbook.training.steps.make_method`: a registered spec
made a training method), :mod:`~mixbook.training.train` (:func:`~mixbook.training.train.fit`, :func:`~mixbook.training.train.repeat`,
:class:`~mixbook.training.train.History`), :mod:`~mixbook.training.population` (many members trained at once with
``vmap``), :mod:`~mixbook.training.distributed` (global-batch mixing under ``torchrun``),
:mod:`~mixbook.training.data`, :mod:`~mixbook.training.models`, :mod:`~mixbook.training.metrics`
:mod:`~mixbook.training.calibration` (temperature scaling) and :mod:`~mixbook.training.collate`
(:class:`~mixbook.training.collate.MixCollate`). Imports the core and the methods.
"""

from . import calibration, collate, data, distributed, metrics, models, population, steps, train

__all__ = ["calibration", "collate", "data", "distributed", "metrics", "models", "population", "steps", "train"]
