"""From the Hydra config to a resolved run config (``overshoot.config.run.RunConfig``): the preset applied,
the method looked up in the registry, every choice checked. Every check raises :class:`ConfigError` with one
line that names the fix.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import math
import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from overshoot.common.extras import MissingExtra, require, require_for
from overshoot.config import methods
from overshoot.config.run import HParams, LogSettings, RunConfig
from overshoot.optim import checks

CONFIG_PACKAGE = "overshoot_configs"  # the top-level configs/ folder, installed as a package (pyproject.toml)
CONFIG_SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
CONFIG_DIR = Path(str(importlib.resources.files(CONFIG_PACKAGE)))
HPARAMS = ("epochs", "batch_size", "lr", "momentum", "beta2", "eps", "weight_decay", "schedule", "delay")
PRECISIONS = ("fp32", "bf16", "fp64")
SCHEDULES = ("constant", "cosine")
# Task options added after runs were stored: at these values they are left out of the resolved config, so
# those runs keep their config hash (and directory).
LATE_TASK_DEFAULTS: dict[str, dict[str, Any]] = {"housing": {"val_fraction": 0.0}}


class ConfigError(ValueError):
    """A bad setting; the message is one line that says how to fix it."""


def sweep_id() -> str:
    """A name for one sweep's bookkeeping folder (``hydra.sweep.dir``): its start time and a random part, so
    two sweeps started in the same second never share it. Hydra resolves it once per sweep and hands the
    value to every job (also to SLURM jobs and their requeues)."""
    return f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}-{uuid.uuid4().hex[:8]}"


if not OmegaConf.has_resolver("sweep_id"):
    OmegaConf.register_new_resolver("sweep_id", sweep_id, use_cache=True)
if not OmegaConf.has_resolver("default_gamma"):  # for --help: ${default_gamma:}
    OmegaConf.register_new_resolver("default_gamma", lambda: f"{methods.DEFAULT_GAMMA:g}")


def compose(overrides: Sequence[str] = (), with_hydra: bool = False) -> DictConfig:
    """The config ``overshoot-bench <overrides>`` would run, composed with Hydra (no run is started);
    ``with_hydra`` keeps Hydra's own node (``hydra.help``, ...)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base=None):
        return hydra_compose("config", list(overrides), return_hydra_config=with_hydra)


INT_MAX = 2**63 - 1  # the largest integer a setting may take (torch's int64)
DEVICES = "auto | cpu | cuda | cuda:N"
PROGRESS = ("auto", "bar", "lines", "none")


def _shown(value: Any) -> str:
    """A setting's value for a message, cut to 40 characters (an integer may have thousands of digits)."""
    text = repr(value) if isinstance(value, str) else str(value) if not isinstance(value, int) else None
    if text is None:  # str() of an int over 4,300 digits raises: count them instead
        digits = len(str(abs(value))) if abs(value) < 10**4000 else None
        text = str(value) if digits is not None and digits <= 40 else "an integer of thousands of digits"
    return text if len(text) <= 40 else text[:37] + "..."


def _number(key: str, value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as an int or a finite float; ConfigError naming the setting when it is not one."""
    what = "an integer" if kind is int else "a finite number"
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{key}={_shown(value)} is not {what}")
    try:
        out = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key}={_shown(value)} is not {what}") from None
    if kind is float and not math.isfinite(out):
        raise ConfigError(f"{key}={_shown(value)} is not {what}")
    if kind is int and isinstance(value, float) and value != out:
        raise ConfigError(f"{key}={_shown(value)} is not an integer")
    return out


def _int_in(key: str, value: Any, lo: int, hi: int = INT_MAX, why: str = "") -> int:
    """``value`` as an integer in [lo, hi]; ConfigError naming the setting and the range otherwise."""
    out = _number(key, value, int)
    if not lo <= out <= hi:
        top = "2**63-1" if hi == INT_MAX else str(hi)
        raise ConfigError(f"{key}={_shown(value)} is invalid: it must be an integer from {lo} to {top}{why}")
    return out


def _checked(key: str, value: Any, check: Callable[..., None], *args: Any, why_: str = "", **kw: Any) -> None:
    """Run one of the optimizers' argument checks (``overshoot.optim.checks``); ConfigError naming the
    setting ``key=value``, its allowed range and ``why_`` when it refuses its arguments."""
    try:
        check(*args, **kw)
    except checks.ArgumentError as e:
        shown = f"{value:g}" if isinstance(value, float) else _shown(value)
        raise ConfigError(f"{key}={shown} is invalid: {key} must be {e.bound}{why_}") from None


def _flag(key: str, value: Any) -> bool:
    """A true/false setting; ConfigError for anything else (``bool('no')`` would be true)."""
    if value not in (True, False):
        raise ConfigError(f"{key}={_shown(value)} is unknown: choose true or false")
    return bool(value)


def _builtin_tasks() -> set[str]:
    """The names of the built-in tasks (the task group's configs but ``custom``)."""
    return {p.stem for p in (CONFIG_DIR / "task").glob("*.yaml")} - {"custom"}


ALIASES = {
    "learning_rate": "lr",
    "beta1": "momentum",
    "mu": "momentum",
    "steps": "max_steps",
    "bs": "batch_size",
}


def _known_keys() -> dict[str, set[str] | None]:
    """The settings config.yaml defines (None: any sub-key), plus the config groups that become nodes."""
    import yaml

    base = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text()) or {}
    known: dict[str, set[str] | None] = {}
    for k, v in base.items():
        if k not in ("defaults", "hydra"):
            known[k] = set(v) if isinstance(v, dict) else None
    for group in ("task", "optimizer", "preset"):
        known[group] = None
    return known


def _check_keys(c: dict[str, Any]) -> None:
    """ConfigError for a setting nothing reads (a typo given with +key=value, which Hydra accepts)."""
    import difflib

    known = _known_keys()
    for k, v in c.items():
        if k not in known:
            near = [ALIASES[k]] if k in ALIASES else difflib.get_close_matches(k, list(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(
                f"unknown setting {k}{hint}: nothing reads it; valid settings are {', '.join(sorted(known))}"
            )
        subkeys = known[k]
        if subkeys is not None and isinstance(v, dict):
            extra = sorted(set(v) - subkeys)
            if extra:
                valid = ", ".join(f"{k}.{s}" for s in sorted(subkeys))
                raise ConfigError(f"unknown setting {k}.{extra[0]}: valid are {valid}")


def _method(opt: dict[str, Any]) -> tuple[methods.Method, str | None, dict[str, Any]]:
    """The method of the ``optimizer`` node, and for an optimizer of the user's its import path and own
    constructor arguments."""
    target = opt.get("_target_") or opt.get("target")
    family = opt.get("family")
    if target is None:
        name = str(opt.get("name"))
        if opt.get("name") in (None, "custom"):
            raise ConfigError(
                "optimizer=custom needs optimizer.target=<class>, e.g. optimizer.target=torch.optim.RAdam "
                "optimizer.family=adam"
            )
        try:
            return methods.available(name), None, {}
        except ValueError as e:  # an unknown name, or a method whose pip extra is not installed
            raise ConfigError(str(e)) from None
    if family not in methods.FAMILIES:
        raise ConfigError(
            f"optimizer.family={family} is unknown: give optimizer.family={' or '.join(methods.FAMILIES)} "
            "(the family whose preset hyperparameters it takes and whose baseline it is compared with)"
        )
    given = opt.get("name")
    name = str(target).rpartition(".")[2].lower() if given in (None, "custom") else str(given)
    if name in methods.METHODS:
        raise ConfigError(f"optimizer.name={name} is a built-in method: give your optimizer another name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.]*", name):
        raise ConfigError(f"optimizer.name={name!r}: use letters, digits, '_' and '.' (it names a folder)")
    import torch  # a user's optimizer: importing it imports torch anyway

    try:
        cls = methods.import_object(str(target))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(
            f"optimizer.target={target} is not a torch.optim.Optimizer subclass: give the import path of an "
            "optimizer class"
        )
    kwargs = dict(opt.get("kwargs") or {})
    return methods.get(name, str(family)), str(target), kwargs


BETAS = (
    ("momentum", "mu (SGD family) or beta1 (Adam family)"),
    ("beta2", "Adam's beta2"),
)  # as torch's betas


def _hparams(c: dict[str, Any], preset: dict[str, Any], task: str, family: str, custom_task: bool) -> HParams:
    """The preset's hyperparameters of (task, family), the command line's on top, each checked."""
    if custom_task:  # a task of the user's: the preset's common values and the task node's own
        hp = {**preset["common"], **dict(c["task"].get("hparams") or {})}
    elif task not in preset["tasks"]:
        raise ConfigError(f"preset={preset['name']} has no hyperparameters for task={task}: add them to it")
    else:
        hp = {**preset["common"], **methods.preset_values(preset["tasks"][task], family)}
    for k in HPARAMS:
        if c.get(k) is not None:
            hp[k] = c[k]
    for k in ("epochs", "batch_size"):
        hp[k] = _int_in(k, hp[k], 1)
    for k in ("lr", "momentum", "beta2", "eps", "weight_decay"):
        hp[k] = _number(k, hp[k], float)
    # the optimizers' own checks; momentum is mu (SGD family) or beta1 (Adam family): both in [0, 1)
    _checked("lr", hp["lr"], checks.check_nonnegative, lr=hp["lr"])
    _checked("weight_decay", hp["weight_decay"], checks.check_nonnegative, weight_decay=hp["weight_decay"])
    try:
        checks.check_betas((hp["momentum"], hp["beta2"]))
    except checks.ArgumentError as e:
        k, what = BETAS[e.index or 0]
        raise ConfigError(f"{k}={hp[k]:g} is invalid: {what} must be {e.bound}") from None
    _checked("eps", hp["eps"], checks.check_eps, hp["eps"], why_=" (Adam's default is 1e-8)")
    hp["delay"] = _int_in("delay", hp["delay"], -INT_MAX - 1)  # an int64; its range is the optimizers'
    why = " (AdamO's overshoot ramp delay, in steps)"
    _checked("delay", hp["delay"], checks.check_delay, hp["delay"], why_=why)
    if hp["schedule"] not in SCHEDULES:
        raise ConfigError(f"schedule={hp['schedule']} is unknown: choose one of {', '.join(SCHEDULES)}")
    unknown = sorted(set(hp) - set(HPARAMS))
    if unknown:
        raise ConfigError(f"hyperparameter {unknown[0]} is unknown: valid are {', '.join(HPARAMS)}")
    return HParams(**hp)


def resolve(cfg: DictConfig) -> RunConfig:
    """The resolved run config of a composed Hydra config; raises ConfigError on a bad setting."""
    c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    c.pop("hydra", None)
    task_cfg = dict(c["task"])
    custom_task = task_cfg.get("_target_") is not None
    task = str(task_cfg.get("name"))
    if task == "custom" and not custom_task:
        raise ConfigError("task=custom needs task._target_=<factory>, e.g. task._target_=mymodule.MyTask")
    if custom_task:
        if task_cfg.get("name") in (None, "custom") or task in _builtin_tasks():
            raise ConfigError(
                "a task with _target_ needs task.name=<a name of its own> (it names its folder)"
            )
        task_cfg.pop("hparams", None)
    else:
        try:
            require_for(f"task={task}")  # before training imports torch
        except MissingExtra as e:
            raise ConfigError(str(e)) from None
    method, target, kwargs = _method(dict(c["optimizer"]))
    name, family = method.name, method.family

    gamma = c.get("gamma")
    wrap = c["optimizer"].get("overshoot") if target is not None else None  # a user's optimizer + Overshoot
    if wrap not in (None, True, False):
        wrap = _number("optimizer.overshoot", wrap, float)
        if gamma is not None and _number("gamma", gamma, float) != wrap:
            raise ConfigError(f"gamma={gamma} and optimizer.overshoot={wrap:g} disagree: give only one")
        gamma = wrap
    if method.overshoot or wrap:
        gamma = methods.DEFAULT_GAMMA if gamma is None else _number("gamma", gamma, float)
        _checked("gamma", gamma, checks.check_nonnegative, gamma=gamma, why_=" (the paper uses 3, 5 or 7)")
        if gamma == 0 and not method.custom:  # SGDO at gamma 0 is CM, AdamO AdamW: the family baseline's run
            name = method.baseline
    elif gamma is not None and _number("gamma", gamma, float) != 0:
        os_name = methods.FAMILIES[family].overshoot
        raise ConfigError(
            f"gamma={gamma} has no effect with optimizer={name}: use optimizer={os_name} gamma={gamma}, "
            f"or drop gamma (a sweep may list both: -m optimizer={name},{os_name} gamma=3,5,7 trains "
            f"{name} once)"
        )
    else:
        gamma = 0.0

    preset = c["preset"]
    hp = _hparams(c, preset, task, family, custom_task)
    task_cfg.update(preset.get("task_options", {}).get(task, {}))
    for k, default in LATE_TASK_DEFAULTS.get(task, {}).items():
        if k in task_cfg and task_cfg[k] == default:
            del task_cfg[k]
    if c["precision"] not in PRECISIONS:
        raise ConfigError(f"precision={c['precision']} is unknown: choose one of {', '.join(PRECISIONS)}")
    cuda_graph = c.get("cuda_graph", "auto")
    if cuda_graph not in ("auto", True, False):
        raise ConfigError(f"cuda_graph={cuda_graph} is unknown: choose auto, true or false")
    max_steps = None if c.get("max_steps") is None else _int_in("max_steps", c["max_steps"], 1)
    seed = _int_in("seed", c["seed"], 0)
    threads = c["threads"]
    if threads != "auto":
        threads = _int_in("threads", threads, 1, 4096, " (or threads=auto)")
    _check_keys(c)
    drop_last = _flag("drop_last", c.get("drop_last", True))
    device = c["device"]
    if not (isinstance(device, str) and re.fullmatch(r"auto|cpu|cuda(:\d{1,4})?", device)):
        raise ConfigError(f"device={_shown(device)} is unknown: choose one of {DEVICES}")
    out = c["out"]
    if not isinstance(out, str) or not out.strip():
        raise ConfigError(
            f"out={_shown(out) if out else ''} is not a directory: give out=<the run store's folder>"
        )
    if c["progress"] not in PROGRESS:
        raise ConfigError(f"progress={_shown(c['progress'])} is unknown: choose one of {', '.join(PROGRESS)}")
    checkpoint_every = _number("checkpoint_every", c["checkpoint_every"], float)
    if checkpoint_every < 0:
        raise ConfigError(f"checkpoint_every={checkpoint_every:g} is invalid: give seconds >= 0")
    population = _flag("population", c["population"])

    return RunConfig(
        task=task,
        task_options=task_cfg,
        optimizer=name,
        family=family,
        gamma=float(gamma),
        seed=seed,
        precision=c["precision"],
        hparams=hp,
        max_steps=max_steps,
        drop_last=drop_last,
        log_distance=_flag("log.distance", c["log"]["distance"]),
        preset=preset["name"],
        log=_log_settings(c["log"]),
        device=device,
        out=out,
        data_root=str(c["data"]["root"]),
        progress=str(c["progress"]),
        threads=threads,
        checkpoint_every=checkpoint_every,
        population=population,
        cuda_graph=cuda_graph,
        optimizer_target=target,
        optimizer_kwargs=kwargs,
    )


def _log_settings(log: dict[str, Any]) -> LogSettings:
    """The resolved ``log`` node: what each step logs and which loggers (an extra each) also get it."""
    out = LogSettings(
        base_loss=_flag("log.base_loss", log["base_loss"]),
        window=_int_in("log.window", log["window"], 1, why=" (steps of the steps-to-95% smoothing window)"),
        tensorboard=_flag("log.tensorboard", log.get("tensorboard", False)),
        wandb=_flag("log.wandb", log.get("wandb", False)),
        wandb_project=str(log.get("wandb_project") or "overshoot-bench"),
    )
    for key in ("tensorboard", "wandb"):
        if getattr(out, key):
            try:
                require("loggers", f"log.{key}=true", (key,))
            except MissingExtra as e:
                raise ConfigError(str(e)) from None
    return out


def baseline_of(run: RunConfig) -> RunConfig:
    """The same run with its family baseline (CM or AdamW) as optimizer."""
    return run.replace(
        optimizer=methods.FAMILIES[run.family].baseline, gamma=0.0, optimizer_target=None, optimizer_kwargs={}
    )


def takes_gamma(opt: Any) -> bool:
    """Whether the ``optimizer`` node takes gamma: a built-in overshoot method (the registry,
    :mod:`overshoot.config.methods`, says which), or a user's optimizer wrapped in Overshoot
    (``optimizer.overshoot``)."""
    if opt.get("target") is not None or opt.get("_target_") is not None:
        return bool(opt.get("overshoot"))
    return methods.is_overshoot(str(opt.get("name")))


def drop_sweep_gamma(cfg: DictConfig) -> str | None:
    """For a job of a sweep: a gamma given to an optimizer without overshoot (``-m optimizer=sgd,sgd_os
    gamma=3,5,7``) is dropped from ``cfg`` in place, making the job that optimizer's own run; returns a note
    saying so, None when there was nothing to drop."""
    opt = cfg.get("optimizer")
    gamma = cfg.get("gamma")
    if opt is None or takes_gamma(opt) or gamma is None:
        return None
    try:
        if float(gamma) == 0:
            return None
    except (TypeError, ValueError):
        return None  # resolve() reports the bad value
    cfg.gamma = None
    return f"{opt.get('name')} takes no gamma (gamma={gamma} dropped)"
