"""The report's cross-task section (a store with at least 2 tasks): performance profiles in steps and in
seconds to target, the geometric mean of speedups and the IQM of per-seed speedups with stratified
bootstrap intervals, as tables (:class:`~overshoot.analysis.report.render.Table`) and one figure, all from
:mod:`overshoot.analysis.aggregate` over the report's per-seed savings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overshoot.analysis import aggregate as A
from overshoot.analysis.report.model import task_rank
from overshoot.analysis.report.render import Table
from overshoot.analysis.report.style import DASH, family_label, interval_cell, method_label, num, split_label
from overshoot.analysis.results import family_rank, method_order, task_label

MEASURE_WORD = {"steps": "steps", "seconds": "seconds"}


def _definitions(pct: str) -> str:
    return (
        f"target: per task, family and seed, the family baseline's {pct} loss-reduction threshold of the "
        "savings tables (each seed's own baseline run), reached by every method in real steps; a method's "
        "time on a task: the median over its seeds, a seed that never reaches the target counting as "
        "infinite (a miss on at least half the seeds is a miss on the task); best method: the family's "
        "method (baseline included) with the least time on the task; a miss has an infinite ratio and never "
        "counts as within τ"
    )


@dataclass
class CrossTask:
    """The cross-task statistics of a report and their tables; ``notes`` say what was left out and why."""

    targets: pd.DataFrame  # aggregate.targets
    times: pd.DataFrame  # aggregate.task_times
    profiles: pd.DataFrame  # aggregate.profiles of both measures, stacked
    ratios: pd.DataFrame
    speedups: pd.DataFrame  # aggregate.speedups of both measures, stacked
    left_out: pd.DataFrame
    reduction: float
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def measures(self) -> list[str]:
        return [m for m in A.MEASURES if (self.profiles["measure"] == m).any()]


def _unit_labels(frame: pd.DataFrame) -> list[str]:
    """A task's label ('MLP-CA'), with the protocol when its family has several protocols of that task."""
    multi = frame.groupby(["family", "task"])["protocol"].nunique()
    return [
        task_label(str(t)) + (f" [{p}]" if multi[(f, t)] > 1 else "")
        for f, t, p in zip(frame["family"], frame["task"], frame["protocol"], strict=True)
    ]


def _order(frame: pd.DataFrame, by_task: bool = False) -> pd.DataFrame:
    """Rows by family, then (``by_task``: by the paper's task order, then) by method."""
    tasks = frame["task"] if by_task else [""] * len(frame)
    keys = [
        (
            family_rank(str(f)),
            task_rank(str(t)) if by_task else (0, ""),
            method_order(*split_label(str(m)), str(f)),
        )
        for f, t, m in zip(frame["family"], tasks, frame["method"], strict=True)
    ]
    return frame.iloc[sorted(range(len(frame)), key=keys.__getitem__)].reset_index(drop=True)


def _profile_table(prof: pd.DataFrame, measure: str, pct: str) -> Table:
    sel = prof[(prof["measure"] == measure) & prof["tau"].isin(A.TABLE_TAUS)]
    wide = sel.pivot_table(index=["family", "method"], columns="tau", values="fraction", sort=False)
    n = sel.groupby(["family", "method"], sort=False)["n_tasks"].first()
    wide = _order(wide.reset_index())
    disp = pd.DataFrame(
        {
            "Family": wide["family"].map(lambda f: family_label(str(f))),
            "Method": wide["method"].map(lambda m: method_label(str(m))),
            "Tasks": [num(int(n[(f, m)])) for f, m in zip(wide["family"], wide["method"], strict=True)],
        }
    )
    for tau in A.TABLE_TAUS:
        disp[f"τ={tau:g}"] = wide[tau].map(lambda x: f"{x:.2f}")
    word = MEASURE_WORD[measure]
    return Table(
        f"profile_{measure}",
        f"Performance profile in {word} to target (AlgoPerf-style): the fraction of the family's tasks on "
        f"which the method reaches the target within τ times the best method's {word}; " + _definitions(pct),
        sel.reset_index(drop=True),
        disp,
    )


def _speedup_table(sp: pd.DataFrame, measures: Sequence[str], pct: str) -> Table:
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for r in _order(sp).itertuples(index=False):
        word = MEASURE_WORD[str(r.measure)]
        cell = rows.setdefault(
            (str(r.family), str(r.method)),
            {
                "Family": family_label(str(r.family)),
                "Method": method_label(str(r.method)),
                "vs": method_label(str(r.baseline), str(r.baseline)),
            },
        )
        n = int(r.n_tasks)
        cell[f"Geo. mean speedup ({word})"] = (
            f"{r.geomean_speedup:.3f} ({int(r.tasks_reached)} of {n} tasks)"
            if math.isfinite(r.geomean_speedup)
            else f"{DASH} (0 of {n} tasks)"
        )
        cell[f"IQM speedup [95% CI] ({word})"] = interval_cell(r.iqm, r.iqm_low, r.iqm_high, 3) + (
            f", {int(r.seeds_missed)} seed{'s' * (int(r.seeds_missed) != 1)} missed" if r.seeds_missed else ""
        )
    disp = pd.DataFrame(list(rows.values())).fillna(DASH)
    return Table(
        "speedups",
        "Speedup of each method over its family baseline across tasks: the geometric mean over tasks of the "
        "baseline's time over the method's (medians over seeds; the mean is over the tasks where both "
        "reached the target, of the tasks shown), and the IQM (25% trimmed mean, rliable's) of the per-seed "
        "speedups k_baseline / k_method over every task's seeds, a seed the method misses scoring 0 and one "
        "whose baseline misses left out; 95% percentile bootstrap interval resampling seeds within each task "
        "(stratified bootstrap, scipy.stats.bootstrap, 10,000 resamples); target, time on a task and "
        "misses as in the performance profile",
        sp.reset_index(drop=True),
        disp,
    )


def _times_table(times: pd.DataFrame, ratios: pd.DataFrame, measures: Sequence[str], pct: str) -> Table:
    data = times.assign(label=_unit_labels(times))
    for m in measures:
        r = ratios[ratios["measure"] == m].set_index(["family", "task", "protocol", "method"])["ratio"]
        data[f"ratio_{m}"] = [
            r.get((f, t, p, me), math.nan)
            for f, t, p, me in zip(
                data["family"], data["task"], data["protocol"], data["method"], strict=True
            )
        ]
    data = _order(data, by_task=True)
    disp = pd.DataFrame(
        {
            "Family": data["family"].map(lambda f: family_label(str(f))),
            "Task": data["label"],
            "Method": data["method"].map(lambda m: method_label(str(m))),
            "Reached": [f"{int(a)} of {int(b)}" for a, b in zip(data["reached"], data["seeds"], strict=True)],
            "Steps (median)": data["steps"].map(lambda x: "miss" if x == math.inf else num(x, 0)),
        }
    )
    if "steps" in measures:
        disp["Ratio (steps)"] = data["ratio_steps"].map(lambda x: "∞" if x == math.inf else num(x, 3))
    if "seconds" in measures:
        disp["Seconds (median)"] = data["seconds"].map(lambda x: "miss" if x == math.inf else num(x, 2))
        disp["Ratio (seconds)"] = data["ratio_seconds"].map(lambda x: "∞" if x == math.inf else num(x, 3))
    return Table(
        "task_times",
        "Time to target per task and method behind the profiles: seeds that reached the target, the "
        "median steps (and seconds) to it and the ratio to the task's best method (∞: a miss); target, "
        "time on a task and best method as in the performance profile",
        data.reset_index(drop=True),
        disp,
    )


def cross_task(per_seed: pd.DataFrame, reduction: float, n_resamples: int = 10_000) -> CrossTask | None:
    """The cross-task section from the report's per-seed savings (``savings.savings`` frame, steps and
    seconds to target); None when the savings span fewer than 2 tasks."""
    if per_seed.empty or per_seed["task"].nunique() < 2:
        return None
    pct = f"{reduction * 100:g}%"
    targets = A.targets(per_seed)
    times = A.task_times(targets)
    profs, ratios, lefts, sps = [], [], [], []
    for m in A.MEASURES:
        p, r, lo = A.profiles(times, m)
        profs.append(p)
        ratios.append(r)
        lefts.append(lo)
        sps.append(A.speedups(targets, m, n_resamples=n_resamples))
    ct = CrossTask(
        targets=targets,
        times=times,
        profiles=pd.concat(profs, ignore_index=True),
        ratios=pd.concat(ratios, ignore_index=True),
        speedups=pd.concat(sps, ignore_index=True),
        left_out=pd.concat(lefts, ignore_index=True),
        reduction=reduction,
    )
    for r in ct.left_out.itertuples(index=False):
        what = f"{method_label(str(r.method))} left out" if r.method else "no profile"
        ct.notes.append(
            f"Across tasks, {family_label(str(r.family))} family, in {MEASURE_WORD[str(r.measure)]}: "
            f"{what}: {r.reason}."
        )
    for m in ct.measures:
        ct.tables.append(_profile_table(ct.profiles, m, pct))
    if not ct.speedups.empty:
        ct.tables.append(_speedup_table(ct.speedups, ct.measures, pct))
    ct.tables.append(_times_table(times, ct.ratios, ct.measures, pct))
    return ct


def profile_figure(ct: CrossTask, stem: Path) -> list[Path]:
    """The performance profiles as ``stem``.png/.pdf: one panel per family (columns) and measure (rows),
    each method's fraction of tasks within τ of the best as a step curve; [] without a profile."""
    from overshoot.analysis import figstyle as F

    prof = ct.profiles
    families = sorted(prof["family"].unique(), key=lambda f: family_rank(str(f)))
    measures = ct.measures
    if not families or not measures:
        return []
    ncol, nrow = len(families), len(measures)
    width = F.TEXT_IN if ncol > 1 else F.COLUMN_IN
    fig, axes = F.plt.subplots(
        nrow, ncol, figsize=(width, 2.1 * nrow), squeeze=False, constrained_layout=True
    )
    handles: dict[str, Any] = {}
    for i, measure in enumerate(measures):
        for j, family in enumerate(families):
            ax = axes[i][j]
            sel = prof[(prof["measure"] == measure) & (prof["family"] == family)]
            if sel.empty:
                ax.set_axis_off()
                continue
            gammas = [split_label(str(m))[1] for m in sel["method"].unique()]
            order = list(_order(sel.drop_duplicates("method"))["method"])
            for k, method in enumerate(order):
                g = sel[sel["method"] == method].sort_values("tau")
                opt, gamma = split_label(str(method))
                st = F.method_style(opt, gamma, gammas, str(family))
                # curves that coincide stay visible: each one drawn wider than the ones drawn over it
                (line,) = ax.step(
                    g["tau"],
                    g["fraction"],
                    where="post",
                    color=st["color"],
                    linestyle=st["linestyle"],
                    linewidth=st["linewidth"] + 0.7 * (len(order) - 1 - k),
                )
                handles.setdefault(method_label(str(method)), line)
            n = int(sel["n_tasks"].iloc[0])
            # to just past the largest finite ratio: beyond it every curve is flat
            sel_r = ct.ratios[(ct.ratios["measure"] == measure) & (ct.ratios["family"] == family)]
            r = pd.to_numeric(sel_r["ratio"], errors="coerce").to_numpy(dtype=float)  # None: no time
            finite = r[np.isfinite(r)]
            top = max(1.1, 1.05 * float(finite.max())) if len(finite) else float(sel["tau"].max())
            ax.set_xlim(1.0, min(top, float(sel["tau"].max())))
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"{family_label(str(family))} family, {n} tasks", fontsize="medium")
            ax.set_xlabel(f"τ ({MEASURE_WORD[measure]} to target / best method's)")
            if j == 0:
                ax.set_ylabel("fraction of tasks")
            ax.set_yticks(np.linspace(0, 1, n + 1) if n <= 5 else np.linspace(0, 1, 5))
            ax.grid(alpha=0.3, linewidth=0.5)
    F.legend_below(fig, handles, width)
    return F.save(fig, stem)


def figure_caption(ct: CrossTask) -> str:
    pct = f"{ct.reduction * 100:g}%"
    return (
        "Performance profiles across tasks: per family, the fraction of its tasks on which a method reaches "
        "the target within τ times the best method's steps (and seconds, when the runs record time); "
        + _definitions(pct)
    )
