#!/usr/bin/env python
"""Kill runs with SIGKILL at random moments, resume each, compare it bit for bit with an uninterrupted run.

    python scripts/bench/fault_injection.py --n 50 --steps 1000    # -> results/fault_injection/after_claim/
    python scripts/bench/fault_injection.py --n 50 --steps 1000 --after training   # -> .../after_training/
    python scripts/bench/fault_injection.py --n 3 --steps 300 --out /tmp/fi    # what CI's test does, smaller

Protocol: one uninterrupted reference run of ``overshoot-bench`` (a real subprocess, ``checkpoint_every=0``:
a checkpoint at every flush and epoch end, so kills land in and around checkpoint writes). Then, per trial, a
fresh store: the same command is launched, killed with SIGKILL a uniformly random delay after it claimed its
run directory (``--after claim``: task setup, training and final writes in the window) or after its steps.csv
appeared (``--after training``), between 0 and the reference's time from that moment to its exit, and
launched again to completion. By default both launches are forks of this process running
``overshoot.train.lifecycle.run_one`` (torch imported once); ``--subprocess`` launches ``overshoot-bench``
itself. A trial passes when the resumed run's steps.csv (but its time_s) and epochs.csv are byte-identical to
the reference's, its run.json is strict JSON with status completed, and no temporary file, claim or checkpoint
is left behind.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from overshoot.store.writer import without_time

ROOT = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
MARKERS = {"claim": ".claim", "training": "steps.csv"}


def _command(out: Path, steps: int, extra: list[str]) -> list[str]:
    return [
        *BENCH,
        f"out={out}",
        "optimizer=sgd_os",
        "gamma=5",
        f"max_steps={steps}",
        "checkpoint_every=0",
        "progress=none",
        "threads=1",
        *extra,
    ]


def _run_dir(out: Path) -> Path | None:
    found = [p.parent for p in out.rglob("run.json")]
    return found[0] if len(found) == 1 else None


def _strict_json(path: Path) -> dict[str, Any]:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


class Forked:
    """A run of ``overshoot.train.lifecycle.run_one`` in a forked child of this process (torch already
    imported, so no start-up cost); the child's output goes to ``log``. Quacks like the part of
    subprocess.Popen used here."""

    def __init__(self, overrides: list[str], log: Path) -> None:
        self.log, self.returncode = log, None
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                from overshoot.config.compose import compose
                from overshoot.train.lifecycle import run_one

                code = run_one(compose(overrides))
            except KeyboardInterrupt:
                code = 130
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _launch(store: Path, steps: int, extra: list[str], fork: bool) -> Any:
    if fork:
        store.mkdir(parents=True, exist_ok=True)
        return Forked(_command(store, steps, extra)[len(BENCH) :], store.parent / f"{store.name}.log")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        _command(store, steps, extra),
        cwd=store.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _finish(proc: Any) -> tuple[int, str]:
    """Wait for a launch to end; (exit code, its output)."""
    if isinstance(proc, Forked):
        return proc.wait(), proc.output()
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out.decode(errors="replace")


def _wait_for(proc: Any, store: Path, marker: str) -> float:
    """Wait until a file named ``marker`` appears in the launch's store (``.claim``: it claimed its run
    directory; ``steps.csv``: training started) or it exited; the time waited."""
    t0 = time.perf_counter()
    while proc.poll() is None and not any(store.rglob(marker)):
        time.sleep(0.005)
    return time.perf_counter() - t0


def _state_at_kill(run: Path | None) -> tuple[int, bool]:
    """(whole rows in steps.csv, whether a checkpoint exists) right after the kill."""
    if run is None or not (run / "steps.csv").exists():
        return 0, False
    text = (run / "steps.csv").read_bytes()
    return max(text.count(b"\n") - 1, 0), (run / "checkpoint.pt").exists()


def trial(
    i: int, store: Path, steps: int, delay: float, ref: Path, extra: list[str], fork: bool, marker: str
) -> dict[str, Any]:
    """One kill-and-resume trial in ``store``; the row of trials.csv."""
    proc = _launch(store, steps, extra, fork)
    _wait_for(proc, store, marker)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    _finish(proc)
    rows_at_kill, ckpt_at_kill = _state_at_kill(_run_dir(store))
    leftovers_at_kill = sorted(p.name for p in store.rglob(".*.tmp"))
    code, log = _finish(_launch(store, steps, extra, fork))
    again = subprocess.CompletedProcess([], code, log, log)
    run = _run_dir(store)
    row: dict[str, Any] = {
        "trial": i,
        "kill_after_s": round(delay, 3),
        "finished_before_kill": finished_first,
        "rows_at_kill": rows_at_kill,
        "checkpoint_at_kill": ckpt_at_kill,
        "tmp_files_at_kill": len(leftovers_at_kill),
        "relaunch": next(
            (w for w in ("resuming in", "starting in", "skipped") if w in again.stdout), "?"
        ).split()[0],
        "took_over_claim": "took over" in again.stdout,
        "relaunch_exit": again.returncode,
    }
    ok = again.returncode == 0 and run is not None
    problems = []
    if run is None:
        problems.append("no run directory")
    else:
        for name in ("steps.csv", "epochs.csv"):  # steps.csv's time_s left out: the clock's readings differ
            if without_time((run / name).read_text()) != without_time((ref / name).read_text()):
                problems.append(f"{name} differs")
        try:
            info = _strict_json(run / "run.json")
            if info.get("status") != "completed":
                problems.append(f"status {info.get('status')}")
        except ValueError as e:
            problems.append(f"run.json: {e}")
        left = [
            p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name in (".claim", "checkpoint.pt")
        ]
        if left:
            problems.append(f"left behind: {', '.join(left)}")
    if again.returncode != 0:
        problems.append(f"exit {again.returncode}: {again.stderr.strip().splitlines()[-1:]}")
    row["identical"] = ok and not problems
    row["problems"] = "; ".join(problems)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50, help="trials (50)")
    p.add_argument("--steps", type=int, default=600, help="max_steps of each digits run (600)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (0)")
    p.add_argument("--out", type=Path, help="results folder (results/fault_injection/after_<--after>)")
    p.add_argument(
        "--after",
        choices=sorted(MARKERS),
        default="claim",
        help="start the kill clock when the run claims its directory (claim: task setup, training and the "
        "final writes are all in the window) or when its steps.csv appears (training)",
    )
    p.add_argument("--work", type=Path, default=None, help="scratch folder (a temporary one by default)")
    p.add_argument(
        "--subprocess",
        dest="fork",
        action="store_false",
        help="launch every run as an overshoot-bench subprocess (default: a fork of this process running "
        "overshoot.train.lifecycle.run_one, which spares the seconds of start-up per launch)",
    )
    p.add_argument("overrides", nargs="*", help="extra overshoot-bench overrides for every run")
    a = p.parse_args(argv)
    a.out = a.out or ROOT / "results" / "fault_injection" / f"after_{a.after}"
    rng = random.Random(a.seed)
    if a.fork:  # import once here, run nothing: each fork starts with torch loaded and no threads running
        import overshoot_tasks  # noqa: F401
        import sklearn.datasets  # noqa: F401

        import overshoot.cli.main  # noqa: F401

    work = a.work or Path(tempfile.mkdtemp(prefix="fault-injection-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ref_store = work / "reference"
        t0 = time.perf_counter()
        proc = _launch(ref_store, a.steps, a.overrides, a.fork)
        startup = _wait_for(proc, ref_store, MARKERS[a.after])
        code, err = _finish(proc)
        ref_wall = time.perf_counter() - t0
        window = ref_wall - startup  # from the marker to the exit
        ref = _run_dir(ref_store)
        if code != 0 or ref is None:
            print(f"fault_injection: the reference run failed: {err[-500:]}", file=sys.stderr)
            return 1
        rows = []
        for i in range(a.n):
            store = work / f"trial{i:03d}"
            delay = rng.uniform(0.0, window)
            row = trial(i, store, a.steps, delay, ref, a.overrides, a.fork, MARKERS[a.after])
            rows.append(row)
            print(
                f"trial {i}: killed {delay:.2f}s after {a.after} at {row['rows_at_kill']} rows "
                f"(checkpoint {'yes' if row['checkpoint_at_kill'] else 'no'}), relaunch {row['relaunch']}: "
                f"{'identical' if row['identical'] else 'DIFFERENT ' + row['problems']}",
                flush=True,
            )
            shutil.rmtree(store, ignore_errors=True)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    n_same = sum(r["identical"] for r in rows)
    summary = {
        "trials": a.n,
        "identical": n_same,
        "steps_per_run": a.steps,
        "reference_wall_s": round(ref_wall, 2),
        "kill_window_s": round(window, 2),
        "kill_clock_starts_at": a.after,
        "kills_before_first_row": sum(r["rows_at_kill"] == 0 for r in rows),
        "kills_with_checkpoint": sum(bool(r["checkpoint_at_kill"]) for r in rows),
        "kills_leaving_tmp_files": sum(r["tmp_files_at_kill"] > 0 for r in rows),
        "resumed_from_checkpoint": sum(r["relaunch"] == "resuming" for r in rows),
        "stale_claims_taken_over": sum(bool(r["took_over_claim"]) for r in rows),
        "finished_before_kill": sum(bool(r["finished_before_kill"]) for r in rows),
        "command": " ".join(
            ["python scripts/bench/fault_injection.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "run_command": " ".join(["overshoot-bench", *_command(Path("<store>"), a.steps, a.overrides)[3:]]),
        "launch": "fork running overshoot.train.lifecycle.run_one"
        if a.fork
        else "overshoot-bench subprocess",
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "seed": a.seed,
        "git_rev": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{n_same} of {a.n} killed runs resumed bit-identical ({a.out})")
    return 0 if n_same == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
