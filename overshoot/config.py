"""From the Hydra config to a resolved run config: the preset applied, every choice checked.

The resolved config is a plain dict; it is what ``config.yaml`` of a run holds and what the run's hash is
computed from (see ``overshoot.store.config_hash``). Every check raises :class:`ConfigError` with one line
that names the fix.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from overshoot.extras import MissingExtra, require
from overshoot.metrics import FAMILY_BASELINES, FAMILY_OVERSHOOT

CONFIG_PACKAGE = "overshoot_configs"  # the top-level configs/ folder, installed as a package (pyproject.toml)
CONFIG_SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
CONFIG_DIR = Path(str(importlib.resources.files(CONFIG_PACKAGE)))
HPARAMS = ("epochs", "batch_size", "lr", "momentum", "beta2", "eps", "weight_decay", "schedule", "delay")
PRECISIONS = ("fp32", "bf16", "fp64")
SCHEDULES = ("constant", "cosine")
DEFAULT_GAMMA = 5.0
# Task options added after runs were stored: at these values they are left out of the resolved config, so
# those runs keep their config hash (and directory).
LATE_TASK_DEFAULTS: dict[str, dict[str, Any]] = {"housing": {"val_fraction": 0.0}}


class ConfigError(ValueError):
    """A bad setting; the message is one line that says how to fix it."""


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``overshoot-bench <overrides>`` would run, composed with Hydra (no run is started)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides))


def _number(key: str, value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as an int or float; ConfigError naming the setting when it is not one."""
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is int and isinstance(value, float) and value != out:
        raise ConfigError(f"{key}={value!r} is not an integer")
    return out


# The most training examples each task's data can give (the whole training file; the split leaves fewer):
# a batch_size above it is refused before any file is read.
TRAIN_SIZES = {
    "digits": 1797,
    "housing": 20640,
    "fmnist": 60000,
    "vae_fmnist": 60000,
    "vae_mnist": 60000,
    "cifar": 50000,
    "cifar100": 50000,
}


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


def resolve(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config of a composed Hydra config; raises ConfigError on a bad setting."""
    c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    c.pop("hydra", None)
    task_cfg = dict(c["task"])
    task = str(task_cfg["name"])
    opt = dict(c["optimizer"])
    name, family, overshoot = str(opt["name"]), str(opt["family"]), bool(opt["overshoot"])

    gamma = c.get("gamma")
    if overshoot:
        gamma = DEFAULT_GAMMA if gamma is None else _number("gamma", gamma, float)
        if gamma < 0:
            raise ConfigError(f"gamma={gamma:g} is invalid: gamma must be >= 0 (the paper uses 3, 5 or 7)")
        if gamma == 0:  # SGDO at gamma 0 is CM and AdamO AdamW: the run is the family baseline's
            name = FAMILY_BASELINES[family][0]
    elif gamma is not None and _number("gamma", gamma, float) != 0:
        os_name = FAMILY_OVERSHOOT[family]
        raise ConfigError(
            f"gamma={gamma} has no effect with optimizer={name}: use optimizer={os_name} gamma={gamma}, "
            f"or drop gamma (a sweep may list both: -m optimizer={name},{os_name} gamma=3,5,7 trains "
            f"{name} once)"
        )
    else:
        gamma = 0.0

    preset = c["preset"]
    if task not in preset["tasks"]:
        raise ConfigError(f"preset={preset['name']} has no hyperparameters for task={task}: add them to it")
    hp = {**preset["common"], **preset["tasks"][task].get(family, {})}
    for k in HPARAMS:
        if c.get(k) is not None:
            hp[k] = c[k]
    task_cfg.update(preset.get("task_options", {}).get(task, {}))
    for k, default in LATE_TASK_DEFAULTS.get(task, {}).items():
        if k in task_cfg and task_cfg[k] == default:
            del task_cfg[k]

    for k in ("epochs", "batch_size"):
        hp[k] = _number(k, hp[k], int)
        if hp[k] < 1:
            raise ConfigError(f"{k}={hp[k]} is invalid: it must be a positive integer")
    for k in ("lr", "momentum", "beta2", "eps", "weight_decay"):
        hp[k] = _number(k, hp[k], float)
    for k in ("momentum", "beta2"):
        if not 0 <= hp[k] < 1:
            what = "mu (SGD family) or beta1 (Adam family)" if k == "momentum" else "Adam's beta2"
            raise ConfigError(f"{k}={hp[k]:g} is invalid: {what} must be in [0, 1)")
    if not hp["eps"] > 0:
        raise ConfigError(f"eps={hp['eps']:g} is invalid: eps must be > 0 (Adam's default is 1e-8)")
    known = TRAIN_SIZES.get(task)
    if known is not None and hp["batch_size"] > known:
        raise ConfigError(
            f"batch_size={hp['batch_size']} exceeds the {known} examples in all of task={task}'s training "
            "data: lower batch_size"
        )
    hp["delay"] = _number("delay", hp["delay"], int)
    if hp["lr"] < 0:
        raise ConfigError(f"lr={hp['lr']} is invalid: lr must be >= 0")
    if hp["schedule"] not in SCHEDULES:
        raise ConfigError(f"schedule={hp['schedule']} is unknown: choose one of {', '.join(SCHEDULES)}")
    if c["precision"] not in PRECISIONS:
        raise ConfigError(f"precision={c['precision']} is unknown: choose one of {', '.join(PRECISIONS)}")
    cuda_graph = c.get("cuda_graph", "auto")
    if cuda_graph not in ("auto", True, False):
        raise ConfigError(f"cuda_graph={cuda_graph} is unknown: choose auto, true or false")
    max_steps = None if c.get("max_steps") is None else _number("max_steps", c["max_steps"], int)
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps={max_steps} is invalid: it must be a positive integer or null")

    seed = _number("seed", c["seed"], int)
    if seed < 0:
        raise ConfigError(f"seed={seed} is invalid: seed must be >= 0")
    threads = c["threads"]
    if threads != "auto":
        threads = _number("threads", threads, int)
        if threads < 1:
            raise ConfigError(f"threads={threads} is invalid: use threads=auto or a positive integer")
    _check_keys(c)

    drop_last = c.get("drop_last", True)
    if drop_last not in (True, False):
        raise ConfigError(f"drop_last={drop_last} is unknown: choose true or false")
    # Only a non-default drop_last enters the resolved config (and the hash): stored runs keep their hash.
    batching = {} if drop_last else {"drop_last": False}

    return {
        "task": task,
        "task_options": task_cfg,
        "optimizer": name,
        "family": family,
        "gamma": gamma,
        "seed": seed,
        "precision": c["precision"],
        "hparams": hp,
        "max_steps": max_steps,
        **batching,
        "log_distance": bool(c["log"]["distance"]),
        "preset": preset["name"],
        "log": _log_settings(c["log"]),
        "device": str(c["device"]),
        "out": str(c["out"]),
        "data": {"root": str(c["data"]["root"])},
        "progress": str(c["progress"]),
        "threads": threads,
        "checkpoint_every": _number("checkpoint_every", c["checkpoint_every"], float),
        "population": bool(c["population"]),
        "cuda_graph": cuda_graph,
    }


def _log_settings(log: dict[str, Any]) -> dict[str, Any]:
    """The resolved ``log`` node: what each step logs and which loggers (an extra each) also get it."""
    out = {
        "base_loss": bool(log["base_loss"]),
        "window": _number("log.window", log["window"], int),
        "tensorboard": bool(log.get("tensorboard", False)),
        "wandb": bool(log.get("wandb", False)),
        "wandb_project": str(log.get("wandb_project") or "overshoot-bench"),
    }
    for key, module in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        if out[key]:
            try:
                require("loggers", f"log.{key}=true", (module,))
            except MissingExtra as e:
                raise ConfigError(str(e)) from None
    return out


def baseline_of(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved config of the same run with the family baseline (CM or Adam) as optimizer."""
    return {**resolved, "optimizer": FAMILY_BASELINES[resolved["family"]][0], "gamma": 0.0}


def drop_sweep_gamma(cfg: DictConfig) -> str | None:
    """For a job of a sweep: a gamma given to an optimizer without overshoot (``-m optimizer=sgd,sgd_os
    gamma=3,5,7``) is dropped from ``cfg`` in place, making the job that optimizer's own run; returns a note
    saying so, None when there was nothing to drop."""
    opt = cfg.get("optimizer")
    gamma = cfg.get("gamma")
    if opt is None or bool(opt.get("overshoot")) or gamma is None:
        return None
    try:
        if float(gamma) == 0:
            return None
    except (TypeError, ValueError):
        return None  # resolve() reports the bad value
    cfg.gamma = None
    return f"{opt.get('name')} takes no gamma (gamma={gamma} dropped)"
