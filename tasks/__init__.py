"""The paper's benchmark tasks, installed as ``overshoot_tasks``; entry point `build_task`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from . import cifar, digits, fmnist, gpt2, housing, vae
from .base import Batch, DataMissingError, EpochPlan, Task, plan_seed

Builder = Callable[[Mapping[str, Any], Path, torch.device, torch.dtype], Task]

TASKS: dict[str, Builder] = {
    "digits": digits.build,
    "housing": housing.build,
    "vae_fmnist": vae.build_fmnist,
    "vae_mnist": vae.build_mnist,
    "fmnist": fmnist.build,
    "cifar": cifar.build_cifar10,
    "cifar100": cifar.build_cifar100,
    "gpt2_qqp": gpt2.build_qqp,
    "gpt2_text": gpt2.build_text,
}


def build_task(
    cfg: Mapping[str, Any], data_root: Path | str, device: torch.device | str, dtype: torch.dtype
) -> Task:
    """The task named by cfg["name"] with its options from cfg, data read from `data_root`, held on `device`.

    Raises ValueError for an unknown task or option and DataMissingError when its files are absent.
    """
    name = cfg.get("name") if isinstance(cfg, Mapping) or hasattr(cfg, "get") else None
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[str(name)](cfg, Path(data_root).expanduser(), torch.device(device), dtype)


__all__ = ["TASKS", "Batch", "DataMissingError", "EpochPlan", "Task", "build_task", "plan_seed"]
