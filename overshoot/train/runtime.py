"""What every training backend and the driver share: devices, seeds, CPU threads, stop requests, precision,
CUDA-graph decisions, the epoch arithmetic and the lr schedule of a run."""

from __future__ import annotations

import contextlib
import math
import random
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from overshoot_tasks.base import steps_per_epoch
from torch import nn

from overshoot.config import methods
from overshoot.config.outcomes import run_label as run_label  # re-exported: messages name runs
from overshoot.config.run import HParams, RunConfig

if TYPE_CHECKING:
    from overshoot_tasks.base import Task


class Interrupted(Exception):
    """The run was stopped by SIGINT/SIGTERM after writing a checkpoint; relaunching resumes it."""


class Diverged(Exception):
    """The training loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) with ``seed`` (0 included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; an unavailable cuda is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but no CUDA GPU is visible: use device=cpu or device=auto")
    return dev


SMALL_MODEL = 1_000_000  # parameters under which threads=auto uses one CPU thread
CPU_THREADS = torch.get_num_threads()  # the process's thread count before any run changed it


def set_cpu_threads(setting: int | str, model: nn.Module, device: torch.device) -> None:
    """Apply the ``threads`` setting: an int, or ``auto``: one thread for models under SMALL_MODEL
    parameters, the process's own count for larger ones.

    One thread is what holds up when other processes share the cores (several runs at once, a shared node):
    there, extra threads spin against each other and a small model's steps get several times slower. A run
    that has the machine to itself can be faster with more (convolutional models, populations): threads=N.
    """
    if device.type != "cpu":
        return
    if setting == "auto":
        small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL
        torch.set_num_threads(1 if small else CPU_THREADS)  # restored for a large model after a small one
    else:
        torch.set_num_threads(int(setting))


class StopRequest:
    """Callable flag, true once SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self) -> bool:
        return self.signum != 0

    @property
    def exit_code(self) -> int:
        """The shell's exit code for the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.signum or signal.SIGTERM)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """SIGINT/SIGTERM set a flag the loop checks between steps (a second SIGINT stops at once)."""
    flag = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if flag.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum

    old = {}
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread: leave the handlers alone
        pass
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


GRAPH_WARMUP = 3  # eager steps after (re)start before the step is captured as a CUDA graph


def graph_blocker(
    run: RunConfig, device: torch.device, model: nn.Module | None = None, population: bool = False
) -> str | None:
    """Why this run's step cannot be replayed as a CUDA graph (None when it can); ``model`` None skips the
    checks that need it. ``population``: the run is a member of a population, whose updates keep their step
    counts and lr on the device (any optimizer and schedule can be replayed)."""
    if device.type != "cuda":
        return "CUDA graphs need device=cuda"
    if not run.drop_last:
        return "drop_last=false gives the last batch of an epoch another shape"
    if population:
        return None
    method = methods.get(run.optimizer, run.family)
    if not method.graph:
        if method.custom:
            return f"optimizer={run.optimizer} is not known to keep its step state on the device"
        return f"optimizer={run.optimizer} computes its bias corrections on the host every step"
    if run.hparams.schedule != "constant":
        return f"schedule={run.hparams.schedule} changes the lr every step"
    if run.log_distance:
        return "log.distance=true keeps a host-side step counter"
    if run.task.startswith("gpt2"):
        return "Hugging Face models are not checked for graph capture"
    if model is not None and any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        return "dropout masks are replayed with a host-side RNG fork"
    return None


def use_graph(
    run: RunConfig, device: torch.device, model: nn.Module | None = None, population: bool = False
) -> bool:
    """The ``cuda_graph`` setting resolved: auto = on where possible; true where impossible is an error."""
    blocker = graph_blocker(run, device, model, population)
    if run.cuda_graph is True and blocker is not None:
        raise ValueError(f"cuda_graph=true is impossible for this run: {blocker}; use cuda_graph=auto")
    return run.cuda_graph is not False and blocker is None


def autocast_for(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A factory of the forward passes' autocast context: bf16 autocast, or nothing for fp32/fp64. No
    weight-cast cache: each forward casts every weight once anyway, and a CUDA graph capture allows none."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


def epoch_steps(run: RunConfig, task: Task) -> tuple[int, dict[str, Any]]:
    """The run's steps per epoch and the keyword arguments of its ``task.epoch_plan`` calls (``drop_last``
    when the run keeps the last partial batch); ValueError naming the fix when the batch cannot be used."""
    if not run.drop_last and not getattr(task, "partial_batches", False):
        raise ValueError(f"drop_last=false is not supported by task {run.task}: use drop_last=true")
    steps = steps_per_epoch(task.n_train, run.hparams.batch_size, run.drop_last)
    return steps, ({} if run.drop_last else {"drop_last": False})


def forward_state_free(model: nn.Module) -> bool:
    """Whether a forward pass of ``model`` changes nothing but its output (no BatchNorm statistics, no
    dropout masks): what a population's vectorised functional call needs."""
    return not any(
        isinstance(m, nn.modules.batchnorm._NormBase) or (isinstance(m, nn.Dropout) and m.p > 0)
        for m in model.modules()
    )


def lr_at(step: int, hp: HParams, total_steps: int) -> float:
    """The lr of step ``step`` (0-based) of a run of ``total_steps`` steps under ``hp.schedule``, in closed
    form (as nanoGPT's ``get_lr``): ``constant`` is ``hp.lr``; ``cosine`` anneals from ``hp.lr`` at step 0 to
    0 at ``total_steps`` (torch's ``CosineAnnealingLR(T_max=total_steps)``, ``eta_min`` 0, in closed form).

    Both backends take the lr of every step from here, so a resumed run needs no scheduler state."""
    if hp.schedule == "constant":
        return hp.lr
    if hp.schedule == "cosine":
        eta_min = 0.0  # written as torch's _get_closed_form_lr, so that its values are the same floats
        return eta_min + (hp.lr - eta_min) * (1 + math.cos(math.pi * step / total_steps)) / 2
    raise ValueError(f"schedule={hp.schedule} is unknown: choose constant or cosine")
