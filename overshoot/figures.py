"""The paper's figures (section 7 of paper.md) from run records, as PNG and PDF with matplotlib (Agg).

* :func:`loss_grid` -- training (smoothed base-weight loss per step) and test loss (per epoch), one column
  per task, seed mean with the seed min-max as a band, log-y, baselines dotted and overshoot solid;
* :func:`saving_vs_gamma` -- step saving vs gamma per task, CM/NAG and Adam/NAdam marked;
* :func:`gamma_mu_plane` -- the analytic gamma-mu plane of SGD with overshoot;
* :func:`distance_vs_gamma` -- mean weighted distance (the ``distance`` column of steps.csv) vs gamma.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
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

from overshoot import metrics as M
from overshoot.store import atomic_write

if TYPE_CHECKING:
    from overshoot.report import RunRecord

FIGURE_FORMATS = ("png", "pdf")
BASELINES = ("sgd", "nesterov", "adam", "nadam")
# gamma* ~ A * exp(B * mu): the paper's empirical optimum in the gamma-mu plane (paper.md section 7 item 3).
OPTIMUM_A, OPTIMUM_B = 5.568e-9, 21.914
FAMILY_COLORS = {"sgd": "#2171b5", "adam": "#cb181d"}

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "savefig.dpi": 200,
    }
)


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` (each atomically) and close it; the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FIGURE_FORMATS:
        path = stem.with_suffix(f".{fmt}")
        atomic_write(path, functools.partial(fig.savefig, format=fmt, bbox_inches="tight"), "wb")
        paths.append(path)
    plt.close(fig)
    return paths


def method_style(optimizer: str, gamma: float, gammas: Sequence[float] = ()) -> dict[str, Any]:
    """Color and line style of a method: baselines dotted, overshoot solid, darker for larger gamma."""
    fixed = {"sgd": "#222222", "nesterov": "#7f7f7f", "adam": "#8c2d04", "nadam": "#d95f0e"}
    if optimizer in fixed:
        return {"color": fixed[optimizer], "linestyle": ":", "linewidth": 1.4}
    cmap = plt.get_cmap("Blues" if optimizer == "sgd_os" else "Reds" if optimizer == "adam_os" else "Greens")
    gs = sorted(set(gammas)) or [gamma]
    pos = gs.index(gamma) / max(1, len(gs) - 1) if gamma in gs else 0.5
    return {"color": cmap(0.45 + 0.5 * pos), "linestyle": "-", "linewidth": 1.4}


def _grid(n: int, max_cols: int = 4, size: tuple[float, float] = (3.0, 2.5)) -> tuple[Figure, np.ndarray]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


MAX_POINTS = 1000  # points per plotted training curve


def _band(ax: Any, x: np.ndarray, ys: np.ndarray, style: dict[str, Any], label: str) -> None:
    """Seed mean as a line and the seed min-max as a shaded band."""
    mean = np.nanmean(ys, axis=0)
    ax.plot(x, mean, label=label, **style)
    if ys.shape[0] > 1:
        ax.fill_between(
            x, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=style["color"], alpha=0.18, lw=0
        )


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
    return dict(sorted(out.items(), key=lambda kv: M.method_sort_key(*kv[0])))


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


def loss_grid(records: Sequence[RunRecord], stem: Path, window: int = 400) -> list[Path]:
    """Figure 1: training loss (top row) and test loss (bottom row), one column per task.

    The training curve of each seed is the trailing mean of its base-weight loss (``window`` steps, cut to
    a fifth of the run for short runs), plotted at the window's end step."""
    tasks = sorted({r.task for r in records})
    if not tasks:
        raise ValueError("no runs to plot: pass at least one completed run")
    fig, axes = plt.subplots(2, len(tasks), figsize=(max(3.0 * len(tasks), 4.5), 5.2), squeeze=False)
    handles: dict[str, Line2D] = {}
    for j, task in enumerate(tasks):
        recs = [r for r in records if r.task == task]
        groups = _by_method(recs)
        gammas = {o: [g for (o2, g) in groups if o2 == o] for o, _ in groups}
        top, bottom = axes[0, j], axes[1, j]
        test_split = "test"
        for (opt, gamma), runs in groups.items():
            style = method_style(opt, gamma, gammas[opt])
            label = M.method_label(opt, gamma)
            n = min(r.base_loss.size for r in runs)
            w = max(1, min(window, n // 5))
            smoothed = np.stack([M.trailing_mean(r.base_loss[:n], w) for r in runs])
            if smoothed.shape[1]:
                # a smoothed curve needs no more than MAX_POINTS points: keeps long runs' PDFs small
                keep = slice(None, None, -(-smoothed.shape[1] // MAX_POINTS))
                _band(top, (np.arange(smoothed.shape[1]) + w)[keep], smoothed[:, keep], style, label)
            test = _test_curves(runs)
            if test is not None:
                x, ys, test_split = test
                _band(bottom, x, ys, style, label)
            handles.setdefault(label, Line2D([], [], **style))
        top.set_title(task)
        top.set_xlabel("step")
        bottom.set_xlabel("epoch")
        if j == 0:
            top.set_ylabel("training loss (base weights)")
            bottom.set_ylabel(f"{test_split} loss")
        for ax in (top, bottom):
            _log_if_positive(ax)
            ax.grid(True, which="major", alpha=0.3)
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="upper center",
        ncol=min(len(handles), 8),
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.tight_layout()
    return save(fig, stem)


def saving_vs_gamma(savings: pd.DataFrame, stem: Path, reduction: float = 0.95) -> list[Path]:
    """Figure: step saving vs gamma per task (per-seed mean with 95% CI, paper-style as open markers);
    CM/Adam at (0, 0), NAG at gamma = mu and NAdam at gamma = b1."""
    tasks = sorted(set(savings["task"]))
    if not tasks:
        raise ValueError("no savings to plot: the runs hold no family baseline with another method")
    fig, axes = _grid(len(tasks))
    handles: dict[str, Any] = {}
    for ax, task in zip(axes, tasks, strict=False):
        t = savings[savings["task"] == task]
        ax.axhline(0.0, color="#999999", lw=0.8)
        for family in sorted(set(t["family"]), key=lambda f: (f != "sgd", f)):
            c = FAMILY_COLORS.get(family, "#238b45")
            f = t[t["family"] == family]
            os_ = f[f["optimizer"].astype(str).str.endswith("_os")].sort_values("gamma")
            base, second = M.FAMILY_BASELINES.get(family, ("", ""))
            name = M.DISPLAY_NAME.get(M.FAMILY_OVERSHOOT.get(family, ""), family)
            if not os_.empty:
                x = os_["gamma"].to_numpy(float)
                y = os_["seed_mean"].to_numpy(float)
                err = np.nan_to_num(os_["seed_half_width"].to_numpy(float))
                h = ax.errorbar(x, y, yerr=err, color=c, marker="o", ms=4, capsize=2, lw=1.3)
                handles.setdefault(f"{name} (per seed, 95% CI)", h)
                h2 = ax.plot(
                    x, os_["paper_saving"].to_numpy(float), ls="none", marker="o", mfc="none", ms=7, color=c
                )
                handles.setdefault(f"{name} (paper-style)", h2[0])
            h3 = ax.plot([0.0], [0.0], ls="none", marker="s", ms=6, color=c)
            handles.setdefault(f"{M.DISPLAY_NAME.get(base, base)} (baseline)", h3[0])
            sec = f[f["optimizer"] == second]
            if not sec.empty:
                row = sec.iloc[0]
                h4 = ax.errorbar(
                    [row["x_gamma"]],
                    [row["seed_mean"]],
                    yerr=[np.nan_to_num(row["seed_half_width"])],
                    ls="none",
                    marker="D",
                    ms=6,
                    color=c,
                    mfc="white",
                    capsize=2,
                )
                sym = "μ" if family == "sgd" else "β1"
                handles.setdefault(f"{M.DISPLAY_NAME.get(second, second)} (γ = {sym})", h4)
        ax.set_title(task)
        ax.set_xlabel("γ")
        ax.set_ylabel(f"saving to {reduction * 100:g}% loss reduction (%)")
        ax.grid(True, alpha=0.3)
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="upper center",
        ncol=min(len(handles), 4),
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.tight_layout()
    return save(fig, stem)


def optimum_gamma(mu: np.ndarray | float) -> np.ndarray:
    """The paper's empirical optimum gamma* ~ 5.568e-9 * exp(21.914 * mu)."""
    return OPTIMUM_A * np.exp(OPTIMUM_B * np.asarray(mu, dtype=float))


def gamma_mu_plane(
    stem: Path, mu_range: tuple[float, float] = (0.5, 0.98), gamma_max: float = 20.0
) -> list[Path]:
    """Figure: the gamma-mu plane of SGDO: CM (gamma 0), NAG (gamma = mu), plain SGD (gamma = mu/(1-mu)),
    the negative-momentum region above it and the empirical optimum gamma*."""
    mu = np.linspace(*mu_range, 400)
    sgd = mu / (1 - mu)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.fill_between(mu, np.minimum(sgd, gamma_max), gamma_max, color="#fdd0a2", alpha=0.6, lw=0)
    ax.plot(mu, np.zeros_like(mu), color="#222222", lw=1.6, label="CM (γ = 0)")
    ax.plot(mu, mu, color="#7f7f7f", lw=1.6, ls="--", label="NAG (γ = μ)")
    ax.plot(mu, sgd, color="#d94801", lw=1.6, label="plain SGD (γ = μ/(1−μ))")
    opt = optimum_gamma(mu)
    ax.plot(mu, opt, color="#2171b5", lw=1.8, label="empirical optimum γ* ≈ 5.568e-9·exp(21.914μ)")
    for m in (0.9, 0.95):
        if mu_range[0] <= m <= mu_range[1]:
            ax.plot([m], optimum_gamma(m), marker="o", color="#2171b5", ms=4)
            ax.annotate(
                f"γ*({m:g}) ≈ {float(optimum_gamma(m)):.1f}",
                (m, float(optimum_gamma(m))),
                textcoords="offset points",
                xytext=(-70, 6),
                fontsize=7,
            )
    ax.text(mu_range[0] + 0.02, gamma_max * 0.85, "negative momentum", fontsize=8, color="#8c2d04")
    ax.set_xlim(*mu_range)
    ax.set_ylim(-0.5, gamma_max)
    ax.set_xlabel("momentum μ")
    ax.set_ylabel("overshoot γ")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.8), frameon=False)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save(fig, stem)


def distance_vs_gamma(records: Sequence[RunRecord], stem: Path) -> list[Path]:
    """Figure: per run, the mean over steps of the logged weighted distance vs gamma, colored by the run's
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
    fig, axes = _grid(len(tasks), max_cols=3, size=(3.6, 2.9))
    lo, hi = float(df["loss"].min()), float(df["loss"].max())
    norm = LogNorm(lo, hi) if 0 < lo < hi else Normalize(lo, hi)
    markers = ["o", "s", "^", "D", "v", "P"]
    sc = None
    for ax, task in zip(axes, tasks, strict=False):
        t = df[df["task"] == task]
        groups = t.groupby(["family", t["momentum"].fillna(-1.0)], sort=True)
        for i, ((family, mom), g) in enumerate(groups):
            sym = "μ" if family == "sgd" else "β1"
            name = M.FAMILY_LABEL.get(str(family), str(family))
            label = f"{name} family, {sym} = {mom:g}" if mom >= 0 else f"{name} family"
            means = g.groupby("gamma")["distance"].mean()
            color = FAMILY_COLORS.get(str(family), "#238b45")
            ls = "-" if i % 2 == 0 else "--"
            ax.plot(means.index, means.to_numpy(), color=color, lw=1.1, ls=ls, zorder=2)
            sc = ax.scatter(
                g["gamma"],
                g["distance"],
                c=g["loss"],
                cmap="viridis",
                norm=norm,
                marker=markers[i % len(markers)],
                s=24,
                edgecolors="k",
                linewidths=0.3,
                zorder=3,
            )
            ax.plot([], [], color=color, ls=ls, marker=markers[i % len(markers)], mfc="white", label=label)
        ax.set_title(task)
        ax.set_xlabel("γ")
        ax.set_ylabel("average weighted distance")
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False)
    if sc is not None:
        fig.colorbar(sc, ax=[a for a in axes if a.get_visible()], label="mean training loss", shrink=0.9)
    return save(fig, stem)


def write_all(
    records: Sequence[RunRecord], savings: pd.DataFrame, out: Path, window: int = 400, reduction: float = 0.95
) -> list[Path]:
    """Every figure into ``out``: loss_grid, saving_vs_gamma (when there are savings), gamma_mu_plane and
    distance_vs_gamma (when a run logged the distance); the written paths."""
    paths = loss_grid(records, out / "loss_grid", window)
    if not savings.empty:
        paths += saving_vs_gamma(savings, out / "saving_vs_gamma", reduction)
    paths += gamma_mu_plane(out / "gamma_mu_plane")
    paths += distance_vs_gamma(records, out / "distance_vs_gamma")
    return paths
