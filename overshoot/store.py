"""The run store: one directory per run, written atomically, read back by reports and sweeps.

A run directory holds ``config.yaml`` (the resolved config), ``steps.csv`` (one row per optimizer step),
``epochs.csv`` (validation/test metrics per epoch), ``run.json`` (status and summary) and, while the run is
unfinished, ``checkpoint.pt``. Every file except the two CSV logs is replaced atomically; the logs are
appended in whole blocks and cut back to the last checkpoint when a run resumes, so a reader never sees a
row that a resumed run will not reproduce.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch
import yaml

STEP_COLUMNS = ("step", "epoch", "base_loss", "train_loss", "lr", "grad_norm")
EPOCH_COLUMNS = ("epoch", "split", "loss", "accuracy")
STATUSES = ("running", "completed", "failed", "diverged")
_UMASK = os.umask(0)
os.umask(_UMASK)

# Config keys that say where and how a run is stored or watched, not what it computes: left out of the hash.
UNHASHED_KEYS = (
    "out",
    "data",
    "device",
    "threads",
    "progress",
    "checkpoint_every",
    "population",
    "cuda_graph",
    "log",
    "preset",
)


def atomic_write(path: Path, write: Callable[[IO[Any]], object], mode: str = "w") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place: readers see the old
    file or the new one, never a part. The file gets the usual permissions (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part."""
    atomic_write(path, lambda f: f.write(text), "w")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f), "wb")


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable hex digest of the config keys that determine a run's numbers."""
    kept = {k: v for k, v in config.items() if k not in UNHASHED_KEYS}
    blob = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def method_name(optimizer: str, gamma: float) -> str:
    """The method label of a run: the optimizer name, plus ``-g<gamma>`` for overshoot optimizers."""
    if optimizer.endswith("_os"):
        return f"{optimizer}-g{gamma:g}"
    return optimizer


def run_path(out: Path | str, config: Mapping[str, Any]) -> Path:
    """Where the run of ``config`` lives: ``<out>/<task>/<method>/seed<seed>-<hash8>``."""
    method = method_name(str(config["optimizer"]), float(config.get("gamma") or 0.0))
    return Path(out) / str(config["task"]) / method / f"seed{config['seed']}-{config_hash(config)[:8]}"


def _format_rows(columns: Sequence[str], rows: Mapping[str, Sequence[Any]]) -> str:
    """CSV lines for a block of rows; floats keep every digit (``repr`` round-trips exactly)."""
    cols = [list(rows[c]) for c in columns]
    return "".join(",".join(map(str, cells)) + "\n" for cells in zip(*cols, strict=True))


@dataclass
class RunWriter:
    """Writes one run directory; the training loop's only way to touch the disk."""

    path: Path
    step_columns: tuple[str, ...] = STEP_COLUMNS
    _info: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_file(self) -> Path:
        return self.path / "steps.csv"

    @property
    def epochs_file(self) -> Path:
        return self.path / "epochs.csv"

    @property
    def checkpoint_file(self) -> Path:
        return self.path / "checkpoint.pt"

    def read_info(self) -> dict[str, Any]:
        """The current ``run.json`` (empty when the run has never started)."""
        f = self.path / "run.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def start(
        self, config: Mapping[str, Any], info: Mapping[str, Any], *, resume_rows: tuple[int, int]
    ) -> None:
        """Write the config and a ``running`` run.json; cut the logs to ``resume_rows`` (steps, epochs)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(dict(config), sort_keys=False))
        self._truncate(self.steps_file, self.step_columns, resume_rows[0])
        self._truncate(self.epochs_file, EPOCH_COLUMNS, resume_rows[1])
        self._info = {**self.read_info(), **info, "status": "running"}
        self.write_info()

    def write_info(self, **updates: Any) -> None:
        """Merge ``updates`` into run.json and replace it atomically."""
        self._info.update(updates)
        atomic_write_text(self.path / "run.json", json.dumps(self._info, indent=2, default=str) + "\n")

    @property
    def info(self) -> dict[str, Any]:
        return self._info

    def append_steps(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Append a block of step rows (column name -> equal-length sequence)."""
        self._append(self.steps_file, self.step_columns, rows)

    def append_epochs(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Append a block of epoch rows."""
        self._append(self.epochs_file, EPOCH_COLUMNS, rows)

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Replace the checkpoint atomically."""
        atomic_torch_save(dict(state), self.checkpoint_file)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint, or None."""
        if not self.checkpoint_file.exists():
            return None
        return torch.load(self.checkpoint_file, map_location="cpu", weights_only=False)

    def drop_checkpoint(self) -> None:
        self.checkpoint_file.unlink(missing_ok=True)

    @staticmethod
    def _append(path: Path, columns: Sequence[str], rows: Mapping[str, Sequence[Any]]) -> None:
        text = _format_rows(columns, rows)
        with open(path, "a") as f:
            f.write(text)
            f.flush()

    @staticmethod
    def _truncate(path: Path, columns: Sequence[str], keep: int) -> None:
        header = ",".join(columns) + "\n"
        lines = path.read_text().splitlines(keepends=True)[1 : keep + 1] if path.exists() and keep else []
        if len(lines) < keep:
            raise RuntimeError(f"{path} holds {len(lines)} rows but the checkpoint expects {keep}")
        atomic_write_text(path, header + "".join(lines))


@dataclass
class Run:
    """A run directory read back: its run.json (``info``), config and logs."""

    path: Path
    info: dict[str, Any]
    config: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.info.get("status", "unknown"))

    def steps(self) -> pd.DataFrame:
        """The per-step log (empty frame when none was written)."""
        f = self.path / "steps.csv"
        return pd.read_csv(f) if f.exists() else pd.DataFrame(columns=list(STEP_COLUMNS))

    def epochs(self) -> pd.DataFrame:
        """The per-epoch evaluation log."""
        f = self.path / "epochs.csv"
        return pd.read_csv(f) if f.exists() else pd.DataFrame(columns=list(EPOCH_COLUMNS))


def load_run(path: Path | str) -> Run:
    """Read the run directory at ``path``."""
    path = Path(path)
    info = json.loads((path / "run.json").read_text())
    cfg_file = path / "config.yaml"
    config = yaml.safe_load(cfg_file.read_text()) if cfg_file.exists() else {}
    return Run(path=path, info=info, config=config or {})


def find_runs(paths: Iterable[Path | str]) -> list[Run]:
    """Every run directory (one holding run.json) at or below ``paths``, sorted by path."""
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no run store at {p}: pass a directory written by overshoot-bench")
        if (p / "run.json").is_file():
            found[p.resolve()] = None
        for f in p.rglob("run.json"):
            found[f.parent.resolve()] = None
    return [load_run(p) for p in sorted(found)]


def runs_table(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run: task, optimizer, family, gamma, seed, status, steps_to_95, path."""
    rows = []
    for r in runs:
        i = r.info
        rows.append(
            {
                "task": i.get("task"),
                "optimizer": i.get("optimizer"),
                "family": i.get("family"),
                "gamma": float(i.get("gamma") or 0.0),
                "seed": i.get("seed"),
                "status": r.status,
                "steps": i.get("steps"),
                "steps_to_95": i.get("steps_to_95"),
                "path": str(r.path),
            }
        )
    return pd.DataFrame(rows)
