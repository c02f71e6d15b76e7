"""digits: a small MLP on scikit-learn's bundled 8x8 digits (offline default task)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import TensorTask, read_options
from .cache import cached_arrays, file_digest, package_file, version

DEFAULTS: dict[str, Any] = {"hidden": [128, 64], "test_fraction": 0.2, "val_fraction": 0.0, "split_seed": 0}


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _splits(opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """load_digits scaled to [0,1] (float64) and its stratified splits, as arrays named ``x_test``..."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    seed = int(opts["split_seed"])
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(opts["test_fraction"]), random_state=seed, stratify=y
    )
    out = {"x_test": x_te, "y_test": y_te}
    if float(opts["val_fraction"]) > 0:
        x_tr, x_va, y_tr, y_va = train_test_split(
            x_tr, y_tr, test_size=float(opts["val_fraction"]), random_state=seed, stratify=y_tr
        )
        out |= {"x_val": x_va, "y_val": y_va}
    return out | {"x_train": x_tr, "y_train": y_tr}


class DigitsTask(TensorTask):
    """MLP 64-hidden-10 on load_digits, pixels scaled to [0,1].

    Fixed stratified split (train_test_split, random_state `split_seed`): `test_fraction` of the 1,797
    images is the test set; optionally `val_fraction` of the rest is a validation set (default none: the
    set is tiny). The splits are kept in the data cache (tasks.cache) under a checksum of scikit-learn's
    digits file and these options.
    """

    name = "digits"
    metric = "accuracy"

    def __init__(self, opts: dict[str, Any], device: torch.device, dtype: torch.dtype) -> None:
        source = package_file("sklearn", "datasets", "data", "digits.csv.gz")
        shape = {k: float(opts[k]) for k in ("split_seed", "test_fraction", "val_fraction")}
        key = None if source is None else {
            "source": file_digest(source), "scikit-learn": version("scikit-learn"), "numpy": np.__version__,
            **shape,
        }  # fmt: skip
        val = float(opts["val_fraction"]) > 0
        needs = ["x_train", "y_train", "x_test", "y_test", *(["x_val", "y_val"] if val else [])]
        a = cached_arrays("digits", key, needs, lambda: _splits(opts))
        splits = {"test": {"x": torch.tensor(a["x_test"], dtype=dtype), "y": torch.from_numpy(a["y_test"])}}
        if val:
            splits["val"] = {"x": torch.tensor(a["x_val"], dtype=dtype), "y": torch.from_numpy(a["y_val"])}
        train = {"x": torch.tensor(a["x_train"], dtype=dtype), "y": torch.from_numpy(a["y_train"])}
        super().__init__(train, splits, device, dtype)
        self.sizes = [64, *[int(h) for h in opts["hidden"]], 10]

    def build_model(self) -> nn.Module:
        """The MLP on the task's device and dtype."""
        return self._place(mlp(self.sizes))


def build(cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> DigitsTask:
    """The digits task from its config node (data root unused: the data ships with scikit-learn)."""
    return DigitsTask(read_options("digits", cfg, DEFAULTS), device, dtype)
