"""Helpers for the chapters' first cells: checking papermill parameters.

A chapter's ``parameters`` cell holds literal values only; papermill may inject others after
it. The cell that follows calls :func:`check_parameters` with the expected type of every
parameter, so that a misspelt or ill-typed parameter fails at once with its name::

    mixbook.notebook.check_parameters(globals(), seed=int, device=str, alphas=list[float])
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

_LITERAL_TYPES = (bool, int, float, str, list, tuple, dict, type(None))
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


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
        if not _matches(namespace[name], expected):
            raise TypeError(
                f"parameter {name!r} must be of type {_type_name(expected)}, "
                f"got {namespace[name]!r} ({type(namespace[name]).__name__})"
            )
    return {k: namespace[k] for k in spec}
