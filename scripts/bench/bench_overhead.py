"""The fixed costs of overshoot-bench against lean counterparts, measured in one call (issue 23).

Populations of wall times (each a fresh process, as a user runs it):

- ``help``: ``overshoot-bench --help`` against ``python -c "import torch"`` (the yardstick);
- ``skip``: relaunching a completed run against the same yardstick;
- ``default``: ``overshoot-bench threads=1 progress=none`` (digits, AdamO, 2,640 steps; ``--max-steps``
  shortens it) against a plain PyTorch loop doing the same import, data, training, base-loss forward and
  CSV row per step (``lean`` below);
- ``sweep``: ``overshoot-bench -m`` of ``--jobs`` 3-step runs against one lean process training the same
  3-step runs: the per-job overhead is the difference divided by the number of jobs.

    python scripts/bench/bench_overhead.py --repeats 3 --out results/overhead

writes ``overhead.md`` and ``overhead.csv`` (every measurement) with the device, versions and load average.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = r"""
import sys, time
t = [("start", time.perf_counter())]
def mark(name):
    t.append((name, time.perf_counter()))
import torch
mark("import torch")
from pathlib import Path
from overshoot.config import methods
from overshoot.config.compose import compose, resolve
from overshoot.train.lifecycle import run_one
from overshoot_tasks import build_task
mark("import overshoot (the rest)")
run = resolve(compose(["threads=1", f"task={sys.argv[1]}"]))
mark("Hydra composition and resolve")
torch.set_num_threads(1)
task = build_task(run.task_options, Path(run.data_root), torch.device("cpu"), torch.float32)
mark("build the task (data load)")
model = task.build_model()
mark("build the model")
method = methods.get(run.optimizer, run.family)
opt = methods.build_optimizer(method, model.parameters(), run.hparams, run.gamma)
mark("build the optimizer (first: imports torch._dynamo)")
for (_, a), (name, b) in zip(t, t[1:]):
    print(f"{name}	{b - a:.3f}")
"""

LEAN = r"""
import csv, sys, time
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

torch.set_num_threads(1)
steps, runs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
d = load_digits()
x, y = (d.data / 16.0).astype("float32"), d.target
x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
x_tr, y_tr, x_te, y_te = map(torch.tensor, (x_tr, y_tr, x_te, y_te))
for run in range(runs):
    torch.manual_seed(run)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    with open(f"{out}/steps{run}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "base_loss"])
        step = 0
        while step < steps:
            perm = torch.randperm(len(x_tr))
            for i in range(0, len(x_tr) - 63, 64):
                idx = perm[i:i + 64]
                opt.zero_grad()
                loss = loss_fn(model(x_tr[idx]), y_tr[idx])
                loss.backward()
                opt.step()
                with torch.no_grad():
                    base = loss_fn(model(x_tr[idx]), y_tr[idx])
                w.writerow([step, loss.item(), base.item()])
                step += 1
                if step >= steps:
                    break
            with torch.no_grad():
                acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    print(f"run {run}: {steps} steps, test accuracy {acc:.4f}")
"""


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from starting ``cmd`` to its exit (it must exit 0)."""
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=30, help="jobs of the sweep")
    p.add_argument("--max-steps", type=int, default=2640, help="steps of the default run (2,640: all)")
    p.add_argument("--out", type=Path, default=Path("results/overhead"))
    a = p.parse_args()
    bench = [shutil.which("overshoot-bench") or "overshoot-bench"]
    py = sys.executable
    rows: list[dict[str, object]] = []
    work = Path(tempfile.mkdtemp(prefix="overhead-"))
    lean = work / "lean.py"
    lean.write_text(LEAN)
    steps = f"max_steps={a.max_steps}"
    base = ["threads=1", "progress=none"]
    # the completed run that the skip case relaunches
    subprocess.run([*bench, *base, "max_steps=3", f"out={work / 'skip'}"], check=True, capture_output=True)
    for r in range(a.repeats):
        out = work / f"r{r}"
        (out / "lean").mkdir(parents=True)
        cases = {
            ("help", "overshoot-bench --help"): [*bench, "--help"],
            ("help", "python -c 'import torch'"): [py, "-c", "import torch"],
            ("skip", "relaunch of a completed run"): [*bench, *base, "max_steps=3", f"out={work / 'skip'}"],
            ("default", f"overshoot-bench {steps}"): [*bench, *base, steps, f"out={out / 'run'}"],
            ("default", "plain PyTorch loop"): [py, str(lean), str(a.max_steps), "1", str(out / "lean")],
            ("sweep", f"overshoot-bench -m, {a.jobs} jobs of 3 steps"): [
                *bench, "-m", *base, "max_steps=3", f"seed={','.join(map(str, range(a.jobs)))}",
                f"out={out / 'sweep'}", f"hydra.sweep.dir={out / 'multirun'}",
            ],
            ("sweep", f"plain PyTorch loop, {a.jobs} runs of 3 steps"): [
                py, str(lean), "3", str(a.jobs), str(out / "lean"),
            ],
        }  # fmt: skip
        for (case, what), cmd in cases.items():
            rows.append({"repeat": r, "case": case, "what": what, "wall_s": round(wall(cmd), 3)})
            print(rows[-1], flush=True)
    phase_rows: list[tuple[str, str, float]] = []
    for task in ("digits", "housing"):
        for _ in range(a.repeats):
            res = subprocess.run([py, "-c", PHASES, task], check=True, capture_output=True, text=True)
            for line in res.stdout.splitlines():
                name, sec = line.split("\t")
                phase_rows.append((task, name, float(sec)))
    shutil.rmtree(work, ignore_errors=True)

    import torch

    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "overhead.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    med: dict[str, float] = {}
    for what in dict.fromkeys(str(r["what"]) for r in rows):
        med[what] = statistics.median(float(r["wall_s"]) for r in rows if r["what"] == what)
    torch_s = med["python -c 'import torch'"]
    lines = [
        "# Fixed costs of overshoot-bench (issue 23)",
        "",
        f"Command: `python scripts/bench/bench_overhead.py --repeats {a.repeats} --jobs {a.jobs} "
        f"--max-steps {a.max_steps}`. Wall seconds, median of {a.repeats} fresh processes per line.",
        f"Device: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()}, torch {torch.__version__}; load average before/after: "
        f"{LOAD0} / {' '.join(f'{x:.2f}' for x in os.getloadavg())} (the machine was shared with other "
        "work while this ran: absolute times are inflated, ratios within one call are the comparison).",
        "",
        "| case | command | median wall s | ratio |",
        "|---|---|---|---|",
    ]
    for (case, what), _ in cases.items():
        ref = {
            "help": torch_s,
            "skip": torch_s,
            "default": med["plain PyTorch loop"],
            "sweep": med[f"plain PyTorch loop, {a.jobs} runs of 3 steps"],
        }[case]
        lines.append(f"| {case} | {what} | {med[what]:.2f} | {med[what] / ref:.2f} |")
    sweep = med[f"overshoot-bench -m, {a.jobs} jobs of 3 steps"]
    lean_sweep = med[f"plain PyTorch loop, {a.jobs} runs of 3 steps"]
    lines += [
        "",
        "Ratios: help and skip against `import torch`; the default run against the plain loop; the sweep "
        "against the plain loop's runs.",
        f"Sweep overhead per job: ({sweep:.2f} - {lean_sweep:.2f}) / {a.jobs} = "
        f"{(sweep - lean_sweep) / a.jobs:.3f} s.",
    ]
    lines += [
        "",
        "## Start-up phases of one run, in process (median seconds of "
        f"{a.repeats} fresh processes; OVERSHOOT_DATA={os.environ.get('OVERSHOOT_DATA', 'unset')})",
        "",
        "| phase | digits | housing |",
        "|---|---|---|",
    ]
    names = list(dict.fromkeys(n for _, n, _ in phase_rows))
    for name in names:
        cells = [
            statistics.median([x for t, n, x in phase_rows if t == task and n == name])
            for task in ("digits", "housing")
        ]
        lines.append(f"| {name} | {cells[0]:.2f} | {cells[1]:.2f} |")
    for task in ("digits", "housing"):
        beyond = sum(
            statistics.median([x for t, n, x in phase_rows if t == task and n == name])
            for name in names
            if name != "import torch"
        )
        lines.append(f"\nStart-up beyond `import torch`, {task}: {beyond:.2f} s.")
    (a.out / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


LOAD0 = " ".join(f"{x:.2f}" for x in os.getloadavg())

if __name__ == "__main__":
    main()
