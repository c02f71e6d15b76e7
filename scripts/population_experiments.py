"""The GPU experiments behind ``population.CONV_MODES`` and the ideas results/gpu-notes.md reports as dropped.

    python scripts/population_experiments.py                 # all three parts, on the current CUDA device
    python scripts/population_experiments.py --parts conv    # populations of 50 (SGD family) per conv mode
    python scripts/population_experiments.py --parts single  # single 2c2d-FM, batch 32: cudnn.benchmark,
                                                             # channels-last, torch.compile
    python scripts/population_experiments.py --parts profile # graph-free profile of population steps
    python scripts/population_experiments.py --parts convt --device cpu  # the VAE decoder's transposed
                                                             # convolutions per form (CPU or CUDA)

Rates come from ``bench_throughput.member_rate`` (the real training loop, base-loss logging on, bf16) over
short windows: they compare variants measured in one process, they are not the committed throughput table.
The profile leaves evaluation out and runs eagerly so that every kernel is visible. CIFAR-10 uses synthetic
images of the real size (the pixel values do not change the work), so that this script needs only the
Fashion-MNIST files. Appends each line to results/population_experiments/<device>.md as it is measured.
Every part but ``convt`` needs a CUDA GPU.
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
from torch import nn
from torch.func import functional_call, vmap
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fixtures
from bench_throughput import base_run, data_root, device_name, member_rate
from overshoot_tasks import build_task

import overshoot.population as population
from overshoot.cli import _git_rev, _versions
from overshoot.matmul_conv import matmul_convs
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


def convt_part(log: Log, device: torch.device, members: int, reps: int = 5) -> None:
    """The VAE decoder's three transposed convolutions, forward and backward under vmap, per form."""
    batch = 64
    log(
        f"\n## VAE decoder's transposed convolutions, {members} members x batch {batch}, forward + backward\n"
    )
    torch.manual_seed(0)
    dec = build_vae_decoder().to(device)
    forms = {
        "grouped (vmap of nn.ConvTranspose2d)": dec,
        "sub-pixel GEMM (MatmulConvTranspose2d)": matmul_convs(dec),
    }
    params = {k: torch.stack([v.detach()] * members).requires_grad_() for k, v in dec.named_parameters()}
    x = torch.randn(members, batch, 128, 4, 4, device=device)
    autocast = (
        torch.autocast("cuda", torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )

    def step(m: nn.Module) -> None:
        with autocast:
            out = vmap(lambda p, xi: functional_call(m, p, (xi,)).float().pow(2).sum())(params, x).sum()
        torch.autograd.grad(out, list(params.values()))

    times: dict[str, list[float]] = {k: [] for k in forms}
    n = 20 if device.type == "cuda" else 2
    for _ in range(reps):
        for k, m in forms.items():
            step(m)
            sync(device)
            t = time.perf_counter()
            for _ in range(n):
                step(m)
            sync(device)
            times[k].append((time.perf_counter() - t) / n * 1e3)
    for k, v in times.items():
        log(f"- {k}: {sorted(v)[len(v) // 2]:.2f} ms (median of {reps}; {min(v):.2f} to {max(v):.2f})")


def build_vae_decoder() -> nn.Sequential:
    """The transposed convolutions of tasks/vae.py's decoder with the ReLUs around them."""
    from overshoot_tasks.vae import ConvVAE

    return nn.Sequential(*[m for m in ConvVAE().decoder if isinstance(m, nn.ConvTranspose2d | nn.ReLU)])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="conv,single,profile", help="conv, single, profile (CUDA), convt")
    p.add_argument("--device", default="cuda", help="cuda | cpu (cpu: the convt part only)")
    p.add_argument("--members", type=int, default=None, help="convt: members (default 50 on CUDA, 10 on CPU)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "population_experiments")
    a = p.parse_args(argv)
    parts = a.parts.split(",")
    device = torch.device(a.device)
    cuda_parts = {"conv": conv_part, "single": single_part, "profile": profile_part}
    unknown = [x for x in parts if x not in (*cuda_parts, "convt")]
    if unknown:
        raise SystemExit(f"--parts: unknown {', '.join(unknown)}; choose from conv, single, profile, convt")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run the convt part with --device cpu")
    if device.type != "cuda" and any(x in cuda_parts for x in parts):
        raise SystemExit("the conv, single and profile parts need a CUDA GPU (--device cuda)")
    name = device_name(device)
    log = Log(a.out / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".md"))
    log(f"# Population experiments on {name}\n")
    log(
        f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}, "
        f"{'bf16' if device.type == 'cuda' else 'fp32'}, git {_git_rev()}, "
        + ", ".join(f"{k} {v}" for k, v in _versions().items())
        + f"; `python scripts/population_experiments.py --parts {a.parts} --device {a.device}`"
    )
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp)
        if any(x in cuda_parts for x in parts):
            fixtures.write_cifar_pickles(synthetic, 10, n_train=50000, n_test=1000)
        for part in parts:
            t = time.perf_counter()
            if part == "convt":
                convt_part(log, device, a.members or (50 if device.type == "cuda" else 10))
            else:
                cuda_parts[part](log, data_root(), synthetic)
            print(f"({part}: {time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
