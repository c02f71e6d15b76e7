"""The fixed costs of overshoot-bench against lean counterparts, measured in one call (issue 23).

Populations of wall times (each a fresh process, as a user runs it), the cases in turn within each repeat:

- ``no torch``: ``overshoot-bench --help``, ``--cfg job``, a bad setting, the other console scripts'
  ``--help``, and relaunching a completed run (the skip path), each against ``python -c "import torch"``
  (the yardstick);
- ``default``: ``overshoot-bench threads=1 progress=none`` (digits, AdamO, 2,640 steps; ``--max-steps``
  shortens it) against a plain PyTorch loop doing the same import, data, training, base-loss forward and
  CSV row per step (``lean`` below);
- ``sweep``: ``overshoot-bench -m`` of ``--jobs`` 3-step runs against one lean process training the same
  number of 3-step runs: the per-job overhead is the difference divided by the number of jobs;
- ``population``: the paper's 100-run grid of digits (``+sweep=paper``: 10 methods x 10 seeds, trained as
  populations) at 3 steps against one lean process training 100 3-step runs.

Then the start-up phases of one run of digits and of housing, in process: each with an empty data cache
(``cold``: the source parsed) and with the cache the cold build left (``warm``), and ``python -X importtime``
of the same start-up (the imports costing most beyond torch's own).

    python scripts/bench/bench_overhead.py --repeats 2 --out results/overhead

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
from overshoot.config.schema import STEP_COLUMNS
from overshoot.store.claim import claim_run
from overshoot.store.writer import RunWriter, run_path
from overshoot.train.lifecycle import run_one
from overshoot_tasks import build_task
mark("import overshoot (the rest)")
run = resolve(compose(["threads=1", f"task={sys.argv[1]}", f"out={sys.argv[2]}", f"optimizer={sys.argv[3]}"]))
mark("Hydra composition and resolve")
writer = RunWriter(run_path(run.out, run), step_columns=STEP_COLUMNS)
writer.claim = claim_run(writer.path, announce=False)
writer.prepare()
writer.write_config(run)
mark("claim and first write (config.yaml)")
torch.set_num_threads(1)
task = build_task(run.task_options, Path(run.data_root), torch.device("cpu"), torch.float32)
mark("build the task (data load)")
model = task.build_model()
mark("build the model")
method = methods.get(run.optimizer, run.family)
opt = methods.build_optimizer(method, model.parameters(), run.hparams, run.gamma)
mark("build the optimizer")
batch = task.train_batch(task.epoch_plan(run.seed, 0, run.hparams.batch_size), 0)
loss, _ = task.criterion(model(*task.inputs(batch)), batch)
loss.backward()
opt.step()
opt.zero_grad()
mark("first training step")
writer.claim.release()
for (_, a), (name, b) in zip(t, t[1:]):
    print(f"{name}\t{b - a:.3f}")
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


def wall(cmd: list[str], env: dict[str, str], code: int = 0) -> float:
    """Seconds from starting ``cmd`` to its exit (with status ``code``)."""
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, env=env)
    sec = time.perf_counter() - t
    if res.returncode != code:
        raise SystemExit(
            f"{' '.join(cmd)} exited {res.returncode}, not {code}: {res.stderr.decode()[-2000:]}"
        )
    return sec


GRID = "overshoot-bench -m +sweep=paper task=digits, 100 runs of 3 steps as populations"


def importtime(cmd: list[str], env: dict[str, str]) -> list[tuple[str, float]]:
    """(top-level module, cumulative import seconds) from ``python -X importtime``, largest first."""
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    top: dict[str, float] = {}
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith(" ") or name.startswith("  "):  # only modules imported at the top level
            continue
        root = name.strip().split(".")[0]
        top[root] = top.get(root, 0.0) + int(cumulative) / 1e6
    return sorted(top.items(), key=lambda kv: -kv[1])


def revision() -> str:
    """The checked-out commit, marked when the working tree has uncommitted changes."""
    git = ["git", "-C", str(Path(__file__).resolve().parent)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    return f"{head or 'unknown'}{' (with uncommitted changes)' if dirty.stdout.strip() else ''}"


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=30, help="jobs of the sweep")
    p.add_argument("--max-steps", type=int, default=2640, help="steps of the default run (2,640: all)")
    p.add_argument("--out", type=Path, default=Path("results/overhead"))
    a = p.parse_args()
    bench = [shutil.which("overshoot-bench") or "overshoot-bench"]
    script = {s: shutil.which(s) or s for s in ("overshoot-bench-report", "overshoot-bench-tune")}
    py = sys.executable
    rows: list[dict[str, object]] = []
    loads = [("start", load())]
    measured = revision()  # the code measured: read before the cases run
    work = Path(tempfile.mkdtemp(prefix="overhead-"))
    env = {**os.environ, "OVERSHOOT_CACHE": str(work / "cache")}  # the warm runs share one data cache
    lean = work / "lean.py"
    lean.write_text(LEAN)
    steps = f"max_steps={a.max_steps}"
    base = ["threads=1", "progress=none"]
    torch_line = "python -c 'import torch'"
    # the completed run that the skip case relaunches (it also fills the data cache)
    wall([*bench, *base, "max_steps=3", f"out={work / 'skip'}"], env)
    cases: dict[tuple[str, str], list[str]] = {}
    for r in range(a.repeats):
        out = work / f"r{r}"
        (out / "lean").mkdir(parents=True)
        cases = {
            ("no torch", torch_line): [py, "-c", "import torch"],
            ("no torch", "overshoot-bench --help"): [*bench, "--help"],
            ("no torch", "overshoot-bench --cfg job"): [*bench, "--cfg", "job"],
            ("no torch", "overshoot-bench lr=-1 (bad input, exit 2)"): [*bench, "lr=-1"],
            ("no torch", "overshoot-bench-report --help"): [script["overshoot-bench-report"], "--help"],
            ("no torch", "overshoot-bench-tune --help"): [script["overshoot-bench-tune"], "--help"],
            ("no torch", "relaunch of a completed run (skip)"): [
                *bench, *base, "max_steps=3", f"out={work / 'skip'}",
            ],
            ("default", f"overshoot-bench {steps}"): [*bench, *base, steps, f"out={out / 'run'}"],
            ("default", "plain PyTorch loop"): [py, str(lean), str(a.max_steps), "1", str(out / "lean")],
            ("sweep", f"overshoot-bench -m, {a.jobs} jobs of 3 steps"): [
                *bench, "-m", *base, "max_steps=3", f"seed={','.join(map(str, range(a.jobs)))}",
                f"out={out / 'sweep'}", f"hydra.sweep.dir={out / 'multirun'}",
            ],
            ("sweep", f"plain PyTorch loop, {a.jobs} runs of 3 steps"): [
                py, str(lean), "3", str(a.jobs), str(out / "lean"),
            ],
            ("population", GRID): [
                *bench, "-m", "+sweep=paper", "task=digits", *base, "max_steps=3",
                f"out={out / 'grid'}", f"hydra.sweep.dir={out / 'multirun-grid'}",
            ],
            ("population", "plain PyTorch loop, 100 runs of 3 steps"): [
                py, str(lean), "3", "100", str(out / "lean"),
            ],
        }  # fmt: skip
        for (case, what), cmd in cases.items():
            code = 2 if "bad input" in what else 0
            rows.append({"repeat": r, "case": case, "what": what, "wall_s": round(wall(cmd, env, code), 3)})
            print(rows[-1], flush=True)
        loads.append((f"after repeat {r + 1}", load()))
    phase_rows: list[tuple[str, str, float]] = []
    for task, optimizer in (("digits", "adam_os"), ("housing", "adam_os"), ("digits", "adam")):
        for r in range(a.repeats):
            cache = {**os.environ, "OVERSHOOT_CACHE": str(work / f"phase-cache-{task}-{optimizer}-{r}")}
            for state in ("cold", "warm"):  # an empty data cache, then the one the cold build left
                where = str(work / f"phase-{task}-{optimizer}-{r}-{state}")
                cmd = [py, "-c", PHASES, task, where, optimizer]
                res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=cache)
                col = f"{task} {state}" + ("" if optimizer == "adam_os" else f", {optimizer}")
                for line in res.stdout.splitlines():
                    name, sec = line.split("\t")
                    phase_rows.append((col, name, float(sec)))
    imports = importtime(
        [py, "-X", "importtime", "-c", PHASES, "digits", str(work / "importtime"), "adam_os"], env
    )
    loads.append(("end", load()))
    shutil.rmtree(work, ignore_errors=True)

    import sklearn
    import torch

    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "overhead.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    med: dict[str, float] = {}
    for what in dict.fromkeys(str(r["what"]) for r in rows):
        med[what] = statistics.median(float(r["wall_s"]) for r in rows if r["what"] == what)
    lean_of = {
        "no torch": torch_line,
        "default": "plain PyTorch loop",
        "sweep": f"plain PyTorch loop, {a.jobs} runs of 3 steps",
        "population": "plain PyTorch loop, 100 runs of 3 steps",
    }
    lines = [
        "# Fixed costs of overshoot-bench (issue 23)",
        "",
        f"Command: `python scripts/bench/bench_overhead.py --repeats {a.repeats} --jobs {a.jobs} "
        f"--max-steps {a.max_steps}`. Wall seconds, median of {a.repeats} fresh processes per line, the "
        "cases run in turn within each repeat.",
        f"Code: git {measured}. Device: {platform.processor() or platform.machine()}, {os.cpu_count()} "
        "CPUs, no GPU; Python "
        f"{platform.python_version()}, torch {torch.__version__}, scikit-learn {sklearn.__version__}.",
        "Load average (1, 5, 15 min): "
        + "; ".join(f"{k} {v}" for k, v in loads)
        + f" ({os.cpu_count()} CPUs). A load above the CPU count inflates every absolute time; the "
        "comparison that holds under load is the ratio of each line to its lean counterpart measured in "
        "the same repeat.",
        "",
        "| case | command | median wall s | lean counterpart | its median wall s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for (case, what), _ in cases.items():
        ref = lean_of[case]
        if what != ref:
            lines.append(
                f"| {case} | {what} | {med[what]:.2f} | {ref} | {med[ref]:.2f} | {med[what] / med[ref]:.2f} |"
            )
    per_job = {
        "sweep": (f"overshoot-bench -m, {a.jobs} jobs of 3 steps", a.jobs),
        "population": (
            GRID,
            100,
        ),
    }
    lines += ["", "Overhead per job beyond the lean loop's (both include one `import torch`):", ""]
    for case, (what, n) in per_job.items():
        ours, ref = med[what], med[lean_of[case]]
        lines.append(f"- {case}: ({ours:.2f} - {ref:.2f}) / {n} = {(ours - ref) / n:.3f} s per job.")
    columns = ("digits cold", "digits warm", "housing cold", "housing warm")
    columns += ("digits cold, adam", "digits warm, adam")
    lines += [
        "",
        "## Start-up phases of one run, in process (median seconds of "
        f"{a.repeats} fresh processes; OVERSHOOT_DATA={os.environ.get('OVERSHOOT_DATA', 'unset')})",
        "",
        "cold: an empty data cache (the source parsed, scikit-learn imported); warm: the cache the cold "
        "build left (tasks/cache.py). The default optimizer (AdamO), and (adam) AdamW, torch's own class, "
        "whose construction imports torch._dynamo (torch wraps `Optimizer.add_param_group` in "
        "`torch._disable_dynamo`, and its step imports it too); SGDO and AdamO never import it.",
        "",
        "| phase | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    names = list(dict.fromkeys(n for _, n, _ in phase_rows))

    def phase(col: str, name: str) -> float:
        return statistics.median([x for c, n, x in phase_rows if c == col and n == name])

    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{phase(c, name):.2f}" for c in columns) + " |")
    setup = [n for n in names if n not in ("import torch", "first training step")]
    beyond = [sum(phase(c, n) for n in setup) for c in columns]
    first = [b + phase(c, "first training step") for b, c in zip(beyond, columns, strict=True)]
    lines.append(
        "| **start-up beyond `import torch`** | " + " | ".join(f"**{b:.2f}**" for b in beyond) + " |"
    )
    lines.append("| with the first step | " + " | ".join(f"{b:.2f}" for b in first) + " |")
    lines += [
        "",
        "## `python -X importtime` of the same start-up (digits, warm cache)",
        "",
        "Top-level imports, cumulative seconds (one process; torch's own imports are inside its row).",
        "",
        "| module | cumulative s |",
        "|---|---|",
        *[f"| {m} | {sec:.2f} |" for m, sec in imports[:15]],
    ]
    (a.out / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
