"""Image tasks held as uint8 tensors on the device, converted and normalised per batch."""

from __future__ import annotations

from pathlib import Path

import torch

from .augment import augment, draw_params
from .base import Batch, TensorTask, validation_split
from .data import load_idx_dataset

MNIST_FOLDERS = {
    "fashion": (("fashion-mnist", "FashionMNIST/raw", "FashionMNIST"), "Fashion-MNIST"),
    "mnist": (("mnist", "MNIST/raw", "MNIST"), "MNIST"),
}


def mnist_like_splits(
    task: str, root: Path, which: str, val_fraction: float, val_size: int | None
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Train / {val, test} dicts of uint8 images [N,1,28,28] and int64 labels for MNIST or Fashion-MNIST.

    The validation set is a fixed-seed random `val_fraction` (or `val_size` examples) of the training set.
    """
    folders, what = MNIST_FOLDERS[which]
    x_tr, y_tr, x_te, y_te = load_idx_dataset(task, root, folders, what, dataset=which)
    tr, va = validation_split(len(x_tr), val_fraction, val_size)
    train = {"x": x_tr[tr], "y": y_tr[tr]}
    splits = {"test": {"x": x_te, "y": y_te}}
    if len(va):
        splits["val"] = {"x": x_tr[va], "y": y_tr[va]}
    return train, splits


class ImageTask(TensorTask):
    """uint8 images -> float in [0,1], augmented on train batches if enabled (CIFAR recipe), normalised."""

    def __init__(
        self,
        train: dict[str, torch.Tensor],
        splits: dict[str, dict[str, torch.Tensor]],
        device: torch.device,
        dtype: torch.dtype,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        use_augment: bool = False,
    ) -> None:
        super().__init__(train, splits, device, dtype)
        self.use_augment = bool(use_augment)
        c = self.train["x"].shape[1]
        self.mean = (
            None if mean is None else torch.tensor(mean, device=self.device, dtype=dtype).view(1, c, 1, 1)
        )
        self.std = (
            None if std is None else torch.tensor(std, device=self.device, dtype=dtype).view(1, c, 1, 1)
        )

    def draw_extra(self, gen: torch.Generator, n: int) -> dict[str, torch.Tensor]:
        """Augmentation parameters per sample when augmentation is on."""
        if not self.use_augment:
            return {}
        return draw_params(gen, n, int(self.train["x"].shape[-1]), self.device)

    def images(self, raw: dict[str, torch.Tensor], train: bool) -> torch.Tensor:
        """Float images in [0,1] (augmented on training batches when enabled)."""
        if train and self.use_augment:
            return augment(raw["x"], raw, self.dtype)
        return raw["x"].to(self.dtype) / 255.0

    def prepare(self, raw: dict[str, torch.Tensor], train: bool) -> Batch:
        """Normalised float images and labels."""
        x = self.images(raw, train)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return {"x": x, "y": raw["y"]}
