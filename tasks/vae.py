"""vae_fmnist / vae_mnist (VAE-FM, VAE-M): convolutional VAE with latent 8 on 28x28 grey images."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Batch, read_options
from .vision import ImageTask, mnist_like_splits

DEFAULTS: dict[str, Any] = {"val_fraction": 0.1, "val_size": None, "latent": 8, "eval_noise_seed": 1234}


class ConvVAE(nn.Module):
    """Encoder 1-32-64-128 convs -> (mu, logvar); decoder Linear, 3 transposed convs, Linear, sigmoid."""

    def __init__(self, latent: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(2048, latent)
        self.fc_logvar = nn.Linear(2048, latent)
        self.fc_dec = nn.Linear(latent, 2048)
        self.decoder = nn.Sequential(
            nn.ReLU(),
            nn.Unflatten(1, (128, 4, 4)),
            nn.ConvTranspose2d(128, 64, 3, 2, 1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
            nn.Flatten(),
            nn.Linear(1024, 784),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction [B,784] in (0,1), mu, logvar) with z = mu + exp(logvar/2) * eps."""
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps.to(mu.dtype)
        return self.decoder(self.fc_dec(z)), mu, logvar


def vae_loss(out: tuple[torch.Tensor, torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of squared error + KL(q(z|x) || N(0, I)), averaged over the batch."""
    recon, mu, logvar = out
    target = x.flatten(1)
    sse = (recon.to(target.dtype) - target).pow(2).sum(dim=1)
    kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    return (sse + kl.to(sse.dtype)).mean()


class VAETask(ImageTask):
    """Pixels in [0,1], no normalisation; training noise from the epoch plan, eval noise from a fixed seed."""

    metric = "loss"

    def __init__(
        self,
        name: str,
        which: str,
        opts: dict[str, Any],
        root: Path,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.name = name
        self.latent = int(opts["latent"])
        train, splits = mnist_like_splits(name, root, which, float(opts["val_fraction"]), opts["val_size"])
        gen = torch.Generator().manual_seed(int(opts["eval_noise_seed"]))
        for split in ("val", "test"):
            if split in splits:
                n = len(splits[split]["y"])
                splits[split]["eps"] = torch.randn(n, self.latent, generator=gen, dtype=torch.float64).to(
                    dtype
                )
        super().__init__(train, splits, device, dtype, mean=None, std=None)

    def draw_extra(self, gen: torch.Generator, n: int) -> dict[str, torch.Tensor]:
        """Reparameterisation noise for every training sample of the epoch."""
        return {"eps": torch.randn(n, self.latent, generator=gen, device=self.device, dtype=self.dtype)}

    def prepare(self, raw: dict[str, torch.Tensor], train: bool) -> Batch:
        """Images in [0,1] plus their noise."""
        return {"x": raw["x"].to(self.dtype) / 255.0, "y": raw["y"], "eps": raw["eps"]}

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """(images, noise)."""
        return batch["x"], batch["eps"]

    def criterion(self, out: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The VAE loss; no accuracy."""
        return vae_loss(out, batch["x"]), None

    def build_model(self) -> nn.Module:
        """The conv VAE (1,069,153 parameters at latent 8)."""
        return self._place(ConvVAE(self.latent))


def build_fmnist(cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> VAETask:
    """VAE-FM."""
    return VAETask("vae_fmnist", "fashion", read_options("vae_fmnist", cfg, DEFAULTS), root, device, dtype)


def build_mnist(cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> VAETask:
    """VAE-M."""
    return VAETask("vae_mnist", "mnist", read_options("vae_mnist", cfg, DEFAULTS), root, device, dtype)
