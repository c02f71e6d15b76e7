"""cifar (3c3d-C10) and cifar100 (ResNet-18 C100), with the paper's augmentation on the device."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import DATA_HINT, DataMissingError, read_options
from .data import cifar10_pickle_present, load_cifar10_jpeg, load_cifar10_pickle, load_cifar100_pickle
from .vision import ImageTask

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR10_DEFAULTS: dict[str, Any] = {"source": "auto", "augment": True, "cache": True}
CIFAR100_DEFAULTS: dict[str, Any] = {"augment": True}


def conv3c3d(classes: int = 10) -> nn.Sequential:
    """3c3d: Conv 5x5 valid 64, 3x3 valid 96, 3x3 same 128 (each ReLU + maxpool2), FC 1152-512-256-classes."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 96, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(96, 128, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(1152, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, classes),
    )


class CIFAR10Task(ImageTask):
    """3c3d on CIFAR-10 (python pickles when present, else the JPEG zips); no validation split."""

    name = "cifar"
    metric = "accuracy"

    def __init__(self, opts: dict[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> None:
        source = str(opts["source"])
        if source not in ("auto", "pickle", "jpeg"):
            raise ValueError(f"cifar: source must be auto, pickle or jpeg, got {source!r}")
        if source == "pickle" or (source == "auto" and cifar10_pickle_present(root)):
            x_tr, y_tr, x_te, y_te = load_cifar10_pickle(self.name, root)
        elif source == "jpeg" or (root / "cifar10-jpeg").is_dir():
            x_tr, y_tr, x_te, y_te = load_cifar10_jpeg(self.name, root, use_cache=bool(opts["cache"]))
        else:
            d = root / "cifar10-jpeg"
            raise DataMissingError(
                f"cifar: missing {d / 'train.zip'}; put the CIFAR-10 JPEG zips (train.zip, test.zip) in {d}/ "
                f"or torchvision's python batches in {root / 'cifar-10-batches-py'}/ {DATA_HINT}"
            )
        super().__init__(
            {"x": x_tr, "y": y_tr},
            {"test": {"x": x_te, "y": y_te}},
            device,
            dtype,
            CIFAR10_MEAN,
            CIFAR10_STD,
            use_augment=bool(opts["augment"]),
        )

    def build_model(self) -> nn.Module:
        """3c3d (895,210 parameters)."""
        return self._place(conv3c3d())


class CIFAR100Task(ImageTask):
    """torchvision resnet18(num_classes=100) from scratch on CIFAR-100 (python pickles); no validation."""

    name = "cifar100"
    metric = "accuracy"

    def __init__(self, opts: dict[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> None:
        x_tr, y_tr, x_te, y_te = load_cifar100_pickle(self.name, root)
        super().__init__(
            {"x": x_tr, "y": y_tr},
            {"test": {"x": x_te, "y": y_te}},
            device,
            dtype,
            CIFAR100_MEAN,
            CIFAR100_STD,
            use_augment=bool(opts["augment"]),
        )

    def build_model(self) -> nn.Module:
        """ResNet-18 with the ImageNet stem and a 100-way head."""
        from torchvision.models import resnet18

        return self._place(resnet18(num_classes=100))


def build_cifar10(
    cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype
) -> CIFAR10Task:
    """The cifar task from its config node."""
    return CIFAR10Task(read_options("cifar", cfg, CIFAR10_DEFAULTS), Path(root), device, dtype)


def build_cifar100(
    cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype
) -> CIFAR100Task:
    """The cifar100 task from its config node."""
    return CIFAR100Task(read_options("cifar100", cfg, CIFAR100_DEFAULTS), Path(root), device, dtype)
