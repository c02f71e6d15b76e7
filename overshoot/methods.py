"""The optimizers of the paper's table, built from a resolved run config."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from overshoot.optim import SGDO, AdamO

NADAM_CONSTANT_MOMENTUM = 1e12  # momentum_decay so large that NAdam's mu_t == beta1 from the first step


def build_optimizer(
    run: dict[str, Any], params: Iterable[torch.nn.Parameter], capturable: bool = False
) -> torch.optim.Optimizer:
    """The optimizer ``run["optimizer"]`` with the run's hyperparameters; ``capturable`` makes torch's AdamW
    and NAdam keep their step counts on the device, so that a CUDA graph can replay their step."""
    hp, name, gamma = run["hparams"], run["optimizer"], float(run["gamma"])
    lr, mu, wd = hp["lr"], hp["momentum"], hp["weight_decay"]
    betas = (mu, hp["beta2"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mu, weight_decay=wd)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=mu, weight_decay=wd, nesterov=True)
    if name == "sgd_os":
        return SGDO(params, lr=lr, momentum=mu, gamma=gamma, weight_decay=wd)
    if name == "adam":
        return torch.optim.AdamW(
            params, lr=lr, betas=betas, eps=hp["eps"], weight_decay=wd, capturable=capturable
        )
    if name == "nadam":
        return torch.optim.NAdam(
            params,
            lr=lr,
            betas=betas,
            eps=hp["eps"],
            weight_decay=wd,
            momentum_decay=NADAM_CONSTANT_MOMENTUM,
            decoupled_weight_decay=True,
            capturable=capturable,
        )
    if name == "adam_os":
        return AdamO(
            params, lr=lr, betas=betas, eps=hp["eps"], weight_decay=wd, gamma=gamma, delay=hp["delay"]
        )
    raise ValueError(f"optimizer={name} is unknown: choose sgd, nesterov, sgd_os, adam, nadam or adam_os")
