"""Time one task's whole paper grid (100 runs, populations on) and set it against bench_throughput's estimate.

    python scripts/bench/time_grid.py --task housing      # -> results/time_grid/<device>-housing.md and .json

Runs ``overshoot-bench -m +sweep=paper task=<task> population=true`` as a user would (a subprocess, a fresh
run store), times it from launch to exit, reads every run's run.json, and compares the wall time with the
``grid_hours_population`` that ``scripts/bench/bench_throughput.py`` wrote for this device and task (the JSON
given by --estimate, default results/bench_throughput/<device>.json). The wall time includes what the
estimate leaves out: start-up, data loading, building and capturing the populations, evaluation at every
epoch end, the per-run summaries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_throughput import data_root, device_name

from overshoot.analysis import results
from overshoot.common.provenance import git_rev, versions
from overshoot.config import methods
from overshoot.train.runtime import pick_device

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="housing")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default=None, help="default: bf16 on CUDA (as bench_throughput), else fp32")
    p.add_argument("--estimate", type=Path, default=None, help="bench_throughput JSON with the estimate")
    p.add_argument("--runs", type=Path, default=None, help="run store to use (default: a temporary one)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "time_grid")
    p.add_argument("overrides", nargs="*", help="more overrides for the sweep (e.g. epochs=1: a smoke test)")
    a = p.parse_args(argv)
    device = pick_device(a.device)
    precision = a.precision or ("bf16" if device.type == "cuda" else "fp32")
    name = device_name(device)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    est_file = a.estimate or ROOT / "results" / "bench_throughput" / f"{slug}.json"
    estimate_h = None
    if est_file.exists():
        bench = json.loads(est_file.read_text())
        row = next((t for t in bench["tasks"] if t["task"] == a.task and "grid_hours_population" in t), None)
        estimate_h = row["grid_hours_population"] if row else None
    with tempfile.TemporaryDirectory() as tmp:
        store = a.runs or Path(tmp)
        cmd = [
            sys.executable, "-m", "overshoot.cli.main", "-m", "+sweep=paper", f"task={a.task}",
            f"device={device}", f"precision={precision}", f"out={store}", f"data.root={data_root()}",
            "progress=none", *a.overrides,
        ]  # fmt: skip
        print("$", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            raise SystemExit(f"the grid failed (exit {proc.returncode})")
        runs = [results.read_run(p) for p in results.run_dirs([store / a.task])]
        statuses: dict[str, int] = {}
        for r in runs:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        member_steps = sum(int(r.info.get("steps", 0)) for r in runs)
        pops = [(r.config["optimizer"], r.info.get("population")) for r in runs]
        rates = sorted(
            {
                (methods.get(opt).family, round(pop["member_steps_per_s"]))
                for opt, pop in pops
                if isinstance(pop, dict) and pop.get("member_steps_per_s")
            }
        )
    report: dict[str, Any] = {
        "device": name,
        "task": a.task,
        "precision": precision,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "git_rev": git_rev(),
        "command": " ".join(cmd[3:]).replace(str(store), "<tmp>"),
        "runs": len(runs),
        "statuses": statuses,
        "member_steps": member_steps,
        "wall_s": wall,
        "estimate_s": None if estimate_h is None else estimate_h * 3600,
        "estimate_file": str(est_file.relative_to(ROOT) if est_file.is_relative_to(ROOT) else est_file),
        "population_rates": rates,
    }
    lines = [
        f"# The paper grid of {a.task}, timed on {name}",
        "",
        f"{report['date']}, precision {precision}, git {report['git_rev']}, "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        f"`overshoot-bench {report['command']}`: {len(runs)} runs ({statuses}), "
        f"{member_steps:,} member-steps in **{wall:,.0f} s** of wall time, launch to exit "
        f"({member_steps / wall:,.0f} member-steps/s overall).",
    ]
    if report["estimate_s"] is not None:
        lines.append(
            f"Estimate from {report['estimate_file']}: {report['estimate_s']:,.0f} s "
            f"(wall / estimate = {wall / report['estimate_s']:.2f})."
        )
    lines.append(f"Member-steps/s each population reported (family, rate): {rates}.")
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"{slug}-{a.task}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
