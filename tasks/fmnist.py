"""fmnist (2c2d-FM): two conv + two dense layers on Fashion-MNIST."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import read_options
from .vision import ImageTask, mnist_like_splits

FMNIST_MEAN = (0.28604,)
FMNIST_STD = (0.3204534,)
WIDTHS = {"paper": (32, 64, 256), "tuned": (16, 32, 64)}
DEFAULTS: dict[str, Any] = {"width": "paper", "val_fraction": 0.1, "val_size": None}


def conv2c2d(c1: int = 32, c2: int = 64, fc: int = 256, classes: int = 10) -> nn.Sequential:
    """Conv(1-c1,3x3 same), ReLU, pool, Conv(c1-c2,3x3 same), ReLU, pool, FC 49*c2-fc, ReLU, FC fc-classes."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * c2, fc),
        nn.ReLU(),
        nn.Linear(fc, classes),
    )


class FMNISTTask(ImageTask):
    """2c2d on Fashion-MNIST normalised with mean 0.28604, std 0.3204534; 10% fixed validation split."""

    name = "fmnist"
    metric = "accuracy"

    def __init__(self, opts: dict[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> None:
        if opts["width"] not in WIDTHS:
            raise ValueError(f"fmnist: width must be one of {sorted(WIDTHS)}, got {opts['width']!r}")
        self.widths = WIDTHS[opts["width"]]
        train, splits = mnist_like_splits(
            self.name, root, "fashion", float(opts["val_fraction"]), opts["val_size"]
        )
        super().__init__(train, splits, device, dtype, FMNIST_MEAN, FMNIST_STD)

    def build_model(self) -> nn.Module:
        """2c2d: 824,458 parameters at the paper's widths (32/64, FC 256); tuned: 16/32, FC 64."""
        return self._place(conv2c2d(*self.widths))


def build(cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> FMNISTTask:
    """The fmnist task from its config node."""
    return FMNISTTask(read_options("fmnist", cfg, DEFAULTS), root, device, dtype)
