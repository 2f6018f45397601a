"""Helpers for the chapters' first cells: checking papermill parameters.

Every chapter (and the verdicts page): the third cell's parameter check.

A chapter's ``parameters`` cell holds literal values only; papermill may inject others after
it. The cell that follows calls :func:`check_parameters` with the expected type of every
parameter, and where a type is not enough the accepted values, so that a misspelt, ill-typed or
out-of-range parameter fails at once with its name, before any training::

    nb = mixbook.chapters.notebook
    nb.check_parameters(globals(), seed=nb.at_least(int, 0), device=nb.one_of("auto", "cpu", "cuda"),
                        alphas=nb.positive(list[float]), epochs=nb.at_least(int, 1),
                        fraction=nb.between(float, 0, 1, open_low=True))
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Param", "at_least", "positive", "between", "one_of", "subset_of", "directory", "check_parameters"]

_LITERAL_TYPES = (bool, int, float, str, list, tuple, dict, type(None))
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


@dataclass(frozen=True)
class Param:
    """A parameter's type and the values it accepts (for lists: every element, and at least one).

    Build it with :func:`at_least`, :func:`positive`, :func:`between`, :func:`one_of` or
    :func:`directory`; :func:`check_parameters` takes it wherever it takes a type.
    """

    type: Any
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple | None = None
    directory: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.directory:
            return '"" or an existing directory'
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        return " and ".join(parts) if parts else _type_name(self.type)

    def accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if self.directory:
            return value == "" or os.path.isdir(value)
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return False
        return True


def at_least(t: Any, low: float) -> Param:
    """``t`` (or ``list[t]``) with every value ``>= low``."""
    return Param(t, low=low)


def positive(t: Any) -> Param:
    """``t`` (or ``list[t]``) with every value ``> 0``."""
    return Param(t, low=0, open_low=True)


def between(t: Any, low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Param:
    """``t`` (or ``list[t]``) with every value in ``[low, high]`` (ends excluded as asked)."""
    return Param(t, low=low, high=high, open_low=open_low, open_high=open_high)


def one_of(*choices: Any) -> Param:
    """One of ``choices`` (their type is the type of the first)."""
    if not choices:
        raise ValueError("one_of needs at least one choice")
    return Param(type(choices[0]), choices=tuple(choices))


def subset_of(*choices: Any) -> Param:
    """A non-empty list whose every value is one of ``choices``."""
    if not choices:
        raise ValueError("subset_of needs at least one choice")
    return Param(list[type(choices[0])], choices=tuple(choices))


def directory() -> Param:
    """A path string: ``""`` (the feature is off) or an existing directory, checked before any work."""
    return Param(str, directory=True)


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) if typing.get_origin(t) is None else str(t)


def _matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected) or (Any,)
        return isinstance(value, list) and all(item is Any or _matches(v, item) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, t) for t in typing.get_args(expected))
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def check_parameters(namespace: Mapping[str, Any], /, **spec: Any) -> dict[str, Any]:
    """Check a notebook's parameters against ``spec`` (name → type, e.g. ``int``, ``list[float]``).

    Raises:
        ValueError: a parameter in ``spec`` is missing, or the namespace holds a literal-valued
            public name that ``spec`` does not know (an unknown papermill parameter).
        TypeError: a parameter has the wrong type.
        ValueError: a parameter's value is outside what its :class:`Param` accepts (the message
            names the parameter and the accepted range).

    Returns:
        ``{name: value}`` for the parameters in ``spec``.
    """
    missing = [k for k in spec if k not in namespace]
    if missing:
        raise ValueError(f"parameters {missing} are not defined; the parameters cell must set them")
    unknown = sorted(
        k for k, v in namespace.items()
        if not k.startswith("_") and k not in spec and k not in _IPYTHON_NAMES
        and isinstance(v, _LITERAL_TYPES)
    )
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; this chapter accepts {sorted(spec)}")
    for name, expected in spec.items():
        param = expected if isinstance(expected, Param) else None
        kind = param.type if param else expected
        value = namespace[name]
        if not _matches(value, kind):
            raise TypeError(
                f"parameter {name!r} must be of type {_type_name(kind)}, "
                f"got {value!r} ({type(value).__name__})"
            )
        values = value if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"parameter {name!r} must be finite, got {value!r}: NaN and infinity are refused "
                             "wherever a number is meant")
        if param is None:
            continue
        if typing.get_origin(kind) is list:
            if not value:
                raise ValueError(f"parameter {name!r} must hold at least one value, got []")
            bad = [v for v in value if not param.accepts(v)]
            if bad:
                raise ValueError(f"parameter {name!r}: every value must be {param.describe()}, got {value!r}")
        elif not param.accepts(value):
            raise ValueError(f"parameter {name!r} must be {param.describe()}, got {value!r}")
    return {k: namespace[k] for k in spec}
