"""Training throughput on the current device: single runs vs populations, and the paper grid's cost.

    python scripts/bench/bench_throughput.py           # housing, fmnist, vae_fmnist, cifar; sizes 1, 10, 50
    python scripts/bench/bench_throughput.py --quick   # tiny step counts (a smoke test, e.g. on a CPU)
    python scripts/bench/bench_throughput.py --tasks fmnist --sizes 1,50 --steps 2000

Each rate is measured inside the real training loop (``overshoot.train.single.train`` for a single run,
``overshoot.train.population.train_population`` for a population) with base-loss logging on: the wall time of
steps W+1..W+N, the device synchronised at both ends, so start-up, data loading, graph capture and
compilation are left out while per-step logging, the periodic flushes and any epoch-end evaluation inside
the window are in. Both families are measured with the preset's hyperparameters: the SGD family (single
run: SGDO gamma 3; populations cycle CM, NAG, SGDO 3/5/7 over seeds) at every size, and the Adam family
(single run: AdamO gamma 3; populations cycle AdamW, AdamO 3/5/7, NAdam) at size 1 and the largest size.
On CUDA the single SGD run is also timed with ``cuda_graph=false`` (the eager loop). The paper grid
estimate uses the preset's batch sizes and epochs and counts per task 10 seeds x (CM, NAG, SGDO 3/5/7)
at the SGD family's largest-population rate and 10 seeds x (AdamW, AdamO 3/5/7, NAdam) at the Adam
family's (the single-run estimate: NAdam at its own single-run rate). ``--conv`` picks how populations
run their convolutions (``overshoot.train.population.CONV_MODES``). Writes
results/bench_throughput/<device>.md and .json (``-quick`` appended to the name for --quick runs, ``-<conv>``
for a --conv other than auto).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from overshoot.common.provenance import git_rev, versions
from overshoot.config.compose import compose, resolve
from overshoot.config.run import RunConfig
from overshoot.store.writer import RunWriter, run_path
from overshoot.train.population import train_population
from overshoot.train.runtime import pick_device
from overshoot.train.single import train

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("housing", "fmnist", "vae_fmnist", "cifar")
FAMILIES = {
    "sgd": (("sgd", 0.0), ("nesterov", 0.0), ("sgd_os", 3.0), ("sgd_os", 5.0), ("sgd_os", 7.0)),
    "adam": (("adam", 0.0), ("adam_os", 3.0), ("adam_os", 5.0), ("adam_os", 7.0), ("nadam", 0.0)),
}
SEEDS = tuple(range(10, 101, 10))


def data_root() -> Path:
    env = os.environ.get("OVERSHOOT_DATA")
    if env:
        return Path(env)
    shared = Path("/work/shared/data")
    return shared if shared.is_dir() else ROOT / "data"


def base_run(
    task: str, device: str, precision: str, root: Path, batch_size: int | None, family: str = "sgd"
) -> RunConfig:
    overrides = [
        f"task={task}",
        f"+method={family}_os_g3",
        "seed=10",
        f"device={device}",
        f"precision={precision}",
        f"data.root={root}",
        "progress=none",
        "checkpoint_every=1e9",
    ]
    if batch_size is not None:
        overrides.append(f"batch_size={batch_size}")
    return resolve(compose(overrides))


def members(run: RunConfig, n: int, family: str = "sgd") -> list[RunConfig]:
    """n members of ``family``: methods cycle fastest, then seeds (more than the grid's seeds continue with
    new seeds beyond 100)."""
    methods = FAMILIES[family]
    out = []
    for i in range(n):
        opt, gamma = methods[i % len(methods)]
        seed = SEEDS[i // len(methods)] if i // len(methods) < len(SEEDS) else 100 + i
        out.append(run.replace(optimizer=opt, gamma=gamma, seed=seed))
    return out


class StepClock:
    """A ``should_stop`` hook (the loops call it once per step) that times steps ``start``..``stop``."""

    def __init__(self, start: int, stop: int, device: torch.device) -> None:
        self.start, self.stop, self.device = start, stop, device
        self.calls = 0
        self.times: dict[int, float] = {}

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls in (self.start, self.stop):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.times[self.calls] = time.perf_counter()
        return False

    def seconds(self) -> float:
        return self.times[self.stop] - self.times[self.start]


def member_rate(
    run: RunConfig,
    task: Any,
    device: torch.device,
    size: int,
    warm: int,
    n: int,
    family: str = "sgd",
    conv: str = "auto",
) -> float:
    """Member-steps per second of ``size`` members (1: the single-run loop) over steps warm+1..warm+n."""
    clock = StepClock(warm, warm + n, device)
    with tempfile.TemporaryDirectory() as tmp:
        r = run.replace(out=tmp, max_steps=warm + n + 1)  # the final evaluation comes after the window
        if size == 1:
            train(r, task, RunWriter(run_path(tmp, r)), device, clock)
        else:
            runs = members(r, size, family)
            writers = [RunWriter(run_path(tmp, m)) for m in runs]
            train_population(runs, task, writers, device, clock, conv=conv)
    return size * n / max(clock.seconds(), 1e-9)


def grid_steps(task: str, n_train: int, preset: dict[str, Any]) -> dict[str, int]:
    """Optimizer steps of the paper grid for ``task``: {"sgd": per run, "adam": per run}."""
    out = {}
    for fam in ("sgd", "adam"):
        hp = {**preset["common"], **preset["tasks"][task].get(fam, {})}
        out[fam] = int(hp["epochs"]) * (n_train // int(hp["batch_size"]))
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    p.add_argument("--sizes", default=None, help="population sizes (1 = single run); default 1,10,50")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 1000)")
    p.add_argument("--warmup", type=int, default=None, help="steps of the subtracted short run (default 200)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default=None, help="fp32 | bf16 (default: bf16 on CUDA, as the paper)")
    p.add_argument("--quick", action="store_true", help="tiny step counts and sizes 1,2: a smoke test")
    p.add_argument(
        "--conv", default="auto", help="populations' convolutions: auto|grouped|matmul|conv2d-matmul"
    )
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench_throughput")
    a = p.parse_args(argv)
    device = pick_device(a.device)
    precision = a.precision or ("bf16" if device.type == "cuda" else "fp32")
    sizes = [int(s) for s in (a.sizes or ("1,2" if a.quick else "1,10,50")).split(",")]
    steps = a.steps or (5 if a.quick else 1000)
    warm = a.warmup or (3 if a.quick else 200)
    root = data_root()
    from omegaconf import OmegaConf
    from overshoot_tasks import DataMissingError, build_task

    preset_dict: dict[str, Any] = OmegaConf.to_container(compose([]).preset, resolve=True)  # type: ignore[assignment]
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    cases: list[tuple[str, int | None]] = [(t, None) for t in a.tasks.split(",")]
    if "fmnist" in a.tasks.split(","):
        cases.insert(cases.index(("fmnist", None)), ("fmnist", 32))  # the single-run target: batch 32
    tasks_built: dict[str, Any] = {}
    for task_name, bs in cases:
        try:
            run = base_run(task_name, str(device), precision, root, bs)
            if task_name not in tasks_built:
                dtype = torch.float32
                tasks_built[task_name] = build_task(run.task_options, root, device, dtype)
        except DataMissingError as e:
            missing.append(str(e))
            print(f"skipping {task_name}: {e}", flush=True)
            continue
        task = tasks_built[task_name]
        row: dict[str, Any] = {
            "task": task_name,
            "batch_size": run.hparams.batch_size,
            "n_train": task.n_train,
            "rates": {},
            "adam_rates": {},
        }

        def measure(key: str, r: RunConfig, size: int, family: str, task: Any = task) -> float:
            rate = member_rate(r, task, device, size, warm, steps, family, a.conv)
            print(
                f"{r['task']} batch {r['hparams']['batch_size']} {key}: {rate:,.0f} member-steps/s",
                flush=True,
            )
            return rate

        for size in sizes:
            row["rates"][size] = measure(f"sgd size {size}", run, size, "sgd")
        if device.type == "cuda" and 1 in sizes:
            row["eager_single"] = measure("sgd size 1 eager", run.replace(cuda_graph=False), 1, "sgd")
            if bs is not None and precision != "fp32":  # the single-run target row: the other precision too
                row["fp32_single"] = measure("sgd size 1 fp32", run.replace(precision="fp32"), 1, "sgd")
        if bs is None:
            adam_run = base_run(task_name, str(device), precision, root, bs, family="adam")
            for size in sorted({1, max(sizes)}):
                row["adam_rates"][size] = measure(f"adam size {size}", adam_run, size, "adam")
            nadam_run = {**adam_run, "optimizer": "nadam", "gamma": 0.0}
            row["nadam_single"] = measure("nadam size 1", nadam_run, 1, "adam")
            row["grid_steps"] = grid_steps(task_name, task.n_train, preset_dict)
        rows.append(row)

    big = max(sizes)
    total_single = total_pop = 0.0
    for row in rows:
        if "grid_steps" not in row:
            continue
        g = row["grid_steps"]
        sgd1, sgd_pop = row["rates"].get(1), row["rates"][big]
        adam1, adam_pop = row["adam_rates"][1], row["adam_rates"][big]
        runs_sgd, runs_adam, runs_nadam = 5 * len(SEEDS), 4 * len(SEEDS), len(SEEDS)
        row["grid_member_steps"] = runs_sgd * g["sgd"] + (runs_adam + runs_nadam) * g["adam"]
        if sgd1:
            row["grid_hours_single"] = (
                runs_sgd * g["sgd"] / sgd1
                + runs_adam * g["adam"] / adam1
                + runs_nadam * g["adam"] / row["nadam_single"]
            ) / 3600
            total_single += row["grid_hours_single"]
        pop_s = runs_sgd * g["sgd"] / sgd_pop + (runs_adam + runs_nadam) * g["adam"] / adam_pop
        row["grid_hours_population"] = pop_s / 3600
        total_pop += row["grid_hours_population"]

    name = device_name(device)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ("-quick" if a.quick else "")
    slug += "" if a.conv == "auto" else f"-{a.conv}"
    report = {
        "device": name,
        "precision": precision,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "git_rev": git_rev(),
        "quick": a.quick,
        "steps": steps,
        "warmup": warm,
        "sizes": sizes,
        "conv": a.conv,
        "preset": preset_dict["name"],
        "data_root": str(root),
        "missing_data": missing,
        "tasks": rows,
        "grid_hours_single": total_single,
        "grid_hours_population": total_pop,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{slug}.json").write_text(json.dumps(report, indent=2) + "\n")
    (a.out / f"{slug}.md").write_text(markdown(report, big))
    print(markdown(report, big))
    print(f"wrote {a.out / slug}.md and .json")
    return 0


def markdown(r: dict[str, Any], big: int) -> str:
    sizes = r["sizes"]
    lines = [
        f"# Training throughput on {r['device']}",
        "",
        f"{r['date']}, precision {r['precision']}, git {r['git_rev']}, "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        f"Rates in member-steps/s: {r['steps']} timed steps after {r['warmup']} warm-up steps, inside the "
        "training loop, base-loss logging on. SGD = CM/NAG/SGDO members, Adam = AdamW/AdamO/NAdam members; "
        "'eager' = the single run with cuda_graph=false."
        + (" QUICK RUN: tiny step counts, a smoke test, not a measurement." if r["quick"] else ""),
        "",
        "| task | batch | "
        + " | ".join(f"SGD size {s}" for s in sizes)
        + " | SGD size 1 eager | Adam size 1 | "
        + f"Adam size {big} | NAdam size 1 | paper grid member-steps | device-hours single | "
        "device-hours population |",
        "|---|---|" + "---:|" * (len(sizes) + 4) + "---:|---:|---:|",
    ]
    nan = float("nan")
    for t in r["tasks"]:
        rates = " | ".join(_num(t["rates"][s]) for s in sizes)
        adam = t["adam_rates"]
        extra = (
            f"{_num(t.get('eager_single', nan))} | {_num(adam.get(1, nan))} | {_num(adam.get(big, nan))} | "
            f"{_num(t.get('nadam_single', nan))}"
            if adam
            else f"{_num(t.get('eager_single', nan))} | | | "
        )
        grid = (
            f"{t['grid_member_steps']:,} | {_num(t.get('grid_hours_single', nan))} | "
            f"{_num(t['grid_hours_population'])}"
            if "grid_member_steps" in t
            else "(single-run target row) | | "
        )
        lines.append(f"| {t['task']} | {t['batch_size']} | {rates} | {extra} | {grid} |")
    lines += [
        f"\nSingle run of {t['task']} at batch {t['batch_size']} in fp32 (TF32 convolutions): "
        f"{_num(t['fp32_single'])} steps/s."
        for t in r["tasks"]
        if "fp32_single" in t
    ]
    lines += [
        "",
        f"Paper grid on these tasks: {_num(r['grid_hours_single'])} device-hours as single runs, "
        f"{_num(r['grid_hours_population'])} with populations (size-{big} rates, NAdam in the Adam family's; "
        f"population convolutions: {r.get('conv', 'auto')}).",
    ]
    if r["missing_data"]:
        lines += ["", "Missing data (tasks skipped):", *[f"- {m}" for m in r["missing_data"]]]
    return "\n".join(lines) + "\n"


def _num(v: float) -> str:
    return "" if v != v else f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


if __name__ == "__main__":
    sys.exit(main())
