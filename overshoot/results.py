"""The run store as data: one row per run, the step records in long form, and the run records every table
and figure of the report is built from.

    from overshoot import results
    runs = results.load(["runs"])          # one row per run: config, status, metrics, protocol, provenance
    runs.pivot_table("best_test_accuracy", "method", "protocol")

:func:`load` and :func:`scan` read a store robustly: a run whose ``run.json`` or ``config.yaml`` does not
parse, whose ``steps.csv`` row count disagrees with ``run.json`` or whose logs do not parse is listed with the
reason and the file, never an error. A ``running`` run whose process is gone reads ``stale``.

A run's **protocol** is a hash of its resolved config without the seed, the method's own keys (optimizer,
gamma, a user's optimizer class and arguments) and the keys that do not change its numbers (where it is
stored, the device, logging): two runs of one protocol differ only in seed and method, so they may be
compared. A family baseline (CM, AdamW), its overshoot method at any gamma and a user's optimizer of the
family share a protocol.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from overshoot import methods
from overshoot import metrics as M
from overshoot.store import UNHASHED_KEYS, Run, config_hash, live_status

# Config keys that make a method, not a protocol (a user's optimizer adds its class and arguments); and keys
# that change no number of a run.
METHOD_KEYS = ("seed", "optimizer", "gamma", "optimizer_target", "optimizer_kwargs")
NUMBERLESS_KEYS = (*UNHASHED_KEYS, "log_distance")
# Table 1 scale of a task's metric, used only when a run.json lacks ``metric_scale`` (paper: MLP-CA MSE x100).
FALLBACK_METRIC_SCALE = {"housing": 100.0}
# The paper's labels of its tasks (paper.md section 4); other tasks keep their key.
PAPER_LABEL = {
    "housing": "MLP-CA",
    "vae_fmnist": "VAE-FM",
    "vae_mnist": "VAE-M",
    "fmnist": "2c2d-FM",
    "cifar": "3c3d-C10",
    "cifar100": "ResNet-C100",
    "gpt2_qqp": "GPT-2",
}
LEFT_OUT_COLUMNS = ("path", "status", "file", "reason")


def task_label(task: str) -> str:
    """The paper's label of a task ('MLP-CA' for housing), else the task key."""
    return PAPER_LABEL.get(task, task)


def family_rank(family: str) -> int:
    """The place of a family in tables and figures: the registry's order (SGD, then Adam), then others."""
    order = list(methods.FAMILIES)
    return order.index(family) if family in order else len(order)


def method_order(optimizer: str, gamma: float, family: str = "") -> tuple[int, tuple[int, float], str]:
    """Sort key of a method in tables and legends: by family (a built-in method's own, else ``family``),
    within it CM, NAG, SGDO by gamma (Adam, NAdam, AdamO by gamma), then the user's methods by name."""
    m = methods.METHODS.get(optimizer)
    return (family_rank(m.family if m is not None else family), methods.sort_key(optimizer, gamma), optimizer)


def is_second_baseline(optimizer: str) -> bool:
    """Whether the optimizer is its family's second baseline (NAG, NAdam): the one that sits at gamma = mu."""
    m = methods.METHODS.get(optimizer)
    return m is not None and methods.FAMILIES[m.family].second == optimizer


def protocol_id(config: Mapping[str, Any]) -> str:
    """8 hex digits naming what a run computes apart from its seed and method (see the module docstring)."""
    kept = {k: v for k, v in config.items() if k not in METHOD_KEYS and k not in NUMBERLESS_KEYS}
    blob = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


_THREADS = re.compile(r",\s*(\d+)\s+threads?\b")


def device_name(info: Mapping[str, Any]) -> tuple[str, int | None]:
    """One spelling per device and the CPU threads the run trained on: 'cpu (x86_64, 2 threads)' (older
    runs) and 'cpu (x86_64)' with cpu_threads 2 both give ('cpu (x86_64)', 2); a GPU drops its index."""
    dev = str(info.get("device") or "unknown")
    threads = info.get("cpu_threads")
    m = _THREADS.search(dev)
    if m:
        threads = threads or int(m.group(1))
        dev = dev[: m.start()] + dev[m.end() :]
    dev = re.sub(r"\s*\(cuda:\d+\)$", "", dev)
    return dev, int(threads) if isinstance(threads, (int, float)) and threads else None


@dataclass
class RunRecord:
    """One usable run (completed, logs intact), loaded once for every table and figure."""

    task: str
    family: str
    optimizer: str
    gamma: float
    seed: int
    metric: str
    metric_scale: float
    momentum: float | None  # mu (SGD family) or b1 (Adam family)
    path: Path
    base_loss: np.ndarray
    epochs: pd.DataFrame
    distance: np.ndarray | None = None
    protocol: str = ""
    config_hash: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return methods.label(self.optimizer, self.gamma)

    @property
    def label(self) -> str:
        return methods.display_label(self.optimizer, self.gamma)

    @property
    def steps(self) -> int:
        return int(self.base_loss.size)

    @property
    def x_gamma(self) -> float:
        """Where the method sits on the gamma axis: NAG at mu, NAdam at b1, baselines at 0."""
        if is_second_baseline(self.optimizer):
            return self.momentum if self.momentum is not None else 0.9
        return self.gamma


@dataclass
class Scan:
    """What :func:`scan` read: the run table (:func:`load`), the usable records and the runs left out."""

    table: pd.DataFrame
    records: list[RunRecord]
    left_out: pd.DataFrame


class _Bad(Exception):
    """A run file that cannot be used: ``file`` names it, the message says why."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(reason)
        self.file = file
        self.reason = reason


def _name(node: Any) -> str:
    if isinstance(node, Mapping):
        node = node.get("name")
    return "" if node is None else str(node)


def _hparam(config: Mapping[str, Any], key: str) -> Any:
    for node in (config.get("hparams"), config.get("optimizer"), config):
        if isinstance(node, Mapping) and node.get(key) is not None:
            return node[key]
    return None


def _momentum(config: Mapping[str, Any]) -> float | None:
    """mu (SGD family) or b1 (Adam family): ``hparams.momentum``, else the first of ``betas``."""
    mu = _hparam(config, "momentum")
    if mu is not None:
        return float(mu)
    betas = _hparam(config, "betas")
    return float(betas[0]) if isinstance(betas, Sequence) and betas else None


def _infer_metric(epochs: pd.DataFrame) -> str:
    if "accuracy" in epochs and pd.to_numeric(epochs["accuracy"], errors="coerce").notna().any():
        return "accuracy"
    return "loss"


def _flat(prefix: str, node: Any, out: dict[str, Any]) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            _flat(f"{prefix}{k}.", v, out)
    else:
        out[prefix[:-1]] = ",".join(map(str, node)) if isinstance(node, (list, tuple)) else node


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as flat columns: hyperparameters by their own name (``lr``, ``batch_size``...),
    task options as ``task.<key>``, the rest as dotted paths (``log.window``); lists joined with commas."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if k in ("task", "optimizer", "family", "gamma", "seed", "out", "data"):
            continue
        if k == "hparams" and isinstance(v, Mapping):
            _flat("", v, out)
        elif k == "task_options" and isinstance(v, Mapping):
            _flat("task.", {kk: vv for kk, vv in v.items() if kk != "name"}, out)
        else:
            _flat(f"{k}.", v, out)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    f = path / "run.json"
    try:
        info = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _Bad("run.json", f"does not parse ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(info, dict):
        raise _Bad("run.json", "is not a JSON object")
    return info


def _read_config(path: Path) -> dict[str, Any]:
    f = path / "config.yaml"
    if not f.exists():
        return {}
    try:
        cfg = yaml.safe_load(f.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise _Bad("config.yaml", f"does not parse ({' '.join(str(e).split())[:120]})") from None
    if cfg is not None and not isinstance(cfg, dict):
        raise _Bad("config.yaml", "is not a mapping")
    return cfg or {}


def _read_csv(path: Path, name: str) -> pd.DataFrame:
    """A CSV log; _Bad when missing, unparsable or ending in a partial row (the logs are written in whole
    lines, so a last line without its newline or its last fields is a cut file)."""
    f = path / name
    if not f.exists():
        raise _Bad(name, "is missing")
    try:
        with open(f, "rb") as fh:
            fh.seek(max(0, f.stat().st_size - 1))
            last = fh.read(1)
        df = pd.read_csv(f)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as e:
        raise _Bad(name, f"does not parse ({' '.join(str(e).split())[:120]})") from None
    if last not in (b"\n", b""):
        raise _Bad(name, "ends in a partial row (a cut log)")
    if len(df) > 1:
        tail, body = df.iloc[-1], df.iloc[:-1]
        short = [c for c in df.columns if pd.isna(tail[c]) and body[c].notna().all()]
        if short:
            raise _Bad(name, f"its last row lacks {', '.join(map(str, short))} (a cut log)")
    return df


def _steps(path: Path, info: Mapping[str, Any]) -> pd.DataFrame:
    """steps.csv, checked against run.json: one numeric row per step the run says it took."""
    steps = _read_csv(path, "steps.csv")
    if "base_loss" not in steps or "step" not in steps:
        raise _Bad("steps.csv", "has no step or base_loss column")
    n = len(steps)
    want = info.get("steps")
    if isinstance(want, int) and n != want:
        raise _Bad("steps.csv", f"holds {n} rows but run.json says {want} steps (a cut or mixed log)")
    step = pd.to_numeric(steps["step"], errors="coerce").to_numpy(np.float64)
    if n and not np.array_equal(step, step[0] + np.arange(n)):
        raise _Bad("steps.csv", "steps are not consecutive (a cut or mixed log)")
    loss = pd.to_numeric(steps["base_loss"], errors="coerce")
    if n and (loss.isna() & steps["base_loss"].notna()).any():
        raise _Bad("steps.csv", "holds a base_loss that is not a number (a cut row)")
    if n == 0:
        raise _Bad("steps.csv", "holds no steps")
    return steps


def _epochs(path: Path) -> pd.DataFrame:
    if not (path / "epochs.csv").exists():
        return pd.DataFrame(columns=["epoch", "split", "loss", "accuracy"])
    e = _read_csv(path, "epochs.csv")
    if len(e) and ("split" not in e or "loss" not in e):
        raise _Bad("epochs.csv", "has no split or loss column")
    if len(e) and pd.to_numeric(e["loss"], errors="coerce").isna().any():
        raise _Bad("epochs.csv", "holds a loss that is not a number (a cut row)")
    return e


def _best(epochs: pd.DataFrame, metric: str, split: str = "test") -> float:
    if epochs.empty or metric not in epochs:
        return math.nan
    return M.best_over_epochs(epochs, metric, 1.0, split)


def run_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """Every run directory (one holding run.json) at or below ``paths``, sorted; hidden folders skipped."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no run store at {p}: pass a directory written by overshoot-bench")
        if (p / "run.json").is_file():
            found.add(p.resolve())
        for f in p.rglob("run.json"):
            rel = f.parent.relative_to(p).parts
            if not any(part.startswith(".") for part in rel):
                found.add(f.parent.resolve())
    return sorted(found)


def _row(path: Path, info: Mapping[str, Any], cfg: Mapping[str, Any], status: str) -> dict[str, Any]:
    opt = _name(info.get("optimizer") or cfg.get("optimizer"))
    task = _name(info.get("task") or cfg.get("task"))
    gamma = float(info.get("gamma") or cfg.get("gamma") or 0.0)
    dev, threads = device_name(info)
    versions = info.get("versions") or {}
    rev = str(info.get("git_rev") or "")
    final = info.get("final") or {}
    row: dict[str, Any] = {
        "task": task,
        "method": methods.label(opt, gamma) if opt else "",
        "optimizer": opt,
        "family": str(info.get("family") or cfg.get("family") or _family_of(opt)),
        "gamma": gamma,
        "seed": info.get("seed", cfg.get("seed")),
        "status": status,
        "problem": "",
        **flat_config(cfg),
        "steps": info.get("steps"),
        "steps_to_95": info.get("steps_to_95"),
        "config_hash": str(info.get("config_hash") or (config_hash(cfg) if cfg else "")),
        "protocol": protocol_id(cfg) if cfg else "",
        "device": dev,
        "cpu_threads": threads,
        "torch": versions.get("torch"),
        "python": versions.get("python"),
        "overshoot": versions.get("overshoot"),
        "git_rev": rev.removesuffix("-dirty")[:12] if rev else None,
        "dirty": rev.endswith("-dirty"),
        "started": info.get("started"),
        "ended": info.get("ended"),
        "wall_time_s": info.get("wall_time_s"),
        "steps_per_s": info.get("steps_per_s"),
        "path": str(path),
    }
    for k, v in final.items():
        row[k if k.startswith("best_") else f"final_{k}"] = v
    return row


def _family_of(optimizer: str) -> str:
    m = methods.METHODS.get(optimizer)
    return m.family if m is not None else ""


def scan(paths: Iterable[Path | str | Run]) -> Scan:
    """Read every run at or below ``paths`` (or the given ``store.Run`` objects): the run table, the usable
    records (completed runs with intact logs; of true duplicates, same config hash, the one that ended last)
    and the runs left out with the file and the reason. Raises FileNotFoundError for a missing path only."""
    dirs: list[Path] = []
    for item in paths:
        dirs += [item.path] if isinstance(item, Run) else run_dirs([item])
    dirs = list(dict.fromkeys(dirs))  # a run named twice (a path and a folder above it) is read once
    rows: list[dict[str, Any]] = []
    left_out: list[dict[str, str]] = []
    usable: list[tuple[RunRecord, str, int]] = []
    for path in dirs:
        try:
            info = _read_json(path)
            cfg = _read_config(path)
        except _Bad as bad:
            rows.append({"status": "unreadable", "problem": f"{bad.file} {bad.reason}", "path": str(path)})
            left_out.append(
                {"path": str(path), "status": "unreadable", "file": bad.file, "reason": bad.reason}
            )
            continue
        status = live_status(info, path)  # 'interrupted (process gone)' for a dead 'running' run
        row = _row(path, info, cfg, status)
        rows.append(row)
        if status != "completed":
            left_out.append(
                {"path": str(path), "status": status, "file": "run.json", "reason": f"status {status}"}
            )
            continue
        if not row["optimizer"] or not row["task"]:
            reason = "names no task or optimizer"
            row["problem"] = f"run.json {reason}"
            left_out.append({"path": str(path), "status": status, "file": "run.json", "reason": reason})
            continue
        try:
            steps = _steps(path, info)
            epochs = _epochs(path)
        except _Bad as bad:
            row["problem"] = f"{bad.file} {bad.reason}"
            left_out.append({"path": str(path), "status": status, "file": bad.file, "reason": bad.reason})
            continue
        metric = str(info.get("metric") or _infer_metric(epochs))
        row["best_test_loss"] = _best(epochs, "loss")
        if metric == "accuracy":
            row["best_test_accuracy"] = _best(epochs, "accuracy")
        dist = None
        if "distance" in steps:
            d = pd.to_numeric(steps["distance"], errors="coerce").to_numpy(np.float64)
            dist = d if np.isfinite(d).any() else None
        rec = RunRecord(
            task=row["task"],
            family=row["family"],
            optimizer=row["optimizer"],
            gamma=row["gamma"],
            seed=int(row["seed"] or 0),
            metric=metric,
            metric_scale=float(info.get("metric_scale") or FALLBACK_METRIC_SCALE.get(row["task"], 1.0)),
            momentum=_momentum(cfg),
            path=path,
            base_loss=pd.to_numeric(steps["base_loss"], errors="coerce").to_numpy(np.float64),
            epochs=epochs,
            distance=dist,
            protocol=row["protocol"],
            config_hash=row["config_hash"],
            config=dict(cfg),
            info=dict(info),
        )
        usable.append((rec, str(info.get("ended") or ""), len(rows) - 1))
    by_hash: dict[str, list[tuple[RunRecord, str, int]]] = {}
    for entry in usable:
        by_hash.setdefault(entry[0].config_hash, []).append(entry)
    kept: list[RunRecord] = []
    for group in by_hash.values():
        group.sort(key=lambda entry: entry[1])
        new = group[-1][0]
        kept.append(new)
        for drop, _, j in group[:-1]:
            reason = f"duplicate of {new.path} (same config hash {new.config_hash[:8]}, ended later)"
            rows[j]["problem"] = reason
            left_out.append(
                {"path": str(drop.path), "status": "completed", "file": "run.json", "reason": reason}
            )
    records = sorted(
        kept,
        key=lambda r: (r.task, r.protocol, method_order(r.optimizer, r.gamma, r.family), r.seed),
    )
    table = pd.DataFrame(rows)
    for c in ("task", "method", "optimizer", "family", "gamma", "seed", "status", "problem", "path"):
        if c not in table:
            table[c] = None
    table["usable"] = table["status"].eq("completed") & table["problem"].fillna("").eq("")
    return Scan(table, records, pd.DataFrame(left_out, columns=list(LEFT_OUT_COLUMNS)))


def load(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per run at or below ``paths``: task, method, optimizer, family, gamma, seed, status, every
    resolved hyperparameter (flat columns, see :func:`flat_config`), steps, final and best metrics, steps to
    95% loss reduction, config hash, protocol id, device, versions, git revision, path, and ``usable``
    (completed, logs intact, not a duplicate) with ``problem`` saying why not."""
    return scan(paths).table


def curves(paths: Iterable[Path | str]) -> pd.DataFrame:
    """The step records of the usable runs in long form: one row per (run, step) with task, method,
    optimizer, family, gamma, seed, protocol, config_hash, path and steps.csv's columns."""
    frames = []
    for r in scan(paths).records:
        steps = pd.read_csv(r.path / "steps.csv")
        meta = {
            "task": r.task,
            "method": r.method,
            "optimizer": r.optimizer,
            "family": r.family,
            "gamma": r.gamma,
            "seed": r.seed,
            "protocol": r.protocol,
            "config_hash": r.config_hash,
            "path": str(r.path),
        }
        frames.append(steps.assign(**meta)[[*meta, *steps.columns]])
    if not frames:
        return pd.DataFrame(columns=["task", "method", "seed", "protocol", "path", "step", "base_loss"])
    out = pd.concat(frames, ignore_index=True)
    for c in ("task", "method", "optimizer", "family", "protocol", "config_hash", "path"):
        out[c] = out[c].astype("category")
    return out


# -- savings: the one computation of every step saving (per-run line, sweep line, report, tuning, bench) --

SAVINGS_COLUMNS = (
    "task",
    "protocol",
    "family",
    "baseline",
    "method",
    "optimizer",
    "gamma",
    "x_gamma",
    "seed",
    "reduction",
    "window",
    "threshold",
    "k_baseline",
    "k_method",
    "saving",
)
SUMMARY_COLUMNS = (
    "task",
    "protocol",
    "family",
    "baseline",
    "method",
    "optimizer",
    "gamma",
    "x_gamma",
    "reduction",
    "window",
    "seeds",
    "n_pairs",
    "n",
    "mean",
    "half_width",
    "low",
    "high",
    "within_noise",
    "not_reached",
    "baseline_not_reached",
    "k_baseline_mean",
    "k_method_mean",
    "per_seed",
    "paper_threshold",
    "paper_k_baseline",
    "paper_k_method",
    "paper_saving",
)


@dataclass
class Comparison:
    """One method against its family baseline under one protocol of one task, with the window it uses."""

    task: str
    protocol: str
    family: str
    baseline: str
    method: str
    base: list[RunRecord]
    runs: list[RunRecord]
    window: int


def family_baseline(family: str, present: Iterable[str]) -> str | None:
    """The method a family's savings are measured against: its baseline (CM, AdamW), else its overshoot
    method at gamma 0; None when neither is among the ``present`` method labels."""
    fam = methods.FAMILIES.get(family)
    if fam is None:
        return None
    have = set(present)
    return next((n for n in (fam.baseline, methods.label(fam.overshoot, 0.0)) if n in have), None)


def _records(runs: Scan | Iterable[RunRecord]) -> list[RunRecord]:
    return list(runs.records if isinstance(runs, Scan) else runs)


def comparisons(runs: Scan | Iterable[RunRecord], window: int = 400) -> list[Comparison]:
    """Every (task, protocol, family, method) with its family baseline among ``runs`` (usable records).

    The window rule: ``metrics.window_for(window, planned)`` where ``planned`` is the length of the
    compared runs (their protocol's planned steps: a completed run trains them all, and the protocol fixes
    epochs, max_steps, batch size and data). The window thus depends on the requested window and the
    comparison's protocol only: no run outside the comparison (another family, another protocol) changes it.
    """
    groups: dict[tuple[str, str, str], dict[str, list[RunRecord]]] = {}
    ordered = sorted(
        _records(runs),
        key=lambda r: (r.task, r.protocol, method_order(r.optimizer, r.gamma, r.family), r.seed),
    )
    for r in ordered:
        groups.setdefault((r.task, r.protocol, r.family), {}).setdefault(r.method, []).append(r)
    out: list[Comparison] = []
    for (task, protocol, family), by_method in sorted(
        groups.items(), key=lambda kv: (kv[0][0], family_rank(kv[0][2]), kv[0][1])
    ):
        base = family_baseline(family, by_method)
        if base is None:
            continue
        for method, recs in by_method.items():
            if method == base:
                continue
            planned = min(r.steps for r in (*by_method[base], *recs))
            w = M.window_for(window, planned)
            out.append(Comparison(task, protocol, family, base, method, by_method[base], recs, w))
    return out


def _compare(c: Comparison, reduction: float, confidence: float = 0.95) -> M.SeedSavings:
    return M.per_seed_saving(
        {r.seed: r.base_loss for r in c.base},
        {r.seed: r.base_loss for r in c.runs},
        reduction,
        c.window,
        confidence,
    )


def _meta(c: Comparison, reduction: float) -> dict[str, Any]:
    r = c.runs[0]
    return {
        "task": c.task,
        "protocol": c.protocol,
        "family": c.family,
        "baseline": c.baseline,
        "method": c.method,
        "optimizer": r.optimizer,
        "gamma": r.gamma,
        "x_gamma": r.x_gamma,
        "reduction": reduction,
        "window": c.window,
    }


def savings(runs: Scan | Iterable[RunRecord], reduction: float = 0.95, window: int = 400) -> pd.DataFrame:
    """The step saving of every method against its family baseline, one row per seed present for both
    (columns ``SAVINGS_COLUMNS``): the threshold from that seed's baseline run (its smoothed loss reduced
    by ``reduction``), the steps each run needs to reach it (real steps: the end of the window, ``None``
    when not reached), the saving 100 (k_baseline - k_method) / k_baseline (NaN when not reached) and the
    ``window`` of the comparison (see :func:`comparisons` for the rule)."""
    rows: list[dict[str, Any]] = []
    for c in comparisons(runs, window):
        ss = _compare(c, reduction)
        meta = _meta(c, reduction)
        for i, seed in enumerate(ss.seeds):
            s = ss.savings[i]
            rows.append(
                {
                    **meta,
                    "seed": seed,
                    "threshold": ss.thresholds[i],
                    "k_baseline": ss.k_baseline[i],
                    "k_method": ss.k_method[i],
                    "saving": math.nan if s is None else s,
                }
            )
    df = pd.DataFrame(rows, columns=list(SAVINGS_COLUMNS))
    for col in ("k_baseline", "k_method"):
        df[col] = df[col].astype("Int64")
    return df


def _mean_steps(ks: Sequence[int | None]) -> float:
    vals = [k for k in ks if k is not None]
    return float(np.mean(vals)) if vals else math.nan


def saving_summary(
    runs: Scan | Iterable[RunRecord], reduction: float = 0.95, window: int = 400, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per comparison (columns ``SUMMARY_COLUMNS``) from the same per-seed savings as
    :func:`savings`: their mean, ``confidence`` t-interval (half width, low, high; NaN under 2 seeds),
    ``within_noise`` (the interval contains 0 or is undefined), the counts of seeds not reached, the mean
    step counts, the per-seed list ``seed:saving;...`` (``NR``: not reached), and beside them the paper's
    own computation (:func:`metrics.paper_saving`: seed-mean curves, counts as smoothed-array indices) with
    the same window."""
    rows: list[dict[str, Any]] = []
    for c in comparisons(runs, window):
        ss = _compare(c, reduction, confidence)
        ps = M.paper_saving([r.base_loss for r in c.base], [r.base_loss for r in c.runs], reduction, c.window)
        ci = ss.summary
        rows.append(
            {
                **_meta(c, reduction),
                "seeds": " ".join(map(str, ss.seeds)),
                "n_pairs": len(ss.seeds),
                "n": ci.n,
                "mean": ci.mean,
                "half_width": ci.half_width,
                "low": ci.low,
                "high": ci.high,
                "within_noise": M.contains_zero(ci.low, ci.high),
                "not_reached": ss.n_not_reached,
                "baseline_not_reached": ss.n_baseline_not_reached,
                "k_baseline_mean": _mean_steps(ss.k_baseline),
                "k_method_mean": _mean_steps(ss.k_method),
                "per_seed": ";".join(
                    f"{s}:{'NR' if v is None else f'{v:.2f}'}"
                    for s, v in zip(ss.seeds, ss.savings, strict=True)
                ),
                "paper_threshold": ps.threshold,
                "paper_k_baseline": ps.k_baseline,
                "paper_k_method": ps.k_method,
                "paper_saving": math.nan if ps.saving is None else ps.saving,
            }
        )
    df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for col in ("paper_k_baseline", "paper_k_method"):
        df[col] = df[col].astype("Int64")
    return df


def summary_text(row: Mapping[str, Any]) -> str:
    """A summary row as one line's tail: 'saving 5.3% +- 8.1 of the steps to 95% loss reduction (2 seeds,
    95% t-interval, window 160)'; 'not reached in 2 seeds (window 160)' when no seed reached it."""
    pct = f"{100 * float(row['reduction']):g}%"
    n, pairs, w = int(row["n"]), int(row["n_pairs"]), int(row["window"])
    if n == 0:
        return f"not reached in {pairs} seed{'s' * (pairs != 1)} (window {w})"
    ci = f" +- {row['half_width']:.1f}" if n > 1 else ""
    missed = pairs - n
    tail = f", {missed} not reached" if missed else ""
    return (
        f"saving {row['mean']:.1f}%{ci} of the steps to {pct} loss reduction "
        f"({n} seed{'s' * (n != 1)}{', 95% t-interval' if n > 1 else ''}{tail}, window {w})"
    )
