"""Run the benchmark from Python: the same runs, run store and skip/resume rules as ``overshoot-bench``.

    from overshoot import bench

    r = bench.run(task="digits", optimizer="sgd_os", gamma=5, seed=10, max_steps=500)
    r.status, r.path, r.metrics["steps_to_95"]      # 'completed', the run directory, its metrics
    r.steps[["step", "base_loss"]]                  # the per-step curve (steps.csv) as a DataFrame
    runs = bench.sweep(optimizer=["sgd", "sgd_os"], gamma=[3, 5, 7], seed=[10, 20])
    bench.savings(runs)                             # each method's step saving vs its baseline

Keyword arguments are the command line's ``key=value`` settings (``max_steps=500``, ``device="cpu"``); a
dict is a config node (``log={"tensorboard": True}`` is ``log.tensorboard=true``); ``overrides=`` takes raw
Hydra overrides such as ``"+method=sgd_os_g3"``. A finished run is read back, not trained again; an
interrupted one resumes. A bad setting raises :class:`overshoot.config.compose.ConfigError` with the one-line
fix.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from overshoot.analysis import results
from overshoot.analysis import savings as step_savings
from overshoot.config import methods
from overshoot.config.compose import ConfigError, compose, drop_sweep_gamma, resolve
from overshoot.config.run import RunConfig
from overshoot.store.writer import run_path
from overshoot.train.lifecycle import Outcomes, run_one
from overshoot.train.sweep import run_sweep

__all__ = ["Result", "run", "savings", "sweep"]


@dataclass
class Result:
    """One run of the store, read back after training: where it is, how it ended, what it measured."""

    path: Path  # the run directory
    status: str  # completed, diverged, failed (or running when another process trains it now)
    exit_code: int  # what overshoot-bench would exit with for this run (0 completed or already done)
    config: dict[str, Any]  # the resolved config (config.yaml)
    info: dict[str, Any]  # run.json
    steps: pd.DataFrame  # steps.csv: step, epoch, base_loss, train_loss, lr, grad_norm [, distance]
    epochs: pd.DataFrame  # epochs.csv: epoch, split, loss, accuracy
    problem: str = ""  # why a store file of the run is damaged ('' when intact), see results.read_run

    @property
    def metrics(self) -> dict[str, Any]:
        """Final metrics (run.json's ``final``) with steps_to_95, steps, steps_per_s and wall_time_s."""
        out = dict(self.info.get("final") or {})
        for k in ("steps_to_95", "steps", "steps_per_s", "wall_time_s"):
            out[k] = self.info.get(k)
        return out

    @property
    def method(self) -> str:
        """The method label, e.g. ``sgd_os-g5``."""
        return methods.label(str(self.config["optimizer"]), float(self.config.get("gamma") or 0.0))

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Result({c.get('task')}/{self.method}/seed{c.get('seed')}: {self.status}, "
            f"steps_to_95={self.info.get('steps_to_95')}, path='{self.path}')"
        )


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        raise ConfigError(f"{v!r} is a list of values: sweep over them with overshoot.bench.sweep")
    return str(v)


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in settings.items():
        if isinstance(v, Mapping):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _overrides(settings: Mapping[str, Any], raw: Sequence[str]) -> list[str]:
    return [f"{k}={_value(v)}" for k, v in _flatten(settings)] + list(raw)


def _read(run: RunConfig, code: int | None) -> Result:
    path = run_path(run.out, run)
    r = results.read_run(path)
    return Result(
        path=path,
        status=r.status,
        exit_code=code if code is not None else (0 if r.usable else 1),
        config=r.config,
        info=r.info,
        steps=results.step_log(path),
        epochs=results.epoch_log(path),
        problem=r.problem if r.damaged else "",
    )


def savings(runs: Sequence[Result], reduction: float = 0.95, window: int = 400) -> pd.DataFrame:
    """The step savings of the methods among ``runs`` against their family baselines among them: one row
    per comparison from :func:`overshoot.analysis.savings.saving_summary` (mean, t-interval, within-noise
    flag, per-seed list, window), the same numbers as the CLI's summary lines and the report."""
    records = [rec for rec in (results.read_run(r.path).record for r in runs) if rec is not None]
    return step_savings.saving_summary(records, reduction, window)


def _train(run: RunConfig) -> int:
    """lifecycle.run_one, its bad input raised as ConfigError instead of returned as exit code 2."""
    outcomes = Outcomes()
    code = run_one(run, outcomes)
    if code == 2:
        raise ConfigError(outcomes.errors[-1] if outcomes.errors else "bad input (see above)")
    return code


def _compose(overrides: list[str]) -> DictConfig:
    """config.compose; Hydra's errors (unknown task, malformed override) raised as one-line ConfigErrors."""
    from hydra.errors import HydraException, MissingConfigException

    try:
        return compose(overrides)
    except MissingConfigException as e:
        options = f": choose one of {', '.join(e.options)}" if e.options else ""
        raise ConfigError(str(e).splitlines()[0] + options) from None
    except HydraException as e:  # e.g. "Could not override 'x'. To append to your config use +x=1"
        raise ConfigError(" ".join(str(e).splitlines()[:2])) from None


def run(
    task: str = "digits", optimizer: str = "adam_os", *, overrides: Sequence[str] = (), **settings: Any
) -> Result:
    """Train (or resume, or read back) one run and return it; ``settings`` are the CLI's ``key=value``s."""
    cfg = _compose(_overrides({"task": task, "optimizer": optimizer, **settings}, overrides))
    resolved = resolve(cfg)  # a bad setting raises here, before any work
    return _read(resolved, _train(resolved))


def sweep(
    task: str | Sequence[str] = "digits",
    optimizer: str | Sequence[str] = "adam_os",
    *,
    overrides: Sequence[str] = (),
    population: bool = False,
    **settings: Any,
) -> list[Result]:
    """Train every combination of the list-valued arguments (``seed=[10, 20]``); returns one Result per
    distinct run, in order. As in ``overshoot-bench -m``, a baseline given a gamma is its own run, trained
    once; ``population=True`` trains compatible runs together (``population=true``)."""
    axes = {"task": task, "optimizer": optimizer, **dict(_flatten(settings))}
    keys = list(axes)
    values = [list(v) if isinstance(v, (list, tuple)) else [v] for v in axes.values()]
    jobs: list[RunConfig] = []
    seen: set[Path] = set()
    for combo in itertools.product(*values):
        cfg = _compose(_overrides(dict(zip(keys, combo, strict=True)), overrides))
        drop_sweep_gamma(cfg)
        if population:
            cfg.population = True
        resolved = resolve(cfg)  # every job is checked before the first one trains, and resolved once
        path = run_path(resolved.out, resolved)
        if path in seen:
            continue  # the same run as an earlier job (a baseline's gamma copies)
        seen.add(path)
        jobs.append(resolved)
    if population:
        run_sweep(jobs)  # exit codes in its own order: each Result's comes from its status
        return [_read(r, None) for r in jobs]
    return [_read(r, _train(r)) for r in jobs]
