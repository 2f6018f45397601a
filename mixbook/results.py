"""Recorded results with provenance: what a full-scale run writes to ``book/results/``.

A chapter run with its ``full.yaml`` (usually on a GPU) saves its table with :func:`save`; the
rendered book shows every saved file with :func:`load`, labelled by where and when it ran.
The JSON holds ``provenance`` (device name, UTC date, git commit, torch/torchvision versions,
host CPU threads), the chapter's ``parameters`` and the ``rows`` of the table.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["provenance", "save", "load"]


def _commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: torch.device | str = "cpu", cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Where and when a result was produced: device name, UTC date, git commit, versions.

    Args:
        device: the device the run used (its CUDA name is recorded when it is a GPU).
        cwd: a directory inside the git checkout (default: the current directory).
    """
    import torchvision

    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores)"
    return {
        "device": name,
        "device_type": dev.type,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _commit(Path(cwd) if cwd is not None else Path.cwd()),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
    }


def save(path: str | os.PathLike, rows, parameters: Mapping[str, Any], device: torch.device | str = "cpu") -> Path:
    """Write ``rows`` (a pandas DataFrame or a list of dicts) with provenance to ``path`` (JSON).

    Returns the path written. Parent directories are created. Values must be JSON-serialisable
    (numbers, strings, lists); a DataFrame is stored as its records.
    """
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict(orient="records")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("rows must be a pandas DataFrame or a list of dicts")
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a mapping, got {type(parameters).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"provenance": provenance(device, cwd=path.parent), "parameters": dict(parameters), "rows": rows}
    path.write_text(json.dumps(record, indent=1, default=float) + "\n")
    return path


def load(directory: str | os.PathLike, pattern: str = "*.json"):
    """Every saved result in ``directory`` matching ``pattern``, as one pandas DataFrame.

    Each row carries its file's provenance (``device``, ``date_utc``, ``commit``, ``file``) next
    to the saved columns. An empty or missing directory gives an empty DataFrame.
    """
    import pandas as pd

    frames = []
    for f in sorted(Path(directory).glob(pattern)):
        record = json.loads(f.read_text())
        if not isinstance(record, dict) or "rows" not in record or "provenance" not in record:
            raise ValueError(f"{f} is not a mixbook result file (needs 'provenance' and 'rows')")
        prov = record["provenance"]
        frame = pd.DataFrame(record["rows"])
        frames.append(frame.assign(device=prov.get("device"), date_utc=prov.get("date_utc"),
                                   commit=(prov.get("commit") or "")[:10], file=f.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
