"""Population mode: many runs of one task trained together in one process, vectorised over the members.

A population is a set of runs that share a task and every hyperparameter and differ only in seed and in
method within an optimizer family: the SGD family is SGDO with a per-member gamma (0 = CM, mu = NAG, 3/5/7 =
SGDO), the Adam family is AdamO with a per-member gamma (0 = AdamW, 3/5/7 = AdamO) and NAdam (constant
momentum, as the paper's). The members' weights are stacked along a leading dimension and trained with
``torch.func.functional_call`` under ``torch.func.vmap`` (convolutions as batched GEMMs on CUDA, see
``overshoot.train.matmul_conv``); the updates take per-member coefficient tensors computed on the device from
a device step count and lr, so that the whole step can be replayed as one CUDA graph under any schedule.
Each member starts from the weights its single run would build (``seed_everything(seed)`` then
``task.build_model()``), sees its single run's data order (``task.epoch_plan(seed, epoch, batch_size)``)
and writes its own run directory in the single-run format.

Resume: the population as a whole is checkpointed under ``<out>/.populations/<key>/`` (key = the members'
config hashes); relaunching the same set of runs resumes it and ends with the uninterrupted curves. A
different set of runs (say, the sweep was changed) restarts its unfinished members from scratch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from overshoot.common.files import remove_stale_temps
from overshoot.config import methods
from overshoot.config.run import RunConfig
from overshoot.config.schema import config_hash
from overshoot.optim.adamo import adamo, adamo_base_offset, ramp
from overshoot.optim.sgdo import sgdo
from overshoot.store.writer import Checkpoint, RunWriter, run_path
from overshoot.train.engine import drive
from overshoot.train.matmul_conv import matmul_convs
from overshoot.train.runtime import (
    autocast_for,
    epoch_steps,
    forward_state_free,
    seed_everything,
    set_cpu_threads,
    use_graph,
)

if TYPE_CHECKING:
    from overshoot_tasks.base import Task

# Tasks whose models have no BatchNorm, dropout or other state that a vmapped functional call cannot carry.
POPULATION_TASKS = frozenset({"digits", "housing", "vae_fmnist", "vae_mnist", "fmnist", "cifar"})
# How a population's convolutions run: "grouped" (vmap's own rule: one grouped convolution, members as
# groups), "matmul" (overshoot.train.matmul_conv: im2col and one batched GEMM per layer), "conv2d-matmul"
# (GEMMs for Conv2d, grouped ConvTranspose2d). "auto": conv2d-matmul on CUDA, grouped elsewhere, the faster
# forms in the timings of results/population_experiments/ (one file per device, each naming its command; the
# sub-pixel ConvTranspose2d of "matmul" is timed on the CPU only).
CONV_MODES = ("auto", "grouped", "matmul", "conv2d-matmul")
MAX_SIZE = 64  # members per population; larger groups are split
CHECKPOINT_KEYS = ("members", "population", "epoch_rows", "diverged")
# Keys in which the members of one population may differ.
MEMBER_KEYS = ("seed", "optimizer", "gamma", "population")


def member_gamma(run: RunConfig) -> float:
    """The overshoot factor of the family's update that reproduces the run's optimizer (NAG: gamma = mu)."""
    return methods.get(run.optimizer, run.family).population_gamma(run.gamma, run.hparams.momentum)


def eligible(run: RunConfig) -> str | None:
    """None when ``run`` can join a population, else the reason it runs alone."""
    if run.task not in POPULATION_TASKS:
        if run.task_options.get("_target_") is not None:
            return f"task {run.task} is a task of your own (not checked for a vectorised forward pass)"
        return f"task {run.task} has BatchNorm/dropout or a pretrained model"
    if methods.get(run.optimizer, run.family).population is None:
        return f"optimizer {run.optimizer} has no population update"
    if run.log_distance:
        return "log.distance is single-run only"
    if (run_path(run.out, run) / "checkpoint.pt").exists():
        return "it resumes from its own single-run checkpoint"
    return None


def group_key(run: RunConfig) -> str:
    """Runs with the same key can be trained as one population."""
    shared = {k: v for k, v in run.to_dict().items() if k not in MEMBER_KEYS}
    return json.dumps(shared, sort_keys=True, default=str)


def plan_populations(
    runs: Sequence[RunConfig], max_size: int = MAX_SIZE, min_size: int = 2
) -> tuple[list[list[RunConfig]], list[RunConfig]]:
    """Split resolved runs into populations (lists of at least ``min_size`` and at most ``max_size``
    members, in input order) and the runs left to train alone. Duplicate runs appear once."""
    if max_size < 1 or min_size < 1:
        raise ValueError(f"max_size={max_size}, min_size={min_size}: both must be positive integers")
    groups: dict[str, list[RunConfig]] = {}
    alone: list[RunConfig] = []
    seen: set[Path] = set()
    for run in runs:
        path = run_path(run.out, run)
        if path in seen:
            continue
        seen.add(path)
        if eligible(run) is None:
            groups.setdefault(group_key(run), []).append(run)
        else:
            alone.append(run)
    populations: list[list[RunConfig]] = []
    for members in groups.values():
        for i in range(0, len(members), max_size):
            chunk = members[i : i + max_size]
            (populations.append(chunk) if len(chunk) >= min_size else alone.extend(chunk))
    return populations, alone


def population_dir(runs: Sequence[RunConfig]) -> Path:
    """Where the population of ``runs`` keeps its checkpoint."""
    key = hashlib.sha256(",".join(sorted(config_hash(r) for r in runs)).encode()).hexdigest()[:16]
    return Path(runs[0].out) / ".populations" / f"{runs[0].task}-{key}"


def population_checkpoint(runs: Sequence[RunConfig], writers: Sequence[RunWriter] = ()) -> Checkpoint:
    """The checkpoint of the population of ``runs`` (in member order), naming its members' config hashes:
    a checkpoint of another set of runs, or one that names none, is moved aside instead of being resumed."""
    identity = {"members": [config_hash(r) for r in runs]}
    return Checkpoint(population_dir(runs) / "checkpoint.pt", tuple(writers), identity)


def _per_member(values: Tensor, ndim: int) -> Tensor:
    """[N] -> [N, 1, ..., 1] with ``ndim`` dimensions in all."""
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


class Population:
    """The stacked weights and optimizer state of N members, and their vectorised losses and updates."""

    def __init__(
        self, runs: Sequence[RunConfig], task: Task, device: torch.device, conv: str = "auto"
    ) -> None:
        members = [methods.get(r.optimizer, r.family) for r in runs]
        families = {m.family if m.population is not None else None for m in members}
        if len(families) != 1 or None in families or len({group_key(r) for r in runs}) != 1:
            raise ValueError(
                "population members must share task, family and hyperparameters: plan_populations"
            )
        self.runs, self.task, self.device = list(runs), task, device
        self.family = families.pop()
        self.hp = runs[0].hparams
        models = []
        for r in runs:
            seed_everything(r.seed)
            models.append(task.build_model())
        if not forward_state_free(models[0]):
            raise ValueError(f"task {runs[0].task} uses BatchNorm or dropout: run it without population mode")
        self.model = models[0]
        self.model.train()
        if conv not in CONV_MODES:
            raise ValueError(f"conv={conv!r}: choose one of {', '.join(CONV_MODES)}")
        if conv == "auto":
            conv = "conv2d-matmul" if device.type == "cuda" else "grouped"
        self.conv = conv
        if conv != "grouped":  # the vmapped forward: convolutions as batched GEMMs
            self.model = matmul_convs(self.model, transposed=conv == "matmul")
        set_cpu_threads(runs[0].threads, self.model, device)  # per-member size decides, as in a single run
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
        is_os = torch.tensor([m.overshoot for m in members], device=device)
        self.gamma = {k: _per_member(gamma.to(dtype), p.dim()) for k, p in self.params.items()}
        # Evaluation is at the base weights for overshoot optimizers, at the weights held (NAG's iterate)
        # otherwise, exactly as a single run's `with opt.base_weights()` does.
        self.eval_gamma = {k: _per_member((gamma * is_os).to(dtype), p.dim()) for k, p in self.params.items()}
        # NAG (torch's nesterov=True) is SGDO at gamma = mu with the undo term at the current lr: equal to
        # SGDO for a constant lr, different under a schedule, so NAG members undo with the current lr.
        nag = torch.tensor([m.population == "nag" for m in members], device=device, dtype=dtype)
        self.nag = {k: _per_member(nag, p.dim()) for k, p in self.params.items()} if bool(nag.any()) else None
        self.gamma64 = gamma
        self.is_os = is_os.to(torch.float64)
        kinds = [m.population for m in members]
        if "nadam" in kinds and kinds[kinds.index("nadam") :] != ["nadam"] * kinds.count("nadam"):
            raise ValueError("a population's NAdam members come last: order them with member_order")
        self.n_adamo = n - kinds.count("nadam")  # members [0, n_adamo) take AdamO's update, the rest NAdam's
        if self.family == "adam" and bool((gamma > 0).any()) and self.hp.momentum == 0:
            raise ValueError("AdamO members with gamma > 0 need momentum (beta1) > 0 in population mode")
        self.log_base = is_os & (gamma > 0) & runs[0].log.base_loss
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
        n_os = self.n_adamo  # the AdamO members (AdamW: gamma 0) come first, the NAdam tail after
        ramped = torch.as_tensor(ramp(self.gamma64[:n_os], self.t, self.hp.delay))
        if evaluation:
            ramped = ramped * self.is_os[:n_os]
        names = list(self.params)
        heads = adamo_base_offset(
            [self.params[n].detach()[:n_os] for n in names], [st["m"][n][:n_os] for n in names],
            [st["v"][n][:n_os] for n in names], [self.t] * len(names), lr=self.prev_lr,
            gamma=[_per_member(ramped, self.params[n].dim()) for n in names], beta1=self.hp.momentum,
            beta2=self.hp.beta2, eps=self.hp.eps, foreach=False,
        )  # fmt: skip
        for n, head in zip(names, heads, strict=True):
            p = self.params[n].detach()
            out[n] = head if n_os == self.n else torch.cat([head, p[n_os:]])  # NAdam: its weights
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
                    [p], [g], bufs, lr=lr_d, prev_lr=undo_lr, momentum=hp.momentum, gamma=self.gamma[k],
                    weight_decay=hp.weight_decay, foreach=False, fused=False,
                )  # fmt: skip
                st["buf"][k] = bufs[0]
                p.grad = None
            self.t.add_(1)
        else:
            self.t.add_(1)  # the Adam family's updates read the step count of this step
            self._adam_update(lr, prev_lr)
        self.prev_lr.copy_(lr)

    def _adam_update(self, lr: Tensor, prev_lr: Tensor) -> None:
        """AdamO's update (``overshoot.optim.adamo.adamo``, capturable) of members [0, n_adamo) with a
        per-member gamma (0: AdamW), then NAdam with constant momentum for the rest: ``p -= (cm*m + cg*g)/d``
        with b1^t the float32 running product torch's NAdam keeps (its state "mu_product")."""
        hp, k, names = self.hp, self.n_adamo, list(self.params)
        b1, b2, wd, eps = hp.momentum, hp.beta2, hp.weight_decay, hp.eps
        heads = [self.params[n][:k] for n in names]
        if k:
            grads = [g[:k] for g in self._grads(names)]
            adamo(
                heads, grads, [self.state["m"][n][:k] for n in names],
                [self.state["v"][n][:k] for n in names], [], [self.t] * len(names), lr=lr, prev_lr=prev_lr,
                gamma=[_per_member(self.gamma64[:k], p.dim()) for p in heads], beta1=b1, beta2=b2, eps=eps,
                weight_decay=wd, delay=hp.delay, capturable=True, increment_steps=False, foreach=False,
                fused=False,
            )  # fmt: skip
        if k < self.n:
            self.mu_product.mul_(b1)
            mp = self.mu_product.double()
            cm = (-lr * b1 / (1 - mp * b1)).to(self.dtype)
            cg = (-lr * (1 - b1) / (1 - mp)).to(self.dtype)
            bc2_sqrt = torch.sqrt(1 - b2**self.t).to(self.dtype)
            wd_factor = (1 - lr * wd).to(self.dtype)
            for n, g_all in zip(names, self._grads(names), strict=True):
                p, g = self.params[n][k:], g_all[k:]
                m, v = self.state["m"][n][k:], self.state["v"][n][k:]
                if wd != 0:
                    p.mul_(wd_factor)
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / bc2_sqrt).add_(eps)
                p.addcmul_(m / denom, cm)
                p.addcmul_(g / denom, cg)
        for n in names:
            self.params[n].grad = None

    def _grads(self, names: list[str]) -> list[Tensor]:
        grads = [self.params[n].grad for n in names]
        assert all(g is not None for g in grads)
        return grads  # type: ignore[return-value]

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
                mp.mul_(self.hp.momentum)
            self.mu_product.copy_(mp)
        self.t.fill_(float(self.state["step"]))
        self.prev_lr.fill_(float(self.state["prev_lr"]))


class _Batches:
    """The members' training batches of one step: one gather for all distinct seeds."""

    def __init__(self, task: Task, seeds: Sequence[int], device: torch.device) -> None:
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


class PopulationBackend:
    """N members' stacked weights and vectorised update, stepped and evaluated for the driver
    (``overshoot.train.engine.Backend``); the members' checkpoint is
    ``population_dir(runs)/checkpoint.pt``."""

    population = True
    checkpoint_keys = CHECKPOINT_KEYS
    n_records = 3

    def __init__(
        self,
        runs: Sequence[RunConfig],
        task: Task,
        writers: Sequence[RunWriter],
        device: torch.device,
        conv: str = "auto",
    ) -> None:
        self.runs = [r.replace(population=True) for r in runs]  # config.yaml says how it was trained
        self.writers, self.device, self.task = list(writers), device, task
        run0 = runs[0]
        self.batch_size = run0.hparams.batch_size
        _, self.plan_kw = epoch_steps(run0, task)
        self.autocast = autocast_for(run0.precision, device)
        self.pop = Population(runs, task, device, conv)
        self.graphed = use_graph(run0, device, self.pop.model, population=True)
        folder = population_dir(runs)
        if folder.exists():
            remove_stale_temps(folder)  # the members' claims are held: nobody else writes here
        self.members = [config_hash(r) for r in runs]
        self.checkpoint = population_checkpoint(runs, writers)
        self.label = _population_label(runs)
        self.data = _Batches(task, [r.seed for r in runs], device)
        self.eval_batch_size = max(4 * self.batch_size, 256)

    def start_epoch(self, epoch: int) -> None:
        self.data.new_epoch(epoch, self.batch_size, self.plan_kw)

    def graph_plan(self) -> Any:
        return self.data.plan

    def batch(self, k: int, one: Any = None) -> dict[str, Tensor]:
        """The members' batches of step ``k`` (batch 0 of the one-batch plan ``one``: inside a graph)."""
        return self.data.batch(k) if one is None else self.data.batch(0, one)

    @property
    def measures(self) -> bool:
        return self.pop.any_log_base

    measures_grads = False

    # The parts of one optimizer step of every member (the driver calls them in this order); they write
    # [base loss, train loss, grad norm] x members to ``out``. Graph mode captures each part.
    @torch.no_grad()
    def measure(self, b: dict[str, Tensor], out: Tensor) -> None:
        """The members' losses at their base weights before the update (read by ``backward``)."""
        pop = self.pop
        with self.autocast():
            out[0] = pop.losses(pop.base_params(), b, self.data.batched).double()

    def backward(self, b: dict[str, Tensor], out: Tensor) -> None:
        """The members' training losses and gradient norms; the base loss of members that do not log it apart
        is their training loss."""
        pop = self.pop
        with self.autocast():
            losses = pop.losses(pop.params, b, self.data.batched)
        losses.sum().backward()
        if pop.any_log_base:
            out[0] = torch.where(pop.log_base, out[0], losses.detach().double())
        else:
            out[0] = losses.detach()
        out[1] = losses.detach()
        norms = torch.stack(
            [p.grad.flatten(1).norm(dim=1) for p in pop.params.values() if p.grad is not None]
        )
        out[2] = torch.linalg.vector_norm(norms, dim=0)

    def measure_grads(self, out: Tensor) -> None:
        """Nothing: populations log no distance."""

    def update(self) -> None:
        self.pop.update()

    def set_lr(self, lr: float) -> None:
        self.pop.set_lr(lr)

    def after_step(self) -> None:
        self.pop.advance_host()

    @torch.no_grad()
    def evaluate(self, epoch: int) -> list[dict[str, list[Any]]]:
        """Validation and test loss/accuracy of every member at its base weights: epochs.csv rows."""
        pop, task = self.pop, self.task
        params = pop.base_params(evaluation=True)
        pop.model.eval()
        rows: list[dict[str, list[Any]]] = [
            {"epoch": [], "split": [], "loss": [], "accuracy": []} for _ in self.runs
        ]
        for split in ("val", "test"):
            if not task.has_split(split):
                continue
            total, loss_sum, correct_sum = 0, None, None
            with self.autocast():
                for b in task.eval_batches(split, self.eval_batch_size):
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
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"members": self.members, "population": self.pop.state_dict()}

    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None:
        if ckpt["members"] != self.members:
            raise ValueError("it belongs to another set of runs")
        self.pop.load_state_dict(ckpt["population"])


def train_population(
    runs: Sequence[RunConfig],
    task: Task,
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
    order = member_order(runs)
    members, member_writers = [runs[j] for j in order], [writers[j] for j in order]
    shared, diverged = drive(
        lambda: PopulationBackend(members, task, member_writers, device, conv), task, should_stop
    )
    by_run: list[str | None] = [None] * len(runs)
    for pos, j in enumerate(order):
        by_run[j] = diverged[pos]
    return shared, by_run


def member_order(runs: Sequence[RunConfig]) -> list[int]:
    """The order a population keeps ``runs`` in: input order, NAdam members last (their update is applied
    to the tail of the stacked tensors)."""
    return sorted(
        range(len(runs)), key=lambda j: methods.get(runs[j].optimizer, runs[j].family).population == "nadam"
    )


def _population_label(runs: Sequence[RunConfig]) -> str:
    """The progress label of a population: task, size, its methods (gammas included) and seeds."""
    names = list(dict.fromkeys(methods.label(r.optimizer, r.gamma) for r in runs))
    seeds = sorted({r.seed for r in runs})
    seed_text = ",".join(map(str, seeds)) if len(seeds) <= 4 else f"{seeds[0]}..{seeds[-1]} ({len(seeds)})"
    shown = ",".join(names) if len(names) <= 4 else f"{','.join(names[:3])},+{len(names) - 3}"
    return f"{runs[0].task}/population of {len(runs)} ({shown}; seed {seed_text})"
