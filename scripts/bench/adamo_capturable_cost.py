"""Eager cost of AdamO(capturable=True) against the host path, per optimizer step and base-weight round trip.

    python scripts/bench/adamo_capturable_cost.py                 # CPU, 1 thread, 15 repeats of 100 calls
    python scripts/bench/adamo_capturable_cost.py --device cuda   # eager on a GPU (no graph)

Model: the housing task's MLP 8-200-150-1 (31,651 parameters in 6 tensors, float32), gamma 5, delay 50, weight
decay 0.01; gradients are set once and the optimizer steps on them (forward and backward are left out, so the
figures are the optimizer's own). Each repeat times ``--steps`` calls of ``opt.step()`` and then as many
``with opt.base_weights(): pass`` round trips; the minimum (least disturbed by other processes) and the median
over repeats are reported in microseconds per call.
Variants: host foreach (the default), host single-tensor, capturable foreach (the default with
capturable=True), capturable single-tensor, capturable foreach with a 0-dim tensor lr. Writes
results/adamo_capturable/<label or device>.json and prints a table. ``--variants host-foreach,host-single``
runs on revisions without capturable AdamO too (``PYTHONPATH`` pointing at an older ``overshoot``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from overshoot import AdamO
from overshoot.common.provenance import device_name, git_rev, versions

ROOT = Path(__file__).resolve().parents[2]
VARIANTS: dict[str, dict[str, Any]] = {
    "host-foreach": dict(),
    "host-single": dict(foreach=False),
    "capturable-foreach": dict(capturable=True),
    "capturable-single": dict(capturable=True, foreach=False),
    "capturable-foreach-tensor-lr": dict(capturable=True, tensor_lr=True),
}


def _model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 200),
        torch.nn.ReLU(),
        torch.nn.Linear(200, 150),
        torch.nn.ReLU(),
        torch.nn.Linear(150, 1),
    ).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Any, n: int, device: torch.device) -> float:
    """Microseconds per call of ``fn`` over ``n`` calls."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / n * 1e6


def measure(kw: dict[str, Any], steps: int, repeats: int, device: torch.device) -> dict[str, float]:
    kw = dict(kw)
    tensor_lr = kw.pop("tensor_lr", False)
    model = _model(device)
    lr: float | torch.Tensor = torch.tensor(1e-3, device=device) if tensor_lr else 1e-3
    opt = AdamO(model.parameters(), lr=lr, gamma=5.0, delay=50, weight_decay=0.01, **kw)
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=g) * 1e-2).to(device)

    def round_trip() -> None:
        with opt.base_weights():
            pass

    for _ in range(60):  # past the delay ramp: the offset terms are live
        opt.step()
    step_us, base_us = [], []
    for _ in range(repeats):
        step_us.append(_time(opt.step, steps, device))
        base_us.append(_time(round_trip, steps, device))
    return {
        "step_us_min": min(step_us),
        "step_us_median": statistics.median(step_us),
        "base_round_trip_us_min": min(base_us),
        "base_round_trip_us_median": statistics.median(base_us),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    ap.add_argument("--label", default=None, help="results file name (default: the device type)")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.set_num_threads(a.threads)
    rows = {}
    names = a.variants.split(",")
    for name in names:
        rows[name] = measure(VARIANTS[name], a.steps, a.repeats, device)
        r = rows[name]
        step, base = (
            (r["step_us_min"], r["step_us_median"]),
            (r["base_round_trip_us_min"], r["base_round_trip_us_median"]),
        )
        print(f"{name:30s} step {step[0]:7.1f} us (median {step[1]:7.1f})  base round trip {base[0]:7.1f} us "
              f"(median {base[1]:7.1f})")  # fmt: skip
    result = {
        "revision": git_rev(),
        "device": device_name(device),
        "threads": a.threads,
        "versions": versions(),
        "protocol": f"housing MLP 8-200-150-1 float32, AdamO gamma 5 delay 50 wd 0.01, fixed gradients, "
        f"60 warm-up steps, min and median of {a.repeats} repeats of {a.steps} calls",
        "variants": {k: VARIANTS[k] for k in names},
        "results_us": rows,
    }
    out = ROOT / "results" / "adamo_capturable" / f"{a.label or device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
