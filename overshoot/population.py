"""Population mode: many runs of one task trained together in one process, vectorised over the members.

A population is a set of runs that share a task and every hyperparameter and differ only in seed and in
method within an optimizer family: the SGD family is SGDO with a per-member gamma (0 = CM, mu = NAG, 3/5/7 =
SGDO), the Adam family is AdamO with a per-member gamma (0 = AdamW, 3/5/7 = AdamO) and NAdam (constant
momentum, as the paper's). The members' weights are stacked along a leading dimension and trained with
``torch.func.functional_call`` under ``torch.func.vmap`` (convolutions as batched GEMMs on CUDA, see
``overshoot.matmul_conv``); the updates take per-member coefficient tensors computed on the device from a
device step count and lr, so that the whole step can be replayed as one CUDA graph under any schedule.
Each member starts from the weights its single run would build (``seed_everything(seed)`` then
``task.build_model()``), sees its single run's data order (``task.epoch_plan(seed, epoch, batch_size)``)
and writes its own run directory in the single-run format.

Resume: the population as a whole is checkpointed under ``<out>/.populations/<key>/`` (key = the members'
config hashes); relaunching the same set of runs resumes it and ends with the uninterrupted curves. A
different set of runs (say, the sweep was changed) restarts its unfinished members from scratch.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from overshoot.loop import (
    EPOCH_CHECKPOINT_FACTOR,
    EPOCH_CHECKPOINT_MIN_S,
    FLUSH_EVERY,
    GRAPH_WARMUP,
    HEARTBEAT_EVERY_S,
    CapturedStep,
    Interrupted,
    Progress,
    autocast_for,
    capture,
    epoch_steps,
    pick_device,
    seed_everything,
    set_cpu_threads,
    step_rows,
    stop_requests,
    use_graph,
)
from overshoot.matmul_conv import matmul_convs
from overshoot.optim.sgdo import sgdo
from overshoot.store import (
    STEP_COLUMNS,
    ClaimLost,
    LogMismatch,
    RunHeld,
    RunWriter,
    StoreError,
    atomic_torch_save,
    claim_run,
    config_hash,
    load_checkpoint_file,
    makedirs,
    method_name,
    quarantine,
    remove_stale_temps,
    run_path,
)

# Tasks whose models have no BatchNorm, dropout or other state that a vmapped functional call cannot carry.
POPULATION_TASKS = frozenset({"digits", "housing", "vae_fmnist", "vae_mnist", "fmnist", "cifar"})
# Optimizers a member may use, with the family whose update trains it (NAdam: the Adam family's update with
# NAdam's coefficients).
MEMBER_FAMILY = {
    "sgd": "sgd",
    "nesterov": "sgd",
    "sgd_os": "sgd",
    "adam": "adam",
    "adam_os": "adam",
    "nadam": "adam",
}
# How a population's convolutions run: "grouped" (vmap's own rule: one grouped convolution, members as
# groups), "matmul" (overshoot.matmul_conv: im2col and one batched GEMM per layer), "conv2d-matmul" (GEMMs
# for Conv2d, grouped ConvTranspose2d). "auto": conv2d-matmul on CUDA, grouped elsewhere. Measured on an H100
# (results/population_experiments/): Conv2d as GEMMs +22 % for 2c2d and 3c3d, +11 % for the VAE; transposed
# convolutions as GEMM + col2im were slower than cuDNN's grouped ones in the VAE (2,144 vs 4,049
# member-steps/s). The sub-pixel form that replaced that col2im form in "matmul" has not been timed on a GPU
# yet; on a 2-core CPU its VAE decoder is 2-3x slower than grouped (population_experiments.py --parts convt).
CONV_MODES = ("auto", "grouped", "matmul", "conv2d-matmul")
MAX_SIZE = 64  # members per population; larger groups are split
POPULATION_CHECKPOINT_KEYS = ("members", "population", "step", "epoch_rows", "diverged")
# Keys in which the members of one population may differ.
MEMBER_KEYS = ("seed", "optimizer", "gamma", "population")


def member_gamma(run: dict[str, Any]) -> float:
    """The overshoot factor of the family's update that reproduces the run's optimizer (NAG: gamma = mu)."""
    if run["optimizer"] == "nesterov":
        return float(run["hparams"]["momentum"])
    if run["optimizer"].endswith("_os"):
        return float(run["gamma"])
    return 0.0


def eligible(run: dict[str, Any]) -> str | None:
    """None when ``run`` can join a population, else the reason it runs alone."""
    if run["task"] not in POPULATION_TASKS:
        return f"task {run['task']} has BatchNorm/dropout or a pretrained model"
    if run["optimizer"] not in MEMBER_FAMILY:
        return f"optimizer {run['optimizer']} has no population update"
    if run["log_distance"]:
        return "log.distance is single-run only"
    if (run_path(run["out"], run) / "checkpoint.pt").exists():
        return "it resumes from its own single-run checkpoint"
    return None


def group_key(run: dict[str, Any]) -> str:
    """Runs with the same key can be trained as one population."""
    shared = {k: v for k, v in run.items() if k not in MEMBER_KEYS}
    return json.dumps(shared, sort_keys=True, default=str)


def plan_populations(
    runs: Sequence[dict[str, Any]], max_size: int = MAX_SIZE, min_size: int = 2
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Split resolved runs into populations (lists of at least ``min_size`` and at most ``max_size``
    members, in input order) and the runs left to train alone. Duplicate runs appear once."""
    if max_size < 1 or min_size < 1:
        raise ValueError(f"max_size={max_size}, min_size={min_size}: both must be positive integers")
    groups: dict[str, list[dict[str, Any]]] = {}
    alone: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for run in runs:
        path = run_path(run["out"], run)
        if path in seen:
            continue
        seen.add(path)
        if eligible(run) is None:
            groups.setdefault(group_key(run), []).append(run)
        else:
            alone.append(run)
    populations: list[list[dict[str, Any]]] = []
    for members in groups.values():
        for i in range(0, len(members), max_size):
            chunk = members[i : i + max_size]
            (populations.append(chunk) if len(chunk) >= min_size else alone.extend(chunk))
    return populations, alone


def population_dir(runs: Sequence[dict[str, Any]]) -> Path:
    """Where the population of ``runs`` keeps its checkpoint."""
    key = hashlib.sha256(",".join(sorted(config_hash(r) for r in runs)).encode()).hexdigest()[:16]
    return Path(runs[0]["out"]) / ".populations" / f"{runs[0]['task']}-{key}"


def _per_member(values: Tensor, ndim: int) -> Tensor:
    """[N] -> [N, 1, ..., 1] with ``ndim`` dimensions in all."""
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


class Population:
    """The stacked weights and optimizer state of N members, and their vectorised losses and updates."""

    def __init__(
        self, runs: Sequence[dict[str, Any]], task: Any, device: torch.device, conv: str = "auto"
    ) -> None:
        families = {MEMBER_FAMILY.get(r["optimizer"]) for r in runs}
        if len(families) != 1 or None in families or len({group_key(r) for r in runs}) != 1:
            raise ValueError(
                "population members must share task, family and hyperparameters: plan_populations"
            )
        self.runs, self.task, self.device = list(runs), task, device
        self.family = families.pop()
        self.hp = runs[0]["hparams"]
        models = []
        for r in runs:
            seed_everything(r["seed"])
            models.append(task.build_model())
        bad = [type(m).__name__ for m in models[0].modules() if _stateful(m)]
        if bad:
            raise ValueError(f"task {runs[0]['task']} uses {', '.join(bad)}: run it without population mode")
        self.model = models[0]
        self.model.train()
        if conv not in CONV_MODES:
            raise ValueError(f"conv={conv!r}: choose one of {', '.join(CONV_MODES)}")
        if conv == "auto":
            conv = "conv2d-matmul" if device.type == "cuda" else "grouped"
        self.conv = conv
        if conv != "grouped":  # the vmapped forward: convolutions as batched GEMMs
            self.model = matmul_convs(self.model, transposed=conv == "matmul")
        set_cpu_threads(runs[0]["threads"], self.model, device)  # per-member size decides, as in a single run
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = {
            n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
            for n in names
        }
        self.buffers = {
            n: torch.stack([dict(m.named_buffers())[n] for m in models])
            for n in dict(models[0].named_buffers())
        }
        dtype = next(iter(self.params.values())).dtype
        n = len(runs)
        gamma = torch.tensor([member_gamma(r) for r in runs], device=device, dtype=torch.float64)
        is_os = torch.tensor([r["optimizer"].endswith("_os") for r in runs], device=device)
        self.gamma = {k: _per_member(gamma.to(dtype), p.dim()) for k, p in self.params.items()}
        # Evaluation is at the base weights for overshoot optimizers, at the weights held (NAG's iterate)
        # otherwise, exactly as a single run's `with opt.base_weights()` does.
        self.eval_gamma = {k: _per_member((gamma * is_os).to(dtype), p.dim()) for k, p in self.params.items()}
        # NAG (torch's nesterov=True) is SGDO at gamma = mu with the undo term at the current lr: equal to
        # SGDO for a constant lr, different under a schedule, so NAG members undo with the current lr.
        nag = torch.tensor([r["optimizer"] == "nesterov" for r in runs], device=device, dtype=dtype)
        self.nag = {k: _per_member(nag, p.dim()) for k, p in self.params.items()} if bool(nag.any()) else None
        self.gamma64 = gamma
        self.is_os = is_os.to(torch.float64)
        self.is_nadam = torch.tensor([r["optimizer"] == "nadam" for r in runs], device=device)
        if self.family == "adam" and bool((gamma > 0).any()) and self.hp["momentum"] == 0:
            raise ValueError("AdamO members with gamma > 0 need momentum (beta1) > 0 in population mode")
        self.log_base = is_os & (gamma > 0) & bool(runs[0]["log"]["base_loss"])
        self.any_log_base = bool(self.log_base.any())
        self.n = n
        self.dtype = dtype
        # Host mirror of the step count and the previous lr (checkpointed); the update reads the device
        # copies, so that a CUDA graph can replay it with a changing lr and step count.
        self.state: dict[str, Any] = {"prev_lr": 0.0, "step": 0}
        self.t = torch.zeros((), device=device, dtype=torch.float64)  # steps done
        self.lr = torch.zeros((), device=device, dtype=torch.float64)  # this step's lr (set_lr)
        self.prev_lr = torch.zeros((), device=device, dtype=torch.float64)
        self.mu_product = torch.ones((), device=device)  # NAdam members' beta1^t, float32 as torch's
        self._lr_host = 0.0
        if self.family == "sgd":
            self.state["buf"] = {k: None for k in names}
        else:
            self.state["m"] = {k: torch.zeros_like(p) for k, p in self.params.items()}
            self.state["v"] = {k: torch.zeros_like(p) for k, p in self.params.items()}
        self.has_correct = False

    def set_lr(self, lr: float) -> None:
        """The lr of the next update (one tiny device write when it changes)."""
        if lr != self._lr_host:
            self.lr.fill_(lr)
            self._lr_host = lr

    def advance_host(self) -> None:
        """The host mirror's half of a step: call it once after each ``update`` or graph replay of it
        (``update`` itself changes only device state, so capturing it into a graph, which runs its Python
        once without a real step, leaves the mirror right)."""
        self.state["prev_lr"] = self._lr_host
        self.state["step"] += 1

    # ----------------------------------------------------------------------------------- losses
    def _loss(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> Tensor:
        out = functional_call(self.model, (params, buffers), self.task.inputs(batch))
        return self.task.criterion(out, batch)[0]

    def _loss_correct(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        out = functional_call(self.model, (params, buffers), self.task.inputs(batch))
        loss, correct = self.task.criterion(out, batch)
        self.has_correct = correct is not None
        return loss, (correct if correct is not None else torch.zeros_like(loss))

    def losses(self, params: dict[str, Tensor], batch: dict[str, Tensor], batched_data: bool) -> Tensor:
        """[N] training losses of the members at ``params`` on their batches."""
        dims = (0, 0, 0 if batched_data else None)
        return vmap(self._loss, in_dims=dims)(params, self.buffers, batch)

    def eval_losses(self, params: dict[str, Tensor], batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """[N] losses and numbers correct of the members on one shared evaluation batch."""
        return vmap(self._loss_correct, in_dims=(0, 0, None))(params, self.buffers, batch)

    # ------------------------------------------------------------------------------ base weights
    def _ramp(self, t: Tensor) -> Tensor:
        """[N] float64 effective overshoot factors after ``t`` steps (0 at t = 0): the paper's delay ramp."""
        delay = self.hp["delay"]
        g = self.gamma64 if delay is None else torch.minimum(self.gamma64, (t - delay).clamp(min=0.0))
        return torch.where(t >= 1, g, torch.zeros_like(g))

    def _members(self, v: Tensor) -> dict[int, Tensor]:
        """[N] float64 -> {ndim: [N, 1, ..., 1] in the parameters' dtype} for every parameter rank."""
        v = v.to(self.dtype)
        return {d: _per_member(v, d) for d in {p.dim() for p in self.params.values()}}

    def _adam_denom(self, v: Tensor, bc2_sqrt: Tensor) -> Tensor:
        return (v.sqrt() / bc2_sqrt).add_(self.hp["eps"])

    @torch.no_grad()
    def base_params(self, evaluation: bool = False) -> dict[str, Tensor]:
        """The members' base weights: the held weights plus each member's overshoot offset (at evaluation,
        only overshoot members are offset: NAG is evaluated at the weights it holds)."""
        st = self.state
        if st["step"] == 0:
            return {k: p.detach() for k, p in self.params.items()}
        out = {}
        if self.family == "sgd":
            gammas = self.eval_gamma if evaluation else self.gamma
            for k, p in self.params.items():
                out[k] = p.detach() + st["buf"][k] * (gammas[k] * self.prev_lr)
            return out
        b1, b2 = self.hp["momentum"], self.hp["beta2"]
        t = self.t
        ramped = self._ramp(t) * self.is_os if evaluation else self._ramp(t)
        offs = self._members(self.prev_lr * ramped / (1 - b1**t))
        bc2_sqrt = torch.sqrt(1 - b2**t).to(self.dtype)
        for k, p in self.params.items():
            denom = self._adam_denom(st["v"][k], bc2_sqrt)
            out[k] = p.detach() + (st["m"][k] / denom) * offs[p.dim()]
        return out

    # ------------------------------------------------------------------------------------ update
    @torch.no_grad()
    def update(self) -> None:
        """One optimizer step of every member with the gradients in ``params[...].grad``, at the lr last
        given to ``set_lr``; the step count and previous lr advance on the device only (graph-safe), the
        caller then calls ``advance_host``."""
        st, hp = self.state, self.hp
        lr, prev_lr = self.lr, self.prev_lr
        if self.family == "sgd":
            lr_d, prev_d, nag = lr.to(self.dtype), prev_lr.to(self.dtype), self.nag
            for k, p in self.params.items():
                g = p.grad
                assert g is not None
                bufs: list[Tensor | None] = [st["buf"][k]]
                undo_lr = prev_d if nag is None else nag[k] * lr_d + (1 - nag[k]) * prev_d
                sgdo(
                    [p], [g], bufs, lr=lr_d, prev_lr=undo_lr, momentum=hp["momentum"], gamma=self.gamma[k],
                    weight_decay=hp["weight_decay"], foreach=False, fused=False,
                )  # fmt: skip
                st["buf"][k] = bufs[0]
                p.grad = None
        else:
            self._adam_update(lr, prev_lr)
        self.t.add_(1)
        self.prev_lr.copy_(lr)

    def _adam_update(self, lr: Tensor, prev_lr: Tensor) -> None:
        """AdamO's default form per member (gamma 0: AdamW) and NAdam (constant momentum), with per-member
        coefficients ``p -= (cm*m + cg*g) / d`` computed on the device from the step count."""
        hp = self.hp
        b1, b2, wd = hp["momentum"], hp["beta2"], hp["weight_decay"]
        t = self.t + 1
        g_t, g_p = self._ramp(t), self._ramp(self.t)
        bc1 = 1 - b1**t
        if b1 > 0:
            cm = (lr * (1 + g_t) - prev_lr * g_p / b1) / bc1
            cg = prev_lr * g_p * (1 - b1) / b1 / bc1
        else:  # no overshoot member (checked at construction): AdamW
            cm, cg = (lr * (1 + g_t) / bc1).expand_as(g_t), torch.zeros_like(g_t)
        # NAdam with mu_t = beta1: p -= lr*(1-b1)/(1-b1^t) * g/d + lr*b1/(1-b1^(t+1)) * m/d, with b1^t
        # the float32 running product torch's NAdam keeps (its state "mu_product")
        self.mu_product.mul_(b1)
        mp = self.mu_product.double()
        cm = torch.where(self.is_nadam, lr * b1 / (1 - mp * b1), cm)
        cg = torch.where(self.is_nadam, lr * (1 - b1) / (1 - mp), cg)
        cms, cgs = self._members(-cm), self._members(-cg)
        bc2_sqrt = torch.sqrt(1 - b2**t).to(self.dtype)
        wd_factor = (1 - lr * wd).to(self.dtype)
        for k, p in self.params.items():
            g = p.grad
            assert g is not None
            m, v = self.state["m"][k], self.state["v"][k]
            if wd != 0:
                p.mul_(wd_factor)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = self._adam_denom(v, bc2_sqrt)
            p.addcmul_(m / denom, cms[p.dim()])
            p.addcmul_(g / denom, cgs[p.dim()])
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {k: p.detach() for k, p in self.params.items()},
            "buffers": self.buffers,
            "state": self.state,
            "mu_product": self.mu_product,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(sd["params"][k])
        self.buffers = {k: v.to(self.device) for k, v in sd["buffers"].items()}

        def move(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            if isinstance(x, Tensor) and x.dim() > 0:
                return x.to(self.device)
            return x

        self.state = move(sd["state"])
        self.state.pop("steps", None)  # per-parameter host step counts of checkpoints before 2026-11-25
        if "mu_product" in sd:
            self.mu_product.copy_(sd["mu_product"])
        else:  # an older checkpoint: rebuild torch's float32 running product beta1^t
            mp = torch.ones(())
            for _ in range(int(self.state["step"])):
                mp.mul_(self.hp["momentum"])
            self.mu_product.copy_(mp)
        self.t.fill_(float(self.state["step"]))
        self.prev_lr.fill_(float(self.state["prev_lr"]))


def _stateful(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._NormBase) or (isinstance(m, nn.Dropout) and m.p > 0)


class _Batches:
    """The members' training batches of one step: one gather for all distinct seeds."""

    def __init__(self, task: Any, seeds: Sequence[int], device: torch.device) -> None:
        self.task, self.seeds = task, list(seeds)
        self.unique = sorted(set(self.seeds))
        self.index = torch.tensor([self.unique.index(s) for s in self.seeds], device=device)
        self.identity = self.unique == self.seeds
        self.plan: Any = None

    @property
    def batched(self) -> bool:
        return len(self.unique) > 1

    def new_epoch(self, epoch: int, batch_size: int, plan_kw: dict[str, Any] | None = None) -> None:
        from overshoot_tasks import EpochPlan

        plans = [self.task.epoch_plan(s, epoch, batch_size, **(plan_kw or {})) for s in self.unique]
        p0 = plans[0]
        if p0.meta or len(plans) == 1 or p0.partial:  # a partial last batch: gathered per seed, then stacked
            self.plans, self.plan = plans, (p0 if len(plans) == 1 else None)
            return

        def merge(ts: list[Tensor]) -> Tensor:
            t = torch.stack([x.reshape(p0.steps, p0.batch_size, *x.shape[1:]) for x in ts], dim=1)
            return t.reshape(-1, *t.shape[3:])

        self.plans = plans
        self.plan = EpochPlan(
            seed=-1,
            epoch=epoch,
            batch_size=p0.batch_size * len(plans),
            steps=p0.steps,
            index=merge([p.index for p in plans]),
            extra={k: merge([p.extra[k] for p in plans]) for k in p0.extra},
        )

    def batch(self, k: int, plan: Any = None) -> dict[str, Tensor]:
        """The members' batches of step ``k`` (of ``plan`` when given: a one-batch copy of ``self.plan``)."""
        plan = self.plan if plan is None else plan
        if not self.batched:
            return self.task.train_batch(plan, k)
        if plan is not None:
            b = self.task.train_batch(plan, k)
            b = {key: v.reshape(len(self.unique), -1, *v.shape[1:]) for key, v in b.items()}
        else:
            parts = [self.task.train_batch(p, k) for p in self.plans]
            b = {key: torch.stack([x[key] for x in parts]) for key in parts[0]}
        if self.identity:
            return b
        return {key: v.index_select(0, self.index) for key, v in b.items()}


def train_population(
    runs: Sequence[dict[str, Any]],
    task: Any,
    writers: Sequence[RunWriter],
    device: torch.device,
    should_stop: Callable[[], bool] = lambda: False,
    conv: str = "auto",
) -> tuple[dict[str, Any], list[str | None]]:
    """Train the members of ``runs`` together to the end (or max_steps), writing each member's logs.

    Returns the run.json fields shared by the members and, per member, None or the reason it diverged.
    Resumes from the population checkpoint when there is one; raises Interrupted after a checkpoint when
    ``should_stop()`` turns true.
    """
    run0, hp = runs[0], runs[0]["hparams"]
    bs, epochs = hp["batch_size"], hp["epochs"]
    steps_per_epoch, plan_kw = epoch_steps(run0, task)
    total = epochs * steps_per_epoch
    last = min(total, run0["max_steps"] or total)
    autocast = autocast_for(run0["precision"], device)
    pop = Population(runs, task, device, conv)
    n = pop.n
    lr_holder = torch.optim.SGD([torch.zeros(1)], lr=hp["lr"])  # replays the single run's lr sequence
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(lr_holder, T_max=total)
        if hp["schedule"] == "cosine"
        else None
    )
    lr_holder.step()  # a no-op (no gradient) that tells the scheduler the optimizer steps first
    ckpt_file = population_dir(runs) / "checkpoint.pt"
    makedirs(ckpt_file.parent)
    remove_stale_temps(ckpt_file.parent)  # the members' claims are held: nobody else writes here
    step, epoch_rows = 0, [0] * n
    diverged: list[str | None] = [None] * n

    def restart(why: str) -> tuple[dict[str, Any], list[str | None]]:
        aside = quarantine(ckpt_file, why)
        print(
            f"overshoot-bench: warning: {ckpt_file}: {why}; moved it to {aside.name}; restarting the "
            "population from step 0",
            file=sys.stderr,
            flush=True,
        )
        return train_population(runs, task, writers, device, should_stop, conv)

    ckpt = load_checkpoint_file(ckpt_file, POPULATION_CHECKPOINT_KEYS)
    if ckpt is not None:
        if ckpt["members"] != [config_hash(r) for r in runs]:
            return restart("it belongs to another set of runs")
        try:
            pop.load_state_dict(ckpt["population"])
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler"])
                lr_holder.param_groups[0]["lr"] = ckpt["lr"]
            step, epoch_rows, diverged = int(ckpt["step"]), list(ckpt["epoch_rows"]), list(ckpt["diverged"])
            if len(epoch_rows) != n or len(diverged) != n:
                raise ValueError(f"it has {len(epoch_rows)} members, not {n}")
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            return restart(f"it does not fit this population ({type(e).__name__}: {str(e)[:200]})")
    try:
        for r, w, e_rows, div in zip(runs, writers, epoch_rows, diverged, strict=True):
            if div is None:  # a member that diverged before the checkpoint keeps its partial logs
                w.start({**r, "population": True}, w.info, resume_rows=(step, e_rows))
    except LogMismatch as e:
        return restart(str(e))
    alive = [d is None for d in diverged]
    ckpt_stats: dict[str, float] = {"n": 0, "time": 0.0, "last": 0.0}

    def checkpoint() -> None:
        state = {
            "members": [config_hash(r) for r in runs],
            "population": pop.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "lr": lr_holder.param_groups[0]["lr"],
            "step": step,
            "epoch_rows": epoch_rows,
            "diverged": diverged,
        }
        t0 = time.perf_counter()
        for w in writers:
            w._check()  # a member taken over by another process: stop before writing anything
        atomic_torch_save(state, ckpt_file)
        for w, ok in zip(writers, alive, strict=True):
            if ok:
                w.write_info(heartbeat=time.time())
        ckpt_stats["last"] = time.perf_counter() - t0
        ckpt_stats["n"] += 1
        ckpt_stats["time"] += ckpt_stats["last"]

    rec = torch.zeros(FLUSH_EVERY, 3, n, device=device, dtype=torch.float64)
    lrs: list[float] = []
    block_start = step
    last_loss = math.nan
    last_beat = time.time()

    def flush() -> None:
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
            w.append_steps({c: rows[c] for c in w.step_columns})
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

    def one_step(b: dict[str, Tensor], out: Tensor) -> None:
        """One optimizer step of every member; writes [base loss, train loss, grad norm] x members to ``out``.
        Graph mode captures exactly this."""
        with autocast():
            losses = pop.losses(pop.params, b, data.batched)
        losses.sum().backward()
        if pop.any_log_base:
            with torch.no_grad(), autocast():
                base = pop.losses(pop.base_params(), b, data.batched)
            out[0] = torch.where(pop.log_base, base.detach().double(), losses.detach().double())
        else:
            out[0] = losses.detach()
        out[1] = losses.detach()
        norms = torch.stack(
            [p.grad.flatten(1).norm(dim=1) for p in pop.params.values() if p.grad is not None]
        )
        out[2] = torch.linalg.vector_norm(norms, dim=0)
        pop.update()

    graphed = use_graph(run0, device, pop.model, population=True)

    def graph_step(one: Any, out: Tensor) -> None:
        one_step(data.batch(0, one), out)  # the batch is gathered inside the graph

    captured: CapturedStep | None = None
    eager_steps = 0
    progress = Progress(run0["progress"], last, step, _population_label(runs))
    t_start, t_ckpt = time.perf_counter(), time.perf_counter()
    data = _Batches(task, [r["seed"] for r in runs], device)
    eval_bs = max(4 * bs, 256)
    epoch_of_plan = -1
    try:
        while step < last and any(alive):
            epoch, k = divmod(step, steps_per_epoch)
            if epoch != epoch_of_plan:
                data.new_epoch(epoch, bs, plan_kw)
                epoch_of_plan = epoch
            i = step - block_start
            if graphed and captured is None and eager_steps >= GRAPH_WARMUP and data.plan is not None:
                captured = capture(graph_step, data.plan, k, device, rec.shape[1:])
            lr = float(lr_holder.param_groups[0]["lr"])
            lrs.append(lr)
            pop.set_lr(lr)
            if captured is not None:
                rec[i].copy_(captured.replay(data.plan, k))
            else:
                one_step(data.batch(k), rec[i])
                eager_steps += 1
            pop.advance_host()
            if sched is not None:
                sched.step()
            step += 1
            end_of_epoch = step % steps_per_epoch == 0
            if step - block_start == FLUSH_EVERY or end_of_epoch or step == last or should_stop():
                flush()
                progress.update(step, last_loss)
                if end_of_epoch or step == last:
                    with progress.paused():
                        _evaluate(pop, task, writers, alive, epoch, eval_bs, autocast, epoch_rows)
                stop = should_stop()
                since = time.perf_counter() - t_ckpt
                at_epoch_end = end_of_epoch and since >= max(
                    EPOCH_CHECKPOINT_MIN_S, EPOCH_CHECKPOINT_FACTOR * ckpt_stats["last"]
                )
                if stop or (step < last and (since >= run0["checkpoint_every"] or at_epoch_end)):
                    checkpoint()
                    t_ckpt = time.perf_counter()
                if stop:
                    raise Interrupted(f"stopped at step {step}/{last}; relaunch the same command to resume")
    finally:
        progress.close()
    wall = time.perf_counter() - t_start
    rate = progress.rate(step)  # every member's own steps/s (evaluation left out); times n: member-steps/s
    shared = {
        "steps": step,
        "train_time_s": wall,
        "steps_per_s": rate,
        "member_steps_per_s": rate * n,
        "cuda_graph": captured is not None,
        "checkpoints": int(ckpt_stats["n"]),
        "checkpoint_time_s": ckpt_stats["time"],
    }
    return shared, diverged


@torch.no_grad()
def _evaluate(
    pop: Population,
    task: Any,
    writers: Sequence[RunWriter],
    alive: list[bool],
    epoch: int,
    eval_bs: int,
    autocast: Callable[[], Any],
    epoch_rows: list[int],
) -> None:
    """Validation and test loss/accuracy of every live member at its base weights, appended to epochs.csv."""
    params = pop.base_params(evaluation=True)
    pop.model.eval()
    rows: list[dict[str, list[Any]]] = [
        {"epoch": [], "split": [], "loss": [], "accuracy": []} for _ in writers
    ]
    for split in ("val", "test"):
        if not task.has_split(split):
            continue
        total, loss_sum, correct_sum = 0, None, None
        with autocast():
            for b in task.eval_batches(split, eval_bs):
                loss, correct = pop.eval_losses(params, b)
                nb = next(iter(b.values())).shape[0]
                loss_sum = loss.double() * nb if loss_sum is None else loss_sum + loss.double() * nb
                correct_sum = correct.double() if correct_sum is None else correct_sum + correct.double()
                total += nb
        if loss_sum is None or correct_sum is None:
            continue
        losses = (loss_sum.cpu().numpy() / total).tolist()
        accs = (correct_sum.cpu().numpy() / total).tolist() if pop.has_correct else [math.nan] * pop.n
        for j, r in enumerate(rows):
            for key, v in zip(r, (epoch, split, losses[j], accs[j]), strict=True):
                r[key].append(v)
    pop.model.train()
    for j, (w, r) in enumerate(zip(writers, rows, strict=True)):
        if alive[j]:
            w.append_epochs(r)
            epoch_rows[j] += len(r["epoch"])


def run_population(runs: Sequence[dict[str, Any]]) -> list[int]:
    """Train the resolved ``runs`` as one population (completed members are skipped, members that a live
    process holds are left to it: ``running elsewhere``); returns, per run, the exit code a single run would
    give (0 completed, skipped or running elsewhere, 1 failed/diverged, 2 bad input, 130/143 interrupted)."""
    from overshoot import cli

    writers = [RunWriter(run_path(r["out"], r), step_columns=STEP_COLUMNS) for r in runs]
    codes = [0] * len(runs)
    claims = []
    try:
        todo = []
        for j, (r, w) in enumerate(zip(runs, writers, strict=True)):
            if cli.finished(w.read_info()):
                cli._skip(_label(r), w.read_info(), w)
                continue
            try:
                w.claim = claim_run(w.path)
            except RunHeld as e:
                print(f"{_label(r)}: running elsewhere, not started: {w.path} is {e}", flush=True)
                cli._outcomes["running elsewhere"] += 1
                continue
            except StoreError as e:
                codes[j] = cli._bad_input(e)
                continue
            claims.append(w.claim)
            w.prepare()
            if cli.finished(w.read_info()):  # finished by the previous holder meanwhile
                cli._skip(_label(r), w.read_info(), w)
                continue
            todo.append(j)
        if todo:
            _train_claimed(runs, writers, todo, codes)
    finally:
        for c in claims:
            c.release()
    return codes


def _train_claimed(
    runs: Sequence[dict[str, Any]], writers: Sequence[RunWriter], todo: list[int], codes: list[int]
) -> None:
    """Train the claimed members ``todo`` of ``runs`` as one population; sets their ``codes``."""
    from overshoot_tasks import build_task

    from overshoot import cli

    priors = {j: writers[j].read_info() for j in todo}
    members = [runs[j] for j in todo]
    mwriters = [writers[j] for j in todo]
    try:
        device = pick_device(members[0]["device"])
        dtype = torch.float64 if members[0]["precision"] == "fp64" else torch.float32
        task = build_task(members[0]["task_options"], Path(members[0]["data"]["root"]), device, dtype)
        bs = members[0]["hparams"]["batch_size"]
        if bs > task.n_train:
            raise ValueError(
                f"batch_size={bs} exceeds the {task.n_train} training examples: lower batch_size"
            )
    except (ValueError, FileNotFoundError) as e:
        for j in todo:
            cli._record_setup_failure(runs[j], writers[j], priors[j], str(e))
            codes[j] = 2
        cli._bad_input(e)
        return
    except Exception as e:
        cause, note = f"{type(e).__name__}: {e}", ""
        for j in todo:
            note = cli._record_setup_failure(runs[j], writers[j], priors[j], cause, traceback.format_exc())
            codes[j] = 1
        print(f"overshoot-bench: error: population of {members[0]['task']}: {cause}{note}", file=sys.stderr)
        return
    resumed = (population_dir(members) / "checkpoint.pt").exists()
    print(
        f"{members[0]['task']}: {'resuming' if resumed else 'starting'} a population of {len(members)} "
        f"({', '.join(_label(r, task=False) for r in members)})",
        flush=True,
    )
    status, code = "completed", 0
    reason: str | None = None
    shared: dict[str, Any] = {}
    diverged: list[str | None] = [None] * len(members)
    with stop_requests() as should_stop:
        try:
            for j in todo:
                header = cli.run_header(runs[j], writers[j], priors[j], task, device)
                if resumed:
                    header["started"] = priors[j].get("started", header["started"])
                writers[j]._info = {**priors[j], **header, "population": {"size": len(members)}}
            shared, diverged = train_population(members, task, mwriters, device, should_stop)
        except Interrupted as e:
            status, code, reason = "failed", should_stop.exit_code, f"interrupted: {e}"
        except ClaimLost as e:
            status, code, reason = "failed", 1, str(e)
        except StoreError as e:
            fix = "free space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
            status, code, reason = "failed", 1, f"{e}; {fix} and relaunch the same command to resume"
        except Exception as e:
            status, code, reason = "failed", 1, f"{type(e).__name__}: {e}"
            for w in mwriters:
                cli._write_error_log(w, traceback.format_exc())
    member_rate = shared.pop("member_steps_per_s", None)
    recorded = True  # every member's final run.json written
    for j, r, w, div in zip(todo, members, mwriters, diverged, strict=True):
        st, c, why = (status, code, reason) if div is None or code else ("diverged", 1, div)
        result = dict(shared)
        if div is not None and not code:
            result.pop("steps", None)
        try:
            w.write_info(population={"size": len(members), "member_steps_per_s": member_rate})
            cli.finish_run(r, w, priors[j], task, st, c, why, result)
        except ClaimLost as e:
            print(f"{_label(r)}: stopped: {e}", file=sys.stderr, flush=True)
            recorded = False
        except StoreError as e:
            recorded = False
            print(f"{_label(r)}: {st}" + (f" ({why})" if why else ""), flush=True)
            print(f"overshoot-bench: error: run.json not updated: {e}", file=sys.stderr, flush=True)
            c = c or 1
        codes[j] = c
    if code == 0 and recorded:  # every member finished and says so in its run.json: the checkpoint can go
        drop_population_checkpoint(members)


def drop_population_checkpoint(members: Sequence[dict[str, Any]]) -> None:
    """Delete the population checkpoint of ``members`` and its folder."""
    ckpt_file = population_dir(members) / "checkpoint.pt"
    ckpt_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        ckpt_file.parent.rmdir()


def _population_label(runs: Sequence[dict[str, Any]]) -> str:
    """The progress label of a population: task, size, its methods (gammas included) and seeds."""
    methods = list(dict.fromkeys(method_name(r["optimizer"], r["gamma"]) for r in runs))
    seeds = sorted({int(r["seed"]) for r in runs})
    seed_text = ",".join(map(str, seeds)) if len(seeds) <= 4 else f"{seeds[0]}..{seeds[-1]} ({len(seeds)})"
    shown = ",".join(methods) if len(methods) <= 4 else f"{','.join(methods[:3])},+{len(methods) - 3}"
    return f"{runs[0]['task']}/population of {len(runs)} ({shown}; seed {seed_text})"


def _label(run: dict[str, Any], task: bool = True) -> str:
    m = f"{method_name(run['optimizer'], run['gamma'])}/seed{run['seed']}"
    return f"{run['task']}/{m}" if task else m


def run_sweep(cfgs: Sequence[Any], max_size: int = MAX_SIZE) -> list[int]:
    """Train the composed configs of a sweep: completed runs skipped, compatible ones as populations, the
    rest one by one through ``overshoot.cli.run_one``; returns the exit codes."""
    from overshoot import cli
    from overshoot.config import ConfigError, resolve

    codes: list[int] = []
    todo: dict[int, dict[str, Any]] = {}
    todo_cfg: dict[int, Any] = {}
    for cfg in cfgs:
        try:
            run = resolve(cfg)
        except ConfigError:
            codes.append(cli.run_one(cfg))  # reports the error
            continue
        if cli.finished(RunWriter(run_path(run["out"], run)).read_info()):
            codes.append(cli.run_one(cfg))  # says it skipped
            continue
        todo[id(run)] = run
        todo_cfg[id(run)] = cfg
    populations, alone = plan_populations(list(todo.values()), max_size=max_size)
    print(
        f"population mode: {sum(map(len, populations))} runs in {len(populations)} populations, "
        f"{len(alone)} alone",
        flush=True,
    )
    for members in populations:
        member_codes = run_population(members)
        codes.extend(member_codes)
        if 130 in member_codes or 143 in member_codes:
            cli._exit_codes.extend(codes)  # main() tells SIGTERM (143) from SIGINT (130) by these
            raise KeyboardInterrupt
    for run in alone:
        codes.append(cli.run_one(todo_cfg[id(run)]))
    return codes
