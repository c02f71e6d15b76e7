"""The methods a run trains with: one registry of names, families, display names, baselines and builders.

A method is an optimizer of the paper's table (``METHODS``) or one of the user's (``optimizer=custom``: any
class with the torch.optim API, named by its import path). Every other module asks this one what a name
means: its family, whether it takes gamma, its baseline, how a population trains it, how to build it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from overshoot.optim import SGDO, AdamO
from overshoot.runconfig import HParams

DEFAULT_GAMMA = 5.0  # the public code's default overshoot factor
NADAM_CONSTANT_MOMENTUM = 1e12  # momentum_decay so large that NAdam's mu_t == beta1 from the first step

Builder = Callable[[Iterable[torch.nn.Parameter], HParams, float, bool], torch.optim.Optimizer]


@dataclass(frozen=True)
class Family:
    """An optimizer family of the paper: its hyperparameters come from one preset entry, and its
    overshoot method is compared with its baselines."""

    name: str  # sgd | adam
    label: str  # SGD | Adam
    baseline: str  # the method savings are measured against (CM, AdamW)
    second: str  # the paper's other baseline (NAG, NAdam)
    overshoot: str  # the family's overshoot method (SGDO, AdamO)


FAMILIES: dict[str, Family] = {
    "sgd": Family("sgd", "SGD", baseline="sgd", second="nesterov", overshoot="sgd_os"),
    "adam": Family("adam", "Adam", baseline="adam", second="nadam", overshoot="adam_os"),
}


@dataclass(frozen=True)
class Method:
    """One optimizer as the benchmark sees it.

    ``population`` names the vectorised update that trains it as a population member ("sgdo": SGDO with a
    per-member gamma; "nag": SGDO at gamma = mu undoing with the current lr, which is torch's NAG under any
    schedule; "adamo": AdamO with a per-member gamma; "nadam": NAdam with constant momentum; None: it trains
    alone), ``population_gamma(gamma, momentum)`` the gamma that update takes. ``graph``: its step can be
    replayed as a CUDA graph (no host-side per-step numbers when
    built with ``capturable=True``)."""

    name: str
    family: str
    display: str
    overshoot: bool = False
    population: str | None = None
    population_gamma: Callable[[float, float], float] = lambda gamma, mu: 0.0
    graph: bool = False
    build: Builder | None = None
    custom: bool = False

    @property
    def baseline(self) -> str:
        """The family baseline this method's savings are measured against."""
        return FAMILIES[self.family].baseline

    @property
    def is_baseline(self) -> bool:
        """One of the family's two baselines (CM/NAG, AdamW/NAdam): compared with nothing."""
        f = FAMILIES[self.family]
        return self.name in (f.baseline, f.second)

    def label(self, gamma: float) -> str:
        """The method's name in the store: ``sgd_os-g5`` for an overshoot method, else its name."""
        return f"{self.name}-g{gamma:g}" if self.overshoot else self.name

    def display_label(self, gamma: float) -> str:
        """A human label: 'CM', 'NAG', 'SGDO γ=3', 'AdamO γ=5', or a custom method's name."""
        return f"{self.display} γ={gamma:g}" if self.overshoot else self.display


def _betas(hp: HParams) -> tuple[float, float]:
    return (hp.momentum, hp.beta2)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "sgd", "sgd", "CM", population="sgdo", graph=True,
            build=lambda ps, hp, g, cap: torch.optim.SGD(
                ps, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            ),
        ),
        Method(
            "nesterov", "sgd", "NAG", population="nag", population_gamma=lambda g, mu: mu, graph=True,
            build=lambda ps, hp, g, cap: torch.optim.SGD(
                ps, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=True
            ),
        ),
        Method(
            "sgd_os", "sgd", "SGDO", overshoot=True, population="sgdo", population_gamma=lambda g, mu: g,
            graph=True,
            build=lambda ps, hp, g, cap: SGDO(
                ps, lr=hp.lr, momentum=hp.momentum, gamma=g, weight_decay=hp.weight_decay
            ),
        ),
        Method(
            "adam", "adam", "Adam", population="adamo", graph=True,
            build=lambda ps, hp, g, cap: torch.optim.AdamW(
                ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay, capturable=cap
            ),
        ),
        Method(
            "nadam", "adam", "NAdam", population="nadam", graph=True,
            build=lambda ps, hp, g, cap: torch.optim.NAdam(
                ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay,
                momentum_decay=NADAM_CONSTANT_MOMENTUM, decoupled_weight_decay=True, capturable=cap,
            ),
        ),
        Method(
            "adam_os", "adam", "AdamO", overshoot=True, population="adamo", population_gamma=lambda g, mu: g,
            graph=True,
            build=lambda ps, hp, g, cap: AdamO(
                ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay, gamma=g,
                delay=hp.delay, capturable=cap,
            ),
        ),
    )
}  # fmt: skip

ORDER = tuple(METHODS)  # the order of tables and legends: CM, NAG, SGDO, Adam, NAdam, AdamO


def get(name: str, family: str | None = None) -> Method:
    """The method ``name``: a built-in one, or (with its ``family``) one of the user's, which takes its
    family's hyperparameters, trains alone and is compared with the family baseline."""
    m = METHODS.get(name)
    if m is not None:
        return m
    if family in FAMILIES:
        return Method(name, str(family), name, custom=True)
    raise ValueError(
        f"optimizer={name} is unknown: choose one of {', '.join(METHODS)}, or optimizer=custom with "
        "optimizer.target=<class> optimizer.family=sgd|adam"
    )


def label(optimizer: str, gamma: float) -> str:
    """The method label of a run in the store: ``sgd_os-g5``, ``adam``, a custom method's name."""
    m = METHODS.get(optimizer)
    return m.label(gamma) if m is not None else optimizer


def display_label(optimizer: str, gamma: float) -> str:
    """'CM', 'NAG', 'SGDO γ=3', 'AdamO γ=5', ...; a custom optimizer keeps its name."""
    m = METHODS.get(optimizer)
    return m.display_label(gamma) if m is not None else optimizer


def sort_key(optimizer: str, gamma: float) -> tuple[int, float]:
    """Sort key of a method in tables and legends: CM, NAG, SGDO by gamma, Adam, NAdam, AdamO by gamma,
    then the user's methods."""
    return (ORDER.index(optimizer) if optimizer in ORDER else len(ORDER), gamma)


def is_overshoot(optimizer: str) -> bool:
    """Whether the named optimizer takes an overshoot factor gamma."""
    m = METHODS.get(optimizer)
    return m is not None and m.overshoot


def import_object(path: str) -> Any:
    """The object at the import path ``package.module.Name``; ValueError naming the fix when there is none."""
    module, _, attr = path.rpartition(".")
    if not module:
        raise ValueError(f"target={path} is not an import path: write it as module.Name")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ValueError(
            f"target={path}: cannot import {module} ({e}): check the path and PYTHONPATH"
        ) from None
    except AttributeError:
        raise ValueError(f"target={path}: {module} has no {attr}") from None


def family_kwargs(cls: Any, family: str, hp: HParams) -> dict[str, Any]:
    """The family's hyperparameters that the constructor of ``cls`` accepts: lr and weight_decay, plus
    momentum (SGD family) or betas and eps (Adam family)."""
    offered: dict[str, Any] = {"lr": hp.lr, "weight_decay": hp.weight_decay}
    if family == "sgd":
        offered["momentum"] = hp.momentum
    else:
        offered.update(betas=(hp.momentum, hp.beta2), eps=hp.eps)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): offer everything
        return offered
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}


def build_custom(
    target: str, family: str, hp: HParams, kwargs: Mapping[str, Any], params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The user's optimizer ``target`` over ``params``: the family's hyperparameters it accepts, overridden
    by its own ``kwargs``."""
    cls = import_object(target)
    opt = cls(params, **{**family_kwargs(cls, family, hp), **dict(kwargs)})
    if not isinstance(opt, torch.optim.Optimizer):
        raise ValueError(f"target={target} built a {type(opt).__name__}, not a torch.optim.Optimizer")
    return opt


def build_optimizer(
    method: Method,
    params: Iterable[torch.nn.Parameter],
    hp: HParams,
    gamma: float,
    capturable: bool = False,
    target: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer of ``method`` with the run's hyperparameters; ``capturable`` keeps the step counts of
    optimizers that have one on the device, so that a CUDA graph can replay their step."""
    if method.custom:
        if target is None:
            raise ValueError(f"optimizer={method.name} needs optimizer.target=<class>")
        return build_custom(target, method.family, hp, kwargs or {}, params)
    assert method.build is not None
    return method.build(params, hp, gamma, capturable)
