#!/usr/bin/env python
"""What the checkpoints cost a run: the seconds spent writing them as a share of the training time, per task.

    OVERSHOOT_DATA=/path/to/data python scripts/bench/checkpoint_cost.py  # digits, housing, fmnist

Each task trains one run through ``overshoot.train.lifecycle.run_one`` with the default cadence (every
``checkpoint_every`` = 60 s, at epoch ends rate-limited to one per max(1 s, 100 x the last checkpoint's own
time), and on signals) for a few epochs, so that epoch-end checkpoints occur. The training loop times each
checkpoint (state dict copy, serialisation, fsync'd atomic write, run.json heartbeat); run.json records the
count and the total (``checkpoints``, ``checkpoint_time_s``) next to ``wall_time_s``, the training time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# task -> (optimizer, max_steps, why those steps)
RUNS = {
    "digits": ("adam_os", 2640, "the whole paper-preset run: 120 epochs of 22 steps"),
    "housing": ("adam_os", 2580, "10 epochs of 258 steps (16,512 examples, batch 64)"),
    "fmnist": ("adam_os", 1686, "2 epochs of 843 steps (54,000 examples, batch 64)"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(RUNS), help="comma-separated (digits,housing,fmnist)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "checkpoint_cost")
    a = p.parse_args(argv)

    import torch

    from overshoot.config.compose import compose, resolve
    from overshoot.store.writer import run_path
    from overshoot.train import lifecycle

    rows = []
    with tempfile.TemporaryDirectory(prefix="checkpoint-cost-") as store:
        for task in a.tasks.split(","):
            optimizer, steps, why = RUNS[task]
            overrides = [f"task={task}", f"optimizer={optimizer}", f"max_steps={steps}", f"out={store}"]
            overrides += ["progress=none"]
            if lifecycle.run_one(compose(overrides)) != 0:
                print(f"checkpoint_cost: the {task} run failed", file=sys.stderr)
                return 1
            run = resolve(compose(overrides))
            info = json.loads((run_path(run.out, run) / "run.json").read_text())
            rows.append(
                {
                    "task": task,
                    "optimizer": optimizer,
                    "steps": info["steps"],
                    "batch_size": run.hparams.batch_size,
                    "protocol": why,
                    "train_time_s": round(info["wall_time_s"], 3),
                    "checkpoints": info["checkpoints"],
                    "checkpoint_time_s": round(info["checkpoint_time_s"], 4),
                    "share_percent": round(100 * info["checkpoint_time_s"] / info["wall_time_s"], 3),
                    "ms_per_checkpoint": round(
                        1000 * info["checkpoint_time_s"] / max(info["checkpoints"], 1), 2
                    ),
                    "cpu_threads": info["cpu_threads"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    meta = {
        "command": " ".join(
            ["python scripts/bench/checkpoint_cost.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other work)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "git_rev": rev.strip(),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.json").write_text(json.dumps({"runs": rows, **meta}, indent=2) + "\n")
    head = "| task | steps | train time (s) | checkpoints | checkpoint time (s) | share | ms each |\n"
    head += "|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['task']} | {r['steps']:,} | {r['train_time_s']:.1f} | {r['checkpoints']} | "
        f"{r['checkpoint_time_s']:.3f} | {r['share_percent']:.2f} % | {r['ms_per_checkpoint']:.1f} |\n"
        for r in rows
    )
    (a.out / "summary.md").write_text(
        head + body + f"\n{meta['device']}, Python {meta['python']}, torch {meta['torch']}\n"
    )
    print(head + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
