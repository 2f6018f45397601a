"""Recorded results with provenance: what a full-scale run writes to ``book/results/``.

Chapter 6 (recorded full-scale runs) and the bench (provenance).

A chapter run with its ``full.yaml`` (usually on a GPU) saves its table with :func:`save`; the
rendered book shows every saved file with :func:`load`, labelled by where and when it ran.
The JSON holds ``provenance`` (:func:`provenance`: device name, UTC date, git commit and
whether the checkout was dirty, library versions, host threads and load), the chapter's
``parameters`` and the ``rows`` of the table. :mod:`mixbook.bench` records the same provenance.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["provenance", "save", "load"]


def _git(*args: str) -> str | None:
    """``git args…`` run in mixbook's own folder: the code that produced a result, wherever it is saved."""
    try:
        res = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds ``mixbook/`` (and, in a checkout, ``pyproject.toml``)."""

COMMIT_ENV = "MIXBOOK_COMMIT"
"""Environment variable naming the commit to record, for a copy of the project without ``.git``."""


def _commit() -> tuple[str | None, str | None, bool | None]:
    """``(commit, source, dirty)`` of the code that runs: ``source`` is ``"env"`` (:data:`COMMIT_ENV`
    set), ``"git"`` or ``None`` (unknown).

    git is trusted only when its repository's top level is the project root (:data:`PROJECT_ROOT`
    holding ``pyproject.toml``): a copy without ``.git`` placed inside another repository (or an
    installed package inside one) would otherwise record that repository's commit."""
    top = _git("rev-parse", "--show-toplevel") if (PROJECT_ROOT / "pyproject.toml").is_file() else None
    ours = top is not None and Path(top).resolve() == PROJECT_ROOT
    head = _git("rev-parse", "HEAD") if ours else None
    package = str(PROJECT_ROOT / "mixbook")      # the whole package, not only this sub-package
    status = _git("status", "--porcelain", "--untracked-files=no", "--", package) if head is not None else None
    dirty = None if status is None else bool(status)
    given = os.environ.get(COMMIT_ENV, "").strip()
    if given:
        # the checkout's state describes the given commit only when it is that commit
        return given, "env", dirty if head is not None and head.startswith(given) else None
    return (head, "git", dirty) if head is not None else (None, None, None)


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_name() -> str:
    for line in (_read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


ENV_KEYS = ("THP_MEM_ALLOC_ENABLE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables that change CPU timings, recorded in the provenance."""


def provenance(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where, when and with what a result was produced.

    The git commit describes the checkout that holds the imported ``mixbook`` package, not the
    folder the result is written to: git is asked only when its repository's top level is the
    project root (the folder holding ``mixbook/`` and ``pyproject.toml``), so a copy without
    ``.git`` (an export, an installed wheel) records ``None`` rather than the commit of a
    repository it happens to sit in. The environment variable ``MIXBOOK_COMMIT``, when set, is
    recorded instead (for such a copy: the commit it was made from); ``git_commit_source`` says
    which (``"git"``, ``"env"`` or ``None``). ``git_dirty`` says whether the package's tracked files
    differ from that commit (results, notebooks and other files being written by the run itself do
    not count); ``None`` when it cannot be known.

    Args:
        device: the device the run used (a GPU's name is recorded for CUDA devices).

    Returns:
        A JSON-serialisable dict: ``device``, ``device_type``, ``device_name``, ``cpu``,
        ``date_utc`` (ISO 8601), ``git_commit``, ``git_commit_source``, ``git_dirty``, versions of python, torch,
        torchvision, timm, numpy and CUDA, ``torch_threads``, ``cpu_count``, ``load_average``,
        ``platform``, ``env`` (:data:`ENV_KEYS`) and ``transparent_hugepage``.
    """
    import numpy as np

    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    dev = torch.device(device)
    commit, source, dirty = _commit()
    return {
        "device": str(dev),
        "device_type": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "cpu": _cpu_name(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_commit_source": source,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": _version("torchvision"), "timm": _version("timm"),
        "numpy": np.__version__,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "transparent_hugepage": _read_text("/sys/kernel/mm/transparent_hugepage/enabled"),
    }


def _plain(value: Any, key: str, *, missing_nan: bool = False) -> Any:
    """JSON-safe copy of ``value``: NumPy scalars become Python numbers; ±inf is refused, and NaN too
    unless ``missing_nan`` (the rows of a table, where NaN is pandas' marker of a value not
    measured, stored as ``null``); other objects are refused."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}", missing_nan=missing_nan) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]", missing_nan=missing_nan) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if missing_nan and math.isnan(value):
            return None
        raise ValueError(f"{key} is {value}: a result file holds finite numbers only (a parameter must be "
                         "finite; a diverged run is an error, not a result)")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key} must be a number, string, bool, None, list or dict, got {type(value).__name__}")


def save(path: str | os.PathLike, rows: Any, parameters: Mapping[str, Any],
         device: torch.device | str = "cpu") -> Path:
    """Write ``rows`` (a pandas DataFrame or a list of dicts) with :func:`provenance` to ``path`` (JSON).

    Returns the path written. Parent directories are created. Values must be numbers, strings,
    bools, ``None`` (a value not measured), lists or dicts: NumPy scalars are converted; in the
    rows NaN (a table's missing value) is stored as ``null``; ±infinity anywhere, and NaN in the
    parameters, are a ``ValueError``, anything else a ``TypeError``, each naming the entry (nothing
    is written then). A DataFrame is stored as its records.

    The write is atomic: a temporary file in the same folder, fsynced, then ``os.replace``d over
    ``path``; a process killed while saving leaves the previous file whole, and concurrent readers
    never see a partial one. Two processes saving to one path still replace each other's file
    (the last wins): give each part of a run its own file, as :mod:`mixbook.chapters.cifar_grid` does.
    """
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict(orient="records")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("rows must be a pandas DataFrame or a list of dicts")
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a mapping, got {type(parameters).__name__}")
    record = {"provenance": provenance(device), "parameters": _plain(dict(parameters), "parameters"),
              "rows": _plain(rows, "rows", missing_nan=True)}
    text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from ..core.files import atomic_write   # here: tests load this module alone, for its provenance

    atomic_write(path, lambda fh: fh.write(text.encode()))
    return path


RANGES: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in ("accuracy", "val_accuracy", "ece", "val_ece", "noisy_fitted", "noisy_clean",
                                     "accuracy (last)", "noisy_fitted (last)", "ece_ts")},
    **{name: (-1.0, 1.0) for name in ("overconfidence", "val_overconfidence")},
    **{name: (0.0, math.inf) for name in ("nll", "val_nll", "train_loss", "seconds_per_epoch")},
}
"""Columns whose values :func:`load` checks when present: a finite number in the range (or ``None``, not measured)."""


def _bad_constant(token: str) -> float:
    raise ValueError(f"{token} (JSON has no such number; mixbook never writes one)")


def _read(f: Path) -> dict[str, Any]:
    """One result file, checked: JSON, the schema, the value types and the ranges of :data:`RANGES`."""
    try:
        record = json.loads(f.read_text(), parse_constant=_bad_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{f}: not a readable mixbook result file ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("provenance"), dict) \
            or not isinstance(record.get("rows"), list):
        raise ValueError(f"{f} is not a mixbook result file: it needs a 'provenance' object and a 'rows' list")
    if "parameters" in record and not isinstance(record["parameters"], dict):
        raise ValueError(f"{f}: 'parameters' must be an object")
    for i, row in enumerate(record["rows"]):
        if not isinstance(row, dict):
            raise ValueError(f"{f}: rows[{i}] must be an object, got {type(row).__name__}")
        for key, value in row.items():
            if not (value is None or isinstance(value, (bool, int, float, str))):
                raise ValueError(f"{f}: rows[{i}][{key!r}] must be a number, string, bool or null, "
                                 f"got {type(value).__name__}")
            bounds = RANGES.get(key)
            if bounds is None or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds[0] <= value <= bounds[1]:
                raise ValueError(f"{f}: rows[{i}][{key!r}] = {value!r} is outside [{bounds[0]}, {bounds[1]}] "
                                 f"(a fraction, not a percentage, for accuracies)")
    return record


def _key(value: Any) -> Any:
    """A value of a ``unique`` column, normalised: stripped strings, integral numbers (and strings of
    them) as ``int``, so that ``0``, ``0.0`` and ``"0"`` are one key and ``"ERM "`` is ``"ERM"``."""
    if isinstance(value, str):
        value = value.strip()
        try:
            return int(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def load(directory: str | os.PathLike, pattern: str = "*.json", *, unique: Sequence[str] | None = None) -> Any:
    """Every saved result in ``directory`` matching ``pattern``, as one pandas DataFrame.

    Each row carries its file's provenance next to the saved columns: ``device`` (the device's
    name), ``date_utc``, ``commit`` (10 characters, with ``+dirty`` when the checkout had
    uncommitted changes) and ``file``. An existing directory without matching files gives an empty
    DataFrame; a missing one is a ``FileNotFoundError``.

    Every file is checked, and every error names it: readable JSON; a ``provenance`` object, a
    ``rows`` list of objects (and ``parameters`` an object); values that are numbers, strings,
    bools or null (NaN and infinity are refused); the columns of :data:`RANGES` within their range
    (an accuracy of 57.0 is a percentage, refused).

    ``unique``: columns that identify a row across files, e.g. ``("dataset", "method", "seed")``
    for the parts of a grid run on several machines (:mod:`mixbook.chapters.cifar_grid`). Their values
    are normalised (:func:`_key`: ``0`` and ``"0"`` are one seed, ``"ERM "`` is ``"ERM"``), and a key
    found in more than one row is a ``ValueError`` naming it and its files, so a part run twice is
    not averaged in silently.
    """
    import pandas as pd

    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder {folder} (resolved: {folder.resolve()}); a full-scale run "
                                "writes there, see the chapter's 'Full scale' section")
    if unique is not None:
        if isinstance(unique, str) or not all(isinstance(c, str) for c in unique) or not unique:
            raise TypeError(f"unique must be a non-empty sequence of column names, got {unique!r}")
        frame = load(directory, pattern)
        if frame.empty:
            return frame
        missing = [c for c in unique if c not in frame.columns]
        if missing:
            raise ValueError(f"unique names columns {missing} that the files in {directory} do not have")
        for column in unique:
            frame[column] = frame[column].map(_key)
        twice = frame[frame.duplicated(list(unique), keep=False)]
        if not twice.empty:
            shown = "; ".join(f"{key}: {sorted(group.file)}" for key, group in twice.groupby(list(unique), sort=True))
            raise ValueError(f"rows recorded more than once (by {list(unique)}): {shown}")
        return frame

    frames = []
    for f in sorted(folder.glob(pattern)):
        record = _read(f)
        prov = record["provenance"]
        frame = pd.DataFrame(record["rows"])
        commit = str(prov.get("git_commit") or "")[:10] + ("+dirty" if prov.get("git_dirty") else "")
        frames.append(frame.assign(device=prov.get("device_name"), date_utc=prov.get("date_utc"),
                                   commit=commit, file=f.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
