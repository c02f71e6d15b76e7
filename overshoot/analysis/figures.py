"""The paper's figures (arXiv 2501.09556) from a report, as PNG and PDF with matplotlib (Agg), in the style
of :mod:`overshoot.analysis.figstyle`.

* :func:`~overshoot.analysis.threshold_panels.threshold_panels` -- where the saving happens: per task
  section and family, the seed-mean curves zoomed around the 95% threshold with k_B and k_O marked and
  labelled, beside a strip of the per-seed steps to threshold;
* :func:`loss_grid` -- per task section and family, the smoothed base-weight training loss per step with
  the 95% threshold and each method's first crossing, and the test loss per epoch;
* :func:`saving_vs_gamma` -- step saving vs gamma per task section, CM/NAG and Adam/NAdam marked;
* :func:`gamma_mu_plane` -- the analytic gamma-mu plane of SGD with overshoot, the gammas the runs tried and
  the measured best gamma of each task section, AdamO on a panel of its own;
* :func:`distance_vs_gamma` -- mean weighted distance (the ``distance`` column of steps.csv) vs gamma;
* :func:`two_point_gap` -- the loss at the gradient point minus the loss at the base weights.

Every crossing drawn comes from the savings path (:func:`overshoot.analysis.savings.saving_summary`, held by
the report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from overshoot.analysis import metrics as M
from overshoot.analysis.figstyle import (
    BASELINE_STYLE,
    COLUMN_IN,
    CUSTOM_COLORS,
    FAMILY_COLORS,
    FAMILY_FILLED,
    FAMILY_LINESTYLE,
    MAX_LEGEND_COLUMNS,
    MAX_POINTS,
    MOMENTUM_SYMBOL,
    TEXT_IN,
    ReportView,
    by_method,
    customs_of,
    dodge,
    family_title,
    is_overshoot_method,
    legend_below,
    log_if_positive,
    method_style,
    overshoot_name,
    plain_number,
    plain_ticks,
    point_style,
    save,
    steps_axis,
)
from overshoot.analysis.results import RunRecord, family_rank, is_second_baseline, task_label
from overshoot.analysis.threshold_panels import crossings, seed_steps, threshold_panels
from overshoot.config import methods

if TYPE_CHECKING:
    from overshoot.analysis.report.model import Section

__all__ = [
    "COLUMN_IN",
    "CUSTOM_COLORS",
    "MAX_LEGEND_COLUMNS",
    "TEXT_IN",
    "best_gammas",
    "captions",
    "crossings",
    "distance_vs_gamma",
    "dodge",
    "gamma_mu_plane",
    "loss_grid",
    "method_style",
    "optimum_gamma",
    "plain_number",
    "plain_ticks",
    "save",
    "saving_vs_gamma",
    "seed_steps",
    "threshold_panels",
    "two_point_gap",
    "write_all",
]
# gamma* ~ A * exp(B * mu): the paper's empirical optimum in the gamma-mu plane (arXiv 2501.09556).
OPTIMUM_A, OPTIMUM_B = 5.568e-9, 21.914


def _test_curves(runs: Sequence[RunRecord]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Epochs and one row of test loss per seed (validation when no test split was logged)."""
    for split in ("test", "val"):
        frames = []
        for r in runs:
            e = r.epochs
            if e.empty or "split" not in e:
                continue
            sel = e[e["split"] == split]
            if not sel.empty:
                frames.append(pd.to_numeric(sel.set_index("epoch")["loss"], errors="coerce").rename(r.seed))
        if frames:
            table = pd.concat(frames, axis=1).sort_index()
            return table.index.to_numpy(dtype=float), table.to_numpy(dtype=float).T, split
    return None


def _band(
    ax: Any,
    x: np.ndarray,
    ys: np.ndarray,
    style: dict[str, Any],
    label: str,
    slot: float = 0.5,
    marks: int = 6,
) -> None:
    """Seed mean as a line (with a few markers, shifted by ``slot`` in [0, 1) so that methods' markers
    fall at different places) and the seed min-max as a shaded band."""
    mean = np.nanmean(ys, axis=0)
    every = max(1, len(x) // marks)
    ax.plot(x, mean, label=label, markevery=(int(every * slot) % every, every), **style)
    if ys.shape[0] > 1:
        ax.fill_between(
            x, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=style["color"], alpha=0.15, lw=0
        )


def loss_grid(report: ReportView, stem: Path) -> list[Path]:
    """Figure 1: per task section, one row per family: the seed-mean trailing mean of the base-weight
    training loss (left) with the seed min-max band, the 95% threshold from the baseline and each method's
    first crossing (the paper's k_B, k_O) marked; the test loss per epoch (right)."""
    sections = report.sections
    if not sections:
        raise ValueError("no runs to plot: pass at least one completed run")
    rows = [(s, f) for s in sections for f in sorted(s.protocols, key=lambda f: (family_rank(f), f))]
    fig, axes = plt.subplots(
        len(rows), 2, figsize=(TEXT_IN, 2.0 * len(rows)), squeeze=False, layout="constrained"
    )
    handles: dict[str, Any] = {}
    customs = customs_of(report.records)  # one style per user's method across the figure
    for i, (sec, family) in enumerate(rows):
        top, bottom = axes.ravel()[2 * i], axes.ravel()[2 * i + 1]
        _loss_panels(top, bottom, sec, family, report, handles, customs)
    handles["seed min–max"] = Patch(facecolor="#888888", alpha=0.3, lw=0)
    handles[f"{report.reduction * 100:g}% reduction threshold"] = Line2D(
        [], [], color="#555555", lw=0.8, ls=(0, (5, 2))
    )
    handles["first crossing (k_B, k_O)"] = Line2D([], [], color="k", marker="o", mfc="none", ms=6, ls="none")
    legend_below(fig, handles, TEXT_IN)
    return save(fig, stem)


def _loss_panels(
    top: Any,
    bottom: Any,
    sec: Section,
    family: str,
    report: ReportView,
    handles: dict[str, Any],
    customs: Sequence[str] = (),
) -> None:
    recs = [r for r in sec.records if r.family == family]
    groups = by_method(recs)
    gammas = {o: [g for (o2, g) in groups if o2 == o] for o, _ in groups}
    w = sec.windows[family]
    thr, ks = crossings(report, sec, family)  # the savings path's threshold and first crossings
    split = "test"
    for j, ((opt, gamma), runs) in enumerate(groups.items()):
        style = method_style(opt, gamma, gammas[opt], family, customs)
        label = methods.display_label(opt, gamma)
        slot = (j + 0.5) / len(groups)
        n = min(r.base_loss.size for r in runs)
        smoothed = np.stack([M.trailing_mean(r.base_loss[:n], w) for r in runs])
        if smoothed.shape[1]:
            keep = slice(None, None, -(-smoothed.shape[1] // MAX_POINTS))
            x = np.arange(smoothed.shape[1]) + w
            _band(top, x[keep], smoothed[:, keep], style, label, slot)
            k = ks.get(runs[0].method)
            if k is not None:  # a hollow ring: the crossing stays visible through it
                top.plot(
                    [k],
                    [thr],
                    marker="o",
                    ms=6,
                    mfc="none",
                    mec=style["color"],
                    mew=1.2,
                    ls="none",
                    zorder=5,
                    gid=f"crossing:{runs[0].method}",
                )
        test = _test_curves(runs)
        if test is not None:
            ex, ys, split = test
            _band(bottom, ex, ys, style, label, slot)
        handles.setdefault(label, Line2D([], [], **style))
    if math.isfinite(thr):
        top.axhline(thr, color="#555555", lw=0.8, ls=(0, (5, 2)), zorder=1)
    n_max = max(r.base_loss.size for r in recs)
    top.set_xlim(w, n_max)  # the first smoothed value sits at the end of the first window
    top.set_title(f"{sec.label}, {family_title(family)}: training loss")
    bottom.set_title(f"{sec.label}, {family_title(family)}: {split} loss")
    top.set_xlabel("step (end of the trailing window)")
    bottom.set_xlabel("epoch")
    top.set_ylabel(f"training loss\n({w:,}-step trailing mean)")
    bottom.set_ylabel(f"{split} loss")
    steps_axis(top)
    for ax in (top, bottom):
        log_if_positive(ax)
        plain_ticks(ax, "y")
        ax.grid(True, which="major", alpha=0.3)


def saving_vs_gamma(report: ReportView, stem: Path) -> list[Path]:
    """Step saving vs gamma per task section: the per-seed mean with its 95% t-interval (the number of
    seeds in the legend) and the paper-style saving; CM/AdamW at (0, 0), NAG at gamma = mu and NAdam at
    gamma = b1; a user's method (no gamma) as a level line with its interval shaded; the families offset a
    little sideways so no marker hides another."""
    savings = report.savings
    sections = [s for s in report.sections if (savings["section"] == s.key).any()]
    if not sections:
        raise ValueError("no savings to plot: the runs hold no family baseline with another method")
    cols = min(len(sections), 3)
    nrows = math.ceil(len(sections) / cols)
    width = COLUMN_IN if cols == 1 else TEXT_IN
    fig, axes = plt.subplots(nrows, cols, figsize=(width, 2.4 * nrows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(sections) :]:
        ax.set_visible(False)
    handles: dict[str, Any] = {}
    customs = customs_of(report.records)
    span = max(1.0, float(savings["x_gamma"].max()))
    for ax, sec in zip(axes.ravel(), sections, strict=False):
        t = savings[savings["section"] == sec.key]
        ax.axhline(0.0, color="#999999", lw=0.7)
        for family in sorted(set(t["family"]), key=lambda f: (family_rank(f), f)):
            f = t[t["family"] == family]
            dx = dodge(family, span)
            c = FAMILY_COLORS.get(family, "#238b45")
            filled = FAMILY_FILLED.get(family, True)
            os_ = f[f["optimizer"].map(is_overshoot_method).astype(bool)].sort_values("gamma")
            name = overshoot_name(family)
            n_seeds = int(os_["n_pairs"].max()) if len(os_) else 0
            if not os_.empty:
                x = os_["gamma"].to_numpy(float) + dx
                y = os_["mean"].to_numpy(float)
                err = np.nan_to_num(os_["half_width"].to_numpy(float))
                h = ax.errorbar(
                    x,
                    y,
                    yerr=err,
                    color=c,
                    marker="o",
                    ms=4,
                    capsize=2,
                    lw=1.1,
                    ls=FAMILY_LINESTYLE.get(family, "-"),
                    mfc=c if filled else "white",
                )
                handles.setdefault(f"{name}, per seed ({n_seeds} seeds)", h)
                h2 = ax.plot(
                    x, os_["paper_saving"].to_numpy(float), ls="none", marker="x", ms=5, color=c, mew=1.1
                )
                handles.setdefault(f"{name}, paper-style", h2[0])
            base = sec.baseline(family) or ""
            bstyle = BASELINE_STYLE.get(family, {}).get("baseline", {"marker": "s"})
            h3 = ax.plot(
                [dx],
                [0.0],
                **point_style(bstyle["marker"], 6, c, filled),
                zorder=3,
            )
            handles.setdefault(f"{_baseline_name(sec, base)} (baseline)", h3[0])
            sec_rows = f[f["optimizer"].map(lambda o: is_second_baseline(str(o))).astype(bool)]
            if not sec_rows.empty:
                row = sec_rows.iloc[0]
                h4 = ax.errorbar(
                    [row["x_gamma"] + dx],
                    [row["mean"]],
                    yerr=[np.nan_to_num(row["half_width"])],
                    **point_style("D", 5, c, filled),
                    capsize=2,
                )
                sym = MOMENTUM_SYMBOL.get(family, "μ")
                handles.setdefault(f"{methods.display_label(str(row['optimizer']), 0.0)} at γ = {sym}", h4)
            for _, row in f[f["optimizer"].isin(customs)].iterrows():
                style = method_style(str(row["optimizer"]), 0.0, family=family, customs=customs)
                y, hw = float(row["mean"]), float(np.nan_to_num(row["half_width"]))
                if not math.isfinite(y):
                    continue
                h5 = ax.axhline(y, color=style["color"], ls=style["linestyle"], lw=1.1, zorder=2)
                if hw > 0:
                    ax.axhspan(y - hw, y + hw, color=style["color"], alpha=0.12, lw=0, zorder=1)
                name = methods.display_label(str(row["optimizer"]), 0.0)
                handles.setdefault(f"{name}, per seed ({int(row['n_pairs'])} seeds)", h5)
        ws = sorted(set(t["window"].astype(int)))
        ax.set_title(f"{sec.label} (window {'/'.join(f'{w:,}' for w in ws)} steps)")
        ax.set_xlabel("γ")
        ax.set_ylabel(f"steps saved to {report.reduction * 100:g}% reduction (%)")
        ax.grid(True, alpha=0.3)
    legend_below(fig, handles, width)
    return save(fig, stem)


def _baseline_name(sec: Section, method: str) -> str:
    """The display label of the section's baseline ``method`` ('CM', 'AdamO γ=0'); 'baseline' without."""
    r = next((r for r in sec.records if r.method == method), None)
    return methods.display_label(r.optimizer, r.gamma) if r is not None else "baseline"


def optimum_gamma(mu: np.ndarray | float) -> np.ndarray:
    """The paper's empirical optimum gamma* ~ 5.568e-9 * exp(21.914 * mu)."""
    return OPTIMUM_A * np.exp(OPTIMUM_B * np.asarray(mu, dtype=float))


def best_gammas(report: ReportView) -> pd.DataFrame:
    """Per section and family: the momentum (mu or b1), the gammas tried and the gamma with the largest
    per-seed mean saving (paper-style where no seed pair reached)."""
    rows = []
    for sec in report.sections:
        for family in sec.protocols:
            recs = [r for r in sec.records if r.family == family]
            tried = sorted({r.gamma for r in recs if methods.is_overshoot(r.optimizer)})
            mom = next((r.momentum for r in recs if r.momentum is not None), math.nan)
            s = report.savings[(report.savings["section"] == sec.key) & (report.savings["family"] == family)]
            s = s[s["optimizer"].map(is_overshoot_method).astype(bool)]
            value = s["mean"].where(s["mean"].notna(), s["paper_saving"])
            best = float(s.loc[value.idxmax(), "gamma"]) if value.notna().any() else math.nan
            rows.append(
                {
                    "section": sec.key,
                    "label": sec.label,
                    "family": family,
                    "momentum": mom,
                    "tried": tried,
                    "best_gamma": best,
                }
            )
    return pd.DataFrame(rows, columns=["section", "label", "family", "momentum", "tried", "best_gamma"])


def _data_range(values: Sequence[float], margin: float, lo: float, hi: float) -> tuple[float, float]:
    """[min - m, max + m] of ``values`` (m: ``margin`` or a sixth of their spread), clipped to [lo, hi]."""
    v0, v1 = min(values), max(values)
    m = max(margin, (v1 - v0) / 6)
    return max(lo, v0 - m), min(hi, v1 + m)


def gamma_mu_plane(
    stem: Path,
    report: ReportView | None = None,
    mu_range: tuple[float, float] = (0.5, 0.98),
    gamma_max: float = 20.0,
) -> list[Path]:
    """Figure: the gamma-mu plane of SGDO: CM (gamma 0), NAG (gamma = mu), plain SGD (gamma = mu/(1-mu)),
    the negative-momentum region above it and the empirical optimum gamma*. With a report, each axis is
    limited to the runs' momenta and gammas (plus a margin), the gammas tried are rings and the measured
    best gamma of each task section a star inside its ring; AdamO gets a panel of its own against b1
    (Adam at gamma 0, NAdam at gamma = b1; the SGD plane's curves do not apply to it)."""
    best = best_gammas(report) if report is not None else pd.DataFrame()
    if not best.empty:
        best = best[best["momentum"].map(lambda m: math.isfinite(float(m)))]
    families = sorted(set(best["family"]), key=lambda f: (family_rank(f), f)) if not best.empty else []
    panels = families or ["sgd"]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(COLUMN_IN, 2.3 * len(panels)), squeeze=False, layout="constrained"
    )
    handles: dict[str, Any] = {}
    for ax, fam in zip(axes[:, 0], panels, strict=True):
        rows = best[best["family"] == fam] if families else best
        if not rows.empty:
            moms = [float(m) for m in rows["momentum"]]
            gs = [g for t in rows["tried"] for g in t] + [g for g in rows["best_gamma"] if math.isfinite(g)]
            x0, x1 = _data_range(moms, 0.04, 0.0, 0.999)
            top = 1.25 * max([*gs, *moms, 1.0])
        else:
            (x0, x1), top = mu_range, gamma_max
        mu = np.linspace(x0, x1, 400)
        sym = MOMENTUM_SYMBOL.get(fam, "μ")
        if fam == "sgd" or not families:
            sgd = mu / (1 - mu)
            ax.fill_between(mu, np.minimum(sgd, top), top, color="#fdd0a2", alpha=0.5, lw=0)
            handles["CM (γ = 0)"] = ax.plot(mu, np.zeros_like(mu), color="#000000", lw=1.4, ls=":")[0]
            handles["NAG (γ = μ)"] = ax.plot(mu, mu, color="#6a51a3", lw=1.4, ls="-.")[0]
            handles["SGD (γ = μ/(1−μ)); above: negative momentum"] = ax.plot(
                mu, sgd, color="#d94801", lw=1.4, ls="--"
            )[0]
            handles["paper's optimum γ* (SGD)"] = ax.plot(mu, optimum_gamma(mu), color="#2171b5", lw=1.6)[0]
        else:
            f = methods.FAMILIES.get(fam)
            base = methods.METHODS[f.baseline].display if f is not None else "baseline"
            handles[f"{base} (γ = 0)"] = ax.plot(
                mu, np.zeros_like(mu), color="#000000", lw=1.4, ls=(0, (1, 1.5))
            )[0]
            if f is not None and f.second:
                second = methods.METHODS[f.second].display
                handles[f"{second} (γ = {sym})"] = ax.plot(
                    mu, mu, color="#6a51a3", lw=1.4, ls=(0, (4, 1.5, 1, 1.5))
                )[0]
        c = FAMILY_COLORS.get(fam, "#238b45")
        filled = FAMILY_FILLED.get(fam, True)
        name = overshoot_name(fam)
        for i, (_, row) in enumerate(rows.iterrows()):
            dx = (i - (len(rows) - 1) / 2) * 0.04 * (x1 - x0)  # sections at one momentum side by side
            x = float(row["momentum"]) + dx
            if row["tried"]:
                h = ax.plot(
                    [x] * len(row["tried"]),
                    row["tried"],
                    ls="none",
                    marker="o",
                    ms=9,
                    mfc="none",
                    mec="#777777",
                    mew=0.9,
                    zorder=5,
                )
                handles.setdefault("γ tried (ring)", h[0])
            if math.isfinite(row["best_gamma"]):
                h = ax.plot([x], [row["best_gamma"]], **point_style("*", 7, c, filled), mew=0.8, zorder=4)
                handles.setdefault(f"{name} best γ (at {sym})", h[0])
                ax.annotate(
                    row["label"],
                    (x, row["best_gamma"]),
                    textcoords="offset points",
                    xytext=(7, 0),
                    ha="left",
                    va="center",
                    fontsize=6.5,
                    color=c,
                )
        ax.set_xlim(x0, x1)
        ax.set_ylim(-0.04 * top, top)
        ax.set_xlabel("momentum μ" if fam == "sgd" or not families else f"{sym} ({name})")
        ax.set_ylabel(f"overshoot γ ({name})" if families else "overshoot γ")
        ax.set_title(f"{name}: γ against {sym}" if families else "SGD with overshoot: the γ-μ plane")
        plain_ticks(ax, "x")
        plain_ticks(ax, "y")
        ax.grid(True, alpha=0.3)
    legend_below(fig, handles, COLUMN_IN)
    return save(fig, stem)


def distance_vs_gamma(
    records: Sequence[RunRecord], stem: Path, labels: dict[str, str] | None = None
) -> list[Path]:
    """Figure: per run, the mean over steps of the logged weighted distance vs gamma, coloured by the run's
    mean training loss, one line (through the seed means) and marker per (family, b1 or mu). Nothing is
    written (empty list) when no run logged the distance (``log.distance=true``)."""
    pts = []
    for r in records:
        if r.distance is None:
            continue
        d = r.distance[np.isfinite(r.distance)]
        loss = r.base_loss[np.isfinite(r.base_loss)]
        if d.size and loss.size:
            pts.append((r.task, r.family, r.momentum, r.x_gamma, float(d.mean()), float(loss.mean())))
    if not pts:
        return []
    df = pd.DataFrame(pts, columns=["task", "family", "momentum", "gamma", "distance", "loss"])
    tasks = sorted(set(df["task"]))
    cols = min(len(tasks), 3)
    width = COLUMN_IN if cols == 1 else TEXT_IN
    fig, axes = plt.subplots(
        math.ceil(len(tasks) / cols),
        cols,
        figsize=(width, 2.5 * math.ceil(len(tasks) / cols)),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel()[len(tasks) :]:
        ax.set_visible(False)
    lo, hi = float(df["loss"].min()), float(df["loss"].max())
    norm = LogNorm(lo, hi) if 0 < lo < hi else Normalize(lo, hi)
    markers = ["o", "s", "^", "D", "v", "P"]
    sc = None
    handles: dict[str, Any] = {}
    for ax, task in zip(axes.ravel(), tasks, strict=False):
        t = df[df["task"] == task]
        groups = t.groupby(["family", t["momentum"].fillna(-1.0)], sort=True)
        for i, ((family, mom), g) in enumerate(groups):
            sym = MOMENTUM_SYMBOL.get(str(family), "μ")
            label = f"{family_title(str(family))}, {sym} = {mom:g}" if mom >= 0 else family_title(str(family))
            means = g.groupby("gamma")["distance"].mean()
            color = FAMILY_COLORS.get(str(family), "#238b45")
            ls = FAMILY_LINESTYLE.get(str(family), "-")
            ax.plot(means.index, means.to_numpy(), color=color, lw=1.0, ls=ls, zorder=2)
            sc = ax.scatter(
                g["gamma"],
                g["distance"],
                c=g["loss"],
                cmap="viridis",
                norm=norm,
                marker=markers[i % len(markers)],
                s=18,
                edgecolors="k",
                linewidths=0.3,
                zorder=3,
            )
            handles.setdefault(
                label, Line2D([], [], color=color, ls=ls, marker=markers[i % len(markers)], mfc="white")
            )
        ax.set_title((labels or {}).get(task, task_label(task)))
        ax.set_xlabel("γ")
        ax.set_ylabel("average weighted distance")
        ax.grid(True, alpha=0.3)
    if sc is not None:
        cb = fig.colorbar(
            sc, ax=[a for a in axes.ravel() if a.get_visible()], label="mean training loss", shrink=0.9
        )
        plain_ticks(cb.ax, "y")
    legend_below(fig, handles, width)
    return save(fig, stem)


def _gradient_point_loss(r: RunRecord) -> np.ndarray | None:
    """steps.csv's ``train_loss`` (the loss where the gradient was taken) of a run that evaluates elsewhere;
    None when it has no such column."""
    try:
        train = pd.read_csv(r.path / "steps.csv", usecols=["train_loss"])["train_loss"]
    except (OSError, ValueError):
        return None
    return pd.to_numeric(train, errors="coerce").to_numpy(dtype=float)


def two_point_gap(report: ReportView, stem: Path) -> list[Path]:
    """Per task section and family, for each method that evaluates away from where it takes gradients
    (overshoot at γ > 0, Schedule-Free's x vs y): the loss at the gradient point minus the loss at the base
    (evaluated) weights on the same minibatch, trailing mean over the section's window, seed mean with the
    seed min–max band. Nothing is written when no run has two points."""
    rows: list[tuple[Section, str, dict[tuple[str, float], list[tuple[RunRecord, np.ndarray]]]]] = []
    for sec in report.sections:
        for family in sorted(sec.protocols, key=lambda f: (family_rank(f), f)):
            groups: dict[tuple[str, float], list[tuple[RunRecord, np.ndarray]]] = {}
            for (opt, gamma), runs in by_method([r for r in sec.records if r.family == family]).items():
                if not methods.get(opt, family).two_points(gamma):
                    continue
                for r in runs:
                    train = _gradient_point_loss(r)
                    if train is not None:
                        n = min(train.size, r.base_loss.size)
                        groups.setdefault((opt, gamma), []).append((r, train[:n] - r.base_loss[:n]))
            if groups:
                rows.append((sec, family, groups))
    if not rows:
        return []
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(COLUMN_IN * 1.6, 1.9 * len(rows)), squeeze=False, layout="constrained"
    )
    handles: dict[str, Any] = {}
    customs = customs_of(report.records)
    for ax, (sec, family, groups) in zip(axes[:, 0], rows, strict=True):
        w = sec.windows[family]
        gammas = {o: [g for (o2, g) in groups if o2 == o] for o, _ in groups}
        for j, ((opt, gamma), pairs) in enumerate(groups.items()):
            style = method_style(opt, gamma, gammas[opt], family, customs)
            label = methods.display_label(opt, gamma)
            n = min(gap.size for _, gap in pairs)
            smoothed = np.stack([M.trailing_mean(gap[:n], w) for _, gap in pairs])
            if smoothed.shape[1]:
                keep = slice(None, None, -(-smoothed.shape[1] // MAX_POINTS))
                x = np.arange(smoothed.shape[1]) + w
                _band(ax, x[keep], smoothed[:, keep], style, label, (j + 0.5) / len(groups))
            handles.setdefault(label, Line2D([], [], **style))
        ax.axhline(0.0, color="#555555", lw=0.8, zorder=1)
        ax.set_xlim(w, max(gap.size for pairs in groups.values() for _, gap in pairs))
        ax.set_title(f"{sec.label}, {family_title(family)}")
        ax.set_xlabel("step (end of the trailing window)")
        ax.set_ylabel(f"gradient-point − base loss\n({w:,}-step trailing mean)")
        steps_axis(ax)
        plain_ticks(ax, "y")
        ax.grid(True, which="major", alpha=0.3)
    handles["seed min–max"] = Patch(facecolor="#888888", alpha=0.3, lw=0)
    legend_below(fig, handles, COLUMN_IN * 1.6)
    return save(fig, stem)


def write_all(report: ReportView, out: Path) -> list[Path]:
    """Every figure of ``report`` into ``out``: threshold_panels (when there are savings), loss_grid,
    saving_vs_gamma (when there are savings), gamma_mu_plane, distance_vs_gamma (when a run logged the
    distance) and two_point_gap (when a run evaluates away from its gradient point); the written paths."""
    paths = threshold_panels(report, out / "threshold_panels")
    paths += loss_grid(report, out / "loss_grid")
    if not report.savings.empty:
        paths += saving_vs_gamma(report, out / "saving_vs_gamma")
    paths += gamma_mu_plane(out / "gamma_mu_plane", report)
    labels = {s.task: s.label for s in report.sections}
    paths += distance_vs_gamma(report.records, out / "distance_vs_gamma", labels)
    paths += two_point_gap(report, out / "two_point_gap")
    return paths


def captions(report: ReportView) -> dict[str, str]:
    """The caption of each figure by file stem (the window and the band named)."""
    ws = sorted({w for s in report.sections for w in s.windows.values()})
    win = (
        f"{ws[0]:,}-step" if len(ws) == 1 else "per-comparison (" + "/".join(f"{w:,}" for w in ws) + "-step)"
    )
    pct = f"{report.reduction * 100:g}%"
    return {
        "threshold_panels": (
            f"Where the saving happens. Left: the seed mean of each method's {win} trailing-mean training "
            f"loss (at the base weights, plotted at the window's last step), zoomed to the steps where it "
            f"crosses the {pct} reduction threshold of the family baseline's seed-mean curve (dashed); "
            "rings: the first crossings, labelled with their step (k_B: baseline, k_O: overshoot; the "
            "paper's computation). Right: per method, each seed's steps to the threshold of the same "
            "seed's baseline run (dots; the per-seed savings), their mean and 95% t-interval (bar); NR: "
            "seeds that never reached it."
        ),
        "loss_grid": (
            f"Training loss at the base weights, seed mean of the {win} trailing mean (plotted at the "
            f"window's last step, so the axis starts there), band = seed min–max; dashed: the {pct} "
            "reduction threshold from the family baseline, rings: each method's first crossing (k_B, k_O), "
            "zoomed in the threshold panels. Right: test loss per epoch, seed mean and min–max."
        ),
        "saving_vs_gamma": (
            f"Steps saved to {pct} loss reduction vs γ ({win} window): per-seed mean ± 95% t-interval "
            "(this project's variant, seed count in the legend) and paper-style (×); the baseline at 0, "
            "NAG at γ = μ, NAdam at γ = β1; the two families are offset sideways."
        ),
        "gamma_mu_plane": (
            "The γ-μ plane of SGD with overshoot, limited to the runs' momenta and γ: CM, NAG, plain SGD and "
            "the negative-momentum region (shaded), the paper's empirical optimum γ*, the γ the runs tried "
            "(rings) and the measured best γ per task section (stars: largest per-seed mean saving). AdamO "
            "in a panel of its own against β1, with Adam (γ = 0) and NAdam (γ = β1)."
        ),
        "distance_vs_gamma": "Average weighted distance vs γ per run, coloured by its mean training loss.",
        "two_point_gap": (
            f"Methods that take gradients away from the weights they are evaluated at (overshoot at γ > 0, "
            f"Schedule-Free's y vs x): the training loss at the gradient point minus the loss at the base "
            f"weights on the same minibatch, {win} trailing mean, seed mean and min–max."
        ),
    }
