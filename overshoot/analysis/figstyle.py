"""The figures' one style: sizes, fonts, colours, line styles and markers per method, the legend below the
axes, plain-decimal tick labels and the atomic PNG/PDF writer, shared by :mod:`overshoot.analysis.figures`,
:mod:`overshoot.analysis.threshold_panels` and the tuning study's sensitivity figure.

Sizes follow a two-column paper: one column is :data:`COLUMN_IN` wide, the full text width :data:`TEXT_IN`;
fonts are embedded as TrueType (Type 42), legends sit outside the axes in at most three columns, log axes
are labelled in plain decimals (0.3, not 3x10^-1), step counts carry thousands separators, and the families
differ in line style and marker fill as well as colour.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from overshoot.analysis.results import RunRecord, family_rank, method_order
from overshoot.common.files import atomic_write
from overshoot.config import methods

if TYPE_CHECKING:
    import pandas as pd

    from overshoot.analysis.report.model import Section


class ReportView(Protocol):
    """What the figures read of a report (:class:`overshoot.analysis.report.tables.Report`, which draws its
    figures with them: naming the protocol, not the class, keeps the import graph free of circles)."""

    @property
    def sections(self) -> list[Section]: ...

    @property
    def records(self) -> list[RunRecord]: ...

    @property
    def savings(self) -> pd.DataFrame: ...  # savings.saving_summary, with section and label

    @property
    def seed_savings(self) -> pd.DataFrame: ...  # savings.savings, with section and label

    @property
    def reduction(self) -> float: ...


FIGURE_FORMATS = ("png", "pdf")
COLUMN_IN, TEXT_IN = 3.3, 6.9
MAX_LEGEND_COLUMNS = 3
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
# (Okabe-Ito and ColorBrewer picks), never the baselines' black.
GAMMA_COLORS = {
    "sgd": ("#56b4e9", "#0072b2", "#009e73"),
    "adam": ("#e69f00", "#d55e00", "#8c510a"),
    "lion": ("#4daf4a", "#006d2c", "#b8860b"),
    "radam": ("#8073ac", "#54278f", "#c51b7d"),
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
            "color": listed[positive.index(gamma)] if own else cmap(0.5 + 0.45 * pos),
            "linestyle": FAMILY_LINESTYLE.get(family, "-"),
            "marker": OS_MARKERS[idx % len(OS_MARKERS)],
        }
    style["markerfacecolor"] = style["color"] if filled else "white"
    style["markeredgecolor"] = style["color"]
    style["linewidth"] = 1.2
    style["markersize"] = 4
    return style


def legend_below(fig: Figure, handles: dict[str, Any], width: float) -> None:
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


def log_if_positive(ax: Any) -> None:
    """A log y axis when every plotted value is positive."""
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    vals = np.concatenate(ys) if ys else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size and (vals > 0).all():
        ax.set_yscale("log")


def by_method(records: Sequence[RunRecord]) -> dict[tuple[str, float], list[RunRecord]]:
    """The records by (optimizer, gamma), in the methods' display order."""
    out: dict[tuple[str, float], list[RunRecord]] = {}
    for r in records:
        out.setdefault((r.optimizer, r.gamma), []).append(r)
    family = {(r.optimizer, r.gamma): r.family for r in records}
    return dict(sorted(out.items(), key=lambda kv: method_order(kv[0][0], kv[0][1], family[kv[0]])))


def family_title(family: str) -> str:
    """'SGD family', 'Adam family'."""
    from overshoot.analysis.report.style import family_label

    return family_label(family) + " family"


def customs_of(records: Sequence[RunRecord]) -> list[str]:
    """The names of the user's methods among ``records``."""
    return sorted({r.optimizer for r in records if r.optimizer not in methods.METHODS})


def is_overshoot_method(optimizer: Any) -> bool:
    """Whether ``optimizer`` (any cell of a frame) names an overshoot method."""
    return methods.is_overshoot(str(optimizer))


def overshoot_name(family: str) -> str:
    """'SGDO', 'AdamO': the display name of the family's overshoot method."""
    f = methods.FAMILIES.get(family)
    return methods.METHODS[f.overshoot].display if f is not None else family


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


def steps_axis(ax: Any, axis: str = "x") -> None:
    """Step counts on ``axis``: integers with thousands separators."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def dodge(family: str, span: float) -> float:
    """Horizontal offset of a family's points so that the two families' markers never cover each other."""
    return (-1.0 if family_rank(family) == 0 else 1.0) * 0.01 * span


def point_style(marker: Any, size: float, color: Any, filled: bool) -> dict[str, Any]:
    """The keyword arguments of a lone marker (no line): filled, or hollow for the second family."""
    return {"ls": "none", "marker": marker, "ms": size, "color": color, "mfc": color if filled else "white"}
