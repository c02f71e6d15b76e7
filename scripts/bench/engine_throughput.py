"""CPU (or GPU) throughput of the training engine through the CLI: one housing run and a housing population.

    python scripts/bench/engine_throughput.py                      # 5 repeats each, medians
    python scripts/bench/engine_throughput.py --repeats 3 --label after

Only the ``overshoot-bench`` command line and the run.json it writes are used, so the same command measures
any revision of the engine. Single run: ``task=housing optimizer=sgd_os gamma=3 max_steps=S`` (preset paper,
batch 100, base-loss logging on, epoch-end evaluation included in the run but left out of its rate).
Population: 50 members, the SGD family's five methods (CM, NAG, SGDO 3/5/7) x seeds 1..10, ``population=true
max_steps=P``; its rate is member-steps/s. Each repeat uses a fresh store. Writes
results/engine_throughput/<label>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
METHODS = "sgd,nesterov,sgd_os_g3,sgd_os_g5,sgd_os_g7"


def _cli() -> str:
    return str(Path(sys.executable).with_name("overshoot-bench"))


def _run(args: list[str]) -> float:
    """Wall seconds of one ``overshoot-bench`` command (rc checked)."""
    t0 = time.perf_counter()
    subprocess.run([_cli(), *args], check=True, stdout=subprocess.DEVNULL, env={**os.environ})
    return time.perf_counter() - t0


def _rates(store: Path) -> list[dict[str, float]]:
    out = []
    for info in store.glob("**/run.json"):
        d = json.loads(info.read_text())
        if d.get("status") != "completed":
            raise SystemExit(f"{info}: status {d.get('status')}")
        pop = d.get("population") or {}
        out.append({"steps_per_s": d["steps_per_s"], "member_steps_per_s": pop.get("member_steps_per_s")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--single-steps", type=int, default=3000)
    ap.add_argument("--population-steps", type=int, default=600)
    ap.add_argument("--label", default="run")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    common = ["task=housing", "progress=none", f"device={a.device}"]
    single, pop = [], []
    for i in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            s = Path(tmp) / "single"
            _run([*common, "optimizer=sgd_os", "gamma=3", f"max_steps={a.single_steps}", f"out={s}"])
            single.append(_rates(s)[0]["steps_per_s"])
            p = Path(tmp) / "pop"
            seeds = ",".join(str(k) for k in range(1, 11))
            _run(["-m", *common, f"+method={METHODS}", f"seed={seeds}", "population=true",
                  f"max_steps={a.population_steps}", f"out={p}"])  # fmt: skip
            rates = _rates(p)
            if len(rates) != 50:
                raise SystemExit(f"population store has {len(rates)} runs, not 50")
            pop.append(rates[0]["member_steps_per_s"])
        print(f"repeat {i + 1}: single {single[-1]:.0f} steps/s, population {pop[-1]:.0f} member-steps/s")
    rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    result = {
        "label": a.label,
        "revision": rev,
        "device": a.device,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "protocol": {
            "single": f"housing sgd_os gamma=3 preset=paper max_steps={a.single_steps}",
            "population": f"housing +method={METHODS} seed=1..10 population=true "
            f"max_steps={a.population_steps}",
        },
        "single_steps_per_s": single,
        "population_member_steps_per_s": pop,
        "single_median": statistics.median(single),
        "population_median": statistics.median(pop),
    }
    out = ROOT / "results" / "engine_throughput" / f"{a.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"median: single {result['single_median']:.0f} steps/s, population "
          f"{result['population_median']:.0f} member-steps/s -> {out}")  # fmt: skip


if __name__ == "__main__":
    main()
