"""The methods a run trains with: one registry of names, families, display names, baselines and builders.

A method is an optimizer of the paper's table (``METHODS``) or one of the user's (``optimizer=custom``: any
class with the torch.optim API, named by its import path). Every other module asks this one what a name
means: its family, whether it takes gamma, its baseline, how a population trains it, how to build it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from overshoot.common.extras import require
from overshoot.config.run import HParams
from overshoot.optim.checks import DEFAULT_GAMMA as DEFAULT_GAMMA  # the optimizers' own (torch-free)

if TYPE_CHECKING:  # torch and the optimizers are imported by the builders: help and errors need neither
    import torch

NADAM_CONSTANT_MOMENTUM = 1e12  # momentum_decay so large that NAdam's mu_t == beta1 from the first step

Builder = Callable[[Iterable["torch.nn.Parameter"], HParams, float, bool], "torch.optim.Optimizer"]


def _torch() -> Any:
    """The torch module, imported on first use."""
    import torch

    return torch


def _own() -> Any:
    """``overshoot.optim`` (SGDO, AdamO, Overshoot, ScheduleFreeEval), imported on first use."""
    import overshoot.optim

    return overshoot.optim


@dataclass(frozen=True)
class Family:
    """An optimizer family: its hyperparameters come from one preset entry, and its overshoot method is
    compared with its baselines."""

    name: str  # sgd | adam | lion | radam
    label: str  # SGD | Adam | Lion | RAdam
    baseline: str  # the method savings are measured against (CM, AdamW, Lion, RAdam)
    second: str | None  # the paper's other baseline (NAG, NAdam); None where the family has none
    overshoot: str  # the family's overshoot method (SGDO, AdamO, Lion+O, RAdam+O)
    hparams: str = ""  # the preset entry it reads ("": its own name)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # its own values over that entry's


FAMILIES: dict[str, Family] = {
    "sgd": Family("sgd", "SGD", baseline="sgd", second="nesterov", overshoot="sgd_os"),
    "adam": Family("adam", "Adam", baseline="adam", second="nadam", overshoot="adam_os"),
    # Lion and RAdam take the Adam family's preset values (lr, batch, epochs, schedule, b1, eps, weight decay
    # and AdamO's delay); Lion keeps its authors' b2 = 0.99
    "lion": Family(
        "lion", "Lion", baseline="lion", second=None, overshoot="lion_os", hparams="adam",
        defaults={"beta2": 0.99},
    ),
    "radam": Family("radam", "RAdam", baseline="radam", second=None, overshoot="radam_os", hparams="adam"),
}  # fmt: skip


def preset_entry(family: str) -> str:
    """The preset's family entry whose hyperparameters ``family`` takes."""
    f = FAMILIES[family]
    return f.hparams or f.name


@dataclass(frozen=True)
class Method:
    """One optimizer as the benchmark sees it.

    ``population`` names the vectorised update that trains it as a population member ("sgdo": SGDO with a
    per-member gamma; "nag": SGDO at gamma = mu undoing with the current lr, which is torch's NAG under any
    schedule; "adamo": AdamO with a per-member gamma; "nadam": NAdam with constant momentum; None: it trains
    alone), ``population_gamma(gamma, momentum)`` the gamma that update takes. ``graph``: its step can be
    replayed as a CUDA graph (no host-side per-step numbers when
    built with ``capturable=True``). ``evaluated_apart``: it evaluates at weights other than those it takes
    gradients at even without gamma (Schedule-Free's x and y). ``extra``: the pip extra its package comes
    from (None: the core install)."""

    name: str
    family: str
    display: str
    overshoot: bool = False
    population: str | None = None
    population_gamma: Callable[[float, float], float] = lambda gamma, mu: 0.0
    graph: bool = False
    build: Builder | None = None
    custom: bool = False
    evaluated_apart: bool = False
    extra: str | None = None

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
        """The method's name in the store: ``sgd_os-g5`` for an overshoot method (or a user's optimizer
        wrapped in Overshoot), else its name."""
        return f"{self.name}-g{gamma:g}" if self.overshoot or (self.custom and gamma > 0) else self.name

    def display_label(self, gamma: float) -> str:
        """A human label: 'CM', 'NAG', 'SGDO γ=3', 'AdamO γ=5', or a custom method's name (with its gamma
        when wrapped in Overshoot)."""
        return (
            f"{self.display} γ={gamma:g}" if self.overshoot or (self.custom and gamma > 0) else self.display
        )

    def two_points(self, gamma: float) -> bool:
        """Whether a run evaluates at other weights than those it takes gradients at (it then logs both
        losses): an overshoot method (or a user's optimizer in Overshoot) at gamma > 0, Schedule-Free."""
        return self.evaluated_apart or (gamma > 0 and (self.overshoot or self.custom))

    def require(self) -> None:
        """MissingExtra (one line naming the pip extra) when the package the method needs is absent."""
        if self.extra is not None:
            require(self.extra, f"optimizer={self.name}")


def _betas(hp: HParams) -> tuple[float, float]:
    return (hp.momentum, hp.beta2)


def _lion(ps: Iterable[torch.nn.Parameter], hp: HParams) -> torch.optim.Optimizer:
    """Lion (lion-pytorch; its weight decay is decoupled: p *= 1 - lr*wd)."""
    from lion_pytorch import Lion

    return Lion(ps, lr=hp.lr, betas=_betas(hp), weight_decay=hp.weight_decay)


def _radam(ps: Iterable[torch.nn.Parameter], hp: HParams) -> torch.optim.Optimizer:
    """RAdam with decoupled weight decay (as AdamW's)."""
    return _torch().optim.RAdam(
        ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay, decoupled_weight_decay=True
    )


def _sf_adamw(ps: Iterable[torch.nn.Parameter], hp: HParams) -> torch.optim.Optimizer:
    """Schedule-Free AdamW (schedulefree), evaluated at its x sequence through ``base_weights()``."""
    from schedulefree import AdamWScheduleFree

    return _own().ScheduleFreeEval(
        AdamWScheduleFree(ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay)
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "sgd", "sgd", "CM", population="sgdo", graph=True,
            build=lambda ps, hp, g, cap: _torch().optim.SGD(
                ps, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            ),
        ),
        Method(
            "nesterov", "sgd", "NAG", population="nag", population_gamma=lambda g, mu: mu, graph=True,
            build=lambda ps, hp, g, cap: _torch().optim.SGD(
                ps, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=True
            ),
        ),
        Method(
            "sgd_os", "sgd", "SGDO", overshoot=True, population="sgdo", population_gamma=lambda g, mu: g,
            graph=True,
            build=lambda ps, hp, g, cap: _own().SGDO(
                ps, lr=hp.lr, momentum=hp.momentum, gamma=g, weight_decay=hp.weight_decay
            ),
        ),
        Method(
            "adam", "adam", "Adam", population="adamo", graph=True,
            build=lambda ps, hp, g, cap: _torch().optim.AdamW(
                ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay, capturable=cap
            ),
        ),
        Method(
            "nadam", "adam", "NAdam", population="nadam", graph=True,
            build=lambda ps, hp, g, cap: _torch().optim.NAdam(
                ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay,
                momentum_decay=NADAM_CONSTANT_MOMENTUM, decoupled_weight_decay=True, capturable=cap,
            ),
        ),
        Method(
            "adam_os", "adam", "AdamO", overshoot=True, population="adamo", population_gamma=lambda g, mu: g,
            graph=True,
            build=lambda ps, hp, g, cap: _own().AdamO(
                ps, lr=hp.lr, betas=_betas(hp), eps=hp.eps, weight_decay=hp.weight_decay, gamma=g,
                delay=hp.delay, capturable=cap,
            ),
        ),
        Method(
            "sf_adamw", "adam", "SF-AdamW", evaluated_apart=True, extra="optimizers",
            build=lambda ps, hp, g, cap: _sf_adamw(ps, hp),
        ),
        Method(
            "lion", "lion", "Lion", extra="optimizers", build=lambda ps, hp, g, cap: _lion(ps, hp),
        ),
        Method(
            "lion_os", "lion", "Lion+O", overshoot=True, extra="optimizers",
            build=lambda ps, hp, g, cap: _own().Overshoot(_lion(ps, hp), gamma=g, delay=hp.delay),
        ),
        Method("radam", "radam", "RAdam", build=lambda ps, hp, g, cap: _radam(ps, hp)),
        Method(
            "radam_os", "radam", "RAdam+O", overshoot=True,
            build=lambda ps, hp, g, cap: _own().Overshoot(_radam(ps, hp), gamma=g, delay=hp.delay),
        ),
    )
}  # fmt: skip

ORDER = tuple(
    METHODS
)  # the order of tables and legends: CM, NAG, SGDO, Adam, NAdam, AdamO, SF-AdamW, Lion, ...


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
        f"optimizer.target=<class> optimizer.family={'|'.join(FAMILIES)}"
    )


def available(name: str) -> Method:
    """The built-in method ``name``; ValueError when unknown, MissingExtra (a ValueError naming the pip
    extra) when the package it needs is not installed."""
    m = get(name)
    m.require()
    return m


def preset_values(entries: Mapping[str, Mapping[str, Any]], family: str) -> dict[str, Any]:
    """A preset task's hyperparameters for ``family`` (``entries``: family entry -> values): the entry it
    reads, the family's own defaults over it, then an entry under its own name, if the preset has one."""
    f = FAMILIES[family]
    return {
        **entries.get(preset_entry(family), {}),
        **f.defaults,
        **(entries.get(f.name, {}) if f.hparams else {}),
    }


def label(optimizer: str, gamma: float) -> str:
    """The method label of a run in the store: ``sgd_os-g5``, ``adam``, a custom method's name (``-g5``
    added when it is wrapped in Overshoot: a user's optimizer has gamma > 0 only then)."""
    m = METHODS.get(optimizer)
    if m is not None:
        return m.label(gamma)
    return f"{optimizer}-g{gamma:g}" if gamma > 0 else optimizer


def display_label(optimizer: str, gamma: float) -> str:
    """'CM', 'NAG', 'SGDO γ=3', 'AdamO γ=5', ...; a custom optimizer keeps its name (with its gamma when
    wrapped in Overshoot)."""
    m = METHODS.get(optimizer)
    if m is not None:
        return m.display_label(gamma)
    return f"{optimizer} γ={gamma:g}" if gamma > 0 else optimizer


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
    momentum (SGD family) or betas and eps (the other families)."""
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
    target: str,
    family: str,
    hp: HParams,
    kwargs: Mapping[str, Any],
    params: Iterable[torch.nn.Parameter],
    gamma: float = 0.0,
) -> torch.optim.Optimizer:
    """The user's optimizer ``target`` over ``params``: the family's hyperparameters it accepts, overridden
    by its own ``kwargs``; wrapped in ``Overshoot`` (delay: the run's, except in the SGD family, whose
    overshoot has no ramp) when ``gamma`` > 0."""
    import torch

    from overshoot.optim import Overshoot

    cls = import_object(target)
    opt = cls(params, **{**family_kwargs(cls, family, hp), **dict(kwargs)})
    if not isinstance(opt, torch.optim.Optimizer):
        raise ValueError(f"target={target} built a {type(opt).__name__}, not a torch.optim.Optimizer")
    if gamma > 0:
        return Overshoot(opt, gamma=gamma, delay=None if family == "sgd" else hp.delay)
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
        return build_custom(target, method.family, hp, kwargs or {}, params, gamma)
    assert method.build is not None
    method.require()
    return method.build(params, hp, gamma, capturable)
