"""The single-run backend: one ``nn.Module`` trained with the run's real optimizer object (the path a user's
own code takes), for ``overshoot.train.engine.drive``.

Per step it records, on the device, the loss at the BASE weights on the current minibatch before the update
(as arXiv 2501.09556), the loss at the weights the gradient is taken at (``train_loss``), the gradient norm
[and the distance of paper figure 2]. Evaluating the base loss neither copies the model nor changes the
trajectory: the optimizer swaps the base weights in and restores the overshoot weights bit-identically,
BatchNorm statistics are restored, and dropout replays the same mask for the training forward.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from overshoot.config import methods
from overshoot.config.run import RunConfig
from overshoot.store.writer import Checkpoint, RunWriter, run_identity
from overshoot.train.engine import drive
from overshoot.train.runtime import (
    Diverged,
    autocast_for,
    epoch_steps,
    run_label,
    seed_everything,
    set_cpu_threads,
    use_graph,
)

if TYPE_CHECKING:
    from overshoot_tasks.base import Task

DISTANCE_HISTORY = 50  # the paper's figure 2 sums over the last 50 gradient points
CHECKPOINT_KEYS = ("model", "optimizer")


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


def evaluate(task: Task, model: nn.Module, split: str, batch_size: int, autocast: Any) -> tuple[float, float]:
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


class SingleBackend:
    """One run's model and optimizer, stepped and evaluated for the driver
    (``overshoot.train.engine.Backend``)."""

    population = False
    checkpoint_keys = CHECKPOINT_KEYS

    def __init__(self, run: RunConfig, task: Task, writer: RunWriter, device: torch.device) -> None:
        hp = run.hparams
        self.runs, self.writers, self.device, self.task = [run], [writer], device, task
        self.checkpoint = Checkpoint(writer.checkpoint_file, (writer,), run_identity(run))  # names its run
        self.label = run_label(run)
        self.batch_size = hp.batch_size
        self.seed = run.seed
        _, self.plan_kw = epoch_steps(run, task)
        self.autocast = autocast_for(run.precision, device)
        seed_everything(run.seed)
        self.model = model = task.build_model()
        model.train()
        set_cpu_threads(run.threads, model, device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.graphed = use_graph(run, device, model)
        method = methods.get(run.optimizer, run.family)
        self.opt = methods.build_optimizer(
            method, self.params, hp, run.gamma, capturable=self.graphed,
            target=run.optimizer_target, kwargs=run.optimizer_kwargs,
        )  # fmt: skip
        self.log_base = method.two_points(run.gamma) and run.log.base_loss
        self.replay_rng = any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
        self.forward_state = ForwardState(model)
        self.dist = DistanceLog(self.params, hp.momentum) if run.log_distance else None
        self.n_records = 4 if self.dist is not None else 3
        self.eval_batch_size = max(4 * hp.batch_size, 256)
        self.plan: Any = None
        self._lr = hp.lr  # the lr the optimizer holds (built with the run's)

    def start_epoch(self, epoch: int) -> None:
        self.plan = self.task.epoch_plan(self.seed, epoch, self.batch_size, **self.plan_kw)

    def graph_plan(self) -> Any:
        """The epoch's plan when its batches can be gathered inside a graph (None otherwise)."""
        return None if self.plan is None or self.plan.meta else self.plan

    def batch(self, k: int, one: Any = None) -> dict[str, Tensor]:
        """Batch ``k`` of the epoch (batch 0 of the one-batch plan ``one``: gathered inside a graph)."""
        return self.task.train_batch(self.plan, k) if one is None else self.task.train_batch(one, 0)

    @property
    def measures(self) -> bool:
        return bool(self.log_base)

    @property
    def measures_grads(self) -> bool:
        return self.dist is not None

    # The parts of one optimizer step on batch ``b`` (the driver calls them in this order); they write base
    # loss, train loss, grad norm [, distance] to ``out``. Graph mode captures each part (grads are then kept
    # allocated and zeroed in place).
    def measure(self, b: dict[str, Tensor], out: Tensor) -> None:
        """The loss at the base weights before the update: touches neither the weights nor the trajectory."""
        model, autocast = self.model, self.autocast
        with (
            torch.no_grad(),
            base_weights(self.opt),
            side_effect_free(self.forward_state, self.device, self.replay_rng),
            autocast(),
        ):
            base_loss, _ = self.task.criterion(model(*self.task.inputs(b)), b)
        out[0] = base_loss.detach()

    def backward(self, b: dict[str, Tensor], out: Tensor) -> None:
        """The training forward and backward pass: train loss (also the base loss when it is not measured
        apart) and gradient norm."""
        with self.autocast():
            loss, _ = self.task.criterion(self.model(*self.task.inputs(b)), b)
        loss.backward()
        out[1] = loss.detach()
        if not self.log_base:
            out[0] = loss.detach()
        out[2] = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])

    def measure_grads(self, out: Tensor) -> None:
        """The distance of paper figure 2 at this step's gradient point."""
        assert self.dist is not None
        self.dist.record_grad_point()
        with torch.no_grad(), base_weights(self.opt):
            out[3] = self.dist.distance()

    def update(self) -> None:
        self.opt.step()
        self.opt.zero_grad(set_to_none=not self.graphed)

    def set_lr(self, lr: float) -> None:
        """The step's lr into every parameter group of the optimizer (written only when it changes; a
        capturable optimizer's lr tensor is filled in place)."""
        if lr == self._lr:
            return
        for group in self.opt.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._lr = lr

    def after_step(self) -> None:
        """Nothing: the optimizer keeps its own step count."""

    def evaluate(self, epoch: int) -> list[dict[str, list[Any]]]:
        """Validation and test loss/accuracy at the base weights: epochs.csv rows."""
        rows: dict[str, list[Any]] = {"epoch": [], "split": [], "loss": [], "accuracy": []}
        with base_weights(self.opt):
            for split in ("val", "test"):
                if self.task.has_split(split):
                    loss, acc = evaluate(self.task, self.model, split, self.eval_batch_size, self.autocast)
                    for key, v in zip(rows, (epoch, split, loss, acc), strict=True):
                        rows[key].append(v)
        return [rows]

    def state_dict(self) -> dict[str, Any]:
        d = self.dist
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "distance": {"ring": d.ring, "count": d.count} if d is not None else None,
        }

    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self._lr = math.nan  # the checkpoint's lr: the next set_lr writes the schedule's
        if self.dist is not None and ckpt.get("distance") is not None:
            self.dist.ring.copy_(ckpt["distance"]["ring"])
            self.dist.count = ckpt["distance"]["count"]


def train(
    run: RunConfig,
    task: Task,
    writer: RunWriter,
    device: torch.device,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Train one run with its real optimizer to the end (or max_steps); returns the run.json fields to
    record. Raises Diverged (after logging the partial curve) on a non-finite loss, Interrupted (after a
    checkpoint) when ``should_stop()`` turns true."""
    result, diverged = drive(lambda: SingleBackend(run, task, writer, device), task, should_stop)
    if diverged[0] is not None:
        raise Diverged(diverged[0])
    return result
