#!/usr/bin/env python
"""Submit a sweep as ONE ``sbatch --array`` job and exit: for clusters that forbid a long-lived launcher.

    python scripts/slurm/submit_array.py +sweep=paper task=cifar
    python scripts/slurm/submit_array.py --pack 8 --gpus 1 --partition gpu +sweep=paper task=housing
    python scripts/slurm/submit_array.py --dry-run optimizer=sgd_os gamma=3,5,7 seed=10,20,30

It lists the sweep's runs (as ``manifest.py``), writes the manifest of those still to do (missing, failed or
interrupted; completed, diverged and live runs are skipped and counted) into a new folder
``<out>/.slurm/<time>/`` and submits one job array over it: task i runs manifest lines i*K .. i*K+K-1 at
once (``--pack K``: K small runs share one GPU) through ``array_task.sh``. Relaunching the same command
submits only what is still missing, failed or interrupted; interrupted runs resume from their checkpoints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifest  # the script's own folder, not an installed package

HERE = Path(__file__).resolve().parent


def _bench_bin() -> str:
    """The ``overshoot-bench`` of this Python environment (the job may not inherit an activated venv)."""
    beside = Path(sys.executable).parent / "overshoot-bench"
    if beside.exists():
        return str(beside)
    found = shutil.which("overshoot-bench")
    if not found:
        raise ValueError("overshoot-bench not found: pip install -e . in this environment first")
    return found


def sbatch_script(args: argparse.Namespace, folder: Path, n_tasks: int, bench: str) -> str:
    """The batch script of the job array."""
    opts = [
        f"--job-name={args.job_name}",
        f"--array=0-{n_tasks - 1}%{args.parallelism}",
        f"--output={folder}/logs/%A_%a.out",
        "--open-mode=append",
        f"--chdir={Path.cwd()}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={args.cpus}",
        f"--time={args.time_min}",
        f"--signal=B:USR2@{args.signal_s}",
    ]
    if args.gpus:
        opts.append(f"--gres=gpu:{args.gpus}")
    if args.mem_gb:
        opts.append(f"--mem={args.mem_gb}G")
    if args.partition:
        opts.append(f"--partition={args.partition}")
    if args.account:
        opts.append(f"--account={args.account}")
    if args.qos:
        opts.append(f"--qos={args.qos}")
    if args.requeue:
        opts.append("--requeue")
    opts += args.sbatch_arg
    lines = ["#!/bin/bash", *(f"#SBATCH {o}" for o in opts)]
    if args.requeue:
        lines.append("export OVERSHOOT_REQUEUE=1")
    run = [str(HERE / "array_task.sh"), str(folder / "manifest.txt"), str(args.pack), bench]
    lines += [
        "# Written by scripts/slurm/submit_array.py; resubmitting the same overrides finishes what is left.",
        f"exec {shlex.join(run)}",
    ]
    return "\n".join(lines) + "\n"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
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
        "--requeue", action="store_true", help="a task stopped by its time limit requeues itself and resumes"
    )
    p.add_argument("--job-name", default="overshoot-bench")
    p.add_argument("--sbatch-arg", action="append", default=[], help="extra sbatch option, e.g. --exclude=n1")
    p.add_argument("--stale-after", type=float, default=manifest.STALE_AFTER_S, help="see manifest.py")
    p.add_argument("--dir", type=Path, help="folder for manifest, script and logs (<out>/.slurm/<time>)")
    p.add_argument("--wait", action="store_true", help="block until the array ends (sbatch --wait)")
    p.add_argument("--dry-run", action="store_true", help="write manifest and script, do not submit")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    for k in ("pack", "cpus", "time_min", "parallelism"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        entries = manifest.plan(args.overrides, args.stale_after)
        bench = _bench_bin()
    except ValueError as e:
        print(f"submit_array: error: {e}", file=sys.stderr)
        return 2
    print(manifest.summary(entries), flush=True)
    todo = [e for e in entries if e.todo]
    if not todo:
        print("nothing to submit: every run is completed, diverged or running")
        return 0
    out_root = todo[0].path.parents[2]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    folder = (args.dir or out_root / ".slurm" / stamp).resolve()
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    manifest.write_manifest(entries, folder / "manifest.txt")
    n_tasks = math.ceil(len(todo) / args.pack)
    script = folder / "array.sbatch"
    script.write_text(sbatch_script(args, folder, n_tasks, bench))
    if args.dry_run:
        print(f"dry run: {len(todo)} runs in {n_tasks} array tasks; manifest and script in {folder}")
        return 0
    if shutil.which("sbatch") is None:
        print("submit_array: error: sbatch not found: run on a SLURM login node", file=sys.stderr)
        return 2
    cmd = ["sbatch", "--parsable", *(["--wait"] if args.wait else []), str(script)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    job = proc.stdout.readline().strip().split(";")[0]
    if job:
        print(
            f"submitted job {job}: {len(todo)} runs in {n_tasks} array tasks ({args.pack} per task); "
            f"logs in {folder}/logs",
            flush=True,
        )
    rc = proc.wait()
    if rc and not job:
        print(f"submit_array: error: sbatch failed (exit {rc}); script {script}", file=sys.stderr)
        return 2
    if args.wait:
        print(f"job {job} ended: " + ("every array task succeeded" if rc == 0 else f"sbatch exit {rc}"))
        return 0 if rc == 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
