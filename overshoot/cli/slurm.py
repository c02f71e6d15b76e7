"""Submit a sweep as ONE SLURM job array and exit: for clusters that forbid a long-lived launcher.

    overshoot-bench-submit +sweep=paper task=cifar
    overshoot-bench-submit --pack 8 --gpus 1 --partition gpu +sweep=paper task=housing
    overshoot-bench-submit --dry-run optimizer=sgd_os gamma=3,5,7 seed=10,20,30

It lists the sweep's runs (as ``overshoot-bench-manifest``), writes the manifest of those still to do
(missing, failed or interrupted; completed, diverged and live runs are skipped and counted) into a new
folder ``<out>/.slurm/<time>/`` and submits one job array over it through submitit: task i runs manifest
lines i*K .. i*K+K-1 at once (``--pack K``: K small runs share one GPU), each as an ``overshoot-bench
<line>`` subprocess. SLURM signals the task (SIGUSR2) ``--signal-s`` seconds before its time limit: the
task sends SIGTERM to its runs, which checkpoint and mark themselves interrupted, and with ``--requeue`` it
requeues itself and its runs resume when it restarts. SIGTERM or SIGINT (scancel, preemption) reach the
runs the same way. Relaunching the same command submits only what is still missing, failed or interrupted;
interrupted runs resume from their checkpoints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from overshoot.cli import manifest
from overshoot.common.extras import MissingExtra, require

PROG = "overshoot-bench-submit"
MAX_REQUEUES = 10  # --requeue: submitit's max_num_timeout, how often a task may come back after a time limit


class RunsFailed(RuntimeError):
    """Some runs of an array task exited non-zero (failed, diverged or stopped by a signal)."""


def _ignore_usr2() -> None:
    """In the child before exec: SLURM's SIGUSR2 is for the array task, which turns it into SIGTERM."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class ArrayTask:
    """One array task: runs its manifest lines at once as ``bench <line>`` and waits for all of them.

    Each run's output goes to ``<logs>/<job>_<task>-<line number>.log``. A SIGTERM or SIGINT reaching the
    task is forwarded to the runs as SIGTERM; so is SLURM's time-limit SIGUSR2, which submitit turns into a
    call of :meth:`checkpoint`. Raises :class:`RunsFailed` when any run exits non-zero.
    """

    def __init__(self, bench: str, logs: Path, cwd: Path, requeue: bool) -> None:
        self.bench, self.logs, self.cwd, self.requeue = bench, logs, cwd, requeue
        self._procs: list[subprocess.Popen[bytes]] = []
        self._codes: list[int | None] = []

    def _tag(self) -> str:
        # an array of one task is submitted as a plain job
        job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "job")
        return f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"

    def stop(self, why: str) -> None:
        """Send SIGTERM to the runs still alive: they checkpoint and mark themselves interrupted."""
        alive = [p for p, c in zip(self._procs, self._codes, strict=True) if c is None]
        print(f"array task {self._tag()}: {why}: asking {len(alive)} runs to checkpoint and stop", flush=True)
        for p in alive:
            p.send_signal(signal.SIGTERM)  # a no-op for a run that has just exited

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.stop(f"caught {signal.Signals(signum).name}")

    def _wait_all(self) -> None:
        while None in self._codes:
            time.sleep(0.1)

    def __call__(self, first: int, lines: Sequence[str]) -> list[int]:
        """Run manifest lines ``first`` .. ``first + len(lines) - 1``; their exit codes when all are 0."""
        self.logs.mkdir(parents=True, exist_ok=True)
        old = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)}
        self._procs, self._codes = [], [None] * len(lines)
        try:
            for i, line in enumerate(lines):
                log = self.logs / f"{self._tag()}-{first + i}.log"
                print(f"array task {self._tag()}: line {first + i}: {self.bench} {line} > {log}", flush=True)
                with log.open("ab") as f:
                    cmd = [self.bench, *shlex.split(line)]
                    p = subprocess.Popen(
                        cmd, cwd=self.cwd, stdout=f, stderr=subprocess.STDOUT, preexec_fn=_ignore_usr2
                    )
                self._procs.append(p)
                threading.Thread(target=self._reap, args=(i, p), daemon=True).start()
            self._wait_all()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        codes = [int(c) for c in self._codes if c is not None]
        for i, c in enumerate(codes):
            print(f"array task {self._tag()}: line {first + i} exited {c}", flush=True)
        bad = [f"line {first + i} exited {c}" for i, c in enumerate(codes) if c != 0]
        if bad:
            raise RunsFailed(f"array task {self._tag()}: " + ", ".join(bad))
        return codes

    def _reap(self, i: int, p: subprocess.Popen[bytes]) -> None:
        # Reaped by threads so that a signal handler can wait for the runs without Popen.wait's lock.
        self._codes[i] = p.wait()

    def checkpoint(self, first: int, lines: Sequence[str]) -> Any:
        """Called by submitit on SIGUSR2 (time limit near): stop the runs, wait until they have written their
        checkpoints, and with ``requeue`` hand back this task to be run again (its runs then resume)."""
        self.stop("time limit near (SIGUSR2)")
        self._wait_all()
        if not self.requeue:
            return None  # submitit ends the task without requeueing it
        import submitit

        print(f"array task {self._tag()}: requeueing", flush=True)
        return submitit.helpers.DelayedSubmission(
            ArrayTask(self.bench, self.logs, self.cwd, self.requeue), first, list(lines)
        )


def slices(lines: Sequence[str], pack: int) -> tuple[list[int], list[list[str]]]:
    """The array tasks' arguments: task i gets line number i*pack and lines i*pack .. i*pack+pack-1."""
    firsts = list(range(0, len(lines), pack))
    return firsts, [list(lines[i : i + pack]) for i in firsts]


def _bench_bin() -> str:
    """The ``overshoot-bench`` of this Python environment (the job may not inherit an activated venv)."""
    beside = Path(sys.executable).parent / "overshoot-bench"
    if beside.exists():
        return str(beside)
    found = shutil.which("overshoot-bench")
    if not found:
        raise ValueError("overshoot-bench not found: pip install -e . in this environment first")
    return found


def _sbatch_option(opt: str) -> tuple[str, Any]:
    """``--exclude=n1`` -> ("exclude", "n1"); ``--exclusive`` -> ("exclusive", True)."""
    key, eq, value = opt.lstrip("-").partition("=")
    if not key:
        raise ValueError(f"--sbatch-arg {opt!r}: give an sbatch option such as --exclude=n1")
    return key.replace("-", "_"), value if eq else True


def executor_parameters(args: argparse.Namespace, n_tasks: int) -> dict[str, Any]:
    """The ``submitit.SlurmExecutor.update_parameters`` settings of the job array."""
    extra: dict[str, Any] = {"requeue": True} if args.requeue else {}
    extra.update(_sbatch_option(o) for o in args.sbatch_arg)
    params: dict[str, Any] = {
        "job_name": args.job_name,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": args.cpus,
        "time": args.time_min,
        "signal_delay_s": args.signal_s,
        "array_parallelism": min(args.parallelism, n_tasks),
        "stderr_to_stdout": True,
        "additional_parameters": extra,
    }
    if args.gpus:
        params["gres"] = f"gpu:{args.gpus}"
    if args.mem_gb:
        params["mem"] = f"{args.mem_gb}G"
    for k in ("partition", "account", "qos"):
        if getattr(args, k):
            params[k] = getattr(args, k)
    return params


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of ``overshoot-bench-submit``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Submit the runs of a sweep still to do as one SLURM job array, then exit.",
        epilog="Overrides are those of overshoot-bench -m, e.g. +sweep=paper task=cifar.",
    )
    p.add_argument("--pack", type=int, default=1, help="runs per array task, run at once on one GPU (1)")
    p.add_argument("--partition", help="SLURM partition (cluster default)")
    p.add_argument("--account", help="SLURM account (cluster default)")
    p.add_argument("--qos", help="SLURM QOS (cluster default)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per array task; 0 for none (1)")
    p.add_argument("--cpus", type=int, default=4, help="CPUs per array task (4)")
    p.add_argument("--mem-gb", type=int, default=16, help="GB per array task; 0: cluster default (16)")
    p.add_argument("--time-min", type=int, default=240, help="time limit per array task in minutes (240)")
    p.add_argument("--parallelism", type=int, default=64, help="array tasks running at once (64)")
    p.add_argument("--signal-s", type=int, default=120, help="SIGUSR2 this long before the time limit (120)")
    p.add_argument(
        "--requeue",
        action="store_true",
        help=f"a task stopped by its time limit requeues itself (up to {MAX_REQUEUES} times) and resumes",
    )
    p.add_argument("--job-name", default="overshoot-bench")
    p.add_argument("--sbatch-arg", action="append", default=[], help="extra sbatch option, e.g. --exclude=n1")
    p.add_argument(
        "--stale-after", type=float, default=manifest.STALE_AFTER_S, help="see overshoot-bench-manifest"
    )
    p.add_argument("--dir", type=Path, help="folder for the manifest and logs (<out>/.slurm/<time>)")
    p.add_argument("--wait", action="store_true", help="block until the array ends")
    p.add_argument(
        "--dry-run", action="store_true", help="write the manifest and print the plan; submit nothing"
    )
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    for k in ("pack", "cpus", "time_min", "parallelism"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be at least 1")
    return args


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``overshoot-bench-submit``; returns the exit status (2 on bad input)."""
    args = parse(argv)
    try:
        entries = manifest.plan(args.overrides, args.stale_after)
        bench = _bench_bin()
        for o in args.sbatch_arg:  # checked before anything is written
            _sbatch_option(o)
    except ValueError as e:  # includes overshoot.config.compose.ConfigError
        return _error(str(e))
    except Exception as e:  # Hydra's errors about unknown groups or bad override syntax
        return _error(f"{type(e).__name__}: {str(e).splitlines()[0]}")
    print(manifest.summary(entries), flush=True)
    todo = [e for e in entries if e.todo]
    if not todo:
        print("nothing to submit: every run is completed, diverged or running")
        return 0
    if not args.dry_run:  # checked before anything is written
        try:
            require("slurm", PROG, ["submitit"])
        except MissingExtra as e:
            return _error(str(e))
        if shutil.which("sbatch") is None:
            return _error("sbatch not found: run on a SLURM login node")
    out_root = todo[0].path.parents[2]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    folder = (args.dir or out_root / ".slurm" / stamp).resolve()
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    manifest.write_manifest(entries, folder / "manifest.txt")
    firsts, chunks = slices([e.line for e in todo], args.pack)
    n_tasks = len(firsts)
    params = executor_parameters(args, n_tasks)
    if args.dry_run:
        print(f"dry run: {len(todo)} runs in {n_tasks} array tasks; manifest in {folder}")
        print("submitit parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        return 0
    import submitit

    executor = submitit.SlurmExecutor(folder=logs, max_num_timeout=MAX_REQUEUES if args.requeue else 0)
    executor.update_parameters(**params)
    task = ArrayTask(bench, logs, Path.cwd(), args.requeue)
    try:
        jobs = executor.map_array(task, firsts, chunks)
    except Exception as e:  # submitit's FailedJobError etc.: sbatch refused the array
        return _error(f"sbatch failed: {' '.join(str(e).split())[:500]}")
    job = jobs[0].job_id.split("_")[0]
    print(
        f"submitted job {job}: {len(todo)} runs in {n_tasks} array tasks ({args.pack} per task); "
        f"logs in {logs}",
        flush=True,
    )
    if not args.wait:
        return 0
    failed = []
    for j in jobs:
        try:
            j.result()
        except Exception as e:  # the task's RunsFailed, or submitit's UncompletedJobError
            failed.append(
                f"{j.job_id}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
            )
    print(f"job {job} ended: " + ("every array task succeeded" if not failed else "; ".join(failed)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
