"""The paper's benchmark tasks, installed as ``overshoot_tasks``; entry point `build_task`."""

from __future__ import annotations

import importlib
import inspect
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
    if cfg.get("_target_") is not None:
        return build_custom(cfg, Path(data_root).expanduser(), torch.device(device), dtype)
    name = cfg.get("name") if isinstance(cfg, Mapping) or hasattr(cfg, "get") else None
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[str(name)](cfg, Path(data_root).expanduser(), torch.device(device), dtype)


# What a task of the user's must have: the Task protocol's members but its name (set from the config).
TASK_MEMBERS = tuple(m for m in vars(Task) if not m.startswith("_") and m != "name")


def build_custom(cfg: Mapping[str, Any], data_root: Path, device: torch.device, dtype: torch.dtype) -> Task:
    """A task of the user's: ``cfg["_target_"]`` is the import path of a factory (a function or a class)
    implementing the Task protocol, called with the node's other keys as keyword arguments, plus
    ``data_root``, ``device`` and ``dtype`` where it takes them."""
    target = str(cfg["_target_"])
    module, _, attr = target.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(
            f"task._target_={target} cannot be imported ({e}): check the path and PYTHONPATH"
        ) from None
    kwargs = {k: v for k, v in cfg.items() if k not in ("_target_", "name")}
    offered = {"data_root": data_root, "device": device, "dtype": dtype}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): offer nothing
        params = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs.update({k: v for k, v in offered.items() if takes_any or k in params})
    task = factory(**kwargs)
    missing = [m for m in TASK_MEMBERS if not hasattr(task, m)]
    if missing:
        raise ValueError(
            f"task._target_={target} built a {type(task).__name__} without {', '.join(missing)}: implement "
            "the Task protocol (overshoot_tasks.base.Task; a subclass of overshoot_tasks.base.TensorTask has "
            "all but build_model)"
        )
    task.name = str(cfg.get("name") or attr)
    return task


__all__ = [
    "TASKS",
    "Batch",
    "DataMissingError",
    "EpochPlan",
    "Task",
    "build_custom",
    "build_task",
    "plan_seed",
]
