"""The training driver: one loop for a single run and for a population of runs, over a backend.

A backend owns the model and its update: ``overshoot.train.single.SingleBackend`` trains one ``nn.Module``
with the run's real optimizer object, ``overshoot.train.population.PopulationBackend`` trains N members'
stacked weights with a vectorised update. The driver owns everything else, the same for both: step and epoch
arithmetic, the lr schedule, the per-step records (kept on the device, copied to the host in blocks of
FLUSH_EVERY so the hot loop never waits), their flush into every member's steps.csv, divergence per member,
evaluation at epoch ends, CUDA-graph warm-up, capture and replay, checkpoint timing, stop requests and the
result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor

from overshoot.config.run import RunConfig
from overshoot.store.writer import Checkpoint, LogMismatch, RunWriter
from overshoot.train.loggers import Loggers
from overshoot.train.runtime import GRAPH_WARMUP, Interrupted, epoch_steps

if TYPE_CHECKING:
    from overshoot_tasks.base import Task

FLUSH_EVERY = 200  # steps between copies of the step records to the host (one sync each)
# Checkpoints at epoch ends are skipped until EPOCH_CHECKPOINT_MIN_S seconds, and EPOCH_CHECKPOINT_FACTOR
# times the last checkpoint's own duration, have passed since the previous checkpoint: at most ~1 % of the
# training time goes to them however short the epochs are.
EPOCH_CHECKPOINT_MIN_S = 1.0
EPOCH_CHECKPOINT_FACTOR = 100.0
HEARTBEAT_EVERY_S = 60.0  # seconds between refreshes of run.json's heartbeat at flushes
RESTORE_ERRORS = (KeyError, IndexError, TypeError, ValueError, RuntimeError, LogMismatch)


class Backend(Protocol):
    """What the driver needs of a model and its update (see the module docstring)."""

    @property
    def runs(self) -> Sequence[RunConfig]: ...  # the members, in the order of the records' last axis
    @property
    def writers(self) -> Sequence[RunWriter]: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def checkpoint(self) -> Checkpoint: ...  # where the backend's state is checkpointed
    @property
    def checkpoint_keys(self) -> Sequence[str]: ...  # the keys a usable checkpoint of it holds
    @property
    def lr_optimizer(self) -> torch.optim.Optimizer: ...  # the optimizer whose lr the schedule sets
    @property
    def n_records(self) -> int: ...  # per member and step: base loss, train loss, grad norm [, distance]
    @property
    def graphed(self) -> bool: ...  # the step is to be replayed as a CUDA graph
    @property
    def label(self) -> str: ...  # the progress label
    @property
    def population(self) -> bool: ...  # vectorised members (the result adds member-steps/s)

    def start_epoch(self, epoch: int) -> None: ...
    def graph_plan(self) -> Any: ...
    def step(self, k: int, out: Tensor) -> None: ...
    def graph_step(self, one: Any, out: Tensor) -> None: ...
    def set_lr(self, lr: float) -> None: ...
    def after_step(self) -> None: ...
    def evaluate(self, epoch: int) -> list[dict[str, list[Any]]]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None: ...


class Progress:
    """A tqdm bar on a terminal, a plain line every ~10% (or 30 s) otherwise, or nothing.

    ``label`` names the run (``progress_label``). The rate shown (and ``rate()``) counts training time
    only: time spent inside ``paused()`` (evaluation) is left out; the eta uses the wall-clock rate.
    """

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, mode: str, total: int, start: int, label: str) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.total, self.label = mode, total, label
        self.t0, self.s0, self.last_line, self.last_tenth = time.perf_counter(), start, 0.0, -1
        self.excluded = 0.0  # seconds spent paused since t0
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=start,
                desc=label,
                unit="step",
                dynamic_ncols=True,
                bar_format=self.BAR_FORMAT,
            )

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside out of the training rate (evaluation)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - t

    def rate(self, step: int) -> float:
        """Training steps per second since the start, paused time left out."""
        return (step - self.s0) / max(time.perf_counter() - self.t0 - self.excluded, 1e-9)

    def _status(self, step: int, loss: float) -> str:
        rate = self.rate(step)
        wall_rate = (step - self.s0) / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - step) / max(wall_rate, 1e-9)
        return f"loss {loss:.4g}, {format_rate(rate)} steps/s, eta {eta:.0f}s"

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self._status(step, loss), refresh=False)
            self.bar.update(step - self.bar.n)
        elif self.mode == "lines":
            now = time.perf_counter()
            tenth = max(self.total // 10, 1)
            if step == self.total or now - self.last_line > 30 or step // tenth != self.last_tenth:
                self.last_tenth = step // tenth
                print(f"{self.label}: step {step}/{self.total} {self._status(step, loss)}", flush=True)
                self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_rate(r: float) -> str:
    """A rate with three significant digits below 100 (0.412, 11.8), whole numbers above."""
    return f"{r:.0f}" if r >= 100 else f"{r:.3g}"


def step_rows(
    vals: np.ndarray, start: int, steps_per_epoch: int, lrs: list[float]
) -> tuple[dict[str, list[Any]], str | None]:
    """The steps.csv rows of one run's block of records (columns base_loss, train_loss, grad_norm
    [, distance]) from step ``start``, cut after the first non-finite loss, and that divergence described
    (None when every loss is finite)."""
    bad = ~np.isfinite(vals[:, :2]).all(axis=1)
    keep = int(np.argmax(bad)) + 1 if bad.any() else len(vals)
    idx = np.arange(start, start + keep)
    rows: dict[str, list[Any]] = {
        "step": idx.tolist(),
        "epoch": (idx // steps_per_epoch).tolist(),
        "base_loss": vals[:keep, 0].tolist(),
        "train_loss": vals[:keep, 1].tolist(),
        "lr": lrs[:keep],
        "grad_norm": vals[:keep, 2].tolist(),
    }
    if vals.shape[1] > 3:
        rows["distance"] = vals[:keep, 3].tolist()
    diverged = None
    if bad.any():
        base, trained = vals[keep - 1, 0], vals[keep - 1, 1]
        if not math.isfinite(trained):
            diverged = f"training loss became {trained:g} at step {start + keep - 1}"
        else:
            diverged = f"base-weight loss became {base:g} at step {start + keep - 1}"
    return rows, diverged


@dataclasses.dataclass
class CapturedStep:
    """A training step captured as a CUDA graph. The graph gathers its batch from the one-batch plan
    ``plan`` and writes its records to ``out``; ``tables`` keeps the fused kernels' address tables (captured
    by pointer) alive as long as the graph."""

    graph: torch.cuda.CUDAGraph
    plan: Any
    out: torch.Tensor
    tables: Any

    def replay(self, plan: Any, k: int) -> torch.Tensor:
        """Train on batch ``k`` of ``plan``: copy its rows into the graph's plan, replay; returns ``out``."""
        rows = plan.rows(k)
        self.plan.index.copy_(plan.index[rows])
        for key, v in self.plan.extra.items():
            v.copy_(plan.extra[key][rows])
        self.graph.replay()
        return self.out


def capture(
    step_fn: Callable[[Any, torch.Tensor], None],
    plan: Any,
    k: int,
    device: torch.device,
    out_shape: tuple[int, ...] | torch.Size,
) -> CapturedStep:
    """``step_fn(one_batch_plan, out)`` (one training step on batch 0 of the plan, writing its records to
    ``out``) captured as a CUDA graph, its plan a copy of batch ``k`` of ``plan``. Nothing runs now."""
    from overshoot.optim import _triton

    rows = plan.rows(k)
    extra = {key: v[rows].clone() for key, v in plan.extra.items()}
    one = dataclasses.replace(plan, steps=1, index=plan.index[rows].clone(), extra=extra)
    out = torch.zeros(tuple(out_shape), device=device, dtype=torch.float64)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step_fn(one, out)
    return CapturedStep(graph, one, out, _triton.live_tables())


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(rng: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def drive(
    make_backend: Callable[[], Backend],
    task: Task,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[dict[str, Any], list[str | None]]:
    """Train the backend's members to the end (or max_steps), writing each member's logs.

    Returns the run.json fields the members share and, per member, None or the reason it diverged.
    Resumes from the backend's checkpoint when there is one; one that cannot be used (unreadable, not of
    these runs, ahead of the logs) is moved aside with a warning and training starts from step 0.
    Checkpoints are written every ``checkpoint_every`` seconds, at epoch ends (rate-limited) and on a stop
    request; raises Interrupted after that checkpoint when ``should_stop()`` turns true.
    """
    backend = make_backend()
    runs, writers, device = backend.runs, backend.writers, backend.device
    run0, n = runs[0], len(runs)
    hp = run0.hparams
    steps_per_epoch, _ = epoch_steps(run0, task)
    total = hp.epochs * steps_per_epoch
    last = min(total, run0.max_steps or total)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(backend.lr_optimizer, T_max=total)
        if hp.schedule == "cosine"
        else None
    )

    # Resume: the backend's state, the schedule, the RNGs, and every member's logs cut back to the checkpoint.
    step, epoch_rows = 0, [0] * n
    diverged: list[str | None] = [None] * n
    ckpt = backend.checkpoint.load(("step", *backend.checkpoint_keys))  # unreadable: moved aside, None
    try:
        if ckpt is not None:
            backend.load_state_dict(ckpt)
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler"])
            if ckpt.get("lr") is not None:
                backend.lr_optimizer.param_groups[0]["lr"] = ckpt["lr"]
            if ckpt.get("rng") is not None:
                _set_rng_state(ckpt["rng"], device)
            step = int(ckpt["step"])
            # "rows" (steps, epoch rows): the checkpoints of single runs before the engine was shared
            epoch_rows = list(ckpt["epoch_rows"]) if "epoch_rows" in ckpt else [int(ckpt["rows"][1])]
            diverged = list(ckpt.get("diverged", [None] * n))
            if len(epoch_rows) != n or len(diverged) != n:
                raise ValueError(f"it has {len(epoch_rows)} members, not {n}")
        for r, w, e_rows, div in zip(runs, writers, epoch_rows, diverged, strict=True):
            if div is None:  # a member that diverged before the checkpoint keeps its partial logs
                w.start(r.to_dict(), w.info, resume_rows=(step, e_rows))
    except RESTORE_ERRORS as e:
        why = e if isinstance(e, LogMismatch) else f"does not fit these runs ({type(e).__name__}: {e})"
        backend.checkpoint.quarantine(str(why)[:300])
        return drive(make_backend, task, should_stop)  # from step 0, everything rebuilt
    alive = [d is None for d in diverged]
    loggers = [Loggers(r.to_dict(), w, step) for r, w in zip(runs, writers, strict=True)]
    ckpt_stats: dict[str, float] = {"n": 0, "time": 0.0, "last": 0.0}

    def checkpoint() -> None:
        state = {
            **backend.state_dict(),
            "step": step,
            "epoch_rows": epoch_rows,
            "diverged": diverged,
            "scheduler": sched.state_dict() if sched is not None else None,
            "lr": backend.lr_optimizer.param_groups[0]["lr"],
            "rng": _rng_state(device),
        }
        t0 = time.perf_counter()
        backend.checkpoint.save(state)  # checks first that every member is still this process's
        for w, ok in zip(writers, alive, strict=True):
            if ok:
                w.write_info(heartbeat=time.time())
        ckpt_stats["last"] = time.perf_counter() - t0
        ckpt_stats["n"] += 1
        ckpt_stats["time"] += ckpt_stats["last"]

    rec = torch.zeros(FLUSH_EVERY, backend.n_records, n, device=device, dtype=torch.float64)
    lrs: list[float] = []
    block_start, last_loss, last_beat = step, math.nan, time.time()

    def flush() -> None:
        """Copy the block's records to the host and append them to every live member's logs."""
        nonlocal block_start, last_loss, last_beat
        m = step - block_start
        if m == 0:
            return
        vals = rec[:m].cpu().numpy()
        finals = []
        for j, w in enumerate(writers):
            if not alive[j]:
                continue
            rows, reason = step_rows(vals[:, :, j], block_start, steps_per_epoch, lrs)
            kept = {c: rows[c] for c in w.step_columns}
            w.append_steps(kept)
            loggers[j].steps(kept)
            if reason:
                alive[j], diverged[j] = False, reason
            else:
                finals.append(rows["base_loss"][-1])
        last_loss = float(np.mean(finals)) if finals else math.nan
        lrs.clear()
        block_start = step
        if time.time() - last_beat >= HEARTBEAT_EVERY_S:
            last_beat = time.time()
            for w, ok in zip(writers, alive, strict=True):
                if ok:
                    w.write_info(heartbeat=last_beat)

    progress = Progress(run0.progress, last, step, backend.label)
    t_start = t_ckpt = time.perf_counter()
    captured: CapturedStep | None = None
    eager_steps, epoch_started = 0, -1
    try:
        while step < last and any(alive):
            # The epoch's batches, then one step: eager for the first few, then replayed as a CUDA graph.
            epoch, k = divmod(step, steps_per_epoch)
            if epoch != epoch_started:
                backend.start_epoch(epoch)
                epoch_started = epoch
            i = step - block_start
            plan = backend.graph_plan() if backend.graphed else None
            if plan is not None and captured is None and eager_steps >= GRAPH_WARMUP:
                captured = capture(backend.graph_step, plan, k, device, rec.shape[1:])
            lr = float(backend.lr_optimizer.param_groups[0]["lr"])
            backend.set_lr(lr)
            if captured is not None:
                rec[i].copy_(captured.replay(plan, k))
            else:
                backend.step(k, rec[i])
                eager_steps += 1
            backend.after_step()
            lrs.append(lr)
            if sched is not None:
                sched.step()
            step += 1

            # At a block's end, an epoch's end, the last step or a stop request: flush the records.
            end_of_epoch = step % steps_per_epoch == 0
            if not (step - block_start == FLUSH_EVERY or end_of_epoch or step == last or should_stop()):
                continue
            flush()
            progress.update(step, last_loss)
            if not any(alive):
                break

            # Evaluation at every epoch's end and after the last step, at the base weights.
            if end_of_epoch or step == last:
                with progress.paused():
                    evaluated = backend.evaluate(epoch)
                for j, (w, split_rows) in enumerate(zip(writers, evaluated, strict=True)):
                    if alive[j]:
                        w.append_epochs(split_rows)
                        loggers[j].epochs(split_rows)
                        epoch_rows[j] += len(split_rows["epoch"])

            # Checkpoint every checkpoint_every seconds, at epoch ends (rate-limited) and on a stop request.
            stop = should_stop()
            since = time.perf_counter() - t_ckpt
            at_epoch_end = end_of_epoch and since >= max(
                EPOCH_CHECKPOINT_MIN_S, EPOCH_CHECKPOINT_FACTOR * ckpt_stats["last"]
            )
            if stop or (step < last and (since >= run0.checkpoint_every or at_epoch_end)):
                checkpoint()
                t_ckpt = time.perf_counter()
            if stop:
                raise Interrupted(f"stopped at step {step}/{last}; relaunch the same command to resume")
    except BaseException:
        for lg in loggers:
            lg.close(failed=True)
        raise
    finally:
        progress.close()
    for lg in loggers:
        lg.close()

    # The result: steps/s without evaluation (times N for a population: member-steps/s).
    rate = progress.rate(step)
    shared: dict[str, Any] = {
        "steps": step,
        "train_time_s": time.perf_counter() - t_start,
        "steps_per_s": rate,
        "cuda_graph": captured is not None,
        "checkpoints": int(ckpt_stats["n"]),
        "checkpoint_time_s": ckpt_stats["time"],
    }
    if backend.population:
        shared["member_steps_per_s"] = rate * n
    return shared, diverged
