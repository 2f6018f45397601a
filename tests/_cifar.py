"""Tiny CIFAR-10/100 files in the torchvision layout, written by the tests themselves."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _write_cifar10(root: Path) -> dict[str, np.ndarray]:
    """Two train batches of 6 images (the official set has 5 of 10000) + a test batch of 4."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rows = {"train": _images(30, 0), "test": _images(4, 1)}
    labels = {"train": np.arange(30) % 10, "test": np.array([3, 1, 4, 1])}
    for i in range(5):
        sl = slice(6 * i, 6 * (i + 1))
        _dump(
            d / f"data_batch_{i + 1}",
            {
                b"batch_label": f"training batch {i + 1} of 5".encode(),
                b"labels": labels["train"][sl].tolist(),
                b"data": rows["train"][sl],
                b"filenames": [b"x.png"] * 6,
            },
        )
    _dump(d / "test_batch", {b"labels": labels["test"].tolist(), b"data": rows["test"]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(d / "batches.meta", {b"num_cases_per_batch": 6, b"label_names": names, b"num_vis": 3072})
    return {**{f"x_{k}": v for k, v in rows.items()}, **{f"y_{k}": v for k, v in labels.items()}}


def _write_cifar100(root: Path) -> dict[str, np.ndarray]:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rows = {"train": _images(8, 2), "test": _images(3, 3)}
    fine = {"train": np.array([0, 99, 5, 17, 42, 99, 3, 0]), "test": np.array([7, 99, 0])}
    for split in ("train", "test"):
        _dump(
            d / split,
            {
                b"data": rows[split],
                b"fine_labels": fine[split].tolist(),
                b"coarse_labels": (fine[split] // 5).tolist(),
            },
        )
    _dump(
        d / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return {**{f"x_{k}": v for k, v in rows.items()}, **{f"y_{k}": v for k, v in fine.items()}}
