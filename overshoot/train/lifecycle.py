"""The life of runs in the store: skip a finished run, claim the others (one writer per run), build their
task, train them (one alone, or several as a population), record how each ended and print its summary.

Exit codes per run: 0 completed, skipped or running elsewhere (a run another live process holds is not
trained twice), 1 failed or diverged, 2 bad input, 130/143 interrupted by SIGINT/SIGTERM (resumable).
Every failure ends with one line naming its cause and, once the run is claimed, a run.json with status
failed and that reason.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig

from overshoot.analysis import metrics, results, savings
from overshoot.common.files import StoreError, atomic_write_text, makedirs, store_error
from overshoot.common.provenance import device_name, git_rev, versions
from overshoot.config import methods
from overshoot.config.compose import ConfigError, baseline_of, resolve
from overshoot.config.outcomes import Outcomes, bad_input
from overshoot.config.run import RunConfig
from overshoot.config.schema import STEP_COLUMNS, config_hash
from overshoot.store.claim import BadClaim, ClaimLost, RunHeld, claim_run, clear_stale_claim
from overshoot.store.writer import Checkpoint, RunWriter, run_identity, run_path
from overshoot.train.engine import drive, format_rate
from overshoot.train.population import member_order, population_checkpoint, train_population
from overshoot.train.runtime import Interrupted, epoch_steps, pick_device, run_label, stop_requests, use_graph
from overshoot.train.single import SingleBackend

if TYPE_CHECKING:
    from overshoot_tasks.base import Task


def run_one(cfg: DictConfig | RunConfig, outcomes: Outcomes | None = None) -> int:
    """Train (or resume, or skip) the run of ``cfg`` alone; returns its exit code."""
    outcomes = outcomes if outcomes is not None else Outcomes()
    try:
        run = cfg if isinstance(cfg, RunConfig) else resolve(cfg)
    except (ConfigError, ValueError) as e:
        code = bad_input(e, outcomes)
        outcomes.codes.append(code)
        return code
    return train_runs([run], outcomes)[0]


def run_population(runs: Sequence[RunConfig], outcomes: Outcomes | None = None) -> list[int]:
    """Train ``runs`` as one population (completed members are skipped, members a live process holds are
    left to it); returns the exit code of each run."""
    return train_runs(runs, outcomes, population=True)


def train_runs(
    runs: Sequence[RunConfig], outcomes: Outcomes | None = None, population: bool = False
) -> list[int]:
    """Claim and train ``runs``: one alone with its real optimizer, or several as one population; returns
    the exit code of each run (also added to ``outcomes``)."""
    outcomes = outcomes if outcomes is not None else Outcomes()
    writers = [
        RunWriter(run_path(r.out, r), step_columns=STEP_COLUMNS + (("distance",) if r.log_distance else ()))
        for r in runs
    ]
    codes = [0] * len(runs)
    claimed: list[int] = []
    try:
        for j, (r, w) in enumerate(zip(runs, writers, strict=True)):
            label = run_label(r)
            try:
                verdict = results.read_run(w.path)
                if verdict.finished:
                    _skip(label, verdict, w, outcomes)
                    continue
                w.claim = claim_run(w.path)
            except RunHeld as e:
                print(f"{label}: running elsewhere, not started: {w.path} is {e}", flush=True)
                outcomes.add("running elsewhere")
                continue
            except BadClaim as e:  # a directory where its claim file goes: the message names the fix
                codes[j] = bad_input(e, outcomes)
                continue
            except StoreError as e:
                codes[j] = bad_input(ConfigError(f"{e}: choose a writable out= (now out={r.out})"), outcomes)
                continue
            claimed.append(j)
            verdict = results.read_run(w.path)  # again, now that no other process writes it
            if verdict.damaged:
                try:
                    _set_aside(label, verdict)
                except StoreError as e:
                    print(f"overshoot-bench: error: {label}: {e}", file=sys.stderr, flush=True)
                    outcomes.add("failed")
                    codes[j] = 1
                    continue
            w.prepare()
            if verdict.finished:  # finished by the previous holder meanwhile
                _skip(label, verdict, w, outcomes)
                continue
            codes[j] = -1  # to train
        todo = [j for j in claimed if codes[j] == -1]
        if todo:
            done = _train_claimed([runs[j] for j in todo], [writers[j] for j in todo], population, outcomes)
            for j, c in zip(todo, done, strict=True):
                codes[j] = c
    finally:
        for j in claimed:
            claim = writers[j].claim
            if claim is not None:
                claim.release()
    outcomes.codes.extend(codes)
    return codes


def _train_claimed(
    runs: Sequence[RunConfig], writers: Sequence[RunWriter], population: bool, outcomes: Outcomes
) -> list[int]:
    """Train claimed runs (one, or a population); returns their exit codes."""
    from overshoot_tasks import build_task
    from overshoot_tasks.base import steps_per_epoch

    run0, n = runs[0], len(runs)
    priors = [w.read_info() for w in writers]
    who = f"population of {run0.task}" if population else run_label(run0)

    # Set-up: device, task and batches; a bad setting is exit code 2 before any training.
    try:
        device = pick_device(run0.device)
        for r in runs:
            use_graph(r, device, population=population)  # cuda_graph=true where impossible: bad input
        dtype = torch.float64 if run0.precision == "fp64" else torch.float32
        task = build_task(run0.task_options, Path(run0.data_root), device, dtype)
        steps_per_epoch(task.n_train, run0.hparams.batch_size, run0.drop_last)  # the batch fits the task
        epoch_steps(run0, task)
    except (ValueError, FileNotFoundError) as e:
        for r, w, prior in zip(runs, writers, priors, strict=True):
            _record_setup_failure(r, w, prior, str(e))
        bad_input(e, outcomes)  # one line for all: the same cause
        outcomes.counts["bad input"] += n - 1  # ... but every run counts
        return [2] * n
    except Exception as e:
        cause, note = f"{type(e).__name__}: {e}", ""
        for r, w, prior in zip(runs, writers, priors, strict=True):
            note = _record_setup_failure(r, w, prior, cause, traceback.format_exc())
            outcomes.add("failed")
        print(f"overshoot-bench: error: {who}: {cause}{note}", file=sys.stderr, flush=True)
        return [1] * n

    # The checkpoint to resume from: this run's (or population's) own; another's is moved aside here.
    if population:
        checkpoint = population_checkpoint([runs[j] for j in member_order(runs)])
    else:
        checkpoint = Checkpoint(writers[0].checkpoint_file, (writers[0],), run_identity(run0))
    resumed = checkpoint.usable()
    verb = "resuming" if resumed else "starting"
    if population:
        members = ", ".join(run_label(r).split("/", 1)[1] for r in runs)
        print(f"{run0.task}: {verb} a population of {n} ({members})", flush=True)
    else:
        print(f"{who}: {verb} in {writers[0].path}", flush=True)

    # Training; how it ended is one status, exit code and reason for all (a member may diverge alone).
    status, code = "completed", 0
    reason: str | None = None
    shared: dict[str, Any] = {}
    diverged: list[str | None] = [None] * n
    with stop_requests() as should_stop:
        try:
            for r, w, prior in zip(runs, writers, priors, strict=True):
                header = run_header(r, w, prior, task, device, resumed)
                w.info = {**prior, **header, **({"population": {"size": n}} if population else {})}
            if population:
                shared, diverged = train_population(runs, task, writers, device, should_stop)
            else:
                backend = lambda: SingleBackend(run0, task, writers[0], device)  # noqa: E731
                shared, diverged = drive(backend, task, should_stop)
        except Interrupted as e:
            status, code, reason = "failed", should_stop.exit_code, f"interrupted: {e}"
        except ClaimLost as e:
            status, code, reason = "failed", 1, str(e)
        except StoreError as e:  # disk full, read-only: the previous checkpoint is kept
            fix = "free space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
            status, code, reason = "failed", 1, f"{e}; {fix} and relaunch the same command to resume"
        except Exception as e:
            status, code, reason = "failed", 1, f"{type(e).__name__}: {e}"
            for w in writers:
                _write_error_log(w, traceback.format_exc())

    # The end: each run's final run.json and summary; a population's checkpoint goes once all are recorded.
    member_rate = shared.pop("member_steps_per_s", None)
    codes: list[int] = []
    recorded = True
    for r, w, prior, div in zip(runs, writers, priors, diverged, strict=True):
        st, c = (status, code) if div is None or code else ("diverged", 1)
        why = reason if div is None or code else div
        result = dict(shared)
        if div is not None and not code:
            result.pop("steps", None)
        try:
            if population:
                w.write_info(population={"size": n, "member_steps_per_s": member_rate})
            finish_run(r, w, prior, task, st, c, why, result, outcomes)
        except ClaimLost as e:
            print(f"{run_label(r)}: stopped: {e}", file=sys.stderr, flush=True)
            outcomes.add("running elsewhere")
            recorded, c = False, 1
        except StoreError as e:
            recorded = False
            print(f"{run_label(r)}: {st}" + (f" ({why})" if why else ""), flush=True)
            print(f"overshoot-bench: error: run.json not updated: {e}", file=sys.stderr, flush=True)
            c = c or 1
        codes.append(c)
    if population and code == 0 and recorded:
        checkpoint.drop(folder=True)
    return codes


def _skip(label: str, verdict: results.StoredRun, writer: RunWriter, outcomes: Outcomes) -> None:
    # A process killed after writing its final run.json leaves its claim and, for a completed run, the
    # checkpoint it was about to delete.
    clear_stale_claim(writer.path)
    if verdict.status == "completed":
        writer.drop_checkpoint()
    print(f"{label}: skipped, already {verdict.status} in {writer.path}", flush=True)
    outcomes.add("skipped")


DAMAGED_FILES = ("run.json", "config.yaml", "steps.csv", "epochs.csv", "checkpoint.pt", "error.log")


def _set_aside(label: str, verdict: results.StoredRun) -> Path:
    """Move the files of a damaged run (results.read_run's verdict) into ``.damaged-<UTC time>/`` inside its
    directory, with one line naming the file and the reason: it is neither skipped as a result nor resumed,
    and trains again from step 0 (call with the claim held)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    aside = verdict.path / f".damaged-{stamp}"
    makedirs(aside)
    for name in DAMAGED_FILES:
        try:
            os.replace(verdict.path / name, aside / name)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise store_error(e, aside / name) from None
    print(
        f"overshoot-bench: warning: {label}: {verdict.path / verdict.file} {verdict.reason}; not a result "
        f"and not resumed: moved its files to {aside.name}/ and training it from step 0",
        file=sys.stderr,
        flush=True,
    )
    return aside


def _write_error_log(writer: RunWriter, text: str) -> str:
    """Write error.log (the traceback); '' or a note saying why it could not be written."""
    try:
        atomic_write_text(writer.path / "error.log", text)
    except OSError as e:
        return f" (error.log not written: {store_error(e, writer.path / 'error.log')})"
    return ""


def _record_setup_failure(
    run: RunConfig, writer: RunWriter, prior: dict[str, Any], reason: str, tb: str | None = None
) -> str:
    """Record a run that failed before training: run.json status failed with ``reason`` (its logs and
    checkpoint untouched, so a relaunch once the cause is fixed resumes); '' or a note on what could not be
    written."""
    note = _write_error_log(writer, tb) if tb else ""
    try:
        writer.write_config(run.to_dict())
        writer.info = {**prior, **run_header(run, writer, prior, None, None, False)}
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
    run: RunConfig,
    writer: RunWriter,
    prior: dict[str, Any],
    task: Task | None,
    device: torch.device | None,
    resumed: bool,
) -> dict[str, Any]:
    """The run.json fields known at the start of a run (or of its resumption); prepares the directory.
    ``task`` and ``device`` may be None (a run that failed before they existed)."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    makedirs(writer.path)
    if task is not None:
        (writer.path / "error.log").unlink(missing_ok=True)
    return {
        "config_hash": config_hash(run),
        "task": run.task,
        "optimizer": run.optimizer,
        "family": run.family,
        "gamma": run.gamma,
        "seed": run.seed,
        "method": methods.label(run.optimizer, run.gamma),
        "metric": task.metric if task is not None else prior.get("metric"),
        "metric_scale": task.metric_scale if task is not None else prior.get("metric_scale"),
        "started": (prior.get("started") if resumed else None) or now,
        "device": device_name(device) if device is not None else prior.get("device"),
        "versions": versions(),
        "git_rev": git_rev(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "heartbeat": time.time(),
        "reason": None,
    }


def _final_metrics(
    curve: np.ndarray, epochs: dict[str, list[Any]], metric: str, scale: float
) -> dict[str, Any]:
    """run.json's ``final``: the mean base-weight loss of the last 100 steps, the last val/test loss and
    accuracy, and the best test metric over the epochs (times ``scale``)."""
    out: dict[str, Any] = {}
    if len(curve):
        out["train_loss"] = float(np.mean(curve[-min(len(curve), 100) :]))
    split = epochs.get("split", [])
    for name in ("val", "test"):
        idx = [i for i, s in enumerate(split) if s == name]
        if idx:
            out[f"{name}_loss"] = float(epochs["loss"][idx[-1]])
            acc = [epochs["accuracy"][i] for i in idx]
            if any(np.isfinite(acc)):
                out[f"{name}_accuracy"] = float(acc[-1])
    test = np.asarray([v for s, v in zip(split, epochs.get(metric, []), strict=True) if s == "test"], float)
    test = test[np.isfinite(test)]
    if test.size:
        out["best_test_" + metric] = float(test.max() if metric == "accuracy" else test.min()) * scale
    return out


def saving_line(run: RunConfig, path: Path) -> str | None:
    """The completed run at ``path`` against its family baseline's run of the same task, seed and
    protocol: 'saving vs sgd: 5.3% (steps to the sgd run's 95% threshold: 612 vs 646, window 400)' from
    :func:`overshoot.analysis.savings.savings`; a hint when that run is missing, None for a baseline."""
    if methods.get(run.optimizer, run.family).is_baseline:
        return None
    base = baseline_of(run)
    base_path = run_path(base.out, base)
    b, own = results.read_run(base_path), results.read_run(path)
    if b.status == "missing":
        return (
            f"no {base.optimizer} run with the same task and seed yet ({base_path}): the same command with "
            f"-m optimizer={base.optimizer},{run.optimizer} trains it and prints the saving"
        )
    if b.damaged:
        return f"no saving vs {base.optimizer}: {base_path / b.file} {b.reason}"
    if b.record is None or own.record is None:
        return None
    rows = savings.savings([b.record, own.record], 0.95, run.log.window)
    if rows.empty:
        return None
    import pandas as pd  # savings.savings has imported it

    r = rows.iloc[0]
    kb, ko = (("not reached" if pd.isna(k) else str(int(k))) for k in (r["k_baseline"], r["k_method"]))
    how = f"(steps to the {base.optimizer} run's 95% threshold: {ko} vs {kb}, window {int(r['window'])})"
    value = "not reached" if np.isnan(r["saving"]) else f"{r['saving']:.1f}%"
    return f"saving vs {base.optimizer}: {value} {how}"


def finish_run(
    run: RunConfig,
    writer: RunWriter,
    prior: dict[str, Any],
    task: Task,
    status: str,
    code: int,
    reason: str | None,
    result: dict[str, Any],
    outcomes: Outcomes,
) -> None:
    """Write the final run.json (metrics, steps to 95%), drop a completed checkpoint, print a summary."""
    curve, epochs = results.read_logs(writer.path)  # the logs as written (run.json may not exist yet)
    final = _final_metrics(curve, epochs, task.metric, task.metric_scale)
    window = metrics.window_for(run.log.window, len(curve)) if len(curve) else run.log.window
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
        eval_rows=len(epochs["split"]),  # epochs.csv rows, checked by the reader
        steps_to_95=k95,
        cpu_threads=torch.get_num_threads(),  # as set for training (threads=auto picks 1 for small models)
        checkpoints=result.get("checkpoints"),  # written in this session, and the seconds they took
        checkpoint_time_s=result.get("checkpoint_time_s"),
        optimizer_step_s=result.get("optimizer_step_s"),  # the update alone: median of sampled steps
        optimizer_steps_timed=result.get("optimizer_steps_timed"),
        heartbeat=time.time(),
    )
    outcomes.add(status)
    if status == "completed":
        writer.drop_checkpoint()

    lines = [f"{run_label(run)}: {status}" + (f" ({reason})" if reason else "")]
    if final:
        lines.append("  " + ", ".join(f"{k} {v:.4g}" for k, v in final.items()))
    if status == "completed":
        # The paired saving states both runs' steps to the baseline's threshold; without one, the run's
        # steps to its own 95% loss reduction.
        saving = saving_line(run, writer.path)
        rate = f"{format_rate(result.get('steps_per_s') or 0.0)} steps/s"
        if saving and saving.startswith("saving vs"):
            lines.append(f"  {len(curve)} steps ({rate}); {saving}")
        else:
            lines.append(
                f"  steps to its own 95% loss reduction: {k95 if k95 is not None else 'not reached'}"
                f" of {len(curve)} (window {window}; {rate})"
            )
            if saving:
                lines.append("  " + saving)
    if status == "failed" and code == 1 and (writer.path / "error.log").exists():
        lines.append(f"  traceback: {writer.path / 'error.log'}")
    lines.append(f"  files: {writer.path}")
    print("\n".join(lines), flush=True)
