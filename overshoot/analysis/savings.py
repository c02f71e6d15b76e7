"""The step savings: the one computation of every saving (the per-run line, the sweep line, the report, a
tuning study, :mod:`overshoot.bench`), from the run records of :func:`overshoot.analysis.results.scan`.

    from overshoot.analysis import results, savings
    savings.saving_summary(results.scan(["runs"]))   # every step saving, with its window

A method is compared with its family baseline under one protocol of one task (:func:`comparisons`), per seed
(:func:`savings`) and summarised over seeds (:func:`saving_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from overshoot.analysis import metrics as M
from overshoot.analysis.results import RunRecord, Scan, family_rank, method_order

if TYPE_CHECKING:
    import pandas as pd

SAVINGS_COLUMNS = (
    "task",
    "protocol",
    "family",
    "baseline",
    "method",
    "optimizer",
    "gamma",
    "x_gamma",
    "seed",
    "reduction",
    "window",
    "threshold",
    "k_baseline",
    "k_method",
    "saving",
    "seconds_baseline",
    "seconds_method",
    "seconds_saving",
)
SUMMARY_COLUMNS = (
    "task",
    "protocol",
    "family",
    "baseline",
    "method",
    "optimizer",
    "gamma",
    "x_gamma",
    "reduction",
    "window",
    "seeds",
    "n_pairs",
    "n",
    "mean",
    "half_width",
    "low",
    "high",
    "within_noise",
    "not_reached",
    "baseline_not_reached",
    "k_baseline_mean",
    "k_method_mean",
    "seconds_baseline_mean",
    "seconds_method_mean",
    "seconds_n",
    "seconds_mean",
    "seconds_half_width",
    "per_seed",
    "paper_threshold",
    "paper_k_baseline",
    "paper_k_method",
    "paper_saving",
)


@dataclass
class Comparison:
    """One method against its family baseline under one protocol of one task, with the window it uses."""

    task: str
    protocol: str
    family: str
    baseline: str
    method: str
    base: list[RunRecord]
    runs: list[RunRecord]
    window: int


def family_baseline(family: str, present: Iterable[str]) -> str | None:
    """The method a family's savings are measured against: its baseline (CM, AdamW), else its overshoot
    method at gamma 0; None when neither is among the ``present`` method labels."""
    from overshoot.config import methods

    fam = methods.FAMILIES.get(family)
    if fam is None:
        return None
    have = set(present)
    return next((n for n in (fam.baseline, methods.label(fam.overshoot, 0.0)) if n in have), None)


def _records(runs: Scan | Iterable[RunRecord]) -> list[RunRecord]:
    return list(runs.records if isinstance(runs, Scan) else runs)


def comparisons(runs: Scan | Iterable[RunRecord], window: int = 400) -> list[Comparison]:
    """Every (task, protocol, family, method) with its family baseline among ``runs`` (usable records).

    The window rule: ``metrics.window_for(window, planned)`` where ``planned`` is the length of the
    compared runs (their protocol's planned steps: a completed run trains them all, and the protocol fixes
    epochs, max_steps, batch size and data). The window thus depends on the requested window and the
    comparison's protocol only: no run outside the comparison (another family, another protocol) changes it.
    """
    groups: dict[tuple[str, str, str], dict[str, list[RunRecord]]] = {}
    ordered = sorted(
        _records(runs),
        key=lambda r: (r.task, r.protocol, method_order(r.optimizer, r.gamma, r.family), r.seed),
    )
    for r in ordered:
        groups.setdefault((r.task, r.protocol, r.family), {}).setdefault(r.method, []).append(r)
    out: list[Comparison] = []
    for (task, protocol, family), by_method in sorted(
        groups.items(), key=lambda kv: (kv[0][0], family_rank(kv[0][2]), kv[0][1])
    ):
        base = family_baseline(family, by_method)
        if base is None:
            continue
        for method, recs in by_method.items():
            if method == base:
                continue
            planned = min(r.steps for r in (*by_method[base], *recs))
            w = M.window_for(window, planned)
            out.append(Comparison(task, protocol, family, base, method, by_method[base], recs, w))
    return out


def _compare(c: Comparison, reduction: float, confidence: float = 0.95) -> M.SeedSavings:
    return M.per_seed_saving(
        {r.seed: r.base_loss for r in c.base},
        {r.seed: r.base_loss for r in c.runs},
        reduction,
        c.window,
        confidence,
    )


def _seconds_at(run: RunRecord, k: int | None) -> float:
    """The elapsed training seconds of ``run`` after ``k`` steps: its time_s at step k - 1 (NaN when not
    reached, or for a run logged before the training clock)."""
    t = run.time_s
    if k is None or t is None or not 0 < k <= len(t):
        return math.nan
    return float(t[k - 1])


def _seconds(c: Comparison, ss: M.SeedSavings) -> tuple[list[float], list[float], list[float]]:
    """Per seed of ``ss``: the seconds the baseline and the method took to reach the threshold (at the step
    counts of ``ss``: same seeds, pairing and window), and the saving 100 (s_B - s_O) / s_B (NaN when either
    is unknown)."""
    base = {r.seed: r for r in c.base}
    runs = {r.seed: r for r in c.runs}
    sb = [_seconds_at(base[s], k) for s, k in zip(ss.seeds, ss.k_baseline, strict=True)]
    so = [_seconds_at(runs[s], k) for s, k in zip(ss.seeds, ss.k_method, strict=True)]
    saved = [
        100.0 * (b - o) / b if b > 0 and math.isfinite(o) else math.nan for b, o in zip(sb, so, strict=True)
    ]
    return sb, so, saved


def _meta(c: Comparison, reduction: float) -> dict[str, Any]:
    r = c.runs[0]
    return {
        "task": c.task,
        "protocol": c.protocol,
        "family": c.family,
        "baseline": c.baseline,
        "method": c.method,
        "optimizer": r.optimizer,
        "gamma": r.gamma,
        "x_gamma": r.x_gamma,
        "reduction": reduction,
        "window": c.window,
    }


def savings(runs: Scan | Iterable[RunRecord], reduction: float = 0.95, window: int = 400) -> pd.DataFrame:
    """The step saving of every method against its family baseline, one row per seed present for both
    (columns ``SAVINGS_COLUMNS``): the threshold from that seed's baseline run (its smoothed loss reduced
    by ``reduction``), the steps each run needs to reach it (real steps: the end of the window, ``None``
    when not reached), the saving 100 (k_baseline - k_method) / k_baseline (NaN when not reached), the
    ``window`` of the comparison (see :func:`comparisons` for the rule), and in seconds: the elapsed
    training seconds at those steps (steps.csv's time_s; NaN for runs logged without it) and the saving
    100 (seconds_baseline - seconds_method) / seconds_baseline."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for c in comparisons(runs, window):
        ss = _compare(c, reduction)
        meta = _meta(c, reduction)
        sb, so, saved = _seconds(c, ss)
        for i, seed in enumerate(ss.seeds):
            s = ss.savings[i]
            rows.append(
                {
                    **meta,
                    "seed": seed,
                    "threshold": ss.thresholds[i],
                    "k_baseline": ss.k_baseline[i],
                    "k_method": ss.k_method[i],
                    "saving": math.nan if s is None else s,
                    "seconds_baseline": sb[i],
                    "seconds_method": so[i],
                    "seconds_saving": saved[i],
                }
            )
    df = pd.DataFrame(rows, columns=list(SAVINGS_COLUMNS))
    for col in ("k_baseline", "k_method"):
        df[col] = df[col].astype("Int64")
    return df


def _mean_steps(ks: Sequence[int | None]) -> float:
    vals = [k for k in ks if k is not None]
    return float(np.mean(vals)) if vals else math.nan


def _mean_finite(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def saving_summary(
    runs: Scan | Iterable[RunRecord], reduction: float = 0.95, window: int = 400, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per comparison (columns ``SUMMARY_COLUMNS``) from the same per-seed savings as
    :func:`savings`: their mean, ``confidence`` t-interval (half width, low, high; NaN under 2 seeds),
    ``within_noise`` (the interval contains 0 or is undefined), the counts of seeds not reached, the mean
    step counts, the seconds at those step counts and the seconds saving (mean and t-interval half width
    over the ``seconds_n`` seeds where both are known), the per-seed list ``seed:saving;...`` (``NR``: not
    reached), and beside them the paper's
    own computation (:func:`metrics.paper_saving`: seed-mean curves, counts as smoothed-array indices) with
    the same window."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for c in comparisons(runs, window):
        ss = _compare(c, reduction, confidence)
        ps = M.paper_saving([r.base_loss for r in c.base], [r.base_loss for r in c.runs], reduction, c.window)
        ci = ss.summary
        sb, so, saved = _seconds(c, ss)
        sci = M.mean_ci(saved, confidence)
        rows.append(
            {
                **_meta(c, reduction),
                "seeds": " ".join(map(str, ss.seeds)),
                "n_pairs": len(ss.seeds),
                "n": ci.n,
                "mean": ci.mean,
                "half_width": ci.half_width,
                "low": ci.low,
                "high": ci.high,
                "within_noise": M.contains_zero(ci.low, ci.high),
                "not_reached": ss.n_not_reached,
                "baseline_not_reached": ss.n_baseline_not_reached,
                "k_baseline_mean": _mean_steps(ss.k_baseline),
                "k_method_mean": _mean_steps(ss.k_method),
                "seconds_baseline_mean": _mean_finite(sb),
                "seconds_method_mean": _mean_finite(so),
                "seconds_n": sci.n,
                "seconds_mean": sci.mean,
                "seconds_half_width": sci.half_width,
                "per_seed": ";".join(
                    f"{s}:{'NR' if v is None else f'{v:.2f}'}"
                    for s, v in zip(ss.seeds, ss.savings, strict=True)
                ),
                "paper_threshold": ps.threshold,
                "paper_k_baseline": ps.k_baseline,
                "paper_k_method": ps.k_method,
                "paper_saving": math.nan if ps.saving is None else ps.saving,
            }
        )
    df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for col in ("paper_k_baseline", "paper_k_method"):
        df[col] = df[col].astype("Int64")
    return df


def summary_text(row: Mapping[str, Any]) -> str:
    """A summary row as one line's tail: 'saving 5.3% +- 8.1 of the steps to 95% loss reduction (2 seeds,
    95% t-interval, window 160)'; 'not reached in 2 seeds (window 160)' when no seed reached it."""
    pct = f"{100 * float(row['reduction']):g}%"
    n, pairs, w = int(row["n"]), int(row["n_pairs"]), int(row["window"])
    if n == 0:
        return f"not reached in {pairs} seed{'s' * (pairs != 1)} (window {w})"
    ci = f" +- {row['half_width']:.1f}" if n > 1 else ""
    missed = pairs - n
    tail = f", {missed} not reached" if missed else ""
    return (
        f"saving {row['mean']:.1f}%{ci} of the steps to {pct} loss reduction "
        f"({n} seed{'s' * (n != 1)}{', 95% t-interval' if n > 1 else ''}{tail}, window {w})"
    )
