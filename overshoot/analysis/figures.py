"""The paper's figures (arXiv 2501.09556) from a report, as PNG and PDF with matplotlib (Agg).

* :func:`threshold_panels` -- per task section and family, the seed-mean smoothed training loss zoomed
  around the 95% threshold with the crossings k_B and k_O marked and labelled, beside a strip of the
  per-seed steps to threshold (one dot per seed, mean and 95% interval per method);
* :func:`loss_grid` -- per task section and family, the smoothed base-weight training loss per step with
  the 95% threshold and each method's first crossing, and the test loss per epoch;
* :func:`saving_vs_gamma` -- step saving vs gamma per task section, CM/NAG and Adam/NAdam marked;
* :func:`gamma_mu_plane` -- the analytic gamma-mu plane of SGD with overshoot, the gammas the runs tried and
  the measured best gamma of each task section;
* :func:`distance_vs_gamma` -- mean weighted distance (the ``distance`` column of steps.csv) vs gamma.

Sizes follow a two-column paper: one column is :data:`COLUMN_IN` wide, the full text width :data:`TEXT_IN`;
fonts are embedded as TrueType (Type 42), legends sit outside the axes in at most three columns, log axes
are labelled in plain decimals (0.3, not 3x10^-1), step counts carry thousands separators, and the families
differ in line style and marker fill as well as colour. Every crossing and step count drawn comes from the
savings path (:func:`overshoot.analysis.savings.saving_summary` and ``savings``, held by the report).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from overshoot.analysis import metrics as M
from overshoot.analysis.results import RunRecord, family_rank, is_second_baseline, method_order, task_label
from overshoot.common.files import atomic_write
from overshoot.config import methods

if TYPE_CHECKING:  # the report package draws with these figures (report.interactive): no import cycle
    from overshoot.analysis.report.model import Section
    from overshoot.analysis.report.tables import Report

FIGURE_FORMATS = ("png", "pdf")
COLUMN_IN, TEXT_IN = 3.3, 6.9
MAX_LEGEND_COLUMNS = 3
# gamma* ~ A * exp(B * mu): the paper's empirical optimum in the gamma-mu plane (arXiv 2501.09556).
OPTIMUM_A, OPTIMUM_B = 5.568e-9, 21.914
FAMILY_COLORS = {"sgd": "#08519c", "adam": "#a63603", "lion": "#006d2c", "radam": "#54278f"}
FAMILY_LINESTYLE = {"sgd": "-", "adam": "--", "lion": "-", "radam": "--"}
FAMILY_FILLED = {"sgd": True, "adam": False, "lion": True, "radam": False}
FAMILY_CMAP = {
    "sgd": "Blues",
    "adam": "Oranges",
    "lion": "Greens",
    "radam": "Purples",
}  # beyond the list below
# A family's overshoot gammas, smallest first: hues far enough apart to tell three gammas apart in one panel
# (Okabe-Ito picks, colour-blind safe), never the baselines' black or purple.
GAMMA_COLORS = {
    "sgd": ("#56b4e9", "#0072b2", "#009e73"),
    "adam": ("#e69f00", "#d55e00", "#8c510a"),
}
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
    in hues of their own (:data:`GAMMA_COLORS`, a ramp beyond three gammas), each with its own marker
    (greyscale-safe: marker and dash tell them apart).
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
        listed = GAMMA_COLORS.get(family, ())
        positive = [g for g in gs if g > 0]  # gamma 0 (a baseline) takes no listed colour
        own = gamma in positive and len(positive) <= len(listed)
        style = {
            "color": listed[positive.index(gamma)] if own else cmap(0.35 + 0.6 * pos),
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
    from overshoot.analysis.report.style import family_label

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


# ------------------------------------------------------------------------------------------------ ticks
def plain_number(v: float) -> str:
    """A tick value as a plain decimal with thousands separators: 0.3, 0.04, −2.5, 1,200 (never 3x10^-1)."""
    if not math.isfinite(v):
        return ""
    if v == 0:
        return "0"
    big = abs(v) >= 1000
    text = f"{v:,.0f}" if big else str(np.format_float_positional(float(f"{v:.3g}"), trim="-"))
    return text.replace("-", "−")  # the minus sign, as matplotlib sets it


def plain_ticks(ax: Any, axis: str = "y") -> None:
    """Label ``axis`` of ``ax`` in plain decimals: every major tick (on a log axis the decades, or the ticks
    set), and on a log axis the minor ticks 2, 3, 4, 5, 6, 8 times a decade when the axis spans at most one
    decade (0.3 0.4 0.6), 2 and 5 times up to two decades, none beyond; no offset, no exponent. Call it
    after the axis scale is set (setting a scale resets the labels)."""
    a = ax.yaxis if axis == "y" else ax.xaxis

    def label(v: float, _pos: Any = None) -> str:  # a minor tick of a log axis
        if v <= 0:
            return ""
        lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
        decades = math.log10(hi / lo) if lo > 0 else math.inf
        m = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6)
        keep = {1.0}
        if decades <= 1.0:
            keep |= {2.0, 3.0, 4.0, 5.0, 6.0, 8.0}
        elif decades <= 2.0:
            keep |= {2.0, 5.0}
        return plain_number(v) if m in keep else ""

    a.set_major_formatter(
        FuncFormatter(lambda v, _pos: plain_number(v) if v > 0 or a.get_scale() != "log" else "")
    )
    if a.get_scale() == "log":
        a.set_minor_formatter(FuncFormatter(label))


def _steps_axis(ax: Any, axis: str = "x") -> None:
    """Step counts on ``axis``: integers with thousands separators."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


# ------------------------------------------------------------------------------------- threshold panels
def _section_savings(report: Report, sec: Section, family: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The savings path's rows of one section and family: the summary (one per method) and per seed."""
    s, p = report.savings, report.seed_savings
    return (
        s[(s["section"] == sec.key) & (s["family"] == family)],
        p[(p["section"] == sec.key) & (p["family"] == family)],
    )


def _step(k: Any, window: int) -> int | None:
    """A smoothed-array index of the savings path (``paper_k_*``) as a real step: the window's end."""
    return None if k is None or pd.isna(k) else int(k) + int(window)


def crossings(report: Report, sec: Section, family: str) -> tuple[float, dict[str, int | None]]:
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


def seed_steps(report: Report, sec: Section, family: str) -> dict[str, dict[int, int | None]]:
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


def threshold_panels(report: Report, stem: Path) -> list[Path]:
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
    customs = _customs(report.records)
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
    _legend(fig, handles, TEXT_IN)
    return save(fig, stem)


def _threshold_row(
    zoom: Any,
    strip: Any,
    report: Report,
    sec: Section,
    family: str,
    handles: dict[str, Any],
    customs: Sequence[str],
) -> None:
    recs = [r for r in sec.records if r.family == family]
    groups = _by_method(recs)
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
    if not_reached:
        zoom.text(
            0.99,
            0.02,
            "not reached: " + ", ".join(not_reached),
            transform=zoom.transAxes,
            ha="right",
            va="bottom",
            fontsize=6.5,
            color="#444444",
        )
    zoom.set_title(f"{sec.label}, {_family_label(family)}: seed mean", pad=6 + 9 * (max(rows, default=0) + 1))
    zoom.set_xlabel("step (end of the trailing window)")
    zoom.set_ylabel(f"training loss\n({w:,}-step trailing mean)")
    _steps_axis(zoom)
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
    _steps_axis(strip)
    strip.grid(True, axis="x", alpha=0.3)


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
        _loss_panels(top, bottom, sec, family, report, handles, customs)
    handles["seed min–max"] = Patch(facecolor="#888888", alpha=0.3, lw=0)
    handles[f"{report.reduction * 100:g}% reduction threshold"] = Line2D(
        [], [], color="#555555", lw=0.8, ls=(0, (5, 2))
    )
    handles["first crossing (k_B, k_O)"] = Line2D([], [], color="k", marker="o", mfc="none", ms=6, ls="none")
    _legend(fig, handles, TEXT_IN)
    return save(fig, stem)


def _loss_panels(
    top: Any,
    bottom: Any,
    sec: Section,
    family: str,
    report: Report,
    handles: dict[str, Any],
    customs: Sequence[str] = (),
) -> None:
    recs = [r for r in sec.records if r.family == family]
    groups = _by_method(recs)
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
    top.set_title(f"{sec.label}, {_family_label(family)}: training loss")
    bottom.set_title(f"{sec.label}, {_family_label(family)}: {split} loss")
    top.set_xlabel("step (end of the trailing window)")
    bottom.set_xlabel("epoch")
    top.set_ylabel(f"training loss\n({w:,}-step trailing mean)")
    bottom.set_ylabel(f"{split} loss")
    _steps_axis(top)
    for ax in (top, bottom):
        _log_if_positive(ax)
        plain_ticks(ax, "y")
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


def _data_range(values: Sequence[float], margin: float, lo: float, hi: float) -> tuple[float, float]:
    """[min - m, max + m] of ``values`` (m: ``margin`` or a sixth of their spread), clipped to [lo, hi]."""
    v0, v1 = min(values), max(values)
    m = max(margin, (v1 - v0) / 6)
    return max(lo, v0 - m), min(hi, v1 + m)


def gamma_mu_plane(
    stem: Path,
    report: Report | None = None,
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
        name = _overshoot_name(fam)
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
                h = ax.plot([x], [row["best_gamma"]], **_point_style("*", 7, c, filled), mew=0.8, zorder=4)
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
        cb = fig.colorbar(
            sc, ax=[a for a in axes.ravel() if a.get_visible()], label="mean training loss", shrink=0.9
        )
        plain_ticks(cb.ax, "y")
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
        ax.set_xlim(w, max(gap.size for pairs in groups.values() for _, gap in pairs))
        ax.set_title(f"{sec.label}, {_family_label(family)}")
        ax.set_xlabel("step (end of the trailing window)")
        ax.set_ylabel(f"gradient-point − base loss\n({w:,}-step trailing mean)")
        _steps_axis(ax)
        plain_ticks(ax, "y")
        ax.grid(True, which="major", alpha=0.3)
    handles["seed min–max"] = Patch(facecolor="#888888", alpha=0.3, lw=0)
    _legend(fig, handles, COLUMN_IN * 1.6)
    return save(fig, stem)


# ------------------------------------------------------------------------------------- tuning sensitivity
def sensitivity_figure(table: pd.DataFrame, selection: Mapping[str, Any], stem: Path) -> list[Path]:
    """A tuning study's sensitivity to the learning rate: the mean best validation metric over the tuning
    seeds (error = 1 - accuracy for accuracy tasks) vs lr, both axes log with plain-decimal ticks, one line
    per method in a colour, marker and dash of its own, one panel per family, text width. Each method's
    selected lr is its own marker, enlarged with a black edge, and named in the legend; settings ruled out
    (a tuning seed diverged) are crosses at the top, the untuned lr a dashed grey line; the legend sits
    below the panels. ``table`` holds one row per setting (family, optimizer, gamma, lr, the other tuned
    axes, score), ``selection`` the study's selection.json."""
    families = sorted(set(table["family"].astype(str)), key=lambda f: (family_rank(f), f))
    fig, axes = plt.subplots(1, len(families), figsize=(TEXT_IN, 2.7), squeeze=False, layout="constrained")
    metric = selection["metric"]
    other = [k for k in selection["axes"] if k != "lr"]
    handles: dict[str, Any] = {}
    for ax, family in zip(axes[0], families, strict=True):
        fam = table[table["family"] == family]
        customs = sorted({str(o) for o in fam["optimizer"] if str(o) not in methods.METHODS})
        for (opt, gamma), g in sorted(
            fam.groupby(["optimizer", "gamma"]),
            key=lambda kv: method_order(str(kv[0][0]), float(kv[0][1]), family),
        ):
            method = methods.label(str(opt), float(gamma))
            sel = selection["methods"][method]
            if other:  # the lr curve through the selected values of the other axes
                g = g[np.logical_and.reduce([g[k] == sel["selected"][k] for k in other])]
            g = g.sort_values("lr")
            gammas = sorted(set(fam.loc[fam["optimizer"] == opt, "gamma"]))
            style = method_style(str(opt), float(gamma), gammas, family, customs)
            y = 1.0 - g["score"] if metric == "accuracy" else g["score"]  # error rates on a log axis
            ok = y.notna()
            ax.plot(g["lr"][ok], y[ok], **style, zorder=2)
            out = g["lr"][~ok]
            ax.plot(
                out, np.full(len(out), 0.97), "x", color=style["color"], transform=ax.get_xaxis_transform()
            )
            lr = sel["selected"]["lr"]
            pick = g[g["lr"] == lr]
            y_pick = 1.0 - pick["score"] if metric == "accuracy" else pick["score"]
            picked = {
                **style,
                "linestyle": "none",
                "markersize": 8,
                "markeredgecolor": "k",
                "markeredgewidth": 1.1,
            }
            picked["markerfacecolor"] = style["color"]
            ax.plot(pick["lr"], y_pick, **picked, zorder=4, gid=f"selected:{method}")
            label = f"{methods.display_label(str(opt), float(gamma))}: selected lr {plain_number(float(lr))}"
            handles[label] = (Line2D([], [], **style), Line2D([], [], **picked))
        for lr in selection.get("untuned_lr", {}).get(family, []):
            ax.axvline(lr, color="#999999", linestyle="--", linewidth=1.0, zorder=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        grid = sorted(set(fam["lr"]))
        ax.set_xticks(grid[:: max(1, -(-len(grid) // 5))])
        plain_ticks(ax, "x")
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        plain_ticks(ax, "y")
        ax.set_xlabel("learning rate")
        what = "error (1 − accuracy)" if metric == "accuracy" else metric
        ax.set_ylabel(f"best validation {what}\n(mean over tuning seeds)")
        ax.set_title(f"{task_label(selection['task'])}: {_family_label(family)}")
        ax.grid(True, which="major", alpha=0.3)
    handles["ruled out (a tuning seed diverged)"] = Line2D([], [], color="#444444", marker="x", ls="none")
    handles["untuned lr"] = Line2D([], [], color="#999999", ls="--", lw=1.0)
    _legend(fig, handles, TEXT_IN)
    return save(fig, stem)


def write_all(report: Report, out: Path) -> list[Path]:
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


def captions(report: Report) -> dict[str, str]:
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
