"""Seeds, devices and plotting defaults shared by every chapter."""

from __future__ import annotations

import random

import numpy as np
import torch

from . import _checks

__all__ = ["resolve_device", "setup", "generator"]


def _check_seed(seed: object) -> None:
    _checks.seed("seed", seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


def setup(seed: int = 0, device: str | torch.device = "auto", *, plots: bool = True) -> torch.device:
    """Seed Python, NumPy and torch; pick the device; set the book's plot style (``plots=True``:
    needs matplotlib and seaborn, the ``[chapters]`` extra).

    Returns the resolved ``torch.device``.
    """
    _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dev = resolve_device(device)
    if plots:
        try:
            import matplotlib as mpl
            import seaborn as sns
        except ImportError as e:
            raise ImportError(f"setup(plots=True) sets the book's plot style and needs matplotlib and seaborn ({e}); "
                              "install them with pip install 'mixbook[chapters]', or call setup(seed, device, plots=False)") from e

        sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
        mpl.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.figsize": (6.0, 4.0)})
    return dev


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    _check_seed(seed)
    return torch.Generator(device=torch.device(device)).manual_seed(seed)
