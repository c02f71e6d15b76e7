"""The GPU experiments behind ``population.CONV_MODES``: populations per conv mode, transposed convolutions.

    python -m scripts.research.population_experiments   # both parts, on the current CUDA device
    python -m scripts.research.population_experiments --parts conv
        # populations of 50 (SGD family) per conv mode
    python -m scripts.research.population_experiments --parts convt --device cpu
        # the VAE decoder's transposed convolutions per form (CPU or CUDA)

Run from the checkout's root (it uses scripts/bench/bench_throughput.py and tests/fixtures.py). Rates come
from ``bench_throughput.member_rate`` (the real training loop, base-loss logging on, bf16) over short
windows: they compare variants measured in one process, they are not the committed throughput table.
CIFAR-10 uses synthetic images of the real size (the pixel values do not change the work), so that this
needs only the Fashion-MNIST files. Appends each line to results/population_experiments/<device>.md as it
is measured. The ``conv`` part needs a CUDA GPU.
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
from overshoot_tasks import build_task
from torch import nn
from torch.func import functional_call, vmap

from overshoot.common.provenance import git_rev, versions
from overshoot.train.matmul_conv import matmul_convs
from scripts.bench.bench_throughput import base_run, data_root, device_name, member_rate
from tests.fixtures import write_cifar_pickles

ROOT = Path(__file__).resolve().parents[2]
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
    p.add_argument("--parts", default="conv,convt", help="conv (CUDA), convt")
    p.add_argument("--device", default="cuda", help="cuda | cpu (cpu: the convt part only)")
    p.add_argument("--members", type=int, default=None, help="convt: members (default 50 on CUDA, 10 on CPU)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "population_experiments")
    a = p.parse_args(argv)
    parts = a.parts.split(",")
    device = torch.device(a.device)
    cuda_parts = {"conv": conv_part}
    unknown = [x for x in parts if x not in (*cuda_parts, "convt")]
    if unknown:
        raise SystemExit(f"--parts: unknown {', '.join(unknown)}; choose from conv, convt")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run the convt part with --device cpu")
    if device.type != "cuda" and any(x in cuda_parts for x in parts):
        raise SystemExit("the conv part needs a CUDA GPU (--device cuda)")
    name = device_name(device)
    log = Log(a.out / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".md"))
    log(f"# Population experiments on {name}\n")
    log(
        f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}, "
        f"{'bf16' if device.type == 'cuda' else 'fp32'}, git {git_rev()}, "
        + ", ".join(f"{k} {v}" for k, v in versions().items())
        + f"; `python -m scripts.research.population_experiments --parts {a.parts} --device {a.device}`"
    )
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp)
        if any(x in cuda_parts for x in parts):
            write_cifar_pickles(synthetic, 10, n_train=50000, n_test=1000)
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
