#!/usr/bin/env python
"""Time the fused SGDO/AdamO Triton kernels alone for several (BLOCK, ITERS, NUM_WARPS) launch shapes.

GPT-2-small-shaped fp32 tensors, CUDA events, median of --steps launches after 5 warm-up launches; the shape
in overshoot/optim/_triton.py was chosen from this table. Prints one line per shape; CUDA only.

    python scripts/tune_fused.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimizer import Timer, copy_bandwidth, gpt2_shapes

from overshoot.optim import _triton as kt

SHAPES = [(2048, 1, 4), (2048, 4, 8), (1024, 4, 4), (1024, 8, 4), (2048, 8, 8), (4096, 2, 8), (4096, 4, 16)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    shapes = gpt2_shapes()
    n = sum(torch.Size(s).numel() for s in shapes)
    t = [[torch.randn(s, device=dev) for s in shapes] for _ in range(5)]  # p, g, b/m, v, spare
    bw = copy_bandwidth(dev, n, 50)
    print(f"{n:,} params, copy bandwidth {bw / 1e9:.0f} GB/s")
    with torch.no_grad():
        for v in t[3]:
            v.abs_()  # a second moment is non-negative

    def sgdo() -> None:
        kt.sgdo_fused_update(
            t[0], t[1], t[2], first=False, undo=-0.1, momentum=0.9, damp1=1.0, step_c=-1e-3,
            weight_decay=0.0, maximize=False,
        )  # fmt: skip

    def adamo() -> None:
        kt.adamo_fused_update(
            t[0], t[1], t[2], t[3], None, wd_factor=1.0, beta1=0.9, beta2=0.999, bc2_sqrt=1.0, eps=1e-8,
            cm=-1e-3, cg=-1e-4, undo=0.0, bc2p_sqrt=1.0, maximize=False,
        )  # fmt: skip

    for block, iters, warps in SHAPES:
        kt.BLOCK, kt.ITERS, kt.NUM_WARPS = block, iters, warps
        kt._BLOCK_CACHE.clear()
        kt._ADDR_CACHE.clear()
        row = []
        for name, fn, tensors in (("sgdo", sgdo, 5), ("adamo", adamo, 7)):
            for _ in range(5):
                fn()
            timer = Timer(dev)
            for _ in range(a.steps):
                timer.time(fn)
            ms = statistics.median(timer.ms())
            floor = tensors * 4 * n / bw * 1e3
            row.append(f"{name} {ms:.3f} ms ({ms / floor:.2f}x floor)")
        print(f"BLOCK {block:5d} ITERS {iters} warps {warps:2d}: " + "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
