"""The training driver: one loop for a single run and for a population of runs, over a backend.

A backend owns the model and its update: ``overshoot.train.single.SingleBackend`` trains one ``nn.Module``
with the run's real optimizer object, ``overshoot.train.population.PopulationBackend`` trains N members'
stacked weights with a vectorised update. The driver owns everything else, the same for both: step and epoch
arithmetic, the lr schedule (``runtime.lr_at``), the per-step records (kept on the device, copied to the host
in blocks of FLUSH_EVERY so the hot loop never waits), their flush into every member's steps.csv, the
training clock (``StepClock``), divergence per member, evaluation at epoch ends, CUDA-graph warm-up, capture
and replay, checkpoint timing, stop requests and the result.

A step is four parts of the backend, in this order: ``measure`` (records taken only to be logged: the loss
at the base weights), ``backward`` (the training forward and backward pass), ``measure_grads`` (records at the
gradient point: the distance of paper figure 2) and ``update`` (the optimizer step). The two measurement
parts are left out of the training time; under CUDA graphs each part is its own graph.
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
from overshoot.train.runtime import GRAPH_WARMUP, Interrupted, epoch_steps, lr_at

if TYPE_CHECKING:
    from overshoot_tasks.base import Task

FLUSH_EVERY = 200  # steps between copies of the step records to the host (one sync each)
# Checkpoints at epoch ends are skipped until EPOCH_CHECKPOINT_MIN_S seconds, and EPOCH_CHECKPOINT_FACTOR
# times the last checkpoint's own duration, have passed since the previous checkpoint: at most ~1 % of the
# training time goes to them however short the epochs are.
EPOCH_CHECKPOINT_MIN_S = 1.0
EPOCH_CHECKPOINT_FACTOR = 100.0
HEARTBEAT_EVERY_S = 60.0  # seconds between refreshes of run.json's heartbeat at flushes
OPTIMIZER_SAMPLE_EVERY = 10  # every 10th step's optimizer update is timed on its own (run.json)
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
    def n_records(self) -> int: ...  # per member and step: base loss, train loss, grad norm [, distance]
    @property
    def graphed(self) -> bool: ...  # the step is to be replayed as CUDA graphs
    @property
    def measures(self) -> bool: ...  # ``measure`` does something (the base loss is logged)
    @property
    def measures_grads(self) -> bool: ...  # ``measure_grads`` does something (the distance is logged)
    @property
    def label(self) -> str: ...  # the progress label
    @property
    def population(self) -> bool: ...  # vectorised members (the result adds member-steps/s)

    def start_epoch(self, epoch: int) -> None: ...
    def graph_plan(self) -> Any: ...
    def batch(self, k: int, one: Any = None) -> Any: ...  # step k's batch (of the one-batch plan ``one``)
    def measure(self, b: Any, out: Tensor) -> None: ...  # measurement-only records before the step
    def backward(self, b: Any, out: Tensor) -> None: ...  # training forward and backward; their records
    def measure_grads(self, out: Tensor) -> None: ...  # measurement-only records at the gradient point
    def update(self) -> None: ...  # the optimizer step (gradients cleared)
    def set_lr(self, lr: float) -> None: ...
    def after_step(self) -> None: ...
    def evaluate(self, epoch: int) -> list[dict[str, list[Any]]]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None: ...


class StepClock:
    """The training time of a run: the elapsed seconds at the end of each step (steps.csv's ``time_s``) and
    samples of the optimizer update alone (run.json's ``optimizer_step_s``).

    What is timed is the step: its batch, the forward and backward pass, the update (and a CUDA graph's
    one-off capture). Left out: the measurement parts of a step (``excluded``: the base-weight loss, the
    distance), and everything between blocks of steps: flushing the logs, evaluation, checkpoints. On the
    CPU the marks are the host's clock (``time.perf_counter``), which is the compute's as the CPU runs the
    step synchronously. On CUDA they are CUDA events recorded on the current stream (the GPU's timeline,
    idle waits for the host included), read when the block is flushed, after the flush's own copy to the
    host: timing adds no synchronisation. A population's time is the population's, shared by its members.
    """

    def __init__(self, device: torch.device, start_s: float = 0.0) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.elapsed = float(start_s)  # seconds up to the end of the last flushed step
        self.block_start: Any = None
        self.steps: list[tuple[Any, list[tuple[Any, Any]]]] = []  # per step: end mark, excluded spans
        self.spans: list[tuple[Any, Any]] = []  # this step's excluded spans
        self.pending: list[tuple[Any, Any]] = []  # sampled optimizer updates not read yet
        self.optimizer_s: list[float] = []
        self.free: list[Any] = []  # CUDA events to reuse

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        ev = self.free.pop() if self.free else torch.cuda.Event(enable_timing=True)
        ev.record(torch.cuda.current_stream(self.device))
        return ev

    def _seconds(self, a: Any, b: Any) -> float:
        if not self.cuda:
            return float(b - a)
        return float(a.elapsed_time(b)) / 1000.0

    def begin(self) -> None:
        """Start a block's clock (a no-op while one runs)."""
        if self.block_start is None:
            self.block_start = self._mark()

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        """Leave what runs inside out of the step's time."""
        a = self._mark()
        yield
        self.spans.append((a, self._mark()))

    @contextlib.contextmanager
    def optimizer(self, sample: bool) -> Iterator[None]:
        """Time the optimizer update inside on its own when ``sample`` (it stays in the step's time)."""
        if not sample:
            yield
            return
        a = self._mark()
        yield
        self.pending.append((a, self._mark()))

    def step_done(self) -> None:
        self.steps.append((self._mark(), self.spans))
        self.spans = []

    def flush(self) -> list[float]:
        """The elapsed seconds at the end of each step since the last flush (call after the records' copy to
        the host); the block's clock stops until ``begin``."""
        if self.cuda and self.steps:
            self.steps[-1][0].synchronize()  # already complete after the records' copy: no wait
        times, prev = [], self.block_start
        for end, spans in self.steps:
            dt = self._seconds(prev, end) - sum(self._seconds(a, b) for a, b in spans)
            self.elapsed += max(dt, 0.0)
            times.append(self.elapsed)
            prev = end
        self.optimizer_s.extend(self._seconds(a, b) for a, b in self.pending)
        if self.cuda:
            marks = [self.block_start] + [e for e, _ in self.steps]
            marks += [m for _, spans in self.steps for span in spans for m in span]
            self.free.extend(m for span in self.pending for m in span)
            self.free.extend(m for m in marks if m is not None)
        self.steps, self.pending, self.block_start = [], [], None
        return times


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
    vals: np.ndarray, start: int, steps_per_epoch: int, lrs: list[float], times: list[float]
) -> tuple[dict[str, list[Any]], str | None]:
    """The steps.csv rows of one run's block of records (columns base_loss, train_loss, grad_norm
    [, distance]) from step ``start``, with the lrs and elapsed training seconds of those steps, cut after the
    first non-finite loss, and that divergence described (None when every loss is finite)."""
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
        "time_s": times[:keep],
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


StepPart = Callable[[Any, torch.Tensor], None]  # one part of a step on a one-batch plan, records to ``out``


@dataclasses.dataclass
class CapturedStep:
    """A training step captured as CUDA graphs, one per part (measure [optional], backward, update), which
    share one memory pool and are replayed in their capture order. The graphs gather their batch from the
    one-batch plan ``plan`` and write their records to ``out``; ``tables`` keeps the fused kernels' address
    tables (captured by pointer) alive as long as the graphs."""

    measure: torch.cuda.CUDAGraph | None
    backward: torch.cuda.CUDAGraph
    update: torch.cuda.CUDAGraph
    plan: Any
    out: torch.Tensor
    tables: Any

    def load(self, plan: Any, k: int) -> None:
        """Point the graphs at batch ``k`` of ``plan``: copy its rows into the graphs' plan."""
        rows = plan.rows(k)
        self.plan.index.copy_(plan.index[rows])
        for key, v in self.plan.extra.items():
            v.copy_(plan.extra[key][rows])


def capture(
    parts: tuple[StepPart | None, StepPart, StepPart],
    plan: Any,
    k: int,
    device: torch.device,
    out_shape: tuple[int, ...] | torch.Size,
) -> CapturedStep:
    """The parts of a training step (measure or None, backward, update: each ``part(one_batch_plan, out)``,
    on batch 0 of the plan, writing its records to ``out``) captured as CUDA graphs in one memory pool, their
    plan a copy of batch ``k`` of ``plan``. Nothing runs now."""
    from overshoot.optim import _triton

    rows = plan.rows(k)
    extra = {key: v[rows].clone() for key, v in plan.extra.items()}
    one = dataclasses.replace(plan, steps=1, index=plan.index[rows].clone(), extra=extra)
    out = torch.zeros(tuple(out_shape), device=device, dtype=torch.float64)
    torch.cuda.synchronize(device)
    graphs: list[torch.cuda.CUDAGraph | None] = []
    pool = None
    for part in parts:
        if part is None:
            graphs.append(None)
            continue
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            part(one, out)
        pool = graph.pool()
        graphs.append(graph)
    measure, backward, update = graphs
    assert backward is not None and update is not None
    return CapturedStep(measure, backward, update, one, out, _triton.live_tables())


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

    # Resume: the backend's state, the RNGs, the training clock, and every member's logs cut back to the
    # checkpoint. The lr is the schedule's at the step (lr_at): the "scheduler" and "lr" keys of checkpoints
    # written before it are not read.
    step, epoch_rows, time_s = 0, [0] * n, 0.0
    diverged: list[str | None] = [None] * n
    ckpt = backend.checkpoint.load(("step", *backend.checkpoint_keys))  # unreadable: moved aside, None
    try:
        if ckpt is not None:
            backend.load_state_dict(ckpt)
            if ckpt.get("rng") is not None:
                _set_rng_state(ckpt["rng"], device)
            step = int(ckpt["step"])
            # "rows" (steps, epoch rows): the checkpoints of single runs before the engine was shared
            epoch_rows = list(ckpt["epoch_rows"]) if "epoch_rows" in ckpt else [int(ckpt["rows"][1])]
            diverged = list(ckpt.get("diverged", [None] * n))
            time_s = float(ckpt.get("time_s", 0.0))  # 0: a checkpoint from before the clock
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
    clock = StepClock(device, time_s)

    def checkpoint() -> None:
        state = {
            **backend.state_dict(),
            "step": step,
            "epoch_rows": epoch_rows,
            "diverged": diverged,
            "time_s": clock.elapsed,  # every step before ``step`` is flushed: the clock holds their time
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
        times = clock.flush()
        finals = []
        for j, w in enumerate(writers):
            if not alive[j]:
                continue
            rows, reason = step_rows(vals[:, :, j], block_start, steps_per_epoch, lrs, times)
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

    def parts() -> tuple[StepPart | None, StepPart, StepPart]:
        """The step's parts as graph bodies, each gathering its batch inside its graph."""

        def measure(one: Any, out: Tensor) -> None:
            backend.measure(backend.batch(0, one), out)

        def backward(one: Any, out: Tensor) -> None:
            backend.backward(backend.batch(0, one), out)

        return (measure if backend.measures else None), backward, lambda one, out: backend.update()

    progress = Progress(run0.progress, last, step, backend.label)
    t_start = t_ckpt = time.perf_counter()
    captured: CapturedStep | None = None
    eager_steps, epoch_started, first = 0, -1, step
    try:
        while step < last and any(alive):
            # The epoch's batches, then one step: eager for the first few, then replayed as CUDA graphs. The
            # clock leaves the measurement parts out; every 10th update is also timed on its own.
            clock.begin()
            epoch, k = divmod(step, steps_per_epoch)
            if epoch != epoch_started:
                backend.start_epoch(epoch)
                epoch_started = epoch
            i = step - block_start
            plan = backend.graph_plan() if backend.graphed else None
            if plan is not None and captured is None and eager_steps >= GRAPH_WARMUP:
                captured = capture(parts(), plan, k, device, rec.shape[1:])
            lr = lr_at(step, hp, total)
            backend.set_lr(lr)
            sample = (step - first) % OPTIMIZER_SAMPLE_EVERY == OPTIMIZER_SAMPLE_EVERY - 1
            if captured is not None:
                captured.load(plan, k)
                if captured.measure is not None:
                    with clock.excluded():
                        captured.measure.replay()
                captured.backward.replay()
                with clock.optimizer(sample):
                    captured.update.replay()
                rec[i].copy_(captured.out)
            else:
                b = backend.batch(k)
                if backend.measures:
                    with clock.excluded():
                        backend.measure(b, rec[i])
                backend.backward(b, rec[i])
                if backend.measures_grads:
                    with clock.excluded():
                        backend.measure_grads(rec[i])
                with clock.optimizer(sample and eager_steps >= GRAPH_WARMUP):
                    backend.update()
                eager_steps += 1
            clock.step_done()
            backend.after_step()
            lrs.append(lr)
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

    # The result: steps/s without evaluation (times N for a population: member-steps/s), and the median
    # time of the optimizer update alone over the sampled steps of this process (a population's: all members).
    rate = progress.rate(step)
    shared: dict[str, Any] = {
        "steps": step,
        "train_time_s": time.perf_counter() - t_start,
        "steps_per_s": rate,
        "cuda_graph": captured is not None,
        "checkpoints": int(ckpt_stats["n"]),
        "checkpoint_time_s": ckpt_stats["time"],
        "optimizer_step_s": float(np.median(clock.optimizer_s)) if clock.optimizer_s else None,
        "optimizer_steps_timed": len(clock.optimizer_s),
    }
    if backend.population:
        shared["member_steps_per_s"] = rate * n
    return shared, diverged
