"""The paper's figures (arXiv 2501.09556) from a report, as PNG and PDF with matplotlib (Agg).

* :func:`loss_grid` -- per task section and family, the smoothed base-weight training loss per step with
  the 95% threshold and each method's first crossing, and the test loss per epoch;
* :func:`saving_vs_gamma` -- step saving vs gamma per task section, CM/NAG and Adam/NAdam marked;
* :func:`gamma_mu_plane` -- the analytic gamma-mu plane of SGD with overshoot, the gammas the runs tried and
  the measured best gamma of each task section;
* :func:`distance_vs_gamma` -- mean weighted distance (the ``distance`` column of steps.csv) vs gamma.

Sizes follow a two-column paper: one column is :data:`COLUMN_IN` wide, the full text width :data:`TEXT_IN`;
fonts are embedded as TrueType (Type 42), legends sit outside the axes in at most three columns, and the
families differ in line style and marker fill as well as colour.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from overshoot.analysis import metrics as M
from overshoot.analysis.report.model import Section
from overshoot.analysis.report.style import family_label
from overshoot.analysis.report.tables import Report
from overshoot.analysis.results import RunRecord, family_rank, is_second_baseline, method_order, task_label
from overshoot.common.files import atomic_write
from overshoot.config import methods

FIGURE_FORMATS = ("png", "pdf")
COLUMN_IN, TEXT_IN = 3.3, 6.9
MAX_LEGEND_COLUMNS = 3
# gamma* ~ A * exp(B * mu): the paper's empirical optimum in the gamma-mu plane (arXiv 2501.09556).
OPTIMUM_A, OPTIMUM_B = 5.568e-9, 21.914
FAMILY_COLORS = {"sgd": "#08519c", "adam": "#a63603", "lion": "#006d2c", "radam": "#54278f"}
FAMILY_LINESTYLE = {"sgd": "-", "adam": "--", "lion": "-", "radam": "--"}
FAMILY_FILLED = {"sgd": True, "adam": False, "lion": True, "radam": False}
FAMILY_CMAP = {"sgd": "Blues", "adam": "Oranges", "lion": "Greens", "radam": "Purples"}  # a family's gammas
MOMENTUM_SYMBOL = {"sgd": "μ", "adam": "β1"}  # the momentum a family's second baseline sits at on the γ axis
# Per family, the style of its baseline (CM, Adam) and of its second baseline (NAG, NAdam).
BASELINE_STYLE: dict[str, dict[str, dict[str, Any]]] = {
    "sgd": {
        "baseline": {"color": "#000000", "linestyle": ":", "marker": "s"},
        "second": {"color": "#6a51a3", "linestyle": "-.", "marker": "D"},
    },
    "adam": {
        "baseline": {"color": "#000000", "linestyle": (0, (1, 1.5)), "marker": "s"},
        "second": {"color": "#6a51a3", "linestyle": (0, (4, 1.5, 1, 1.5)), "marker": "D"},
    },
}
OS_MARKERS = ("o", "^", "v", "P", "X", "h", "*")
# The user's methods: a colour outside the families' blues and oranges, a marker and a dash pattern none
# of the built-in methods has (greyscale-safe), one triple per method, cycling after six.
CUSTOM_COLORS = ("#238b45", "#c51b7d", "#01665e", "#525252", "#8c6d31", "#e7298a")
CUSTOM_MARKERS = ("p", "<", ">", "d", "H", "8")
CUSTOM_LINESTYLES: tuple[Any, ...] = (
    (0, (6, 1.5, 1, 1.5, 1, 1.5)),
    (0, (3, 1, 1, 1, 1, 1)),
    (0, (8, 2)),
    (0, (2, 2)),
    (0, (5, 1, 5, 1, 1, 1)),
    (0, (1, 3)),
)
MAX_POINTS = 1000  # points per plotted training curve

plt.rcParams.update(
    {
        "font.size": 8,
        "axes.titlesize": 8,
        "axes.labelsize": 8,
        "legend.fontsize": 7,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "savefig.dpi": 200,
        "pdf.fonttype": 42,  # TrueType, not Type 3: what IEEE/ACM checkers accept
        "ps.fonttype": 42,
    }
)


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` (each atomically) and close it; the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FIGURE_FORMATS:
        path = stem.with_suffix(f".{fmt}")
        meta = {"CreationDate": None} if fmt == "pdf" else None  # the same figure gives the same bytes
        save_fig = functools.partial(
            fig.savefig, format=fmt, bbox_inches="tight", pad_inches=0.02, metadata=meta
        )
        atomic_write(path, save_fig, "wb")
        paths.append(path)
    plt.close(fig)
    return paths


def _custom_index(name: str, customs: Sequence[str]) -> int:
    """The place of a user's method among ``customs`` (sorted), else a stable hash of its name."""
    names = sorted(set(customs))
    if name in names:
        return names.index(name)
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def method_style(
    optimizer: str,
    gamma: float,
    gammas: Sequence[float] = (),
    family: str = "",
    customs: Sequence[str] = (),
) -> dict[str, Any]:
    """Colour, line style, marker and marker fill of a method: the SGD family solid with filled markers,
    the Adam family dashed with open ones, baselines dotted/dash-dotted in black/purple; overshoot gammas
    darker the larger they are, each with its own marker (greyscale-safe: marker and dash tell them apart).
    A user's method (of ``family``) gets a colour, marker and dash of its own: the same for the same name,
    distinct among the ``customs`` names plotted together (up to six)."""
    m = methods.METHODS.get(optimizer)
    family = m.family if m is not None else family
    filled = FAMILY_FILLED.get(family, True)
    f = methods.FAMILIES.get(family)
    role = None
    if m is not None and f is not None:
        role = "baseline" if optimizer == f.baseline else "second" if optimizer == f.second else None
    if role is not None:  # a family without styles of its own takes the SGD family's baseline styles
        style = dict(BASELINE_STYLE.get(family, BASELINE_STYLE["sgd"])[role])
    elif m is None or not m.overshoot:  # a user's method, or a built-in one without gamma (SF-AdamW)
        i = _custom_index(optimizer, customs)
        style = {
            "color": CUSTOM_COLORS[i % len(CUSTOM_COLORS)],
            "linestyle": CUSTOM_LINESTYLES[i % len(CUSTOM_LINESTYLES)],
            "marker": CUSTOM_MARKERS[i % len(CUSTOM_MARKERS)],
        }
    else:
        cmap = plt.get_cmap(FAMILY_CMAP.get(family, "Oranges"))
        gs = sorted(set(gammas)) or [gamma]
        pos = gs.index(gamma) / max(1, len(gs) - 1) if gamma in gs else 0.5
        idx = gs.index(gamma) if gamma in gs else 0
        style = {
            "color": cmap(0.5 + 0.45 * pos),
            "linestyle": FAMILY_LINESTYLE.get(family, "-"),
            "marker": OS_MARKERS[idx % len(OS_MARKERS)],
        }
    style["markerfacecolor"] = style["color"] if filled else "white"
    style["markeredgecolor"] = style["color"]
    style["linewidth"] = 1.2
    style["markersize"] = 4
    return style


def _legend(fig: Figure, handles: dict[str, Any], width: float) -> None:
    """One legend below the axes, inside the figure's width: at most three columns, fewer when the
    entries would not fit across."""
    if not handles:
        return
    ncol = min(len(handles), MAX_LEGEND_COLUMNS)
    while True:
        leg = fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside lower center",
            ncol=ncol,
            frameon=False,
            handlelength=2.4,
            columnspacing=1.0,
        )
        fig.canvas.draw()
        box = leg.get_window_extent()
        if ncol == 1 or box.width <= width * fig.dpi:
            fig.set_figheight(fig.get_figheight() + box.height / fig.dpi)  # the axes keep their height
            return
        leg.remove()
        ncol -= 1


def _log_if_positive(ax: Any) -> None:
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    vals = np.concatenate(ys) if ys else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size and (vals > 0).all():
        ax.set_yscale("log")


def _by_method(records: Sequence[RunRecord]) -> dict[tuple[str, float], list[RunRecord]]:
    out: dict[tuple[str, float], list[RunRecord]] = {}
    for r in records:
        out.setdefault((r.optimizer, r.gamma), []).append(r)
    family = {(r.optimizer, r.gamma): r.family for r in records}
    return dict(sorted(out.items(), key=lambda kv: method_order(kv[0][0], kv[0][1], family[kv[0]])))


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


def _family_label(family: str) -> str:
    return family_label(family) + " family"


def _customs(records: Sequence[RunRecord]) -> list[str]:
    """The names of the user's methods among ``records``."""
    return sorted({r.optimizer for r in records if r.optimizer not in methods.METHODS})


def _is_overshoot(optimizer: Any) -> bool:
    return methods.is_overshoot(str(optimizer))


def _overshoot_name(family: str) -> str:
    """'SGDO', 'AdamO': the display name of the family's overshoot method."""
    f = methods.FAMILIES.get(family)
    return methods.METHODS[f.overshoot].display if f is not None else family


def loss_grid(report: Report, stem: Path) -> list[Path]:
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
    customs = _customs(report.records)  # one style per user's method across the figure
    for i, (sec, family) in enumerate(rows):
        top, bottom = axes.ravel()[2 * i], axes.ravel()[2 * i + 1]
        _loss_panels(top, bottom, sec, family, report.reduction, handles, customs)
    handles["seed min–max"] = Patch(facecolor="#888888", alpha=0.3, lw=0)
    handles[f"{report.reduction * 100:g}% reduction threshold"] = Line2D(
        [], [], color="#555555", lw=0.8, ls=(0, (5, 2))
    )
    handles["first crossing (k_B, k_O)"] = Line2D([], [], color="k", marker="|", ms=8, ls="none", mew=1.2)
    _legend(fig, handles, TEXT_IN)
    return save(fig, stem)


def _loss_panels(
    top: Any,
    bottom: Any,
    sec: Section,
    family: str,
    reduction: float,
    handles: dict[str, Any],
    customs: Sequence[str] = (),
) -> None:
    recs = [r for r in sec.records if r.family == family]
    groups = _by_method(recs)
    gammas = {o: [g for (o2, g) in groups if o2 == o] for o, _ in groups}
    w = sec.windows[family]
    base = sec.baseline(family)
    thr = math.nan
    if base is not None:
        base_runs = [r for r in recs if r.method == base]
        sb = M.trailing_mean(M.seed_mean_curve([r.base_loss for r in base_runs]), w)
        thr = M.reduction_threshold(sb, reduction)
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
            k = M.first_crossing(M.trailing_mean(M.seed_mean_curve([r.base_loss for r in runs]), w), thr)
            if k is not None:
                top.plot([k + w], [thr], marker="|", ms=9, mew=1.4, color=style["color"], ls="none", zorder=4)
        test = _test_curves(runs)
        if test is not None:
            ex, ys, split = test
            _band(bottom, ex, ys, style, label, slot)
        handles.setdefault(label, Line2D([], [], **style))
    if math.isfinite(thr):
        top.axhline(thr, color="#555555", lw=0.8, ls=(0, (5, 2)), zorder=1)
    top.axvspan(0, w, color="#eeeeee", lw=0, zorder=0)
    n_max = max(r.base_loss.size for r in recs)
    if w >= 0.08 * n_max:  # the shaded first window is wide enough to hold its label
        top.text(
            w / 2,
            0.97,
            f"{w}-step\nwindow",
            transform=top.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=6,
            color="#666666",
        )
    else:
        top.text(
            0.98,
            0.97,
            f"trailing mean over {w} steps",
            transform=top.transAxes,
            ha="right",
            va="top",
            fontsize=6,
            color="#666666",
        )
    top.set_xlim(0, None)
    top.set_title(f"{sec.label}, {_family_label(family)}: training loss")
    bottom.set_title(f"{sec.label}, {_family_label(family)}: {split} loss")
    top.set_xlabel("step (at the end of the trailing window)")
    bottom.set_xlabel("epoch")
    top.set_ylabel("training loss (base weights)")
    bottom.set_ylabel(f"{split} loss")
    for ax in (top, bottom):
        _log_if_positive(ax)
        ax.grid(True, which="major", alpha=0.3)


def _dodge(family: str, span: float) -> float:
    """Horizontal offset of a family's points so that the two families' markers never cover each other."""
    return (-1.0 if family_rank(family) == 0 else 1.0) * 0.01 * span


def _point_style(marker: Any, size: float, color: Any, filled: bool) -> dict[str, Any]:
    """The keyword arguments of a lone marker (no line): filled, or hollow for the second family."""
    return {"ls": "none", "marker": marker, "ms": size, "color": color, "mfc": color if filled else "white"}


def saving_vs_gamma(report: Report, stem: Path) -> list[Path]:
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
    customs = _customs(report.records)
    span = max(1.0, float(savings["x_gamma"].max()))
    for ax, sec in zip(axes.ravel(), sections, strict=False):
        t = savings[savings["section"] == sec.key]
        ax.axhline(0.0, color="#999999", lw=0.7)
        for family in sorted(set(t["family"]), key=lambda f: (family_rank(f), f)):
            f = t[t["family"] == family]
            dx = _dodge(family, span)
            c = FAMILY_COLORS.get(family, "#238b45")
            filled = FAMILY_FILLED.get(family, True)
            os_ = f[f["optimizer"].map(_is_overshoot).astype(bool)].sort_values("gamma")
            name = _overshoot_name(family)
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
                **_point_style(bstyle["marker"], 6, c, filled),
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
                    **_point_style("D", 5, c, filled),
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
    _legend(fig, handles, width)
    return save(fig, stem)


def _baseline_name(sec: Section, method: str) -> str:
    """The display label of the section's baseline ``method`` ('CM', 'AdamO γ=0'); 'baseline' without."""
    r = next((r for r in sec.records if r.method == method), None)
    return methods.display_label(r.optimizer, r.gamma) if r is not None else "baseline"


def optimum_gamma(mu: np.ndarray | float) -> np.ndarray:
    """The paper's empirical optimum gamma* ~ 5.568e-9 * exp(21.914 * mu)."""
    return OPTIMUM_A * np.exp(OPTIMUM_B * np.asarray(mu, dtype=float))


def best_gammas(report: Report) -> pd.DataFrame:
    """Per section and family: the momentum (mu or b1), the gammas tried and the gamma with the largest
    per-seed mean saving (paper-style where no seed pair reached)."""
    rows = []
    for sec in report.sections:
        for family in sec.protocols:
            recs = [r for r in sec.records if r.family == family]
            tried = sorted({r.gamma for r in recs if methods.is_overshoot(r.optimizer)})
            mom = next((r.momentum for r in recs if r.momentum is not None), math.nan)
            s = report.savings[(report.savings["section"] == sec.key) & (report.savings["family"] == family)]
            s = s[s["optimizer"].map(_is_overshoot).astype(bool)]
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


def gamma_mu_plane(
    stem: Path,
    report: Report | None = None,
    mu_range: tuple[float, float] = (0.5, 0.98),
    gamma_max: float = 20.0,
) -> list[Path]:
    """Figure: the gamma-mu plane of SGDO: CM (gamma 0), NAG (gamma = mu), plain SGD (gamma = mu/(1-mu)),
    the negative-momentum region above it and the empirical optimum gamma*; with a report, the (mu, gamma)
    points its runs tried and the measured best gamma of each task section (AdamO's at b1)."""
    mu = np.linspace(*mu_range, 400)
    sgd = mu / (1 - mu)
    fig, ax = plt.subplots(figsize=(COLUMN_IN, 2.7), layout="constrained")
    ax.fill_between(mu, np.minimum(sgd, gamma_max), gamma_max, color="#fdd0a2", alpha=0.5, lw=0)
    handles: dict[str, Any] = {}
    handles["CM (γ = 0)"] = ax.plot(mu, np.zeros_like(mu), color="#000000", lw=1.4, ls=":")[0]
    handles["NAG (γ = μ)"] = ax.plot(mu, mu, color="#6a51a3", lw=1.4, ls="-.")[0]
    handles["SGD (γ = μ/(1−μ))"] = ax.plot(mu, sgd, color="#d94801", lw=1.4, ls="--")[0]
    handles["paper's optimum γ*"] = ax.plot(mu, optimum_gamma(mu), color="#2171b5", lw=1.6)[0]
    ax.text(mu_range[0] + 0.02, gamma_max * 0.88, "negative momentum", fontsize=7, color="#8c2d04")
    if report is not None:
        best = best_gammas(report)
        for _, row in best.iterrows():
            if not math.isfinite(row["momentum"]):
                continue
            fam = row["family"]
            c = FAMILY_COLORS.get(fam, "#238b45")
            filled = FAMILY_FILLED.get(fam, True)
            name = _overshoot_name(fam)
            dx = _dodge(fam, mu_range[1] - mu_range[0]) / 3
            if row["tried"]:
                h = ax.plot(
                    [row["momentum"] + dx] * len(row["tried"]),
                    row["tried"],
                    ls="none",
                    marker=".",
                    ms=4,
                    color="#777777",
                )
                handles.setdefault("γ tried", h[0])
            if math.isfinite(row["best_gamma"]):
                h = ax.plot(
                    [row["momentum"] + dx],
                    [row["best_gamma"]],
                    **_point_style("*", 9, c, filled),
                    mew=1.0,
                    zorder=4,
                )
                sym = MOMENTUM_SYMBOL.get(fam, "μ")
                handles.setdefault(f"{name} best γ (at {sym})", h[0])
                first = family_rank(fam) == 0
                ax.annotate(
                    row["label"],
                    (row["momentum"] + dx, row["best_gamma"]),
                    textcoords="offset points",
                    xytext=(-4 if first else 4, 5),
                    ha="right" if first else "left",
                    fontsize=6,
                    color=c,
                )
    ax.set_xlim(*mu_range)
    ax.set_ylim(-0.5, gamma_max)
    ax.set_xlabel("momentum μ (β1 for AdamO)")
    ax.set_ylabel("overshoot γ")
    ax.grid(True, alpha=0.3)
    _legend(fig, handles, COLUMN_IN)
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
            label = (
                f"{_family_label(str(family))}, {sym} = {mom:g}" if mom >= 0 else _family_label(str(family))
            )
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
        fig.colorbar(
            sc, ax=[a for a in axes.ravel() if a.get_visible()], label="mean training loss", shrink=0.9
        )
    _legend(fig, handles, width)
    return save(fig, stem)


def _gradient_point_loss(r: RunRecord) -> np.ndarray | None:
    """steps.csv's ``train_loss`` (the loss where the gradient was taken) of a run that evaluates elsewhere;
    None when it has no such column."""
    try:
        train = pd.read_csv(r.path / "steps.csv", usecols=["train_loss"])["train_loss"]
    except (OSError, ValueError):
        return None
    return pd.to_numeric(train, errors="coerce").to_numpy(dtype=float)


def two_point_gap(report: Report, stem: Path) -> list[Path]:
    """Per task section and family, for each method that evaluates away from where it takes gradients
    (overshoot at γ > 0, Schedule-Free's x vs y): the loss at the gradient point minus the loss at the base
    (evaluated) weights on the same minibatch, trailing mean over the section's window, seed mean with the
    seed min–max band. Nothing is written when no run has two points."""
    rows: list[tuple[Section, str, dict[tuple[str, float], list[tuple[RunRecord, np.ndarray]]]]] = []
    for sec in report.sections:
        for family in sorted(sec.protocols, key=lambda f: (family_rank(f), f)):
            groups: dict[tuple[str, float], list[tuple[RunRecord, np.ndarray]]] = {}
            for (opt, gamma), runs in _by_method([r for r in sec.records if r.family == family]).items():
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
    customs = _customs(report.records)
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
        ax.set_xlim(0, None)
        ax.set_title(f"{sec.label}, {_family_label(family)}")
        ax.set_xlabel("step (at the end of the trailing window)")
        ax.set_ylabel("gradient-point − base loss")
        ax.grid(True, which="major", alpha=0.3)
    handles["seed min–max"] = Patch(facecolor="#888888", alpha=0.3, lw=0)
    _legend(fig, handles, COLUMN_IN * 1.6)
    return save(fig, stem)


def write_all(report: Report, out: Path) -> list[Path]:
    """Every figure of ``report`` into ``out``: loss_grid, saving_vs_gamma (when there are savings),
    gamma_mu_plane, distance_vs_gamma (when a run logged the distance) and two_point_gap (when a
    run evaluates away from its gradient point); the written paths."""
    paths = loss_grid(report, out / "loss_grid")
    if not report.savings.empty:
        paths += saving_vs_gamma(report, out / "saving_vs_gamma")
    paths += gamma_mu_plane(out / "gamma_mu_plane", report)
    labels = {s.task: s.label for s in report.sections}
    paths += distance_vs_gamma(report.records, out / "distance_vs_gamma", labels)
    paths += two_point_gap(report, out / "two_point_gap")
    return paths


def captions(report: Report) -> dict[str, str]:
    """The caption of each figure by file stem (the window and the band named)."""
    ws = sorted({w for s in report.sections for w in s.windows.values()})
    win = (
        f"{ws[0]:,}-step" if len(ws) == 1 else "per-comparison (" + "/".join(f"{w:,}" for w in ws) + "-step)"
    )
    pct = f"{report.reduction * 100:g}%"
    return {
        "loss_grid": (
            f"Training loss at the base weights, seed mean of the {win} trailing mean (plotted at the "
            f"window's last step; the first window is shaded), band = seed min–max; dashed: the {pct} "
            "reduction threshold from the family baseline, ticks: each method's first crossing (k_B, k_O). "
            "Right: test loss per epoch, seed mean and min–max."
        ),
        "saving_vs_gamma": (
            f"Steps saved to {pct} loss reduction vs γ ({win} window): per-seed mean ± 95% t-interval "
            "(this project's variant, seed count in the legend) and paper-style (×); the baseline at 0, "
            "NAG at γ = μ, NAdam at γ = β1; the two families are offset sideways."
        ),
        "gamma_mu_plane": (
            "The γ-μ plane of SGD with overshoot: CM, NAG, plain SGD and the negative-momentum region, the "
            "paper's empirical optimum γ*, the γ the runs tried and the measured best γ per task section "
            "(largest per-seed mean saving)."
        ),
        "distance_vs_gamma": "Average weighted distance vs γ per run, coloured by its mean training loss.",
        "two_point_gap": (
            f"Methods that take gradients away from the weights they are evaluated at (overshoot at γ > 0, "
            f"Schedule-Free's y vs x): the training loss at the gradient point minus the loss at the base "
            f"weights on the same minibatch, {win} trailing mean, seed mean and min–max."
        ),
    }
