"""The GPU experiments behind ``population.CONV_MODES`` and the ideas results/gpu-notes.md reports as dropped.

    python scripts/population_experiments.py                 # all three parts, on the current CUDA device
    python scripts/population_experiments.py --parts conv    # populations of 50 (SGD family) per conv mode
    python scripts/population_experiments.py --parts single  # single 2c2d-FM, batch 32: cudnn.benchmark,
                                                             # channels-last, torch.compile
    python scripts/population_experiments.py --parts profile # graph-free profile of population steps

Rates come from ``bench_throughput.member_rate`` (the real training loop, base-loss logging on, bf16) over
short windows: they compare variants measured in one process, they are not the committed throughput table.
The profile leaves evaluation out and runs eagerly so that every kernel is visible. CIFAR-10 uses synthetic
images of the real size (the pixel values do not change the work), so that this script needs only the
Fashion-MNIST files. Appends each line to results/population_experiments/<device>.md as it is measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fixtures
from bench_throughput import base_run, data_root, device_name, member_rate
from overshoot_tasks import build_task

import overshoot.population as population
from overshoot.cli import _git_rev, _versions
from overshoot.optim import _triton

ROOT = Path(__file__).resolve().parent.parent
DEV = torch.device("cuda")


class Log:
    """Print a line and append it to the report file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def task_for(name: str, root: Path, synthetic: Path, bs: int | None = None) -> tuple[dict[str, Any], Any]:
    r = synthetic if name == "cifar" else root
    run = base_run(name, "cuda", "bf16", r, bs)
    if name == "cifar":
        run["task_options"]["source"] = "pickle"
    return run, build_task(run["task_options"], r, DEV, torch.float32)


def conv_part(log: Log, root: Path, synthetic: Path) -> None:
    log("\n## Populations of 50 (SGD family), member-steps/s per conv mode (150 steps after 40)\n")
    for name in ("fmnist", "vae_fmnist", "cifar"):
        run, task = task_for(name, root, synthetic)
        for conv in ("grouped", "matmul", "conv2d-matmul"):
            rate = member_rate(run, task, DEV, 50, 40, 150, "sgd", conv)
            log(f"- {name} batch {run['hparams']['batch_size']}, conv={conv}: {rate:,.0f}")


def single_part(log: Log, root: Path, synthetic: Path) -> None:
    log("\n## Single 2c2d-FM run, batch 32 (graphed loop), steps/s (1,500 steps after 200)\n")
    run, task = task_for("fmnist", root, synthetic, bs=32)

    def rate() -> float:
        return member_rate(run, task, DEV, 1, 200, 1500)

    log(f"- default: {rate():,.0f}")
    torch.backends.cudnn.benchmark = True
    log(f"- cudnn.benchmark=True: {rate():,.0f}")
    torch.backends.cudnn.benchmark = False
    build, prepare, check = task.build_model, type(task).prepare, _triton._check_lists

    def dense_same_strides(lists: list[list[torch.Tensor]]) -> None:  # the fused kernels on channels-last
        for lst in lists:
            for a, b in zip(lst, lists[0], strict=True):
                assert a.stride() == b.stride() and a.is_non_overlapping_and_dense()

    def prepare_cl(self: Any, raw: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        b = prepare(self, raw, train)
        return {**b, "x": b["x"].contiguous(memory_format=torch.channels_last)}

    task.build_model = lambda: build().to(memory_format=torch.channels_last)
    type(task).prepare, _triton._check_lists = prepare_cl, dense_same_strides
    try:
        log(f"- channels-last model and input: {rate():,.0f}")
    finally:
        task.build_model, type(task).prepare, _triton._check_lists = build, prepare, check
    task.build_model = lambda: torch.compile(build())
    try:
        log(f"- torch.compile(model): {rate():,.0f}")
    finally:
        task.build_model = build
    log(f"- default again: {rate():,.0f}")


def profile_part(log: Log, root: Path, synthetic: Path) -> None:
    log("\n## Graph-free profile of population steps (50 members, SGD family, evaluation left out)\n")
    evaluate = population._evaluate
    population._evaluate = lambda *a, **k: None
    try:
        for name in ("fmnist", "vae_fmnist", "cifar"):
            run, task = task_for(name, root, synthetic)
            graphed = member_rate(run, task, DEV, 50, 20, 100)
            eager = {**run, "cuda_graph": False}
            member_rate(eager, task, DEV, 50, 3, 5)
            with profile(activities=[ProfilerActivity.CUDA]) as p:
                member_rate(eager, task, DEV, 50, 3, 10)
            steps = 14  # the 3 + 10 + 1 steps member_rate runs
            ka = sorted(p.key_averages(), key=lambda k: -k.self_device_time_total)
            total = sum(k.self_device_time_total for k in ka) / steps / 1e3
            log(
                f"\n{name} batch {run['hparams']['batch_size']}: graphed {graphed:,.0f} member-steps/s "
                f"= {50e3 / graphed:.2f} ms per step; eager profile {total:.2f} ms of kernels per step\n"
            )
            for k in ka[:12]:
                ms, per_step = k.self_device_time_total / steps / 1e3, k.count / steps
                log(f"    {ms:6.3f} ms {per_step:6.1f}x  {k.key[:90]}")
    finally:
        population._evaluate = evaluate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="conv,single,profile")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "population_experiments")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("population_experiments.py needs a CUDA GPU")
    name = device_name(DEV)
    log = Log(a.out / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".md"))
    log(f"# Population experiments on {name}\n")
    log(
        f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}, bf16, git {_git_rev()}, "
        + ", ".join(f"{k} {v}" for k, v in _versions().items())
        + f"; `python scripts/population_experiments.py --parts {a.parts}`"
    )
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp)
        fixtures.write_cifar_pickles(synthetic, 10, n_train=50000, n_test=1000)
        parts = {"conv": conv_part, "single": single_part, "profile": profile_part}
        for part in a.parts.split(","):
            t = time.perf_counter()
            parts[part](log, data_root(), synthetic)
            print(f"({part}: {time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
