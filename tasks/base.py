"""Shared task machinery: the Task protocol, epoch plans, option parsing and an in-memory tensor task."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

Batch = dict[str, torch.Tensor]

DATA_HINT = "(the data root is OVERSHOOT_DATA or data.root=)"


class DataMissingError(FileNotFoundError):
    """A dataset file is absent; the one-line message says which files to put where."""


def missing(task: str, path: Path, what: str, folder: Path) -> DataMissingError:
    """The standard one-line DataMissingError for `task` lacking `path`."""
    return DataMissingError(f"{task}: missing {path}; put {what} in {folder}/ {DATA_HINT}")


@dataclass(frozen=True)
class EpochPlan:
    """All randomness of one training epoch, drawn up front on the data's device.

    `index` holds the sample indices of the epoch's `steps` batches back to back: `steps * batch_size` of
    them when the last partial batch is dropped (the default), every training sample otherwise, the last
    batch then being smaller;
    `extra` holds per-sample random draws (augmentation parameters, VAE noise) aligned with `index`;
    `meta` holds small host-side per-batch values computed once per epoch (e.g. padded lengths).
    """

    seed: int
    epoch: int
    batch_size: int
    steps: int
    index: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: tuple[int, ...] = ()

    def rows(self, k: int) -> slice:
        """The slice of `index`/`extra` rows that make up batch `k`."""
        if not 0 <= k < self.steps:
            raise IndexError(f"batch {k} out of range: this epoch has {self.steps} steps")
        return slice(k * self.batch_size, min((k + 1) * self.batch_size, int(self.index.shape[0])))

    @property
    def partial(self) -> bool:
        """Whether the last batch is smaller than ``batch_size`` (``drop_last=False`` on a ragged epoch)."""
        return int(self.index.shape[0]) != self.steps * self.batch_size


@runtime_checkable
class Task(Protocol):
    """What the harness needs from a benchmark task (see the contract, section 2)."""

    @property
    def name(self) -> str: ...
    @property
    def metric(self) -> Literal["accuracy", "loss"]: ...  # the test metric: higher or lower is better
    @property
    def metric_scale(self) -> float: ...
    @property
    def n_train(self) -> int: ...

    def build_model(self) -> nn.Module: ...
    def epoch_plan(self, seed: int, epoch: int, batch_size: int) -> EpochPlan: ...
    def train_batch(self, plan: EpochPlan, k: int) -> Batch: ...
    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]: ...
    def has_split(self, split: str) -> bool: ...
    def inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]: ...
    def criterion(self, out: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def plan_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed that is a pure function of (seed, epoch)."""
    digest = hashlib.sha256(f"overshoot-bench/{int(seed)}/{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def plan_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """A torch.Generator on `device` seeded from (seed, epoch)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(plan_seed(seed, epoch))
    return gen


def steps_per_epoch(n_train: int, batch_size: int, drop_last: bool = True) -> int:
    """Steps per epoch over a task's ``n_train`` training examples: full batches only (``drop_last``), or
    with the last partial batch kept. The one check of a batch size: ValueError naming the fix when it is
    below 1 or above ``n_train``."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is invalid: it must be at least 1")
    if batch_size > n_train:
        raise ValueError(f"batch_size={batch_size} exceeds the {n_train} training examples: lower batch_size")
    return n_train // batch_size if drop_last else -(-n_train // batch_size)


def read_options(task: str, cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The task's options: `defaults` updated by `cfg` (minus `name`); unknown keys are a ValueError."""
    opts = dict(defaults)
    for key in cfg:
        if key == "name":
            continue
        if key not in defaults:
            raise ValueError(
                f"task {task}: unknown option {key!r}; valid options: {', '.join(sorted(defaults))}"
            )
        value = cfg[key]
        if hasattr(value, "__iter__") and not isinstance(value, str | bytes | Mapping):
            value = list(value)
        opts[key] = value
    return opts


def data_path(root: Path, value: str) -> Path:
    """`value` as a path: absolute as given, else relative to the data root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(root) / p


def validation_split(n: int, val_fraction: float, val_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, val) index split of range(n), each sorted; val drawn with a fixed seed."""
    n_val = int(val_size) if val_size is not None else round(n * float(val_fraction))
    if not 0 <= n_val < n:
        raise ValueError(f"validation size {n_val} must be in [0, {n}); fix val_fraction / val_size")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(20250116))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def classification_criterion(out: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (NLL of log-softmax) and the number of correct argmax predictions."""
    y = batch["y"]
    loss = F.cross_entropy(out, y)
    correct = (out.argmax(dim=-1) == y).sum()
    return loss, correct


class TensorTask(ABC):
    """A task whose splits are dicts of same-length tensors held on the device.

    Subclasses set name/metric/metric_scale, implement build_model, and may override `draw_extra`
    (per-sample randomness for an epoch), `prepare` (raw rows -> model-ready batch), `inputs`, `criterion`.
    """

    name: str = ""
    metric: Literal["accuracy", "loss"] = "accuracy"
    metric_scale: float = 1.0
    partial_batches = True  # epoch_plan takes drop_last=False (keeps the last, smaller batch)

    def __init__(
        self,
        train: dict[str, torch.Tensor],
        splits: dict[str, dict[str, torch.Tensor]],
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.train = {k: v.to(self.device) for k, v in train.items()}
        self.splits = {s: {k: v.to(self.device) for k, v in d.items()} for s, d in splits.items() if d}
        self.n_train = int(next(iter(self.train.values())).shape[0])

    # -- randomness and batching -------------------------------------------------------------------
    def draw_extra(self, gen: torch.Generator, n: int) -> dict[str, torch.Tensor]:
        """Per-sample random draws for `n` training samples (none by default)."""
        return {}

    def prepare(self, raw: dict[str, torch.Tensor], train: bool) -> Batch:
        """Turn gathered rows (plus their extra draws) into a model-ready batch."""
        return raw

    def epoch_plan(self, seed: int, epoch: int, batch_size: int, drop_last: bool = True) -> EpochPlan:
        """Permutation and per-sample draws for one epoch, seeded from (seed, epoch); ``drop_last=False``
        keeps the samples of the last partial batch (the permutation's first full batches are the same)."""
        steps = steps_per_epoch(self.n_train, batch_size, drop_last)
        gen = plan_generator(seed, epoch, self.device)
        index = torch.randperm(self.n_train, generator=gen, device=self.device)
        index = index[: steps * batch_size] if drop_last else index
        extra = self.draw_extra(gen, int(index.shape[0]))
        return EpochPlan(int(seed), int(epoch), int(batch_size), steps, index, extra)

    def train_batch(self, plan: EpochPlan, k: int) -> Batch:
        """The k-th training batch of `plan`, gathered and prepared on the device."""
        rows = plan.rows(k)
        idx = plan.index[rows]
        raw = {key: v.index_select(0, idx) for key, v in self.train.items()}
        raw.update({key: v[rows] for key, v in plan.extra.items()})
        return self.prepare(raw, train=True)

    def has_split(self, split: str) -> bool:
        """Whether evaluation split `split` ("val" | "test") exists."""
        return split in self.splits

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """The split in its fixed order, in batches of `batch_size` (last one may be smaller)."""
        if split not in self.splits:
            raise ValueError(f"task {self.name} has no {split!r} split; it has {sorted(self.splits)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        data = self.splits[split]
        n = int(next(iter(data.values())).shape[0])
        for start in range(0, n, batch_size):
            yield self.prepare({k: v[start : start + batch_size] for k, v in data.items()}, train=False)

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """Positional model inputs."""
        return (batch["x"],)

    def criterion(self, out: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean loss over the batch and the number of correct predictions (or None)."""
        return classification_criterion(out, batch)

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model on the task's device and dtype (the caller seeds torch)."""

    def _place(self, model: nn.Module) -> nn.Module:
        return model.to(device=self.device, dtype=self.dtype)
