#!/usr/bin/env python
"""Time one optimizer step on GPT-2-small-shaped fp32 parameters: torch baselines vs every SGDO/AdamO path.

On CUDA: CUDA events around each step (no host sync in between), median over --steps steps after
--warmup steps, and the ratio to the bandwidth floor = fp32 bytes each step must read and write divided
by the device-to-device copy bandwidth measured in the same run. On CPU (``--device cpu``, use ``--scale``
to shrink the model) the same table is produced with perf_counter timings, for smoke tests only.

    python scripts/bench/bench_optimizer.py   # CUDA, results/bench_optimizer/<device>.md/.json
    python scripts/bench/bench_optimizer.py --device cpu --scale 0.05 --steps 5 --warmup 1 --out /tmp/b.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from overshoot import SGDO, AdamO
from overshoot.common.files import atomic_write_text

N_LAYER, D_MODEL, VOCAB, N_CTX = 12, 768, 50257, 1024


def gpt2_shapes(scale: float = 1.0) -> list[tuple[int, ...]]:
    """Parameter shapes of GPT-2 small (124M), every dimension multiplied by ``scale`` (at least 1)."""

    def s(*dims: int) -> tuple[int, ...]:
        return tuple(max(1, round(d * scale)) for d in dims)

    d = D_MODEL
    shapes = [s(VOCAB, d), s(N_CTX, d)]
    for _ in range(N_LAYER):
        shapes += [s(d), s(d)]  # ln_1
        shapes += [s(d, 3 * d), s(3 * d), s(d, d), s(d)]  # attn c_attn, c_proj (Conv1D layout)
        shapes += [s(d), s(d)]  # ln_2
        shapes += [s(d, 4 * d), s(4 * d), s(4 * d, d), s(d)]  # mlp c_fc, c_proj
    shapes += [s(d), s(d)]  # ln_f
    return shapes


# name -> (factory, fp32 tensors read+written per parameter element per step)
Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def configs(device: torch.device) -> dict[str, tuple[Factory, int]]:
    fused_ok = fused_available(device)
    torch_fused_ok = device.type == "cuda"
    lr = 1e-3
    out: dict[str, tuple[Factory, int]] = {}
    for impl in ("foreach", "fused"):
        if impl == "fused" and not torch_fused_ok:
            continue
        kw = {impl: True}
        out[f"torch SGD momentum ({impl})"] = (
            lambda ps, kw=kw: torch.optim.SGD(ps, lr, momentum=0.9, **kw),
            5,
        )
        out[f"torch SGD nesterov ({impl})"] = (
            lambda ps, kw=kw: torch.optim.SGD(ps, lr, momentum=0.9, nesterov=True, **kw),
            5,
        )
        out[f"torch AdamW ({impl})"] = (lambda ps, kw=kw: torch.optim.AdamW(ps, lr, **kw), 7)
    out["torch NAdam (foreach)"] = (
        lambda ps: torch.optim.NAdam(ps, lr, momentum_decay=1e9, decoupled_weight_decay=True, foreach=True),
        7,
    )
    impls = ["single", "foreach"] + (["fused"] if fused_ok else [])
    for impl in impls:
        kw = {"foreach": False, "fused": False} if impl == "single" else {impl: True}
        out[f"SGDO gamma=5 ({impl})"] = (lambda ps, kw=kw: SGDO(ps, lr, momentum=0.9, gamma=5.0, **kw), 5)
        # delay=0: the ramp is over after 5 steps, inside the warm-up
        out[f"AdamO gamma=5 ({impl})"] = (lambda ps, kw=kw: AdamO(ps, lr, gamma=5.0, delay=0, **kw), 7)
        out[f"AdamO gamma=5 exact ({impl})"] = (
            lambda ps, kw=kw: AdamO(ps, lr, gamma=5.0, delay=0, exact=True, **kw),
            7,
        )
    return out


class Timer:
    """Per-call durations in ms: CUDA events on CUDA (synchronised once at the end), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pairs: list[tuple[object, object]] = []
        self.host: list[float] = []  # ms the host spent issuing each call (CUDA: without waiting for it)

    def time(self, fn: Callable[[], object]) -> None:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            t0 = time.perf_counter()
            fn()
            self.host.append((time.perf_counter() - t0) * 1e3)
            end.record()
            self.pairs.append((start, end))
        else:
            t0 = time.perf_counter()
            fn()
            self.pairs.append((t0, time.perf_counter()))

    def ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [s.elapsed_time(e) for s, e in self.pairs]  # type: ignore[attr-defined]
        return [(e - s) * 1e3 for s, e in self.pairs]  # type: ignore[operator]


def copy_bandwidth(device: torch.device, numel: int, reps: int) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted), median over ``reps`` copies."""
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    timer = Timer(device)
    for _ in range(reps):
        timer.time(lambda: dst.copy_(src))
    return 2 * 4 * numel / (statistics.median(timer.ms()) / 1e3)


def bench(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    shapes = gpt2_shapes(args.scale)
    n_params = sum(torch.Size(s).numel() for s in shapes)
    params = [torch.nn.Parameter(0.02 * torch.randn(s, device=device)) for s in shapes]
    init = [p.detach().clone() for p in params]
    for p in params:
        p.grad = 0.01 * torch.randn_like(p)
    bw = copy_bandwidth(device, max(n_params, 1 << 20), max(args.steps, 20))
    rows = []
    only = re.compile(args.only) if args.only else None
    for name, (make, tensors) in configs(device).items():
        if only and not only.search(name):
            continue
        with torch.no_grad():
            for p, q in zip(params, init, strict=True):
                p.copy_(q)
        opt = make(params)
        for _ in range(args.warmup):
            opt.step()
        timer = Timer(device)
        for _ in range(args.steps):
            timer.time(opt.step)
        ms = statistics.median(timer.ms())
        floor_ms = tensors * 4 * n_params / bw * 1e3
        row = {"optimizer": name, "ms_per_step": ms, "floor_ms": floor_ms, "ratio_to_floor": ms / floor_ms}
        if timer.host:
            row["host_ms"] = statistics.median(timer.host)
        if isinstance(opt, SGDO | AdamO):
            bt = Timer(device)
            for _ in range(args.steps):
                bt.time(opt.move_to_base)  # what entering `with opt.base_weights():` costs
                opt.move_to_overshoot()
            row["base_weights_enter_ms"] = statistics.median(bt.ms())
        rows.append(row)
        print(
            f"{name:34s} {ms:9.3f} ms/step  floor {floor_ms:8.3f} ms  ratio {ms / floor_ms:6.2f}  "
            f"host {row.get('host_ms', float('nan')):6.3f} ms",
            flush=True,
        )
        del opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor()})",
        "torch": torch.__version__,
        "triton": triton_version(),
        "python": sys.version.split()[0],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "scale": args.scale,
        "n_params": n_params,
        "n_tensors": len(shapes),
        "steps": args.steps,
        "warmup": args.warmup,
        "copy_bandwidth_GBps": bw / 1e9,
        "timing": "CUDA events, median per step"
        if device.type == "cuda"
        else "perf_counter, median per step",
        "rows": rows,
    }


def to_markdown(res: dict) -> str:
    lines = [
        f"# Optimizer step benchmark: {res['device']}",
        "",
        f"{res['n_params']:,} fp32 parameters in {res['n_tensors']} tensors (GPT-2 small shapes, scale "
        f"{res['scale']}), {res['timing']} over {res['steps']} steps after {res['warmup']} warm-up steps. "
        f"torch {res['torch']}, triton {res['triton']}, {res['date']}. Copy bandwidth "
        f"{res['copy_bandwidth_GBps']:.0f} GB/s; floor = fp32 bytes read+written per step / that bandwidth "
        "(5 tensors per element for SGD-type, 7 for Adam-type).",
        "",
        "| optimizer | ms/step | floor ms | ratio to floor | host ms/step | base_weights() enter ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        bw = f"{r['base_weights_enter_ms']:.3f}" if "base_weights_enter_ms" in r else ""
        cells = [
            r["optimizer"],
            f"{r['ms_per_step']:.3f}",
            f"{r['floor_ms']:.3f}",
            f"{r['ratio_to_floor']:.2f}",
            f"{r['host_ms']:.3f}" if "host_ms" in r else "",
            bw,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fused_available(device: torch.device) -> bool:
    """Whether the fused SGDO/AdamO path runs on ``device``: ``fused=True`` raises RuntimeError where not."""
    try:
        SGDO([torch.zeros(1, device=device)], lr=0.1, momentum=0.9, fused=True)
    except RuntimeError:
        return False
    return True


def triton_version() -> str | None:
    """The installed triton's version, None without triton."""
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument(
        "--scale", type=float, default=1.0, help="multiply every GPT-2 dimension (CPU smoke: 0.05)"
    )
    ap.add_argument("--steps", type=int, default=100, help="timed steps per optimizer (>= 50 on a GPU)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (compiles the fused kernels)")
    ap.add_argument("--only", default=None, help="regex: benchmark only the optimizers whose name matches")
    ap.add_argument("--out", type=Path, default=None, help="markdown path (JSON beside it, .json)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("no CUDA device here: pass --device cpu (with --scale 0.05) for a smoke run")
    if args.device.startswith("cuda") and args.steps < 50:
        ap.error("--steps must be >= 50 on a GPU")
    res = bench(args)
    out = args.out or Path("results/bench_optimizer") / f"{slug(res['device'].split(' (')[0])}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, to_markdown(res))
    atomic_write_text(out.with_suffix(".json"), json.dumps(res, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
