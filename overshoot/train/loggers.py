"""TensorBoard and Weights & Biases logging of a run, besides the run store (both off by default).

``log.tensorboard=true`` writes event files to ``<run>/tensorboard/`` with ``torch.utils.tensorboard``;
``log.wandb=true`` starts a W&B run, offline (files under ``<run>/wandb/``, or ``$WANDB_DIR``; upload later
with ``wandb sync``) unless ``WANDB_MODE`` says otherwise. Both receive the resolved config and the same
numbers as the run's logs: every steps.csv column as ``train/<column>`` against the ``step`` column, every
epochs.csv row as ``<split>/loss`` and ``<split>/accuracy`` against its epoch. Both packages come with the
``[loggers]`` extra (``config.resolve`` reports a missing one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from overshoot.config import methods
from overshoot.config.schema import config_hash
from overshoot.store.writer import RunWriter


def _label(run: Mapping[str, Any]) -> str:
    return f"{run['task']}/{methods.label(run['optimizer'], run['gamma'])}/seed{run['seed']}"


class Loggers:
    """The loggers ``run['log']`` switches on, fed the blocks of rows the run appends to its logs.

    ``start_step`` is the step the run starts (or resumes) at: TensorBoard drops the events a resumed run
    logged past its checkpoint, as the run store cuts its CSV logs back.
    """

    def __init__(self, run: Mapping[str, Any], writer: RunWriter, start_step: int) -> None:
        log = run.get("log", {})
        self.tensorboard: Any = None
        self.wandb: Any = None
        if log.get("tensorboard"):
            from torch.utils.tensorboard import SummaryWriter

            # Events at or past start_step from an earlier, killed process are dropped (0: all of them).
            self.tensorboard = SummaryWriter(log_dir=str(writer.path / "tensorboard"), purge_step=start_step)
            if not start_step:
                text = yaml.safe_dump(dict(run), sort_keys=False)
                self.tensorboard.add_text("config", "```\n" + text + "```", 0)
        if log.get("wandb"):
            self.wandb = self._start_wandb(run, writer, str(log.get("wandb_project") or "overshoot-bench"))

    @staticmethod
    def _start_wandb(run: Mapping[str, Any], writer: RunWriter, project: str) -> Any:
        import wandb

        run_id = writer.info.get("wandb_id") or f"{config_hash(run)[:8]}-{os.urandom(4).hex()}"
        directory = Path(os.environ.get("WANDB_DIR") or writer.path)
        directory.mkdir(parents=True, exist_ok=True)
        w = wandb.init(
            project=project,
            name=_label(run),
            id=run_id,
            resume="allow",
            config=dict(run),
            dir=str(directory),
            mode=os.environ.get("WANDB_MODE") or "offline",  # type: ignore[arg-type]
            settings=wandb.Settings(console="off", silent=True),
        )
        w.define_metric("step")
        w.define_metric("train/*", step_metric="step")
        w.define_metric("epoch")
        for split in ("val", "test"):
            w.define_metric(f"{split}/*", step_metric="epoch")
        writer.write_info(wandb_id=run_id)  # a resumed run continues the same W&B run
        return w

    @property
    def active(self) -> bool:
        """Whether any logger is on."""
        return self.tensorboard is not None or self.wandb is not None

    def steps(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """A block of steps.csv rows (column -> values; ``step`` is the x axis)."""
        if not self.active:
            return
        cols = [c for c in rows if c != "step"]
        for i, step in enumerate(rows["step"]):
            values = {c: float(rows[c][i]) for c in cols}
            if self.tensorboard is not None:
                for c, v in values.items():
                    self.tensorboard.add_scalar(f"train/{c}", v, int(step))
            if self.wandb is not None:
                self.wandb.log({"step": int(step), **{f"train/{c}": v for c, v in values.items()}})

    def epochs(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """A block of epochs.csv rows (epoch, split, loss, accuracy; NaN accuracies are left out)."""
        if not self.active:
            return
        for epoch, split, loss, acc in zip(
            rows["epoch"], rows["split"], rows["loss"], rows["accuracy"], strict=True
        ):
            values = {f"{split}/loss": float(loss)}
            if not math.isnan(float(acc)):
                values[f"{split}/accuracy"] = float(acc)
            if self.tensorboard is not None:
                for k, v in values.items():
                    self.tensorboard.add_scalar(k, v, int(epoch))
            if self.wandb is not None:
                self.wandb.log({"epoch": int(epoch), **values})

    def close(self, failed: bool = False) -> None:
        """Flush and close every logger (a W&B run ends with exit code 1 when ``failed``)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if failed else 0)
            self.wandb = None
