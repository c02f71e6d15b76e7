"""The resolved config of one run, typed: what ``overshoot.config.compose.resolve`` returns and the engine
reads.

``RunConfig.to_dict()`` is the run's ``config.yaml`` and what its hash is computed from
(``overshoot.config.schema.config_hash``). Keys that were added after runs were stored (``drop_last``, the
custom optimizer's ``optimizer_target``/``optimizer_kwargs``, a task's ``_target_``) enter the dict only at
non-default values, so stored runs keep their hash and directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HParams:
    """The hyperparameters a preset gives per (task, optimizer family), after command-line overrides."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float  # mu for the SGD family, beta1 for the Adam family
    beta2: float
    eps: float
    weight_decay: float
    schedule: str  # constant | cosine
    delay: int  # AdamO's overshoot ramp delay


@dataclass(frozen=True)
class LogSettings:
    """What each step logs, and which loggers (an extra each) also get it."""

    base_loss: bool = True
    window: int = 400
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "overshoot-bench"


@dataclass(frozen=True)
class RunConfig:
    """One run: a task, a method (optimizer and gamma), a seed and hyperparameters, and where it is stored.

    ``task_options`` are the task config's fields (``name`` and the task's own options, or ``_target_`` and
    its arguments for a task of the user's); ``optimizer_target``/``optimizer_kwargs`` are set for an
    optimizer of the user's (``optimizer=custom``). Treat the mappings as read-only."""

    task: str
    task_options: Mapping[str, Any]
    optimizer: str
    family: str
    gamma: float
    seed: int
    precision: str
    hparams: HParams
    max_steps: int | None = None
    drop_last: bool = True
    log_distance: bool = False
    preset: str = "paper"
    log: LogSettings = field(default_factory=LogSettings)
    device: str = "auto"
    out: str = "runs"
    data_root: str = "data"
    progress: str = "auto"
    threads: int | str = "auto"
    checkpoint_every: float = 60.0
    population: bool = False
    cuda_graph: bool | str = "auto"
    optimizer_target: str | None = None
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The run's config.yaml: plain types, in the stored layout."""
        out: dict[str, Any] = {
            "task": self.task,
            "task_options": dict(self.task_options),
            "optimizer": self.optimizer,
            "family": self.family,
            "gamma": self.gamma,
            "seed": self.seed,
            "precision": self.precision,
            "hparams": dataclasses.asdict(self.hparams),
            "max_steps": self.max_steps,
        }
        if not self.drop_last:
            out["drop_last"] = False
        if self.optimizer_target is not None:
            out["optimizer_target"] = self.optimizer_target
            out["optimizer_kwargs"] = dict(self.optimizer_kwargs)
        out.update(
            {
                "log_distance": self.log_distance,
                "preset": self.preset,
                "log": dataclasses.asdict(self.log),
                "device": self.device,
                "out": self.out,
                "data": {"root": self.data_root},
                "progress": self.progress,
                "threads": self.threads,
                "checkpoint_every": self.checkpoint_every,
                "population": self.population,
                "cuda_graph": self.cuda_graph,
            }
        )
        return out
