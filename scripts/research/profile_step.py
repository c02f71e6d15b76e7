#!/usr/bin/env python
"""Where a training step's time goes on a GPU: a bare forward/backward/fused-SGD loop eager and as a CUDA
graph, then torch-profiler tables of the real loops (single run and population).

    python -m scripts.research.profile_step   # fmnist (batch 32), housing, vae_fmnist; populations
    python -m scripts.research.profile_step --tasks fmnist   # one task

Run from the checkout's root (it uses scripts/bench/bench_throughput.py). Prints the tables (top host ops, top
device kernels); results/gpu-notes.md quotes them. CUDA only.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from overshoot_tasks import build_task
from torch.profiler import ProfilerActivity, profile

from scripts.bench.bench_throughput import base_run, data_root, member_rate

DEV = torch.device("cuda")


def bare_loop(task: Any, bs: int, graph: bool, steps: int = 500) -> float:
    """Steps/s of forward + backward + torch fused SGD on one fixed batch, no logging."""
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, fused=True)
    b = task.train_batch(task.epoch_plan(0, 0, bs), 0)
    x = task.inputs(b)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = task.criterion(model(*x), b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    for _ in range(5):
        step()
    fn = step
    if graph:
        side = torch.cuda.Stream()  # warm up on a side stream before capture, as torch's docs advise
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()
        fn = g.replay
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def profiled(run: dict[str, Any], task: Any, size: int, steps: int = 40) -> None:
    member_rate(run, task, DEV, size, 10, 30)  # warm-up (compilation, capture)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        member_rate(run, task, DEV, size, 5, steps)
    ka = p.key_averages()
    print(f"==== {run['task']} batch {run['hparams']['batch_size']} size {size}: {steps + 6} steps profiled")
    print(ka.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=60))
    print(ka.table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=60))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="fmnist,housing,vae_fmnist")
    a = ap.parse_args()
    root = data_root()
    for name in a.tasks.split(","):
        bs = 32 if name == "fmnist" else None
        run = base_run(name, "cuda", "bf16", root, bs)
        task = build_task(run["task_options"], root, DEV, torch.float32)
        batch = run["hparams"]["batch_size"]
        for graph in (False, True):
            print(
                f"bare loop {name} batch {batch} graph={graph}: {bare_loop(task, batch, graph):,.0f} steps/s"
            )
        profiled(run, task, 1)
        if name != "housing":
            profiled(base_run(name, "cuda", "bf16", root, None), task, 50)


if __name__ == "__main__":
    main()
