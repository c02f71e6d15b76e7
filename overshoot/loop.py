"""The training loop of one run: base-weight losses every step, evaluation every epoch, checkpoints.

Per step it records, on the device, the loss at the BASE weights on the current minibatch before the update
(paper.md section 5), the loss at the weights the gradient is taken at (``train_loss``), the gradient norm
and the lr; the records are copied to the host in blocks, so the hot loop never waits for the device.
Evaluating the base loss neither copies the model nor changes the trajectory: the optimizer swaps the base
weights in and restores the overshoot weights bit-identically, BatchNorm statistics are restored, and
dropout replays the same mask for the training forward. On CUDA (``cuda_graph=auto``) the whole step is
captured once as a CUDA graph after a few eager steps and replayed from then on (``capture``), where the run's
step has no host-side per-step numbers (see ``graph_blocker``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from overshoot.loggers import Loggers
from overshoot.methods import build_optimizer
from overshoot.store import LogMismatch, RunWriter, method_name

FLUSH_EVERY = 200  # steps between copies of the step records to the host (one sync each)
# Checkpoints at epoch ends are skipped until EPOCH_CHECKPOINT_MIN_S seconds, and EPOCH_CHECKPOINT_FACTOR
# times the last checkpoint's own duration, have passed since the previous checkpoint: at most ~1 % of the
# training time goes to them however short the epochs are.
EPOCH_CHECKPOINT_MIN_S = 1.0
EPOCH_CHECKPOINT_FACTOR = 100.0
HEARTBEAT_EVERY_S = 60.0  # seconds between refreshes of run.json's heartbeat at flushes
CHECKPOINT_KEYS = ("model", "optimizer", "step", "rows", "rng")
DISTANCE_HISTORY = 50  # the paper's figure 2 sums over the last 50 gradient points


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


def base_weights(opt: torch.optim.Optimizer) -> contextlib.AbstractContextManager[Any]:
    """The optimizer's base-weight context (a no-op for optimizers without overshoot)."""
    ctx = getattr(opt, "base_weights", None)
    return ctx() if ctx is not None else contextlib.nullcontext()


class ForwardState:
    """The buffers a training-mode forward pass updates (BatchNorm running statistics), with a copy to put
    them back; found once, saved and restored with one foreach copy each."""

    def __init__(self, model: nn.Module) -> None:
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        self.live = [b for m in norms for b in m.buffers()]
        self.saved = [b.clone() for b in self.live]

    def save(self) -> None:
        if self.live:
            torch._foreach_copy_(self.saved, self.live)

    def restore(self) -> None:
        if self.live:
            torch._foreach_copy_(self.live, self.saved)


@contextlib.contextmanager
def side_effect_free(state: ForwardState, device: torch.device, replay_rng: bool) -> Iterator[None]:
    """Run a forward pass that leaves no trace: BatchNorm statistics and, when asked, the RNG (so that the
    next forward draws the same dropout mask) are restored afterwards."""
    state.save()
    rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if replay_rng else None
    try:
        with rng if rng is not None else contextlib.nullcontext():
            yield
    finally:
        state.restore()


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


def progress_label(run: dict[str, Any]) -> str:
    """The progress label of a run: task, method (gamma included) and seed, e.g. digits/sgd_os-g5/seed10."""
    return f"{run['task']}/{method_name(run['optimizer'], run['gamma'])}/seed{run['seed']}"


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
# Steps a CUDA graph can replay: constant per-step coefficients (the SGD family) or step counts kept on the
# device (torch's AdamW and NAdam with capturable=True). AdamO's bias corrections are host-side numbers.
GRAPH_OPTIMIZERS = ("sgd", "nesterov", "sgd_os", "adam", "nadam")


def graph_blocker(
    run: dict[str, Any], device: torch.device, model: nn.Module | None = None, population: bool = False
) -> str | None:
    """Why this run's step cannot be replayed as a CUDA graph (None when it can); ``model`` None skips the
    checks that need it. ``population``: the run is a member of a population, whose updates keep their step
    counts and lr on the device (any optimizer and schedule can be replayed)."""
    if device.type != "cuda":
        return "CUDA graphs need device=cuda"
    if not run.get("drop_last", True):
        return "drop_last=false gives the last batch of an epoch another shape"
    if population:
        return None
    if run["optimizer"] not in GRAPH_OPTIMIZERS:
        return f"optimizer={run['optimizer']} computes its bias corrections on the host every step"
    if run["hparams"]["schedule"] != "constant":
        return f"schedule={run['hparams']['schedule']} changes the lr every step"
    if run["log_distance"]:
        return "log.distance=true keeps a host-side step counter"
    if run["task"].startswith("gpt2"):
        return "Hugging Face models are not checked for graph capture"
    if model is not None and any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        return "dropout masks are replayed with a host-side RNG fork"
    return None


def use_graph(
    run: dict[str, Any], device: torch.device, model: nn.Module | None = None, population: bool = False
) -> bool:
    """The ``cuda_graph`` setting resolved: auto = on where possible; true where impossible is an error."""
    setting = run.get("cuda_graph", "auto")
    blocker = graph_blocker(run, device, model, population)
    if setting is True and blocker is not None:
        raise ValueError(f"cuda_graph=true is impossible for this run: {blocker}; use cuda_graph=auto")
    return setting is not False and blocker is None


def autocast_for(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A factory of the forward passes' autocast context: bf16 autocast, or nothing for fp32/fp64. No
    weight-cast cache: each forward casts every weight once anyway, and a CUDA graph capture allows none."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


def evaluate(task: Any, model: nn.Module, split: str, batch_size: int, autocast: Any) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for loss-only tasks) of ``model`` on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    total = loss_sum = correct_sum = None
    with torch.no_grad(), autocast():
        for b in task.eval_batches(split, batch_size):
            loss, correct = task.criterion(model(*task.inputs(b)), b)
            n = next(iter(b.values())).shape[0]
            loss_sum = loss.double() * n if loss_sum is None else loss_sum + loss.double() * n
            total = n if total is None else total + n
            if correct is not None:
                correct_sum = correct.double() if correct_sum is None else correct_sum + correct.double()
    model.train(was_training)
    if total is None or loss_sum is None:
        return math.nan, math.nan
    acc = float(correct_sum) / total if correct_sum is not None else math.nan
    return float(loss_sum) / total, acc


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


class DistanceLog:
    """Per step, sum_{i<50} ||theta_t - theta'_{t-i}|| * b1^i: the distance between the base weights and the
    last 50 points where gradients were taken (paper figure 2). Keeps 50 flat copies of the weights."""

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        n = sum(p.numel() for p in params)
        p0 = params[0]
        self.params, self.decay = params, decay
        self.ring = torch.zeros(DISTANCE_HISTORY, n, device=p0.device, dtype=p0.dtype)
        self.count = 0

    def flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def record_grad_point(self) -> None:
        self.ring[self.count % DISTANCE_HISTORY] = self.flat()
        self.count += 1

    def distance(self) -> torch.Tensor:
        """Call inside base_weights(), after record_grad_point() of the current step."""
        n = min(self.count, DISTANCE_HISTORY)
        slots = (self.count - 1 - torch.arange(n, device=self.ring.device)) % DISTANCE_HISTORY  # newest first
        weights = self.decay ** torch.arange(n, device=self.ring.device, dtype=self.ring.dtype)
        d = torch.linalg.vector_norm(self.ring[slots] - self.flat(), dim=1)
        return (d * weights).sum()


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


def epoch_steps(run: dict[str, Any], task: Any) -> tuple[int, dict[str, Any]]:
    """The run's steps per epoch and the keyword arguments of its ``task.epoch_plan`` calls (``drop_last``
    when the run keeps the last partial batch); ValueError naming the fix when the batch cannot be used."""
    bs, drop_last = run["hparams"]["batch_size"], run.get("drop_last", True)
    if drop_last:
        steps = task.n_train // bs
        if steps < 1:
            n = task.n_train
            raise ValueError(f"batch_size={bs} exceeds the {n} training examples: lower batch_size")
        return steps, {}
    if not getattr(task, "partial_batches", False):
        raise ValueError(f"drop_last=false is not supported by task {run['task']}: use drop_last=true")
    return -(-task.n_train // bs), {"drop_last": False}


def train(
    run: dict[str, Any],
    task: Any,
    writer: RunWriter,
    device: torch.device,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Train one run to the end (or max_steps), writing its logs; returns run.json fields to record.

    Resumes from ``writer``'s checkpoint when there is one; one that cannot be used (unreadable, not of this
    run, or ahead of the logs) is moved aside with a warning and the run starts from step 0. Checkpoints are
    written every ``checkpoint_every`` seconds, at epoch ends (rate-limited) and on a stop request. Raises
    Interrupted (after a checkpoint) when ``should_stop()`` turns true, Diverged (after logging the partial
    curve) on a non-finite loss.
    """
    hp = run["hparams"]
    bs, epochs = hp["batch_size"], hp["epochs"]
    steps_per_epoch, plan_kw = epoch_steps(run, task)
    total = epochs * steps_per_epoch
    last = min(total, run["max_steps"] or total)
    autocast = autocast_for(run["precision"], device)

    seed_everything(run["seed"])
    model = task.build_model()
    model.train()
    set_cpu_threads(run["threads"], model, device)
    params = [p for p in model.parameters() if p.requires_grad]
    graphed = use_graph(run, device, model)
    opt = build_optimizer(run, params, capturable=graphed)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) if hp["schedule"] == "cosine" else None
    )
    overshoot = run["optimizer"].endswith("_os") and run["gamma"] > 0
    log_base = overshoot and run["log"]["base_loss"]
    replay_rng = any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
    forward_state = ForwardState(model)
    dist = DistanceLog(params, hp["momentum"]) if run["log_distance"] else None
    columns = writer.step_columns

    step, rows = 0, (0, 0)
    ckpt = writer.load_checkpoint(CHECKPOINT_KEYS)  # an unreadable one is moved aside: None
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler"])
            step, rows = int(ckpt["step"]), (int(ckpt["rows"][0]), int(ckpt["rows"][1]))
            torch.set_rng_state(ckpt["rng"]["torch"])
            if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
            np.random.set_state(ckpt["rng"]["numpy"])
            random.setstate(ckpt["rng"]["python"])
            if dist is not None and ckpt.get("distance") is not None:
                dist.ring.copy_(ckpt["distance"]["ring"])
                dist.count = ckpt["distance"]["count"]
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            writer.quarantine_checkpoint(f"does not fit this run ({type(e).__name__}: {str(e)[:200]})")
            return train(run, task, writer, device, should_stop)  # from step 0, everything rebuilt
    try:
        writer.start(run, writer.info, resume_rows=(rows[0], rows[1]))  # keeps the run.json header
    except LogMismatch as e:
        writer.quarantine_checkpoint(str(e))
        return train(run, task, writer, device, should_stop)
    epoch_rows = rows[1]
    ckpt_stats: dict[str, float] = {"n": 0, "time": 0.0, "last": 0.0}

    def checkpoint() -> None:
        state: dict[str, Any] = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "step": step,
            "rows": (step, epoch_rows),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "distance": {"ring": dist.ring, "count": dist.count} if dist is not None else None,
        }
        t0 = time.perf_counter()
        writer.save_checkpoint(state)
        writer.write_info(heartbeat=time.time())
        took = time.perf_counter() - t0
        ckpt_stats["n"] += 1
        ckpt_stats["time"] += took
        ckpt_stats["last"] = took

    n_rec = 4 if dist is not None else 3
    rec = torch.zeros(FLUSH_EVERY, n_rec, device=device, dtype=torch.float64)
    lrs: list[float] = []
    block_start = step
    last_loss = math.nan
    last_beat = time.time()

    def flush() -> None:
        nonlocal block_start, last_loss, last_beat
        n = step - block_start
        if n == 0:
            return
        rows, diverged = step_rows(rec[:n].cpu().numpy(), block_start, steps_per_epoch, lrs)
        writer.append_steps({c: rows[c] for c in columns})
        loggers.steps({c: rows[c] for c in columns})
        last_loss = rows["base_loss"][-1]
        if diverged:
            raise Diverged(diverged)
        lrs.clear()
        block_start = step
        if time.time() - last_beat >= HEARTBEAT_EVERY_S:
            last_beat = time.time()
            writer.write_info(heartbeat=last_beat)

    progress = Progress(run["progress"], last, step, progress_label(run))
    loggers = Loggers(run, writer, step)
    t_start, t_ckpt = time.perf_counter(), time.perf_counter()
    plan = None
    eval_bs = max(4 * bs, 256)

    def one_step(b: dict[str, torch.Tensor], inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        """One optimizer step on batch ``b``; writes base loss, train loss, grad norm [, distance] to ``out``.
        Graph mode captures exactly this (grads are then kept allocated and zeroed in place)."""
        if log_base:
            with (
                torch.no_grad(),
                base_weights(opt),
                side_effect_free(forward_state, device, replay_rng),
                autocast(),
            ):
                base_loss, _ = task.criterion(model(*inputs), b)
            out[0] = base_loss.detach()
        with autocast():
            loss, _ = task.criterion(model(*inputs), b)
        loss.backward()
        out[1] = loss.detach()
        if not log_base:
            out[0] = loss.detach()
        out[2] = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if dist is not None:
            dist.record_grad_point()
            with torch.no_grad(), base_weights(opt):
                out[3] = dist.distance()
        opt.step()
        opt.zero_grad(set_to_none=not graphed)

    def graph_step(one: Any, out: torch.Tensor) -> None:
        b = task.train_batch(one, 0)  # gathered and prepared inside the graph
        one_step(b, task.inputs(b), out)

    captured: CapturedStep | None = None
    eager_steps = 0
    try:
        while step < last:
            epoch, k = divmod(step, steps_per_epoch)
            if plan is None or k == 0:
                plan = task.epoch_plan(run["seed"], epoch, bs, **plan_kw)
            i = step - block_start
            if graphed and captured is None and eager_steps >= GRAPH_WARMUP and not plan.meta:
                captured = capture(graph_step, plan, k, device, (n_rec,))
            if captured is not None:
                rec[i].copy_(captured.replay(plan, k))
            else:
                b = task.train_batch(plan, k)
                one_step(b, task.inputs(b), rec[i])
                eager_steps += 1
            lrs.append(float(opt.param_groups[0]["lr"]))
            if sched is not None:
                sched.step()
            step += 1
            end_of_epoch = step % steps_per_epoch == 0
            if step - block_start == FLUSH_EVERY or end_of_epoch or step == last or should_stop():
                flush()
                progress.update(step, last_loss)
                if end_of_epoch or step == last:
                    e_rows: dict[str, list[Any]] = {"epoch": [], "split": [], "loss": [], "accuracy": []}
                    with base_weights(opt), progress.paused():
                        for split in ("val", "test"):
                            if task.has_split(split):
                                loss_v, acc_v = evaluate(task, model, split, eval_bs, autocast)
                                for key, v in zip(e_rows, (epoch, split, loss_v, acc_v), strict=True):
                                    e_rows[key].append(v)
                    writer.append_epochs(e_rows)
                    loggers.epochs(e_rows)
                    epoch_rows += len(e_rows["epoch"])
                stop = should_stop()
                since = time.perf_counter() - t_ckpt
                at_epoch_end = end_of_epoch and since >= max(
                    EPOCH_CHECKPOINT_MIN_S, EPOCH_CHECKPOINT_FACTOR * ckpt_stats["last"]
                )
                if stop or (step < last and (since >= run["checkpoint_every"] or at_epoch_end)):
                    checkpoint()
                    t_ckpt = time.perf_counter()
                if stop:
                    raise Interrupted(f"stopped at step {step}/{last}; relaunch the same command to resume")
    except BaseException:
        loggers.close(failed=True)
        raise
    finally:
        progress.close()
    loggers.close()
    wall = time.perf_counter() - t_start
    rate = progress.rate(step)  # evaluation time left out
    return {
        "steps": step,
        "train_time_s": wall,
        "steps_per_s": rate,
        "cuda_graph": captured is not None,
        "checkpoints": int(ckpt_stats["n"]),
        "checkpoint_time_s": ckpt_stats["time"],
    }
