"""``overshoot-bench``: train one benchmark run (or a Hydra multirun of them) into the run store.

    overshoot-bench                                   # the default: digits, AdamO gamma 5
    overshoot-bench task=cifar optimizer=adam_os gamma=5 seed=10
    overshoot-bench -m optimizer=sgd,sgd_os seed=10,20

Exit status: 0 when every run completed (or was already complete, or is running elsewhere: a run another
live process holds is not trained twice), 1 when a run failed or diverged, 2 on bad input (one line says
what), 130 on SIGINT and 143 on SIGTERM (the run resumes when relaunched).
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import hashlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.errors import HydraException
from omegaconf import DictConfig

import overshoot
from overshoot import metrics
from overshoot.config import (
    CONFIG_DIR,
    CONFIG_SEARCH_PATH,
    ConfigError,
    baseline_of,
    drop_sweep_gamma,
    resolve,
)
from overshoot.extras import MissingExtra, require
from overshoot.loop import Diverged, Interrupted, format_rate, pick_device, stop_requests, train, use_graph
from overshoot.store import (
    STEP_COLUMNS,
    ClaimLost,
    Run,
    RunHeld,
    RunWriter,
    StoreError,
    atomic_write_text,
    claim_run,
    clear_stale_claim,
    config_hash,
    load_run,
    makedirs,
    method_name,
    os_error_line,
    run_path,
    store_error,
)

_exit_codes: list[int] = []
_outcomes: Counter[str] = Counter()  # per status (and "skipped", "bad input") over this process's runs
FINISHED = ("completed", "diverged")  # results: a relaunch skips them (a diverged run would diverge again)


def finished(info: dict[str, Any]) -> bool:
    """Whether a run.json says the run is a result that a relaunch must not train again."""
    return info.get("status") in FINISHED


_population_jobs: list[DictConfig] = []


@functools.lru_cache(maxsize=1)
def _git_rev() -> str | None:
    """The checkout's revision when this process first asks (main() asks at start), ``-dirty`` if modified."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("-dirty" if dirty else "")) or None


def _versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "overshoot": overshoot.__version__,
        "torch": torch.__version__,
    }
    for mod in ("numpy", "hydra", "transformers", "peft"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _saving_line(run: dict[str, Any], own_curve: np.ndarray) -> str | None:
    """'saving vs <baseline>: X%' when the family baseline's run of the same task and seed is complete."""
    if run["optimizer"] in ("sgd", "adam"):
        return None
    base = baseline_of(run)
    path = run_path(run["out"], base)
    if not (path / "run.json").exists():
        return (
            f"no {base['optimizer']} run with the same task and seed yet ({path}): the same command with "
            f"-m optimizer={base['optimizer']},{run['optimizer']} trains it and prints the saving"
        )
    b = load_run(path, strict=False)
    if b.status != "completed":
        return None
    seed = run["seed"]
    paired = metrics.per_seed_saving(
        {seed: b.steps()["base_loss"].to_numpy()}, {seed: own_curve}, window=run["log"]["window"]
    )
    saving = paired.savings[0]
    if saving is None:
        return f"saving vs {base['optimizer']}: not reached (threshold from {path})"
    return f"saving vs {base['optimizer']}: {saving:.1f}% of the steps to 95% loss reduction"


def _final_metrics(run: Run, metric: str, scale: float) -> dict[str, Any]:
    steps, epochs = run.steps(), run.epochs()
    out: dict[str, Any] = {}
    if len(steps):
        tail = steps["base_loss"].to_numpy()[-min(len(steps), 100) :]
        out["train_loss"] = float(np.mean(tail))
    for split in ("val", "test"):
        e = epochs[epochs["split"] == split]
        if len(e):
            out[f"{split}_loss"] = float(e["loss"].iloc[-1])
            if e["accuracy"].notna().any():
                out[f"{split}_accuracy"] = float(e["accuracy"].iloc[-1])
    if (epochs["split"] == "test").any():
        out["best_test_" + metric] = metrics.best_over_epochs(epochs, metric, scale)
    return out


def run_one(cfg: DictConfig) -> int:
    """Train (or resume, or skip) the run of ``cfg``; returns the exit code.

    The run directory is claimed first (one writer per run): a run that a live process holds is not
    trained (``running elsewhere``, exit code 0: nothing failed). Every failure ends with one line naming
    its cause and, once the directory is claimed, a run.json with status failed and that reason.
    """
    try:
        run = resolve(cfg)
    except (ConfigError, ValueError) as e:
        return _bad_input(e)
    distance_cols = ("distance",) if run["log_distance"] else ()
    writer = RunWriter(run_path(run["out"], run), step_columns=STEP_COLUMNS + distance_cols)
    label = _label(run)
    try:
        prior = writer.read_info()
        if finished(prior):
            return _skip(label, prior, writer)
        claim = claim_run(writer.path)
    except RunHeld as e:
        print(f"{label}: running elsewhere, not started: {writer.path} is {e}", flush=True)
        _outcomes["running elsewhere"] += 1
        return 0
    except StoreError as e:
        return _bad_input(ConfigError(f"{e}: choose a writable out= (now out={run['out']})"))
    writer.claim = claim
    try:
        return _run_claimed(run, writer, label)
    except ClaimLost as e:
        print(f"{label}: stopped: {e}", file=sys.stderr, flush=True)
        _outcomes["running elsewhere"] += 1
        return 1
    finally:
        claim.release()


def _label(run: dict[str, Any]) -> str:
    return f"{run['task']}/{method_name(run['optimizer'], run['gamma'])}/seed{run['seed']}"


def _bad_input(e: Exception) -> int:
    print(f"overshoot-bench: error: {e}", file=sys.stderr, flush=True)
    _outcomes["bad input"] += 1
    return 2


def _skip(label: str, prior: dict[str, Any], writer: RunWriter) -> int:
    # A process killed after writing its final run.json leaves its claim and, for a completed run, the
    # checkpoint it was about to delete.
    clear_stale_claim(writer.path)
    if prior.get("status") == "completed":
        writer.drop_checkpoint()
    print(f"{label}: skipped, already {prior['status']} in {writer.path}", flush=True)
    _outcomes["skipped"] += 1
    return 0


def _run_claimed(run: dict[str, Any], writer: RunWriter, label: str) -> int:
    """The part of run_one done while holding the run's claim."""
    writer.prepare()
    prior = writer.read_info()  # again: the previous holder may have finished it meanwhile
    if finished(prior):
        return _skip(label, prior, writer)
    try:
        device = pick_device(run["device"])
        use_graph(run, device)  # cuda_graph=true where no graph can be used: bad input, before any work
        from overshoot_tasks import build_task

        dtype = torch.float64 if run["precision"] == "fp64" else torch.float32
        task = build_task(run["task_options"], Path(run["data"]["root"]), device, dtype)
        bs = run["hparams"]["batch_size"]
        if bs > task.n_train:
            raise ConfigError(
                f"batch_size={bs} exceeds the {task.n_train} training examples of task={run['task']}: "
                "lower batch_size"
            )
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _record_setup_failure(run, writer, prior, str(e))
        return _bad_input(e)
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
        note = _record_setup_failure(run, writer, prior, why, traceback.format_exc())
        print(f"overshoot-bench: error: {label}: {why}{note}", file=sys.stderr, flush=True)
        _outcomes["failed"] += 1
        return 1

    resumed = writer.checkpoint_file.exists()
    print(f"{label}: {'resuming' if resumed else 'starting'} in {writer.path}", flush=True)
    status, code = "completed", 0
    reason: str | None = None
    result: dict[str, Any] = {}
    with stop_requests() as should_stop:
        try:
            header = run_header(run, writer, prior, task, device)
            writer._info = {**prior, **header}
            result = train(run, task, writer, device, should_stop)
        except ClaimLost:
            raise
        except Diverged as e:
            status, code, reason = "diverged", 1, str(e)
        except Interrupted as e:
            status, code, reason = "failed", should_stop.exit_code, f"interrupted: {e}"
        except StoreError as e:  # disk full, read-only: the previous checkpoint is kept
            fix = "free space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
            status, code, reason = "failed", 1, f"{e}; {fix} and relaunch the same command to resume"
        except Exception as e:
            status, code, reason = "failed", 1, f"{type(e).__name__}: {e}"
            _write_error_log(writer, traceback.format_exc())
    try:
        finish_run(run, writer, prior, task, status, code, reason, result)
    except StoreError as e:
        print(f"{label}: {status}" + (f" ({reason})" if reason else ""), flush=True)
        print(f"overshoot-bench: error: run.json not updated: {e}", file=sys.stderr, flush=True)
        code = code or 1
    if code in (130, 143):
        _exit_codes.append(code)
        raise KeyboardInterrupt
    return code


def _write_error_log(writer: RunWriter, text: str) -> str:
    """Write error.log (the traceback); '' or a note saying why it could not be written."""
    try:
        atomic_write_text(writer.path / "error.log", text)
    except OSError as e:
        return f" (error.log not written: {store_error(e, writer.path / 'error.log')})"
    return ""


def _record_setup_failure(
    run: dict[str, Any], writer: RunWriter, prior: dict[str, Any], reason: str, tb: str | None = None
) -> str:
    """Record a run that failed before training: run.json status failed with ``reason`` (its logs and
    checkpoint untouched, so a relaunch once the cause is fixed resumes); '' or a note on what could not be
    written."""
    note = _write_error_log(writer, tb) if tb else ""
    try:
        writer.write_config(run)
        writer._info = {**prior, **run_header(run, writer, prior, None, None)}
        writer.write_info(
            status="failed",
            reason=reason,
            ended=dt.datetime.now(dt.timezone.utc).isoformat(),
            heartbeat=time.time(),
        )
    except OSError as e:
        note += f" (run.json not written: {store_error(e, writer.info_file)})"
    return note


def run_header(
    run: dict[str, Any],
    writer: RunWriter,
    prior: dict[str, Any],
    task: Any,
    device: torch.device | None,
) -> dict[str, Any]:
    """The run.json fields known at the start of a run (or of its resumption); prepares the directory.
    ``task`` and ``device`` may be None (a run that failed before they existed)."""
    resumed = writer.checkpoint_file.exists()
    started = prior.get("started") if resumed else dt.datetime.now(dt.timezone.utc).isoformat()
    makedirs(writer.path)
    if task is not None:
        (writer.path / "error.log").unlink(missing_ok=True)
    return {
        "config_hash": config_hash(run),
        "task": run["task"],
        "optimizer": run["optimizer"],
        "family": run["family"],
        "gamma": run["gamma"],
        "seed": run["seed"],
        "method": method_name(run["optimizer"], run["gamma"]),
        "metric": task.metric if task is not None else prior.get("metric"),
        "metric_scale": task.metric_scale if task is not None else prior.get("metric_scale"),
        "started": started or dt.datetime.now(dt.timezone.utc).isoformat(),
        "device": _device_name(device) if device is not None else prior.get("device"),
        "versions": _versions(),
        "git_rev": _git_rev(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "heartbeat": time.time(),
        "reason": None,
    }


def finish_run(
    run: dict[str, Any],
    writer: RunWriter,
    prior: dict[str, Any],
    task: Any,
    status: str,
    code: int,
    reason: str | None,
    result: dict[str, Any],
) -> None:
    """Write the final run.json (metrics, steps to 95%), drop a completed checkpoint, print a summary."""
    label = _label(run)
    _outcomes[status] += 1
    window = run["log"]["window"]
    logs = Run(path=writer.path, info={}, config={})  # the logs as written (run.json may not exist yet)
    final = _final_metrics(logs, task.metric, task.metric_scale)
    curve = logs.steps()["base_loss"].to_numpy()
    k95 = metrics.steps_to_reduction(curve, reduction=0.95, window=window) if status == "completed" else None
    wall = float(prior.get("wall_time_s") or 0.0) + float(result.get("train_time_s", 0.0))
    writer.write_info(
        status=status,
        reason=reason,
        ended=dt.datetime.now(dt.timezone.utc).isoformat(),
        wall_time_s=wall,
        steps=int(result.get("steps", len(curve))),
        steps_per_s=result.get("steps_per_s"),
        cuda_graph=result.get("cuda_graph", False),  # whether the steps were replayed as a CUDA graph
        final=final,
        steps_to_95=k95,
        cpu_threads=torch.get_num_threads(),  # as set for training (threads=auto picks 1 for small models)
        checkpoints=result.get("checkpoints"),  # written in this session, and the seconds they took
        checkpoint_time_s=result.get("checkpoint_time_s"),
        heartbeat=time.time(),
    )
    if status == "completed":
        writer.drop_checkpoint()

    lines = [f"{label}: {status}" + (f" ({reason})" if reason else "")]
    if final:
        lines.append("  " + ", ".join(f"{k} {v:.4g}" for k, v in final.items()))
    if status == "completed":
        lines.append(
            f"  steps to 95% loss reduction: {k95 if k95 is not None else 'not reached'}"
            f" of {len(curve)} ({format_rate(result.get('steps_per_s') or 0.0)} steps/s)"
        )
        saving = _saving_line(run, curve)
        if saving:
            lines.append("  " + saving)
    if status == "failed" and code == 1 and (writer.path / "error.log").exists():
        lines.append(f"  traceback: {writer.path / 'error.log'}")
    lines.append(f"  files: {writer.path}")
    print("\n".join(lines), flush=True)


@hydra.main(config_path=CONFIG_SEARCH_PATH, config_name="config", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    if _multirun() and _sweep_copy(cfg):
        return
    if _population_job(cfg):
        if _wants_loggers(cfg):
            _note_once("log.tensorboard/log.wandb: runs train one by one (a population feeds no logger)")
        else:
            _population_jobs.append(cfg)  # trained after the sweep, grouped (overshoot.population.run_sweep)
            return
    _exit_codes.append(run_one(cfg))


_sweep_runs: list[dict[str, Any]] = []  # the resolved runs of this process's sweep jobs, for its summary
_notes: set[str] = set()


def _note_once(note: str) -> None:
    if note not in _notes:
        _notes.add(note)
        print(f"overshoot-bench: note: {note}", flush=True)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _wants_loggers(cfg: DictConfig) -> bool:
    log = cfg.get("log") or {}
    return bool(log.get("tensorboard")) or bool(log.get("wandb"))


def _sweep_copy(cfg: DictConfig) -> bool:
    """Whether this sweep job's run is trained by another job of the same sweep (then one note is printed).

    A baseline given a gamma (``-m optimizer=sgd,sgd_os gamma=3,5,7``) is the baseline's own run; of the
    jobs that resolve to one run directory, the first to claim it trains it and the others are copies.
    """
    from hydra.core.hydra_config import HydraConfig

    why = drop_sweep_gamma(cfg)
    try:
        run = resolve(cfg)
    except (ConfigError, ValueError):
        return False  # run_one reports it
    given_name = str(cfg.optimizer.name)
    if why is None and given_name != run["optimizer"]:
        why = f"{given_name} at gamma 0 is {run['optimizer']}"
        _note_once(f"{why}: its gamma=0 runs are {run['optimizer']} runs")
    hc = HydraConfig.get()
    me = int(hc.job.num)
    owner = sweep_job_of(Path(hc.sweep.dir), run, me)
    if owner == me:
        _sweep_runs.append(run)
        return False
    label = f"{run['task']}/{method_name(run['optimizer'], run['gamma'])}/seed{run['seed']}"
    given = f" (gamma={cfg.get('gamma')})" if cfg.get("gamma") is not None else ""
    print(
        f"{label}{given}: skipped, the same run as job {owner} of this sweep"
        + (f": {why}" if why else "")
        + "; it trains once",
        flush=True,
    )
    _outcomes["copy skipped"] += 1
    return True


def sweep_job_of(sweep_dir: Path, run: dict[str, Any], job: int) -> int:
    """The number of the sweep job that trains ``run``: the first job to claim its run directory in
    ``sweep_dir`` (atomic on a shared file system, so SLURM jobs agree); a requeued job finds its claim."""
    claims = Path(sweep_dir) / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(run_path(run["out"], run).resolve()).encode()).hexdigest()[:20]
    fd, tmp = tempfile.mkstemp(dir=claims, prefix=f".{key}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(job))
        try:
            os.link(tmp, claims / key)  # fails when another job claimed it first
            return job
        except FileExistsError:
            return int((claims / key).read_text().strip())
    finally:
        os.unlink(tmp)


def _population_job(cfg: DictConfig) -> bool:
    """Whether ``cfg`` is a job of a local multirun with ``population=true`` (SLURM jobs run one by one)."""
    if not cfg.get("population"):
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and str(hc.launcher.get("_target_", "")).endswith(".BasicLauncher")


def _choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _settings() -> list[str]:
    import yaml

    base = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text()) or {}
    groups = [d.name for d in CONFIG_DIR.iterdir() if d.is_dir() and d.name != "hydra"]
    return sorted({*(k for k in base if k not in ("defaults", "hydra")), *groups})


def hydra_error_line(e: Exception) -> str:
    """One line for a Hydra composition error: what is unknown and the valid choices."""
    import difflib
    import re

    text = str(e)
    m = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if m and _choices(m.group(1)):
        group, name = m.group(1), m.group(2)
        choices = _choices(group)
        near = difflib.get_close_matches(name, choices, n=1)
        hint = f" (did you mean {group}={near[0]}?)" if near else ""
        return f"unknown {group}={name}{hint}: choose one of {', '.join(choices)}"
    m = re.search(r"Could not (?:override|append to|delete(?: from)?) '([^']+)'", text)
    if m or "Key '" in text:
        key = m.group(1) if m else re.search(r"Key '([^']+)'", text).group(1)  # type: ignore[union-attr]
        top = key.split(".")[0]
        settings = _settings()
        near = difflib.get_close_matches(top, settings, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        return f"unknown setting {key}{hint}: valid settings are {', '.join(settings)}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main() -> None:
    """Console entry point of ``overshoot-bench``."""
    try:
        _require_launcher_extra(sys.argv[1:])
    except MissingExtra as e:
        print(f"overshoot-bench: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    _git_rev()  # the revision of the code this process loaded, even if the checkout moves during a sweep
    own_errors = "HYDRA_FULL_ERROR" not in os.environ  # then Hydra raises its errors and we word them
    if own_errors:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
        if _population_jobs:
            from overshoot.population import run_sweep

            _exit_codes.extend(run_sweep(_population_jobs))
    except KeyboardInterrupt:
        print("overshoot-bench: interrupted; relaunch the same command to resume", file=sys.stderr)
        sys.exit(143 if 143 in _exit_codes else 130)  # a SIGINT during setup gives 130 too
    except HydraException as e:
        if not own_errors:
            raise
        print(f"overshoot-bench: error: {hydra_error_line(e)}", file=sys.stderr, flush=True)
        _exit_codes.append(2)
    except OSError as e:  # Hydra creating a multirun's folder under an unwritable out=
        where = e.filename or "the run store"
        print(f"overshoot-bench: error: {os_error_line(e, where)}: choose a writable out=", file=sys.stderr)
        _exit_codes.append(2)
    finally:
        if sum(_outcomes.values()) > 1:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(_outcomes.items()))
            print(f"overshoot-bench: {sum(_outcomes.values())} runs: {counts}", flush=True)
        for line in sweep_summary(_sweep_runs):
            print(f"overshoot-bench: {line}", flush=True)
    sys.exit(max(_exit_codes, default=0))


def _require_launcher_extra(args: list[str]) -> None:
    """MissingExtra when the command line picks the SLURM launcher without the [slurm] extra."""
    for a in args:
        key, _, value = a.lstrip("+~").partition("=")
        if key == "hydra/launcher" and value.startswith("slurm"):
            require("slurm", f"hydra/launcher={value}")


def sweep_summary(runs: list[dict[str, Any]]) -> list[str]:
    """The closing lines of a sweep: per method with a baseline in the store, its step saving paired by seed
    over the completed seeds of ``runs`` (mean and 95% t-interval), then the report command to run."""
    if not runs:
        return []
    lines: list[str] = []
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        if r["optimizer"] not in ("sgd", "adam"):
            groups.setdefault((r["out"], r["task"], method_name(r["optimizer"], r["gamma"])), []).append(r)
    for (_, task, method), members in groups.items():
        try:
            line = _group_saving(task, method, members)
        except (OSError, ValueError, KeyError) as e:
            line = f"{task} {method}: no saving ({type(e).__name__}: {e})"
        if line:
            lines.append(line)
    stores = sorted({str(Path(r["out"]) / r["task"]) for r in runs})
    lines.append(f"report: overshoot-bench-report {' '.join(stores)}")
    return lines


def _group_saving(task: str, method: str, members: list[dict[str, Any]]) -> str | None:
    """The saving line of one method's runs against their family baseline, None without a completed pair."""
    base_curves: dict[int, np.ndarray] = {}
    own_curves: dict[int, np.ndarray] = {}
    base_name = baseline_of(members[0])["optimizer"]
    for r in members:
        own, base = run_path(r["out"], r), run_path(r["out"], baseline_of(r))
        if not ((own / "run.json").exists() and (base / "run.json").exists()):
            continue
        o, b = load_run(own), load_run(base)
        if o.status == "completed" and b.status == "completed":
            own_curves[r["seed"]] = o.steps()["base_loss"].to_numpy()
            base_curves[r["seed"]] = b.steps()["base_loss"].to_numpy()
    if not own_curves:
        return None
    window = members[0]["log"]["window"]
    paired = metrics.per_seed_saving(base_curves, own_curves, window=window)
    n = len(paired.seeds)
    s = paired.summary
    if s.n == 0:
        return f"{task} {method} vs {base_name}: not reached in {n} seed{'s' * (n != 1)}"
    ci = f" +- {s.half_width:.1f}" if s.n > 1 else ""
    missed = n - s.n
    tail = f", {missed} not reached" if missed else ""
    return (
        f"{task} {method} vs {base_name}: saving {s.mean:.1f}%{ci} of the steps to 95% loss reduction "
        f"({s.n} seed{'s' * (s.n != 1)}{', 95% t-interval' if s.n > 1 else ''}{tail})"
    )


if __name__ == "__main__":
    main()
