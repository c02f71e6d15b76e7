#!/usr/bin/env python
"""Kill runs with SIGKILL at random moments, resume each, compare it bit for bit with an uninterrupted run.

    python scripts/fault_injection.py                       # N = 50 digits runs -> results/fault_injection/
    python scripts/fault_injection.py --n 3 --steps 300 --out /tmp/fi    # what CI's test does, smaller

Protocol: one uninterrupted reference run of ``overshoot-bench`` (a real subprocess, ``checkpoint_every=0``:
a checkpoint at every flush and epoch end, so kills land in and around checkpoint writes). Then, per trial, a
fresh store: the same command is launched, killed with SIGKILL a uniformly random delay after it claimed its
run directory (imports done), between 0 and the reference's time from its claim to its exit (task setup,
training, final writes), and launched again to completion. A trial passes when
the resumed run's steps.csv and epochs.csv are byte-identical to the reference's, its run.json is strict JSON
with status completed, and no temporary file, claim or checkpoint is left behind.
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

ROOT = Path(__file__).resolve().parent.parent
BENCH = [sys.executable, "-c", "from overshoot.cli import main; main()"]


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


def _wait_for_claim(proc: subprocess.Popen[bytes], store: Path) -> float:
    """Wait until the launch has claimed its run directory (imports and config done) or exited; the time."""
    t0 = time.perf_counter()
    while proc.poll() is None and not any(store.rglob(".claim")):
        time.sleep(0.005)
    return time.perf_counter() - t0


def _state_at_kill(run: Path | None) -> tuple[int, bool]:
    """(whole rows in steps.csv, whether a checkpoint exists) right after the kill."""
    if run is None or not (run / "steps.csv").exists():
        return 0, False
    text = (run / "steps.csv").read_bytes()
    return max(text.count(b"\n") - 1, 0), (run / "checkpoint.pt").exists()


def trial(i: int, store: Path, steps: int, delay: float, ref: Path, extra: list[str]) -> dict[str, Any]:
    """One kill-and-resume trial in ``store``; the row of trials.csv."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _command(store, steps, extra)
    proc = subprocess.Popen(
        cmd, cwd=store.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    _wait_for_claim(proc, store)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_at_kill, ckpt_at_kill = _state_at_kill(_run_dir(store))
    leftovers_at_kill = sorted(p.name for p in store.rglob(".*.tmp"))
    again = subprocess.run(cmd, cwd=store.parent, capture_output=True, text=True, env=env, timeout=600)
    run = _run_dir(store)
    row: dict[str, Any] = {
        "trial": i,
        "kill_after_s": round(delay, 3),
        "finished_before_kill": finished_first,
        "rows_at_kill": rows_at_kill,
        "checkpoint_at_kill": ckpt_at_kill,
        "tmp_files_at_kill": len(leftovers_at_kill),
        "relaunch": "resuming"
        if "resuming" in again.stdout
        else ("skipped" if "skipped" in again.stdout else "starting"),
        "relaunch_exit": again.returncode,
    }
    ok = again.returncode == 0 and run is not None
    problems = []
    if run is None:
        problems.append("no run directory")
    else:
        for name in ("steps.csv", "epochs.csv"):
            if (run / name).read_bytes() != (ref / name).read_bytes():
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
    p.add_argument("--out", type=Path, default=ROOT / "results" / "fault_injection")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (a temporary one by default)")
    p.add_argument("overrides", nargs="*", help="extra overshoot-bench overrides for every run")
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    work = a.work or Path(tempfile.mkdtemp(prefix="fault-injection-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ref_store = work / "reference"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            _command(ref_store, a.steps, a.overrides),
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        startup = _wait_for_claim(proc, ref_store)
        _, err = proc.communicate()
        ref_wall = time.perf_counter() - t0
        window = ref_wall - startup  # from the claim to the exit: setup, training, final writes
        ref = _run_dir(ref_store)
        if proc.returncode != 0 or ref is None:
            print(f"fault_injection: the reference run failed: {err.decode()[-500:]}", file=sys.stderr)
            return 1
        rows = []
        for i in range(a.n):
            store = work / f"trial{i:03d}"
            delay = rng.uniform(0.0, window)
            row = trial(i, store, a.steps, delay, ref, a.overrides)
            rows.append(row)
            print(
                f"trial {i}: killed {delay:.2f}s after its claim at {row['rows_at_kill']} rows "
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
        "kills_before_first_row": sum(r["rows_at_kill"] == 0 for r in rows),
        "kills_with_checkpoint": sum(bool(r["checkpoint_at_kill"]) for r in rows),
        "kills_leaving_tmp_files": sum(r["tmp_files_at_kill"] > 0 for r in rows),
        "resumed_from_checkpoint": sum(r["relaunch"] == "resuming" for r in rows),
        "finished_before_kill": sum(bool(r["finished_before_kill"]) for r in rows),
        "command": " ".join(
            ["python scripts/fault_injection.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "run_command": " ".join(["overshoot-bench", *_command(Path("<store>"), a.steps, a.overrides)[3:]]),
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
