"""The figure that shows the saving: per task section and family, the seed-mean smoothed training loss
zoomed around the 95% threshold, the first crossings k_B (baseline) and k_O (overshoot) ringed and
labelled with their steps, beside a strip of each seed's steps to the threshold (one dot per seed, the mean
and its 95% t-interval per method). Every crossing and step count drawn is the savings path's
(:func:`overshoot.analysis.savings.saving_summary` and :func:`~overshoot.analysis.savings.savings`, held by
the report as ``savings`` and ``seed_savings``); only the curves themselves are smoothed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from overshoot.analysis import metrics as M
from overshoot.analysis.figstyle import (
    TEXT_IN,
    ReportView,
    by_method,
    customs_of,
    family_title,
    legend_below,
    method_style,
    plain_ticks,
    save,
    steps_axis,
)
from overshoot.analysis.results import family_rank
from overshoot.config import methods

if TYPE_CHECKING:
    from overshoot.analysis.report.model import Section


def _section_savings(report: ReportView, sec: Section, family: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The savings path's rows of one section and family: the summary (one per method) and per seed."""
    s, p = report.savings, report.seed_savings
    return (
        s[(s["section"] == sec.key) & (s["family"] == family)],
        p[(p["section"] == sec.key) & (p["family"] == family)],
    )


def _step(k: Any, window: int) -> int | None:
    """A smoothed-array index of the savings path (``paper_k_*``) as a real step: the window's end."""
    return None if k is None or pd.isna(k) else int(k) + int(window)


def crossings(report: ReportView, sec: Section, family: str) -> tuple[float, dict[str, int | None]]:
    """The threshold of the seed-mean curves and each method's first crossing in real steps (None: not
    reached), the baseline first, as the savings path computed them (``paper_threshold``, ``paper_k_*``
    of :func:`overshoot.analysis.savings.saving_summary`)."""
    summary, _ = _section_savings(report, sec, family)
    if summary.empty:
        return math.nan, {}
    first = summary.iloc[0]
    out: dict[str, int | None] = {str(first["baseline"]): _step(first["paper_k_baseline"], first["window"])}
    for _, row in summary.iterrows():
        out[str(row["method"])] = _step(row["paper_k_method"], row["window"])
    return float(first["paper_threshold"]), out


def seed_steps(report: ReportView, sec: Section, family: str) -> dict[str, dict[int, int | None]]:
    """Per method (the baseline first), each seed's steps to its own baseline seed's threshold (None: not
    reached), from the savings path's per-seed rows (``k_baseline``, ``k_method``)."""
    _, per_seed = _section_savings(report, sec, family)
    if per_seed.empty:
        return {}
    out: dict[str, dict[int, int | None]] = {}
    base = per_seed.drop_duplicates("seed")
    out[str(per_seed["baseline"].iloc[0])] = {
        int(s): None if pd.isna(k) else int(k) for s, k in zip(base["seed"], base["k_baseline"], strict=True)
    }
    for method, g in per_seed.groupby("method", sort=False):
        out[str(method)] = {
            int(s): None if pd.isna(k) else int(k) for s, k in zip(g["seed"], g["k_method"], strict=True)
        }
    return out


def _label_rows(ax: Any, xs: Sequence[float], texts: Sequence[str], fontsize: float) -> list[int]:
    """The row (0 = nearest the axes) of each label centred at data x ``xs`` so that no two labels of a
    row overlap: greedy left to right, widths estimated from the font size."""
    x0, x1 = ax.get_xlim()
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    ends: list[float] = []
    rows = [0] * len(xs)
    for i in sorted(range(len(xs)), key=lambda i: xs[i]):
        half = 0.5 * len(texts[i]) * 0.55 * fontsize / 72 / width_in * (x1 - x0)
        left = xs[i] - half
        row = next((r for r, end in enumerate(ends) if left > end), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = xs[i] + half + 0.01 * (x1 - x0)
        rows[i] = row
    return rows


def threshold_panels(report: ReportView, stem: Path) -> list[Path]:
    """Per task section and family, a row of two panels. Left: the seed-mean trailing-mean training loss
    of each method zoomed to the steps where they cross the 95% threshold of the baseline's seed-mean
    curve, each first crossing (k_B for the baseline, k_O for overshoot) ringed, dropped to the axis and
    labelled with its step above the panel. Right: per method, each seed's steps to its own baseline
    seed's threshold (a dot per seed), their mean and 95% t-interval. Nothing is written (empty list)
    when no section has a saving."""
    rows = [
        (s, f)
        for s in report.sections
        for f in sorted(s.protocols, key=lambda f: (family_rank(f), f))
        if not _section_savings(report, s, f)[0].empty
    ]
    if not rows:
        return []
    fig, axes = plt.subplots(
        len(rows),
        2,
        figsize=(TEXT_IN, 2.5 * len(rows)),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"width_ratios": [1.35, 1.0]},
    )
    handles: dict[str, Any] = {}
    customs = customs_of(report.records)
    for (sec, family), (zoom, strip) in zip(rows, axes, strict=True):
        _threshold_row(zoom, strip, report, sec, family, handles, customs)
    handles[f"{report.reduction * 100:g}% threshold (seed-mean baseline)"] = Line2D(
        [], [], color="#555555", lw=0.8, ls=(0, (5, 2))
    )
    handles["first crossing"] = Line2D([], [], color="#444444", marker="o", mfc="none", ms=6, ls="none")
    handles["seed (own baseline seed's threshold)"] = Line2D(
        [], [], color="#444444", marker="o", ms=3, ls="none", alpha=0.6
    )
    handles["mean, 95% t-interval"] = Line2D([], [], color="k", marker="|", ms=9, mew=1.6, lw=1.2)
    legend_below(fig, handles, TEXT_IN)
    return save(fig, stem)


def _threshold_row(
    zoom: Any,
    strip: Any,
    report: ReportView,
    sec: Section,
    family: str,
    handles: dict[str, Any],
    customs: Sequence[str],
) -> None:
    recs = [r for r in sec.records if r.family == family]
    groups = by_method(recs)
    gammas = {o: [g for (o2, g) in groups if o2 == o] for o, _ in groups}
    thr, ks = crossings(report, sec, family)
    summary, _ = _section_savings(report, sec, family)
    w = int(summary["window"].iloc[0])
    curves: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any], str]] = {}
    optimizer: dict[str, str] = {}
    gammas_of: dict[str, float] = {}
    for (opt, gamma), runs in groups.items():
        method = runs[0].method
        if method not in ks:
            continue
        optimizer[method], gammas_of[method] = opt, gamma
        smoothed = M.trailing_mean(M.seed_mean_curve([r.base_loss for r in runs]), w)
        style = method_style(opt, gamma, gammas[opt], family, customs)
        curves[method] = (np.arange(smoothed.size) + w, smoothed, style, methods.display_label(opt, gamma))
    reached = {m: k for m, k in ks.items() if k is not None and m in curves}
    n = max((x.size for x, _, _, _ in curves.values()), default=0) + w
    if reached:
        lo, hi = min(reached.values()), max(reached.values())
        pad = max(0.6 * (hi - lo), 0.02 * n, 3.0)
        x_lo, x_hi = max(w, lo - pad), hi + pad
    else:
        x_lo, x_hi = w, n
    ys = [y[(x >= x_lo) & (x <= x_hi)] for m, (x, y, _, _) in curves.items() if m in reached or not reached]
    vals = np.concatenate([v[np.isfinite(v)] for v in ys]) if ys else np.array([])
    if vals.size:
        y_lo, y_hi = float(vals.min()), float(vals.max())
        if math.isfinite(thr):
            y_lo, y_hi = min(y_lo, thr), max(y_hi, thr)
        m = 0.06 * (y_hi - y_lo) or 0.01 * abs(y_hi) or 1.0
        zoom.set_ylim(y_lo - m, y_hi + m)
    zoom.set_xlim(x_lo, x_hi)
    for x, y, style, label in curves.values():
        keep = (x >= x_lo - 1) & (x <= x_hi + 1)
        line = {**style, "marker": None}
        zoom.plot(x[keep], y[keep], **line, zorder=2)
        handles.setdefault(label, Line2D([], [], **line))
    if math.isfinite(thr):
        zoom.axhline(thr, color="#555555", lw=0.8, ls=(0, (5, 2)), zorder=1)
    # the crossings: a hollow ring (the curve stays visible through it), a line up to the label
    base = next(iter(ks))
    texts = []
    for method, k in reached.items():
        opt, label = optimizer[method], curves[method][3]
        if method == base:
            texts.append(f"k_B {label} {k:,}")
        elif methods.is_overshoot(opt) and opt in methods.METHODS:  # the family is in the title
            texts.append(f"k_O γ={gammas_of[method]:g} {k:,}")
        else:
            texts.append(f"{label} {k:,}")
    fs = 6.5
    rows = _label_rows(zoom, list(reached.values()), texts, fs)
    y1 = zoom.get_ylim()[1]
    for (method, k), text, row in zip(reached.items(), texts, rows, strict=True):
        c = curves[method][2]["color"]
        zoom.plot([k, k], [thr, y1], color=c, lw=0.7, ls=":", zorder=1, gid=f"crossing-line:{method}")
        zoom.plot(
            [k],
            [thr],
            marker="o",
            ms=7,
            mfc="none",
            mec=c,
            mew=1.2,
            ls="none",
            zorder=5,
            gid=f"crossing:{method}",
        )
        zoom.annotate(
            text,
            (k, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2 + 9 * row),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=fs,
            color=c,
        )
    not_reached = [curves[m][3] for m in curves if m not in reached]
    zoom.set_title(f"{sec.label}, {family_title(family)}: seed mean", pad=6 + 9 * (max(rows, default=0) + 1))
    zoom.set_xlabel(  # the seed means that never cross, named under the axis, never over the curves
        "step (end of the trailing window)"
        + ("\nseed mean not reached: " + ", ".join(not_reached) if not_reached else "")
    )
    zoom.set_ylabel(f"training loss\n({w:,}-step trailing mean)")
    steps_axis(zoom)
    plain_ticks(zoom, "y")
    zoom.grid(True, alpha=0.3)
    # the strip: per method, one dot per seed, the mean and its 95% t-interval
    per_seed = seed_steps(report, sec, family)
    names = [m for m in per_seed if m in curves]
    for i, method in enumerate(names):
        _, _, style, label = curves[method]
        seeds = per_seed[method]
        vals_s = [k for k in seeds.values() if k is not None]
        jitter = np.linspace(-0.18, 0.18, len(seeds)) if len(seeds) > 1 else np.zeros(1)
        xs = [k for k in seeds.values()]
        pts = [(k, i + j) for k, j in zip(xs, jitter, strict=True) if k is not None]
        if pts:
            strip.plot(
                *zip(*pts, strict=True),
                ls="none",
                marker="o",
                ms=3,
                color=style["color"],
                alpha=0.6,
                gid=f"seeds:{method}",
                zorder=3,
            )
        ci = M.mean_ci(vals_s)
        if ci.n:
            hw = ci.half_width if math.isfinite(ci.half_width) else 0.0
            strip.errorbar(
                [ci.mean], [i], xerr=[hw], color="k", marker="|", ms=11, mew=1.6, lw=1.2, capsize=0, zorder=4
            )
        missed = len(seeds) - len(vals_s)
        if missed:
            strip.text(
                1.0,
                i,
                f" {missed} NR",
                transform=strip.get_yaxis_transform(),
                va="center",
                fontsize=6.5,
                color="#444444",
            )
    strip.set_yticks(range(len(names)), [curves[m][3] for m in names])
    for tick, name in zip(strip.get_yticklabels(), names, strict=True):
        tick.set_color(curves[name][2]["color"])
    strip.set_ylim(len(names) - 0.5, -0.5)
    strip.set_title(f"per seed: steps to {report.reduction * 100:g}% threshold")
    strip.set_xlabel("steps (end of the trailing window)")
    steps_axis(strip)
    strip.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))  # labels of 6 digits never touch
    strip.grid(True, axis="x", alpha=0.3)
