#!/usr/bin/env python
"""Check every fast (fused) SGDO/AdamO path against the foreach path and record the result under results/.

Both paths start from the same GPT-2-small-shaped parameters and take --steps steps on the same random
gradients; the relative difference ||fused - foreach|| / ||foreach||, worst over all parameters, base weights
and optimizer state, must stay at fp32 rounding level (--tol, default 1e-4: Adam's 1/(sqrt(v)+eps) amplifies
rounding where v is tiny). torch's own fused SGD and AdamW against their foreach paths are measured the same
way, as the yardstick of that level (its AdamW: 1.3e-5 on this test, H100).

    python scripts/bench/check_fast_paths.py   # CUDA -> results/check_fast_paths/<device>.md/.json
    TRITON_INTERPRET=1 python scripts/bench/check_fast_paths.py --device cpu --scale 0.005 --steps 3 \\
        --out c.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from bench_optimizer import fused_available, gpt2_shapes, slug, triton_version

from overshoot import SGDO, AdamO
from overshoot.common.files import atomic_write_text

Make = Callable[..., torch.optim.Optimizer]
CASES: dict[str, Make] = {
    "SGDO gamma=5": lambda ps, **kw: SGDO(ps, lr=1e-2, momentum=0.9, gamma=5.0, **kw),
    "SGDO gamma=3 wd=1e-2 maximize": lambda ps, **kw: SGDO(
        ps, lr=1e-2, momentum=0.9, gamma=3.0, weight_decay=1e-2, maximize=True, **kw
    ),
    "SGDO gamma=0 dampening=0.1": lambda ps, **kw: SGDO(
        ps, lr=1e-2, momentum=0.9, gamma=0.0, dampening=0.1, **kw
    ),
    "AdamO gamma=5 delay=50": lambda ps, **kw: AdamO(ps, lr=1e-3, gamma=5.0, delay=50, **kw),
    "AdamO gamma=5 exact amsgrad": lambda ps, **kw: AdamO(
        ps, lr=1e-3, gamma=5.0, delay=5, exact=True, amsgrad=True, **kw
    ),
    "AdamO gamma=0 (AdamW)": lambda ps, **kw: AdamO(ps, lr=1e-3, gamma=0.0, **kw),
    # torch's own fused kernels against its foreach path: the yardstick for "fp32 rounding level"
    "torch SGD momentum (yardstick)": lambda ps, **kw: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, **kw),
    "torch AdamW (yardstick)": lambda ps, **kw: torch.optim.AdamW(ps, lr=1e-3, **kw),
}


def run(make: Make, fused: bool, shapes, steps: int, device: torch.device, dtype: torch.dtype):
    gen = torch.Generator(device=device).manual_seed(0)
    params = [
        torch.nn.Parameter(0.02 * torch.randn(s, generator=gen, device=device).to(dtype)) for s in shapes
    ]
    opt = make(params, fused=fused, foreach=not fused)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, device=device).to(dtype)
        opt.step()
    out = [p.detach().float().clone() for p in params]
    with getattr(opt, "base_weights", contextlib.nullcontext)():
        out += [p.detach().float().clone() for p in params]
    for st in opt.state.values():
        out += [v.float() for k, v in st.items() if torch.is_tensor(v) and k != "step"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every GPT-2 dimension")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--tol", type=float, default=1e-4, help="max allowed relative difference (fp32)")
    ap.add_argument("--dtypes", default="float32", help="comma list, e.g. float32,bfloat16")
    ap.add_argument("--half-tol", type=float, default=5e-2, help="tolerance for float16/bfloat16")
    ap.add_argument("--out", type=Path, default=None, help="markdown path (JSON beside it)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if not fused_available(device):
        ap.error(f"no fused path on {device}: needs CUDA + triton (or TRITON_INTERPRET=1 with --device cpu)")
    if device.type == "cpu":
        args.dtypes = "float32"  # the interpreter has no bfloat16 arithmetic
    shapes = gpt2_shapes(args.scale)
    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        tol = args.tol if dtype == torch.float32 else args.half_tol
        for name, make in CASES.items():
            a = run(make, True, shapes, args.steps, device, dtype)
            b = run(make, False, shapes, args.steps, device, dtype)
            # per tensor: ||fused - foreach|| / ||foreach||, and max |fused - foreach| / max |foreach|
            norm_rel = max(
                (torch.linalg.vector_norm(x - y) / torch.linalg.vector_norm(y).clamp_min(1e-30)).item()
                for x, y in zip(a, b, strict=True)
            )
            max_rel = max(
                ((x - y).abs().max() / y.abs().max().clamp_min(1e-30)).item()
                for x, y in zip(a, b, strict=True)
            )
            ok = norm_rel <= tol
            rows.append(
                {
                    "case": name,
                    "dtype": dtype_name,
                    "rel_diff": norm_rel,
                    "max_rel_diff": max_rel,
                    "tol": tol,
                    "ok": ok,
                }
            )
            print(
                f"{name:34s} {dtype_name:9s} rel diff {norm_rel:.2e} (max-entry {max_rel:.2e})  "
                f"{'ok' if ok else 'FAIL'}",
                flush=True,
            )
    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (triton interpreter)",
        "torch": torch.__version__,
        "triton": triton_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "scale": args.scale,
        "steps": args.steps,
        "n_params": sum(torch.Size(s).numel() for s in shapes),
        "all_ok": all(r["ok"] for r in rows),
        "rows": rows,
    }
    md = [
        f"# Fused vs foreach: {res['device']}",
        "",
        f"{res['n_params']:,} parameters (GPT-2 small shapes, scale {args.scale}), {args.steps} steps of "
        "random gradients; relative difference = max over tensors (parameters, base weights, state) of "
        "||fused - foreach|| / ||foreach|| (the tolerance applies to it); max-entry = max over tensors of "
        "max|fused - foreach| / max|foreach|. The torch rows compare torch's own fused and foreach kernels. "
        f"torch {res['torch']}, triton {res['triton']}, {res['date']}. All ok: {res['all_ok']}.",
        "",
        "| case | dtype | relative difference | max-entry | tolerance | ok |",
        "|---|---|---:|---:|---:|---|",
    ]
    md += [
        f"| {r['case']} | {r['dtype']} | {r['rel_diff']:.2e} | {r['max_rel_diff']:.2e} | {r['tol']:.0e} "
        f"| {r['ok']} |"
        for r in rows
    ]
    out = args.out or Path("results/check_fast_paths") / f"{slug(res['device'])}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(md) + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    if not res["all_ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
