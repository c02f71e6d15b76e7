"""The run store as data: the one reader of a store. Per run, :func:`read_run` (its files checked by
schema, its verdict); over a store, one row per run, the step records in long form, and the run records
every table and figure of the report is built from.

    from overshoot.analysis import results
    runs = results.load(["runs"])          # one row per run: config, status, metrics, protocol, provenance
    runs.pivot_table("best_test_accuracy", "method", "protocol")

A run is left out, listed with the file and the reason and never an error, when its ``run.json`` or
``config.yaml`` does not parse or breaks the schema (:mod:`overshoot.config.schema`: a wrong-typed field),
when the config's hash differs from run.json's or from its directory's name (an edited config), when
run.json's task, optimizer, family, gamma, seed or method differ from config.yaml's, and, for a completed run,
when a log's header is not one the store writes, ``steps.csv`` holds fewer or more rows than run.json's steps,
a cut row, or a loss that is not a finite number, or ``epochs.csv`` holds another number of rows than
run.json's ``eval_rows`` (recorded at finish; runs written before it are not checked for it). Such a run
is *damaged*: neither a result nor a state to resume from. A ``running`` run whose process is gone reads
``interrupted (process gone)``.

A run's **protocol** is a hash of its resolved config without the seed, the method's own keys (optimizer,
gamma, a user's optimizer class and arguments) and the keys that do not change its numbers (where it is
stored, the device, logging): two runs of one protocol differ only in seed and method, so they may be
compared. A family baseline (CM, AdamW), its overshoot method at any gamma and a user's optimizer of the
family share a protocol.

The per-run reader (:func:`read_run`) imports neither torch nor pandas; the frames import pandas when built.
The step savings computed from the run records are :mod:`overshoot.analysis.savings`'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from overshoot.analysis import metrics as M
from overshoot.config import schema
from overshoot.config.schema import UNHASHED_KEYS, SchemaError

if TYPE_CHECKING:
    import pandas as pd

# Config keys that make a method, not a protocol (a user's optimizer adds its class and arguments); and keys
# that change no number of a run.
METHOD_KEYS = ("seed", "optimizer", "gamma", "optimizer_target", "optimizer_kwargs")
NUMBERLESS_KEYS = (*UNHASHED_KEYS, "log_distance")
# Table 1 scale of a task's metric, used only when a run.json lacks ``metric_scale`` (paper: MLP-CA MSE x100).
FALLBACK_METRIC_SCALE = {"housing": 100.0}
# The paper's labels of its tasks (arXiv 2501.09556, Table 1); other tasks keep their key.
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
FINISHED = ("completed", "diverged")  # results: a relaunch does not train them again
EPOCH_COLUMNS = schema.EPOCH_COLUMNS
SPLITS = ("val", "test")  # epochs.csv's split names, as the store writes them
# steps.csv's headers: with time_s or without (runs begun before the clock), each with the distance
STEP_HEADERS = tuple(
    (*cols, *extra)
    for cols in (schema.STEP_COLUMNS, schema.UNTIMED_STEP_COLUMNS)
    for extra in ((), ("distance",))
)


def task_label(task: str) -> str:
    """The paper's label of a task ('MLP-CA' for housing), else the task key."""
    return PAPER_LABEL.get(task, task)


def family_rank(family: str) -> int:
    """The place of a family in tables and figures: the registry's order (SGD, then Adam), then others."""
    from overshoot.config import methods

    order = list(methods.FAMILIES)
    return order.index(family) if family in order else len(order)


def method_order(optimizer: str, gamma: float, family: str = "") -> tuple[int, tuple[int, float], str]:
    """Sort key of a method in tables and legends: by family (a built-in method's own, else ``family``),
    within it CM, NAG, SGDO by gamma (Adam, NAdam, AdamO by gamma), then the user's methods by name."""
    from overshoot.config import methods

    m = methods.METHODS.get(optimizer)
    return (family_rank(m.family if m is not None else family), methods.sort_key(optimizer, gamma), optimizer)


def is_second_baseline(optimizer: str) -> bool:
    """Whether the optimizer is its family's second baseline (NAG, NAdam): the one that sits at gamma = mu."""
    from overshoot.config import methods

    m = methods.METHODS.get(optimizer)
    return m is not None and methods.FAMILIES[m.family].second == optimizer


def method_label(optimizer: str, gamma: float) -> str:
    """The method's label in the store and tables (``sgd_os-g3``): see
    :func:`overshoot.config.methods.label`."""
    from overshoot.config import methods

    return methods.label(optimizer, gamma)


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
    """One usable run (completed, files intact), loaded once for every table and figure."""

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
    epoch_log: dict[str, list[Any]] = field(default_factory=dict)  # epochs.csv by column
    distance: np.ndarray | None = None
    time_s: np.ndarray | None = None  # elapsed training seconds per step (None: logged before the clock)
    protocol: str = ""
    config_hash: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _epochs: Any = field(default=None, repr=False, compare=False)

    @property
    def epochs(self) -> pd.DataFrame:
        """epochs.csv as a DataFrame (epoch, split, loss, accuracy)."""
        if self._epochs is None:
            import pandas as pd

            self._epochs = pd.DataFrame({c: self.epoch_log.get(c, []) for c in EPOCH_COLUMNS})
        return self._epochs

    @property
    def method(self) -> str:
        return method_label(self.optimizer, self.gamma)

    @property
    def label(self) -> str:
        from overshoot.config import methods

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
class StoredRun:
    """One run directory as read by :func:`read_run`: its files and its verdict.

    ``status`` is the status a user should see (run.json's, ``interrupted (process gone)`` for a dead
    running run, ``unreadable`` when run.json is not a usable object, ``missing`` without one). ``file``
    and ``reason`` say why the run is left out of results ('' for a usable one); ``damaged`` marks a store
    file that is wrong (schema, hash, a finished run's logs): such a run is neither a result nor a state to
    resume from. ``record`` holds the logs of a usable completed run."""

    path: Path
    info: dict[str, Any]
    config: dict[str, Any]
    status: str
    file: str = ""
    reason: str = ""
    damaged: bool = False
    record: RunRecord | None = None

    @property
    def usable(self) -> bool:
        """Completed with every file intact (a result for reports and savings)."""
        return self.record is not None and not self.reason

    @property
    def finished(self) -> bool:
        """A result that a relaunch must not train again: completed or diverged, and not damaged."""
        return self.status in FINISHED and not self.damaged

    @property
    def problem(self) -> str:
        """'<file> <reason>' ('' for a usable run)."""
        return f"{self.file} {self.reason}" if self.reason else ""

    def steps(self) -> pd.DataFrame:
        """steps.csv as written (see :func:`step_log`)."""
        return step_log(self.path)

    def epochs(self) -> pd.DataFrame:
        """epochs.csv as written (see :func:`epoch_log`)."""
        return epoch_log(self.path)


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


# -- the logs, read without pandas --------------------------------------------------------------------


def _read_log(path: Path, name: str) -> tuple[list[str], list[list[str]]]:
    """A CSV log's header and rows; SchemaError when missing, unreadable, or cut (the logs are written in
    whole lines of plain fields, so a last line without its newline or a row of another width is a cut or
    mixed log)."""
    f = path / name
    try:
        data = f.read_bytes()
    except FileNotFoundError:
        raise SchemaError(name, "is missing") from None
    except OSError as e:
        raise SchemaError(name, f"cannot be read ({e.strerror or e})") from None
    if data and not data.endswith(b"\n"):
        raise SchemaError(name, "ends in a partial row (a cut log)")
    try:
        lines = data.decode().split("\n")[:-1]
    except UnicodeDecodeError:
        raise SchemaError(name, "is not text") from None
    if not lines:
        raise SchemaError(name, "is empty")
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    for i, r in enumerate(rows, start=1):
        if len(r) != len(header):
            raise SchemaError(name, f"row {i} holds {len(r)} fields, not {len(header)} (a cut or mixed log)")
    return header, rows


def _floats(cells: Iterable[str], name: str, column: str) -> np.ndarray:
    """The cells as float64 ('', 'None' and 'nan' are NaN); SchemaError for one that is not a number."""
    cells = list(cells)
    try:
        return np.asarray(cells, dtype=np.float64)  # numpy parses the common case at once
    except ValueError:
        pass
    out = []
    for c in cells:
        try:
            out.append(math.nan if c in ("", "None") else float(c))
        except ValueError:
            raise SchemaError(name, f"holds a {column} that is not a number ({c[:20]!r})") from None
    return np.asarray(out, dtype=np.float64)


def _steps(path: Path, info: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """steps.csv of a completed run, checked against run.json: one row per step the run says it took,
    consecutive, every loss a finite number. Returns base_loss, distance (None when not logged) and time_s
    (None in a log begun before the training clock)."""
    header, rows = _read_log(path, "steps.csv")
    if tuple(header) not in STEP_HEADERS:
        raise SchemaError("steps.csv", f"has the header {','.join(header)[:60]!r}, not one the store writes")
    n = len(rows)
    want = info.get("steps")
    if isinstance(want, int) and n != want:
        raise SchemaError("steps.csv", f"holds {n} rows but run.json says {want} steps (a cut or mixed log)")
    if n == 0:
        raise SchemaError("steps.csv", "holds no steps")
    col = {c: j for j, c in enumerate(header)}
    step = _floats((r[col["step"]] for r in rows), "steps.csv", "step")
    if not np.array_equal(step, step[0] + np.arange(n)):
        raise SchemaError("steps.csv", "steps are not consecutive (a cut or mixed log)")
    base = _floats((r[col["base_loss"]] for r in rows), "steps.csv", "base_loss")
    for c in ("base_loss", "train_loss"):
        if c not in col:
            continue
        vals = base if c == "base_loss" else _floats((r[col[c]] for r in rows), "steps.csv", c)
        bad = np.flatnonzero(~np.isfinite(vals))
        if bad.size:
            raise SchemaError(
                "steps.csv",
                f"holds {bad.size} {c} that are not finite (first at step {int(step[bad[0]])}) in a "
                "completed run",
            )
    for c in ("epoch", "lr", "grad_norm"):  # every other cell a number too (a damaged byte is found)
        _floats((r[col[c]] for r in rows), "steps.csv", c)
    dist = None
    if "distance" in col:
        d = _floats((r[col["distance"]] for r in rows), "steps.csv", "distance")
        dist = d if np.isfinite(d).any() else None
    times = _floats((r[col["time_s"]] for r in rows), "steps.csv", "time_s") if "time_s" in col else None
    return base, dist, times


def _epochs(path: Path, strict: bool = True) -> dict[str, list[Any]]:
    """epochs.csv by column (empty columns when the run has none); ``strict``: every loss finite."""
    if not (path / "epochs.csv").exists():
        return {c: [] for c in EPOCH_COLUMNS}
    header, rows = _read_log(path, "epochs.csv")
    if tuple(header) != EPOCH_COLUMNS:
        raise SchemaError(
            "epochs.csv", f"has the header {','.join(header)[:60]!r}, not {','.join(EPOCH_COLUMNS)}"
        )
    col = {c: j for j, c in enumerate(header)}
    out: dict[str, list[Any]] = {}
    for c in header:
        cells = [r[col[c]] for r in rows]
        if c == "split":
            bad = next((x for x in cells if x not in SPLITS), None)
            if bad is not None:
                raise SchemaError("epochs.csv", f"holds a split {bad[:20]!r}, not {' or '.join(SPLITS)}")
            out[c] = cells
        elif c == "epoch":
            e = _floats(cells, "epochs.csv", c)
            out[c] = [int(x) for x in e] if np.isfinite(e).all() else e.tolist()
        else:
            out[c] = _floats(cells, "epochs.csv", c).tolist()
    if strict and rows and np.isnan(np.asarray(out["loss"], dtype=np.float64)).any():
        raise SchemaError("epochs.csv", "holds a loss that is not a number")
    for c in EPOCH_COLUMNS:
        out.setdefault(c, [math.nan] * len(rows))
    return out


def read_logs(path: Path | str) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """A run's logs as written, without the checks of a finished run (for the summary of the run this
    process just trained, whatever its end): the base-weight loss per step and epochs.csv by column; empty
    when a log is missing or unreadable."""
    path = Path(path)
    try:
        header, rows = _read_log(path, "steps.csv")
        j = header.index("base_loss")
        base = _floats((r[j] for r in rows), "steps.csv", "base_loss")
    except (SchemaError, ValueError):
        base = np.empty(0, dtype=np.float64)
    try:
        epochs = _epochs(path, strict=False)
    except SchemaError:
        epochs = {c: [] for c in EPOCH_COLUMNS}
    return base, epochs


LOG_SUFFIXES = (".csv", ".parquet")  # the store writes CSV; an export or a converted log is parquet


def _log_file(path: Path | str, name: str) -> Path | None:
    """The log ``name`` ('steps', 'epochs') of a run folder: ``name.csv``, else ``name.parquet``; or
    ``path`` itself when it names a .csv or .parquet file; None when there is none."""
    p = Path(path)
    if p.suffix in LOG_SUFFIXES and p.is_file():
        return p
    return next((f for f in (p / f"{name}{s}" for s in LOG_SUFFIXES) if f.is_file()), None)


def _read_frame(f: Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f)


def step_log(path: Path | str) -> pd.DataFrame:
    """A run's steps log as a DataFrame, as written: steps.csv, or steps.parquet (a converted log), or the
    .csv/.parquet file ``path`` names (an empty frame when there is none)."""
    import pandas as pd

    f = _log_file(path, "steps")
    return _read_frame(f) if f is not None else pd.DataFrame(columns=["step", "epoch", "base_loss"])


def epoch_log(path: Path | str) -> pd.DataFrame:
    """A run's epochs log as a DataFrame, as written: epochs.csv, or epochs.parquet, or the .csv/.parquet
    file ``path`` names (an empty frame when there is none)."""
    import pandas as pd

    f = _log_file(path, "epochs")
    return _read_frame(f) if f is not None else pd.DataFrame(columns=list(EPOCH_COLUMNS))


def _infer_metric(epochs: Mapping[str, list[Any]]) -> str:
    acc = np.asarray(epochs.get("accuracy", []), dtype=np.float64)
    return "accuracy" if acc.size and np.isfinite(acc).any() else "loss"


def _family_of(optimizer: str) -> str:
    from overshoot.config import methods

    m = methods.METHODS.get(optimizer)
    return m.family if m is not None else ""


def _live_status(info: Mapping[str, Any], path: Path) -> str:
    status = str(info.get("status") or "unknown")
    if status != "running":
        return status
    from overshoot.store.claim import live_status  # only a running run needs its claim read

    return live_status(info, path)


def read_run(path: Path | str) -> StoredRun:
    """Read one run directory and judge it (see :class:`StoredRun` and the module docstring): its run.json
    and config.yaml by schema, the config's hash against run.json's and the directory's name, and for a
    completed run its logs (row count, cut rows, finite losses). Never raises for a damaged file."""
    path = Path(path)
    try:
        info = schema.read_info(path / "run.json")
    except FileNotFoundError:
        return StoredRun(path, {}, {}, "missing", "run.json", "is missing")
    except SchemaError as e:
        return StoredRun(path, {}, {}, "unreadable", e.file, e.reason, damaged=True)
    except OSError as e:
        return StoredRun(path, {}, {}, "unreadable", "run.json", f"cannot be read ({e.strerror or e})", True)
    status = _live_status(info, path)
    try:
        cfg = schema.read_config(path / "config.yaml")
        schema.check_hash(path, cfg, info)
        schema.check_identity(cfg, info)
    except SchemaError as e:
        return StoredRun(path, info, {}, status, e.file, e.reason, damaged=True)
    run = StoredRun(path, info, cfg, status)
    if status != "completed":
        run.file, run.reason = "run.json", f"status {status}"
        return run
    opt, task = (
        _name(info.get("optimizer") or cfg.get("optimizer")),
        _name(info.get("task") or cfg.get("task")),
    )
    try:
        if not opt or not task:
            raise SchemaError("run.json", "names no task or optimizer")
        if not isinstance(info.get("steps"), int):
            raise SchemaError(
                "run.json", "says completed but records no steps (not written by a finished run)"
            )
        base, dist, times = _steps(path, info)
        epochs = _epochs(path)
        want = info.get("eval_rows")  # recorded at finish (runs written before it: not checked)
        if isinstance(want, int) and len(epochs["split"]) != want:
            raise SchemaError(
                "epochs.csv",
                f"holds {len(epochs['split'])} rows but run.json says {want} (a cut or swapped log)",
            )
    except SchemaError as e:
        run.file, run.reason, run.damaged = e.file, e.reason, True
        return run
    seed = info.get("seed", cfg.get("seed"))
    scale = info.get("metric_scale")
    run.record = RunRecord(
        task=task,
        family=str(info.get("family") or cfg.get("family") or _family_of(opt)),
        optimizer=opt,
        gamma=float(info.get("gamma") or cfg.get("gamma") or 0.0),
        seed=int(seed or 0),
        metric=str(info.get("metric") or _infer_metric(epochs)),
        metric_scale=float(scale) if scale else FALLBACK_METRIC_SCALE.get(task, 1.0),
        momentum=_momentum(cfg),
        path=path,
        base_loss=base,
        epoch_log=epochs,
        distance=dist,
        time_s=times,
        protocol=protocol_id(cfg) if cfg else "",
        config_hash=str(info.get("config_hash") or (schema.config_hash(cfg) if cfg else "")),
        config=dict(cfg),
        info=dict(info),
    )
    return run


# -- a store: the run table, the records, the runs left out ------------------------------------------------


@dataclass
class Scan:
    """What :func:`scan` read: the run table (:func:`load`), the usable records and the runs left out."""

    table: pd.DataFrame
    records: list[RunRecord]
    left_out: pd.DataFrame
    runs: list[StoredRun] = field(default_factory=list)  # every run directory read, with its verdict


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


def _best(epochs: pd.DataFrame, metric: str, split: str = "test") -> float:
    if epochs.empty or metric not in epochs:
        return math.nan
    return M.best_over_epochs(epochs, metric, 1.0, split)


def _row(run: StoredRun) -> dict[str, Any]:
    info, cfg = run.info, run.config
    opt = _name(info.get("optimizer") or cfg.get("optimizer"))
    task = _name(info.get("task") or cfg.get("task"))
    gamma = float(info.get("gamma") or cfg.get("gamma") or 0.0)
    dev, threads = device_name(info)
    versions = info.get("versions") or {}
    rev = str(info.get("git_rev") or "")
    final = info.get("final") or {}
    row: dict[str, Any] = {
        "task": task,
        "method": method_label(opt, gamma) if opt else "",
        "optimizer": opt,
        "family": str(info.get("family") or cfg.get("family") or (_family_of(opt) if opt else "")),
        "gamma": gamma,
        "seed": info.get("seed", cfg.get("seed")),
        "status": run.status,
        "problem": run.problem if run.damaged else "",
        **flat_config(cfg),
        "steps": info.get("steps"),
        "steps_to_95": info.get("steps_to_95"),
        "config_hash": str(info.get("config_hash") or (schema.config_hash(cfg) if cfg else "")),
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
        "path": str(run.path),
    }
    for k, v in final.items():
        row[k if k.startswith("best_") else f"final_{k}"] = v
    if run.record is not None:
        rec = run.record
        row["best_test_loss"] = _best(rec.epochs, "loss")
        if rec.metric == "accuracy":
            row["best_test_accuracy"] = _best(rec.epochs, "accuracy")
    return row


def scan(paths: Iterable[Path | str]) -> Scan:
    """Read every run at or below ``paths`` with :func:`read_run`: the run table, the usable records
    (completed runs with intact files; of true duplicates, same config hash, the one that ended last) and
    the runs left out with the file and the reason. Raises FileNotFoundError for a missing path only."""
    import pandas as pd

    dirs = list(dict.fromkeys(run_dirs(list(paths))))  # a run named twice is read once
    rows: list[dict[str, Any]] = []
    left_out: list[dict[str, str]] = []
    usable: list[tuple[RunRecord, str, int]] = []
    runs = [read_run(p) for p in dirs]
    for run in runs:
        if run.status == "unreadable":
            rows.append({"status": "unreadable", "problem": run.problem, "path": str(run.path)})
        else:
            rows.append(_row(run))
        if run.reason:
            left_out.append(
                {"path": str(run.path), "status": run.status, "file": run.file, "reason": run.reason}
            )
        if run.record is not None and not run.reason:
            usable.append((run.record, str(run.info.get("ended") or ""), len(rows) - 1))
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
    return Scan(table, records, pd.DataFrame(left_out, columns=list(LEFT_OUT_COLUMNS)), runs)


def load(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per run at or below ``paths``: task, method, optimizer, family, gamma, seed, status, every
    resolved hyperparameter (flat columns, see :func:`flat_config`), steps, final and best metrics, steps to
    95% loss reduction, config hash, protocol id, device, versions, git revision, path, and ``usable``
    (completed, files intact, not a duplicate) with ``problem`` saying why not (a damaged file or a
    duplicate; a run that is merely not completed has its status and no problem)."""
    return scan(paths).table


def _export_steps(path: Path) -> Path | None:
    """The steps.parquet of a parquet export (:func:`overshoot.analysis.exports.export_parquet`) that
    ``path`` names (the file, or the export's folder, which holds no run.json), else None."""
    f = path if path.suffix == ".parquet" else path / "steps.parquet"
    return f if f.is_file() and not (path / "run.json").exists() else None


RUN_META = ("task", "method", "optimizer", "family", "gamma", "seed", "protocol", "config_hash", "path")


def run_meta(r: RunRecord) -> dict[str, Any]:
    """The columns that name a run in a long frame of logs (:data:`RUN_META`: curves, the parquet exports)."""
    return {k: str(r.path) if k == "path" else getattr(r, k) for k in RUN_META}


def curves(paths: Iterable[Path | str] | Scan | Path | str) -> pd.DataFrame:
    """The step records of the usable runs in long form: one row per (run, step) with task, method,
    optimizer, family, gamma, seed, protocol, config_hash, path and steps.csv's columns. ``paths`` are run
    stores, or parquet exports of them (their steps.parquet, or its folder), read back as written."""
    import pandas as pd

    frames = []
    if isinstance(paths, Scan):
        records = paths.records
    else:
        given = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        exported = {p: _export_steps(p) for p in given}
        frames = [pd.read_parquet(f) for f in exported.values() if f is not None]
        stores = [p for p, f in exported.items() if f is None]
        records = scan(stores).records if stores else []
    for r in records:
        steps = step_log(r.path)
        meta = run_meta(r)
        frames.append(steps.assign(**meta)[[*meta, *steps.columns]])
    if not frames:
        return pd.DataFrame(columns=["task", "method", "seed", "protocol", "path", "step", "base_loss"])
    out = pd.concat(frames, ignore_index=True)
    for c in ("task", "method", "optimizer", "family", "protocol", "config_hash", "path"):
        out[c] = out[c].astype("category")
    return out
