"""housing (MLP-CA): MLP 8-200-150-1 regression on California housing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, TensorTask, data_path, read_options
from .data import load_housing_csv
from .digits import mlp

DEFAULTS: dict[str, Any] = {
    "path": "california-housing/cal_housing.csv",
    "test_fraction": 0.2,
    "split_seed": 42,
    "hidden": [200, 150],
}


class HousingTask(TensorTask):
    """sklearn's 8 features standardised (fit on train), target in $100k unscaled; MSE; no validation."""

    name = "housing"
    metric = "loss"
    metric_scale = 100.0

    def __init__(self, opts: dict[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> None:
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        x, y = load_housing_csv(self.name, data_path(root, str(opts["path"])))
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=float(opts["test_fraction"]), random_state=int(opts["split_seed"])
        )
        scaler = StandardScaler().fit(x_tr)
        train = {"x": torch.tensor(scaler.transform(x_tr), dtype=dtype), "y": torch.tensor(y_tr, dtype=dtype)}
        test = {"x": torch.tensor(scaler.transform(x_te), dtype=dtype), "y": torch.tensor(y_te, dtype=dtype)}
        super().__init__(train, {"test": test}, device, dtype)
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
