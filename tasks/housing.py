"""housing (MLP-CA): MLP 8-200-150-1 regression on California housing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, TensorTask, data_path, read_options
from .cache import cached_arrays, file_digest, version
from .data import load_housing_csv
from .digits import mlp
from .integrity import verifying

DEFAULTS: dict[str, Any] = {
    "path": "california-housing/cal_housing.csv",
    "test_fraction": 0.2,
    "split_seed": 42,
    "val_fraction": 0.0,
    "hidden": [200, 150],
}


def _splits(path: Path, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """The CSV's features standardised on the training rows and its target, split as the task's docstring
    says, as float64 arrays ``x_train``, ``y_train``, ``x_test``..."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_housing_csv(HousingTask.name, path)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(opts["test_fraction"]), random_state=int(opts["split_seed"])
    )
    parts = {"test": (x_te, y_te)}
    if float(opts["val_fraction"]) > 0:
        x_tr, x_va, y_tr, y_va = train_test_split(
            x_tr, y_tr, test_size=float(opts["val_fraction"]), random_state=int(opts["split_seed"])
        )
        parts["val"] = (x_va, y_va)
    parts["train"] = (x_tr, y_tr)
    scaler = StandardScaler().fit(x_tr)
    out = {f"x_{p}": scaler.transform(xs) for p, (xs, _) in parts.items()}
    return out | {f"y_{p}": np.asarray(ys, dtype=np.float64) for p, (_, ys) in parts.items()}


class HousingTask(TensorTask):
    """sklearn's 8 features standardised (fit on the training rows), target in $100k unscaled; MSE.

    ``test_fraction`` of the rows is the test set (train_test_split, random_state ``split_seed``); with
    ``val_fraction`` > 0 that share of the remaining rows is held out as a validation set by a second
    train_test_split with the same random_state, as the public code's later revision does (0.2: 13,209 /
    3,303 / 4,128 rows). The paper's release had no validation set (``val_fraction`` 0). The prepared
    splits are kept in the data cache (tasks.cache) under a checksum of the CSV and these options.
    """

    name = "housing"
    metric = "loss"
    metric_scale = 100.0

    def __init__(self, opts: dict[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> None:
        val_fraction = float(opts["val_fraction"])
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"task housing: val_fraction={val_fraction} must be in [0, 1); e.g. 0.2")
        path = data_path(root, str(opts["path"]))
        shape = {k: float(opts[k]) for k in ("test_fraction", "split_seed", "val_fraction")}
        key = None if not path.is_file() else {
            "source": file_digest(path), "verified": verifying(), "scikit-learn": version("scikit-learn"),
            "numpy": np.__version__, **shape,
        }  # fmt: skip
        parts = ["train", "test", *(["val"] if val_fraction > 0 else [])]
        needs = [f"{v}_{p}" for p in parts for v in ("x", "y")]
        a = cached_arrays(self.name, key, needs, lambda: _splits(path, opts))
        tensors = {p: {v: torch.tensor(a[f"{v}_{p}"], dtype=dtype) for v in ("x", "y")} for p in parts}
        super().__init__(tensors.pop("train"), tensors, device, dtype)
        self.sizes = [8, *[int(h) for h in opts["hidden"]], 1]

    def build_model(self) -> nn.Module:
        """MLP 8-200-150-1 with ReLU (32,101 parameters)."""
        return self._place(mlp(self.sizes))

    def criterion(self, out: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean squared error; no accuracy."""
        return F.mse_loss(out.squeeze(-1).to(batch["y"].dtype), batch["y"]), None


def build(cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> HousingTask:
    """The housing task from its config node."""
    return HousingTask(read_options("housing", cfg, DEFAULTS), root, device, dtype)
