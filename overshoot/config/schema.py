"""The schema of a run directory's files, checked whenever one is read: ``run.json`` (:class:`RunInfo`),
``config.yaml`` (:func:`parse_config`), the config hash that names the directory (:func:`check_hash`) and
run.json's identity fields against the config (:func:`check_identity`).

A file that breaks the schema raises :class:`SchemaError` naming the file and the reason in one line. This
module imports neither torch nor pandas: the skip path of a finished run and the manifest read through it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from overshoot.config.run import RunConfig

# Config keys that say where and how a run is stored or watched, not what it computes: left out of the hash.
UNHASHED_KEYS = (
    "out",
    "data",
    "device",
    "threads",
    "progress",
    "checkpoint_every",
    "population",
    "cuda_graph",
    "log",
    "preset",
)
# A run directory's name: seed<seed>-<the first 8 hex digits of its config hash>.
# The logs' columns as the store writes them (steps.csv adds ``distance`` when it is logged). ``time_s``: the
# elapsed training seconds at the end of the step (overshoot.train.engine.StepClock says what is timed).
STEP_COLUMNS = ("step", "epoch", "base_loss", "train_loss", "lr", "grad_norm", "time_s")
UNTIMED_STEP_COLUMNS = STEP_COLUMNS[:-1]  # steps.csv of a run begun before the training clock
EPOCH_COLUMNS = ("epoch", "split", "loss", "accuracy")
RUN_DIR_NAME = re.compile(r"^seed(-?\d+)-([0-9a-f]{8})$")


class SchemaError(ValueError):
    """A run-store file that breaks its schema: ``file`` names it (run.json, config.yaml, steps.csv...),
    ``reason`` says why in a few words."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file} {reason}")
        self.file = file
        self.reason = reason


def config_hash(config: Mapping[str, Any] | RunConfig) -> str:
    """A stable hex digest of the config keys that determine a run's numbers."""
    d = config if isinstance(config, Mapping) else config.to_dict()
    kept = {k: v for k, v in d.items() if k not in UNHASHED_KEYS}
    blob = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunInfo:
    """run.json, typed. Every field but ``status`` may be absent (null); ``extra`` keeps keys this schema
    does not name. Numbers are finite; counts, seeds and times are not negative."""

    status: str = "unknown"
    config_hash: str | None = None
    task: str | None = None
    optimizer: str | None = None
    family: str | None = None
    method: str | None = None
    gamma: float | None = None
    seed: int | None = None
    metric: str | None = None
    metric_scale: float | None = None
    started: str | None = None
    ended: str | None = None
    device: str | None = None
    versions: dict[str, str | None] | None = None
    git_rev: str | None = None
    pid: int | None = None
    host: str | None = None
    heartbeat: float | None = None
    reason: str | None = None
    wall_time_s: float | None = None
    steps: int | None = None
    steps_per_s: float | None = None
    cuda_graph: bool | None = None
    final: dict[str, float | None] | None = None
    steps_to_95: int | None = None
    cpu_threads: int | None = None
    checkpoints: int | None = None
    checkpoint_time_s: float | None = None
    optimizer_step_s: float | None = None  # median seconds of the optimizer update alone, sampled steps
    optimizer_steps_timed: int | None = None  # the updates that median is taken over
    population: dict[str, Any] | None = None
    eval_rows: int | None = None  # epochs.csv's rows when the run finished
    extra: dict[str, Any] = field(default_factory=dict)


# Fields whose value must not be negative; the rest of the numbers only finite.
_NON_NEGATIVE = {
    "gamma",
    "seed",
    "wall_time_s",
    "steps",
    "steps_per_s",
    "steps_to_95",
    "cpu_threads",
    "checkpoints",
    "checkpoint_time_s",
    "optimizer_step_s",
    "optimizer_steps_timed",
    "pid",
    "eval_rows",
}
# The test metrics a task reports, and the keys of run.json's ``final`` (lifecycle's final metrics).
METRICS = ("accuracy", "loss")
FINAL_KEYS = frozenset(
    (
        "train_loss",
        "val_loss",
        "test_loss",
        "val_accuracy",
        "test_accuracy",
        *(f"best_test_{m}" for m in METRICS),
    )
)


def _kind(tp: Any) -> tuple[type, ...]:
    """The runtime types a field's annotation accepts (None left out)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, _UnionType) else (tp,)
    return tuple(typing.get_origin(a) or a for a in args if a is not type(None))


_UnionType = type(int | None)
_HINTS = typing.get_type_hints(RunInfo)
_FIELDS = {f.name: _kind(_HINTS[f.name]) for f in dataclasses.fields(RunInfo) if f.name != "extra"}


def _number(key: str, v: Any) -> str | None:
    """Why ``v`` is not a usable number for ``key`` (None when it is)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"is {type(v).__name__} {json.dumps(v, default=str)[:40]}, not a number"
    if not math.isfinite(v):
        return f"is {v}, not a finite number"
    if key in _NON_NEGATIVE and v < 0:
        return f"is {v}, not >= 0"
    return None


def _check(key: str, v: Any, kinds: tuple[type, ...]) -> str | None:
    """Why the value ``v`` of field ``key`` breaks the schema (None when it does not)."""
    if v is None:
        return None
    if float in kinds:
        return _number(key, v)
    if int in kinds:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"is {type(v).__name__} {json.dumps(v, default=str)[:40]}, not an integer"
        return _number(key, v)
    if not isinstance(v, kinds):
        want = " or ".join("object" if k is dict else k.__name__ for k in kinds)
        return f"is {type(v).__name__} {json.dumps(v, default=str)[:40]}, not {want}"
    if key == "metric" and v not in METRICS:
        return f"is {json.dumps(v)[:40]}, not one of {', '.join(METRICS)}"
    if key == "final" and isinstance(v, dict):
        for k, x in v.items():
            if k not in FINAL_KEYS:
                return f"holds an unknown entry {json.dumps(k)[:40]}"
            why = None if x is None else _number(k, x)
            if why:
                return f"entry {k} {why}"
    if key == "versions" and isinstance(v, dict):
        for k, x in v.items():
            if x is not None and not isinstance(x, str):
                return f"entry {k} is {type(x).__name__}, not a string"
    return None


def _one_apart(a: str, b: str) -> bool:
    """Whether ``a`` is ``b`` with one character replaced (a damaged byte in a key)."""
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def parse_info(obj: Any) -> RunInfo:
    """The run.json object ``obj`` as a :class:`RunInfo`; SchemaError for a wrong type or value."""
    if not isinstance(obj, dict):
        raise SchemaError("run.json", f"holds a JSON {type(obj).__name__}, not an object")
    known: dict[str, Any] = {}
    for key, v in obj.items():
        kinds = _FIELDS.get(key)
        if kinds is None:
            continue
        why = _check(key, v, kinds)
        if why:
            raise SchemaError("run.json", f"field {key} {why}")
        known[key] = v
    for key in obj:
        near = key not in _FIELDS and next((f for f in _FIELDS if _one_apart(key, f)), None)
        if near:
            raise SchemaError("run.json", f"holds a field {json.dumps(key)[:40]}, one character from {near}")
    metric, final = known.get("metric"), known.get("final") or {}
    best = [k for k in final if k.startswith("best_test_")]
    if metric is not None and best and best != [f"best_test_{metric}"]:
        raise SchemaError("run.json", f"field final holds {best[0]} but the run's metric is {metric}")
    if known.get("status") is None:
        known.pop("status", None)
    extra = {k: v for k, v in obj.items() if k not in _FIELDS}
    return RunInfo(**known, extra=extra)


def read_info(path: Path) -> dict[str, Any]:
    """The run.json at ``path`` as read, checked against :class:`RunInfo`: SchemaError when it is empty,
    not JSON or breaks the schema; FileNotFoundError when absent; OSError when unreadable."""
    text = Path(path).read_text(errors="replace")
    try:
        obj = json.loads(text)
    except ValueError as e:
        what = "is empty" if not text.strip() else f"does not parse ({' '.join(str(e).split())[:120]})"
        raise SchemaError("run.json", what) from None
    parse_info(obj)
    return dict(obj)


# config.yaml: the keys a run's numbers and its place in the store come from, with their types.
_CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "optimizer": (str,),
    "family": (str,),
    "gamma": (float,),
    "seed": (int,),
    "max_steps": (int,),
    "task_options": (dict,),
    "hparams": (dict,),
    "log": (dict,),
}
_HPARAM_INTS = ("epochs", "batch_size", "delay")


def parse_config(obj: Any) -> dict[str, Any]:
    """The config.yaml mapping ``obj`` checked by type (task, optimizer, seed, gamma, max_steps,
    hyperparameters, log window); SchemaError naming the key otherwise."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise SchemaError("config.yaml", f"holds a {type(obj).__name__}, not a mapping")
    for key, kinds in _CONFIG_KEYS.items():
        why = _check(key, obj.get(key), kinds)
        if why:
            raise SchemaError("config.yaml", f"key {key} {why}")
    hp = obj.get("hparams") or {}
    for key, v in hp.items():
        if v is None or isinstance(v, str) or (key == "betas" and isinstance(v, list)):
            continue  # the schedule's name; betas checked as numbers below
        why = _check(key, v, (int,) if key in _HPARAM_INTS else (float,))
        if why:
            raise SchemaError("config.yaml", f"key hparams.{key} {why}")
    for b in hp.get("betas") or []:
        why = _number("betas", b)
        if why:
            raise SchemaError("config.yaml", f"key hparams.betas {why}")
    window = (obj.get("log") or {}).get("window")
    if window is not None and (_check("log.window", window, (int,)) or window < 1):
        raise SchemaError("config.yaml", f"key log.window is {window!r}, not a positive integer")
    return obj


def read_config(path: Path) -> dict[str, Any]:
    """The config.yaml at ``path`` checked by :func:`parse_config` ({} when there is none)."""
    f = Path(path)
    if not f.exists():
        return {}
    try:
        obj = yaml.safe_load(f.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SchemaError("config.yaml", f"does not parse ({' '.join(str(e).split())[:120]})") from None
    return parse_config(obj)


def check_hash(folder: Path, config: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """SchemaError when the config's hash differs from run.json's ``config_hash`` or from the one in the
    run directory's name (``seed<seed>-<hash8>``): the config was edited after the run was written."""
    if not config:
        return
    h = config_hash(config)
    stored = info.get("config_hash")
    if isinstance(stored, str) and stored and stored != h:
        raise SchemaError("config.yaml", f"hashes to {h}, not run.json's {stored} (an edited config)")
    m = RUN_DIR_NAME.match(Path(folder).name)
    if m and m.group(2) != h[:8]:
        raise SchemaError(
            "config.yaml", f"hashes to {h[:8]}, not the {m.group(2)} of its directory name (an edited config)"
        )


def _config_name(node: Any) -> Any:
    """A config entry's name (a group node's ``name``, else the value)."""
    return node.get("name") if isinstance(node, Mapping) else node


def check_identity(config: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """SchemaError naming run.json when a field that says which run it is (task, optimizer, family, gamma,
    seed, method) disagrees with config.yaml, whose hash names the directory: a damaged run.json."""
    if not config:
        return
    for key in ("task", "optimizer", "family", "gamma", "seed"):
        mine, theirs = info.get(key), _config_name(config.get(key))
        if mine is None or theirs is None:
            continue
        if mine != theirs:
            raise SchemaError(
                "run.json", f"field {key} is {json.dumps(mine)[:40]}, not config.yaml's {theirs}"
            )
    method, opt = info.get("method"), _config_name(config.get("optimizer"))
    if method is not None and isinstance(opt, str):
        from overshoot.config.methods import label

        want = label(opt, float(config.get("gamma") or 0.0))
        if method != want:
            raise SchemaError(
                "run.json", f"field method is {json.dumps(method)[:40]}, not {want} (config.yaml's)"
            )
