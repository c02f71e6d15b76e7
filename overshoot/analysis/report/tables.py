"""The tables of a run store's report (pandas frames for CSV, display strings for the rest) and
:func:`build_report`, which computes them all from a :class:`~overshoot.analysis.results.Scan`."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overshoot.analysis import metrics as M
from overshoot.analysis.report.crosstask import CrossTask, cross_task
from overshoot.analysis.report.model import (
    N_PAPER_TASKS,
    ReportError,
    Section,
    headline_frame,
    paper_mean_frame,
    savings_frames,
    sections_of,
    table1_frame,
)
from overshoot.analysis.report.render import Table
from overshoot.analysis.report.style import (
    BETTER,
    DASH,
    WORSE,
    family_label,
    format_mean_ci,
    interval_cell,
    method_label,
    metric_factor,
    metric_header,
    num,
    seed_list,
    signed,
)
from overshoot.analysis.results import (
    METHOD_KEYS,
    NUMBERLESS_KEYS,
    RunRecord,
    Scan,
    curves,
    family_rank,
    flat_config,
    is_second_baseline,
    method_order,
    scan,
)
from overshoot.config import methods

# The column of the savings-vs-gamma tables that holds the second baselines: 'NAG / NAdam'.
SECOND_COLUMN = " / ".join(
    methods.METHODS[f.second].display for f in methods.FAMILIES.values() if f.second is not None
)


def _pct(reduction: float) -> str:
    return f"{reduction * 100:g}%"


def _saving_cell(row: pd.Series) -> str:
    """A summary row's per-seed saving as 'm [lo, hi]', or why there is none."""
    if row["n"] == 0:
        if row["n_pairs"] == 0:
            return "no seed in common"
        if row["baseline_not_reached"] == row["n_pairs"]:
            return "baseline " + M.NOT_REACHED
        return M.NOT_REACHED
    return interval_cell(row["mean"], row["low"], row["high"])


def _paper_cell(row: pd.Series) -> str:
    s = row["paper_saving"]
    if isinstance(s, float) and math.isfinite(s):
        return signed(s)
    if pd.isna(row["paper_k_baseline"]):
        return "baseline " + M.NOT_REACHED
    if pd.isna(row["paper_k_method"]):
        return M.NOT_REACHED
    return "undefined"


def _seconds(x: Any) -> str:
    """Seconds to 3 significant digits ('1,230', '45.6', '0.123'); '–' when unknown."""
    if x is None or x is pd.NA or not math.isfinite(float(x)):
        return DASH
    v = float(x)
    digits = 0 if v == 0 else max(0, 2 - math.floor(math.log10(abs(v))))
    return num(v, digits)


def _time_saving_cell(row: pd.Series) -> str:
    """A summary row's seconds saving as 'm [lo, hi]' (its t-interval), '–' without one."""
    m, h = float(row["seconds_mean"]), float(row["seconds_half_width"])
    return interval_cell(m, m - h, m + h)


def has_seconds(frame: pd.DataFrame) -> bool:
    """Whether any comparison of a savings summary has seconds to target (a run logged with the clock)."""
    cols = ["seconds_baseline_mean", "seconds_method_mean"]
    return bool(set(cols) <= set(frame.columns) and frame[cols].notna().to_numpy().any())


def seconds_columns(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The display columns of seconds to target beside the step columns: 'Seconds B', 'Seconds O' (means)
    and 'Time saving % [95% CI]'; none when no compared run has times."""
    if not has_seconds(frame):
        return {}
    return {
        "Seconds B": [_seconds(x) for x in frame["seconds_baseline_mean"]],
        "Seconds O": [_seconds(x) for x in frame["seconds_method_mean"]],
        "Time saving % [95% CI]": [_time_saving_cell(r) for _, r in frame.iterrows()],
    }


def seconds_note(frame: pd.DataFrame, pct: str, shared_clock: bool = False) -> str:
    """The caption's words for the seconds columns ('' when the table has none); ``shared_clock``: some
    compared runs trained together as a population, whose members read one clock."""
    if not has_seconds(frame):
        return ""
    note = (
        "; Seconds B, Seconds O = mean elapsed training seconds to the threshold (steps.csv's time_s at "
        "those steps: evaluation and the measurement-only base-loss forward excluded; wall-clock on this "
        "run's device, so compare only runs of one device); Time saving % = 100 (s_B − s_O) / s_B per seed, "
        f"mean [95% t-interval] over the seeds where both reached {pct} loss reduction with times"
    )
    if int(frame["seconds_missing"].sum()) > 0:
        note += (
            "; – or fewer seeds in the seconds: runs logged before the training clock (no time_s), "
            "their seconds unknown"
        )
    if shared_clock:
        note += (
            "; runs trained together as one population (config population: true) share its clock, so their "
            "seconds differ only through their step counts and show no method's own cost per step: train "
            "single runs to compare that"
        )
    return note


def _windows(frame: pd.DataFrame) -> str:
    ws = sorted({int(w) for w in frame["window"]})
    if len(ws) == 1:
        return f"{ws[0]:,}-step trailing mean"
    return "trailing mean of " + " / ".join(f"{w:,}" for w in ws) + " steps (per comparison, see Window)"


# --------------------------------------------------------------------------------------------- headline


def shared_clock(records: Sequence[Any]) -> bool:
    """Whether some of ``records`` trained as members of a population (one clock for all its members)."""
    return any(bool(r.config.get("population")) for r in records)


def headline_table(head: pd.DataFrame, reduction: float, shared: bool = False) -> Table | None:
    """The summary every report opens with: per task and method, the saving and whether it is noise;
    ``shared``: some runs read a population's shared clock (said in the caption)."""
    if head.empty:
        return None
    disp = pd.DataFrame(
        {
            "Task": head["label"],
            "Paper task": head["paper_label"],
            "Method": [method_label(m) for m in head["method"]],
            "vs": [method_label(b, b) for b in head["baseline"]],
            "Saving % [95% CI]": [_saving_cell(r) for _, r in head.iterrows()],
            "Within noise": ["yes" if w else "no" for w in head["within_noise"]],
            "Steps B": head["k_baseline_mean"].map(lambda x: num(x, 0)),
            "Steps O": head["k_method_mean"].map(lambda x: num(x, 0)),
            **seconds_columns(head),
            "Seeds": [f"{int(n)} of {int(p)}" for n, p in zip(head["n"], head["n_pairs"], strict=True)],
        }
    )
    return Table(
        "headline",
        f"Step saving to {_pct(reduction)} loss reduction per task and method against its family baseline "
        "(this project's per-seed saving): mean over the seeds where both reached the baseline's threshold "
        "with its 95% t-interval; within noise = the interval contains 0 (or fewer than 2 seeds); Steps B, "
        "Steps O = mean steps to the threshold of the baseline and of the method; seeds = reached of paired"
        + seconds_note(head, _pct(reduction), shared),
        head,
        disp,
        heading="Headline",
        tex_spec="p{1.2in}p{0.7in}llllrr" + "rrl" * has_seconds(head) + "r",
    )


def paper_mean_table(frame: pd.DataFrame) -> Table:
    """The paper's 7-task mean beside this report's mean over the paper tasks it measured (n of 7)."""
    disp = pd.DataFrame(
        {
            "Comparison": frame["comparison"],
            "γ": frame["gamma"].map(lambda g: f"{g:g}"),
            f"Paper, mean of its {N_PAPER_TASKS} tasks %": frame["paper_7_task_mean"].map(
                lambda x: signed(x, 2)
            ),
            "This report, paper tasks %": [
                "no paper task measured" if n == 0 else f"{signed(m)} ({n} of {N_PAPER_TASKS} tasks)"
                for m, n in zip(frame["measured_mean"], frame["tasks_measured"], strict=True)
            ],
        }
    )
    return Table(
        "paper_mean",
        f"The paper's headline, the mean paper-style saving over its {N_PAPER_TASKS} tasks "
        "(paper section 6), "
        f"beside this report's paper-style mean over the paper tasks it measured; comparable only at "
        f"{N_PAPER_TASKS} of {N_PAPER_TASKS} tasks, a task outside the paper never enters it",
        frame,
        disp,
        heading=f"The paper's {N_PAPER_TASKS}-task mean",
    )


# --------------------------------------------------------------------------------------------- savings


def _p_cell(p: Any) -> str:
    return f"{p:.2g}" if isinstance(p, float) and math.isfinite(p) else DASH


def holm_note(n_tests: int, what: str) -> str:
    """The caption's words for a Holm correction over the ``n_tests`` tests of ``what``."""
    if n_tests == 0:
        return "Holm correction: no test here"
    if n_tests == 1:
        return f"one test in {what}, nothing to correct (Holm)"
    return f"Holm-corrected across the {n_tests} tests of {what}"


def savings_tables(
    summary: pd.DataFrame,
    per_seed: pd.DataFrame,
    reduction: float,
    section: str,
    n_tests: int = 0,
    shared: bool = False,
) -> list[Table]:
    """One section's paper-style, per-seed summary and per-seed listing tables; ``n_tests``: the report's
    savings comparisons with a p-value (the Holm correction's family); ``shared``: some runs read a
    population's shared clock."""
    if summary.empty:
        return []
    pct = _pct(reduction)
    win = _windows(summary)
    task = str(summary["label"].iloc[0])
    method = [method_label(m) for m in summary["method"]]
    baseline = [method_label(b, b) for b in summary["baseline"]]
    paper_disp = pd.DataFrame(
        {
            "Method": method,
            "Baseline": baseline,
            "Window": summary["window"].map(num),
            "k_B": summary["paper_k_baseline"].map(num),
            "k_O": summary["paper_k_method"].map(num),
            "Saving %": [_paper_cell(r) for _, r in summary.iterrows()],
        }
    )
    seed_disp = pd.DataFrame(
        {
            "Method": method,
            "Baseline": baseline,
            "Window": summary["window"].map(num),
            "Reached": [
                f"{int(n)} of {int(p)}" for n, p in zip(summary["n"], summary["n_pairs"], strict=True)
            ],
            "Steps B": summary["k_baseline_mean"].map(lambda x: num(x, 0)),
            "Steps O": summary["k_method_mean"].map(lambda x: num(x, 0)),
            "Saving % [95% CI]": [_saving_cell(r) for _, r in summary.iterrows()],
            "Within noise": ["yes" if w else "no" for w in summary["within_noise"]],
            **seconds_columns(summary),
            "p (Holm)": summary["p_holm"].map(_p_cell),
            "Missed O/B": [
                f"{int(o)}/{int(b)}"
                for o, b in zip(summary["not_reached"], summary["baseline_not_reached"], strict=True)
            ],
        }
    )
    paper_cols = ["section", "task", "protocol", "window", "family", "optimizer", "gamma", "method"]
    paper_cols += ["baseline", "paper_threshold", "paper_k_baseline", "paper_k_method", "paper_saving"]
    seed_cols = [c for c in summary.columns if not c.startswith("paper_") and c != "label"]
    tables = [
        Table(
            "savings_paper",
            f"{task}: step saving to {pct} loss reduction computed as in the paper: seed-mean training loss, "
            f"{win} (the notebook's, leaving out the window that ends at the last step), threshold "
            f"{pct} of the baseline's reduction, k_B and k_O = first index of the smoothed curve at or "
            "below it",
            summary[paper_cols].reset_index(drop=True),
            paper_disp,
            section=section,
        ),
        Table(
            "savings_per_seed",
            f"{task}: step saving to {pct} loss reduction per seed (this project's variant, not the "
            f"paper's): each seed's run against the same seed's baseline, {win}, steps counted at the "
            "window's end; mean [95% t-interval] over the seeds where both reached the baseline's "
            "threshold (Reached, of the seeds paired); within noise: the interval contains 0; p (Holm): "
            "two-sided one-sample t-test of the per-seed savings against 0, "
            + holm_note(n_tests, "this report's savings (every task, family and γ)")
            + "; Missed O/B: seeds where the method / the baseline never reached it"
            + seconds_note(summary, pct, shared),
            summary[seed_cols].reset_index(drop=True),
            seed_disp,
            section=section,
        ),
    ]
    if not per_seed.empty:
        seeds = sorted({int(s) for s in per_seed["seed"]})
        wide = per_seed.assign(
            cell=[
                M.NOT_REACHED if pd.isna(kb) or pd.isna(ko) else signed(s)
                for kb, ko, s in zip(
                    per_seed["k_baseline"], per_seed["k_method"], per_seed["saving"], strict=True
                )
            ]
        ).pivot_table(index="method", columns="seed", values="cell", aggfunc="first", sort=False)
        wide = wide.reindex(index=list(dict.fromkeys(per_seed["method"])), columns=seeds).fillna(DASH)
        disp = pd.DataFrame({"Method": [method_label(m) for m in wide.index]})
        for s in seeds:
            disp[f"seed {s}"] = list(wide[s])
        tables.append(
            Table(
                "savings_seeds",
                f"{task}: the per-seed savings % behind the mean above, each seed against the same seed's "
                "baseline (savings_seeds.csv adds each run's threshold and steps k_baseline, k_method)",
                per_seed.drop(columns=["label"]).reset_index(drop=True),
                disp,
                section=section,
            )
        )
    return tables


def vs_gamma_table(summary: pd.DataFrame, kind: str, reduction: float) -> Table | None:
    """Savings vs gamma: rows (family, section), plus a mean row per family over several sections;
    columns: the second baseline (NAG or NAdam at gamma = mu or b1), each gamma, then the user's methods."""
    if summary.empty:
        return None
    value = "paper_saving" if kind == "paper" else "mean"
    is_os = summary["optimizer"].map(lambda o: methods.is_overshoot(str(o))).astype(bool)
    is_second = summary["optimizer"].map(lambda o: is_second_baseline(str(o))).astype(bool)
    gammas = sorted(set(summary.loc[is_os, "gamma"]))
    own = summary[~is_os & ~is_second]
    own_methods = set(zip(own["optimizer"], own["gamma"], own["family"], strict=True))
    own_columns = [
        methods.display_label(str(o), float(g))
        for o, g, f in sorted(own_methods, key=lambda k: method_order(str(k[0]), float(k[1]), str(k[2])))
    ]
    column = [
        f"γ={g:g}" if os_ else SECOND_COLUMN if sec else methods.display_label(str(o), float(g))
        for o, g, os_, sec in zip(summary["optimizer"], summary["gamma"], is_os, is_second, strict=True)
    ]
    rows = summary.assign(
        column=column,
        cell=[(_paper_cell(r) if kind == "paper" else _saving_cell(r)) for _, r in summary.iterrows()],
        fam=summary["family"].map(lambda f: family_label(str(f)) + " family"),
    )
    fam_rank = {family_label(str(f)) + " family": family_rank(str(f)) for f in summary["family"]}
    columns = [SECOND_COLUMN, *(f"γ={g:g}" for g in gammas), *dict.fromkeys(own_columns)]
    disp = rows.pivot_table(
        index=["fam", "label"], columns="column", values="cell", aggfunc="first", sort=False
    )
    disp = disp.reindex(columns=[c for c in columns if c in disp.columns]).fillna(DASH)
    if summary["section"].nunique() > 1:
        means = rows.groupby(["fam", "column"], sort=False)[value].agg(["mean", "count", "size"])
        for fam in rows["fam"].unique():
            cells = {}
            for col in disp.columns:
                if (fam, col) in means.index:
                    m = means.loc[(fam, col)]
                    n, size = int(m["count"]), int(m["size"])
                    cells[col] = f"{signed(float(m['mean']))} ({n}/{size} sections)" if n else DASH
            disp.loc[(fam, "mean over sections"), :] = pd.Series(cells)
        disp = disp.sort_index(
            level=0, key=lambda idx: idx.map(lambda f: fam_rank.get(f, len(fam_rank))), sort_remaining=False
        )
    disp = disp.fillna(DASH).reset_index().rename(columns={"fam": "Family", "label": "Task"})
    disp.columns.name = None
    keep = ["section", "task", "family", "method", "window", "x_gamma", value]
    data = rows[keep + ([] if kind == "paper" else ["low", "high"])].rename(
        columns={"x_gamma": "gamma", value: "saving"}
    )
    name = "savings_vs_gamma" if kind == "paper" else "savings_vs_gamma_per_seed"
    how = "paper-style" if kind == "paper" else "per-seed mean [95% t-interval] (this project's variant)"
    return Table(
        name,
        f"Step saving % to {_pct(reduction)} loss reduction vs γ, {how}; {_windows(summary)}",
        data,
        disp,
    )


# --------------------------------------------------------------------------------------------- Table 1


def table1_table(t1: pd.DataFrame, sections: Sequence[Section], alpha: float) -> Table | None:
    """Table 1, one column per section (task), one row per method under its family's header; the seed
    count of a column in its header, a cell with another count says its own."""
    if t1.empty:
        return None
    factor = {s.key: metric_factor(s.records[0].metric, 1.0) for s in sections}
    scale_shown = t1["section"].map(factor)
    col_n = {k: int(g["n"].mode().iloc[0]) for k, g in t1.groupby("section")}
    same_n = len(set(col_n.values())) == 1
    sub = [""]
    for s in sections:
        r = s.records[0]
        sub.append(
            metric_header(r.metric, r.metric_scale, s.task) + ("" if same_n else f", n = {col_n[s.key]}")
        )
    seeds = f"{next(iter(col_n.values()))} seeds" if same_n else "n seeds per column"
    n_tests = int(t1["p_value"].notna().sum())
    table = Table(
        "table1",
        "Best test metric over epochs (higher accuracy, lower loss is better; accuracy in %, MLP-CA's MSE "
        f"×100 as the paper), mean ± 95% t-interval over {seeds} (a cell with another count "
        "shows it); bold: best of its family among cells of at least 2 seeds with the family's baseline "
        f"present; {BETTER} / {WORSE}: significantly better / worse than the better of the family's two "
        f"baselines (two-sided paired t-test by seed, "
        f"{holm_note(n_tests, 'this table (every task, family and method)')}, α = {alpha:g} on the "
        "Holm-adjusted p; table1.csv keeps both p_value and p_holm)",
        t1.reset_index(drop=True),
        pd.DataFrame(),
        subheader=sub,
        heading="Table 1: best test metric",
    )
    order = [
        method_order(str(o), float(g), str(f))
        for o, g, f in zip(t1["optimizer"], t1["gamma"], t1["family"], strict=True)
    ]
    rank = {k: i for i, k in enumerate(sorted(set(order)))}
    cells = []
    for m, h, n, sec in zip(
        t1["mean"] * scale_shown, t1["half_width"] * scale_shown, t1["n"], t1["section"], strict=True
    ):
        c = format_mean_ci(m, h)
        if int(n) != col_n.get(sec, n):
            c += f" (n = {int(n)})"
        cells.append(c)
    long = t1.assign(
        row=[rank[k] for k in order],
        cell=cells,
        mark=[
            {w for w, on in (("bold", b), ("better", u), ("worse", d)) if on}
            for b, u, d in zip(t1["best"], t1["better"], t1["worse"], strict=True)
        ],
    )
    cell_t = long.pivot_table(index="row", columns="section", values="cell", aggfunc="first")
    mark_t = long.pivot_table(index="row", columns="section", values="mark", aggfunc="first")
    keys = [s.key for s in sections]
    cell_t, mark_t = cell_t.reindex(columns=keys).sort_index(), mark_t.reindex(columns=keys).sort_index()
    rows = long.drop_duplicates("row").set_index("row").sort_index()
    disp = cell_t.fillna(DASH).set_axis([s.label for s in sections], axis=1)
    labels = [
        methods.display_label(str(o), float(g)) for o, g in zip(rows["optimizer"], rows["gamma"], strict=True)
    ]
    disp.insert(0, "Method", labels)
    table.display = disp.reset_index(drop=True)
    for i, row_marks in enumerate(mark_t.itertuples(index=False)):
        for sec, m in zip(sections, row_marks, strict=True):
            for what in m if isinstance(m, set) else ():
                table.mark(i, sec.label, what)
    families = rows["family"].astype(str).to_numpy()
    for family in sorted(set(families), key=family_rank):
        idx = np.flatnonzero(families == family)
        table.groups.append((family_label(family) + " family", int(idx[0]), int(idx[-1])))
    return table


# --------------------------------------------------------------------------------------------- protocol


def _protocol_method(method: str, runs: Sequence[RunRecord], family_baseline: str | None) -> str:
    """A method as the protocol table lists it: its label, a user's optimizer with its class and arguments."""
    label = method_label(method, family_baseline)
    target = runs[0].config.get("optimizer_target")
    if not target:
        return label
    kwargs = runs[0].config.get("optimizer_kwargs") or {}
    return f"{label} (" + ", ".join([str(target), *(f"{k}={v}" for k, v in kwargs.items())]) + ")"


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def protocol_keys(config: dict[str, Any]) -> dict[str, str]:
    """Every config key that enters the protocol id, flattened (``lr``, ``task.test_fraction``...)."""
    kept = {k: v for k, v in config.items() if k not in METHOD_KEYS and k not in NUMBERLESS_KEYS}
    flat = flat_config({k: v for k, v in kept.items() if k != "task"})
    return {"task": _show(kept.get("task")), **{k: _show(v) for k, v in flat.items()}}


def _steps_per_epoch(r: RunRecord) -> int:
    """The steps of the run's first epoch (its steps.csv's epoch column)."""
    epoch = curves([r.path])["epoch"]
    return int((epoch == epoch.iloc[0]).sum()) if len(epoch) else 0


def _epochs_done(r: RunRecord) -> int:
    e = r.epochs
    if e.empty or "epoch" not in e:
        return 0
    return int(pd.to_numeric(e["epoch"], errors="coerce").max()) + 1


def protocol_table(sections: Sequence[Section], reduction: float, window: int) -> Table:
    """What produced the numbers: per section and family, every key of the protocol id, then the steps
    trained, the epochs completed, the methods, seeds, windows and the loss reduction."""
    rows = []
    for sec in sections:
        for family in sec.families:
            recs = sec.family_records(family)
            r = recs[0]
            keys = protocol_keys(r.config)
            steps = sorted({x.steps for x in recs})
            done = sorted({_epochs_done(x) for x in recs})
            epochs = keys.get("epochs")
            cut = r.config.get("max_steps")
            trained = "/".join(f"{s:,}" for s in steps)
            if cut:
                trained += f" (max_steps {int(cut):,} cut the {epochs}-epoch schedule)"
            rows.append(
                {
                    "section": sec.key,
                    "Task": sec.label,
                    "Paper task": sec.paper_label,
                    "Family": family_label(family),
                    "Protocol": sec.protocols[family],
                    **keys,
                    "Steps per epoch": f"{_steps_per_epoch(r):,}",
                    "Steps trained": trained,
                    "Epochs completed": "/".join(map(str, done)) + (f" of {epochs}" if epochs else ""),
                    "Preset": str(r.config.get("preset", DASH)),
                    "Methods": ", ".join(
                        _protocol_method(m, [x for x in recs if x.method == m], sec.baseline(family))
                        for m in dict.fromkeys(x.method for x in recs)
                    ),
                    "Seeds": seed_list([x.seed for x in recs]),
                    "Runs": f"{len(recs):,}",
                    "Window": f"{sec.windows[family]:,}"
                    + ("" if sec.windows[family] == window else " (shrunk)"),
                    "Reduction": _pct(reduction),
                }
            )
    df = pd.DataFrame(rows).fillna(DASH)
    disp = df.drop(columns=["section"]).set_index(["Task", "Family"]).T
    disp.columns = [f"{t}, {f} family" for t, f in disp.columns]
    disp = disp.astype(str).rename_axis("Setting").reset_index()
    return Table(
        "protocol",
        "Protocol: every setting that enters the protocol id (the config without seed and method; task "
        "options as task.KEY), shared by every run compared in each task section and family, then the "
        "steps trained, the epochs completed, the smoothing window and the loss reduction of the savings",
        df,
        disp,
        # the settings' values wrap inside the text width (a list of methods, a cut schedule)
        tex_spec="l" + f"p{{{5.3 / max(1, len(disp.columns) - 1):.2f}in}}" * (len(disp.columns) - 1),
    )


# --------------------------------------------------------------------------------------------- provenance


def _span(start: Any, end: Any) -> str:
    """'2026-12-01 09:35 – 09:37' (the date once when both ends share it); '?' for a missing end."""

    def minute(t: Any) -> str:
        return t[:16].replace("T", " ") if isinstance(t, str) and t else "?"

    a, b = minute(start), minute(end)
    return f"{a} – {b[11:] if len(b) > 11 and a[:10] == b[:10] else b}"


def provenance_table(scan_: Scan, used: Sequence[RunRecord]) -> tuple[Table, str]:
    """Where and with which versions the runs used ran: one row per (device, versions, git revision), the
    CPU threads listed per row, dirty revisions flagged; and a one-line summary."""
    paths = {str(r.path) for r in used}
    t = scan_.table[scan_.table["path"].isin(paths)].copy()
    t["git_rev"] = t["git_rev"].fillna("unknown")
    for c in ("torch", "python", "overshoot", "device"):
        t[c] = t[c].fillna("?").astype(str)
    g = t.groupby(["device", "torch", "python", "overshoot", "git_rev", "dirty"], sort=True, dropna=False)
    data = g.agg(
        threads=("cpu_threads", lambda s: ", ".join(str(int(x)) for x in sorted(set(s.dropna())))),
        runs=("path", "size"),
        started=("started", "min"),
        ended=("ended", "max"),
    ).reset_index()
    disp = pd.DataFrame(
        {
            "Device": data["device"],
            "Threads": data["threads"].replace("", DASH),
            "torch": data["torch"],
            "Python": data["python"],
            "Package": data["overshoot"],
            "Revision": [r + ("*" if d else "") for r, d in zip(data["git_rev"], data["dirty"], strict=True)],
            "Runs": data["runs"].map(num),
            "Trained (UTC)": [_span(a, b) for a, b in zip(data["started"], data["ended"], strict=True)],
        }
    )
    revs = data.drop_duplicates("git_rev")
    n_dirty = int(revs["dirty"].sum())
    devices = sorted(set(data["device"]))
    summary = (
        f"{len(used):,} runs on {len(devices)} device{'s' if len(devices) != 1 else ''} "
        f"({'; '.join(devices)}), "
        f"{len(revs)} code revision{'s' if len(revs) != 1 else ''}"
        + (f", {n_dirty} of them dirty (uncommitted changes)" if n_dirty else "")
    )
    caption = (
        "Provenance: the devices, versions (Package: overshoot-bench) and code revisions of the runs used"
    )
    if n_dirty:
        caption += "; * = dirty: trained from a checkout with uncommitted changes"
    return Table("provenance", caption, data, disp), summary


def _relative(paths: pd.Series, roots: Sequence[Path]) -> list[str]:
    out = []
    for p in paths:
        rel = str(p)
        for root in roots:
            try:
                rel = str(Path(p).relative_to(root.resolve()))
                break
            except ValueError:
                continue
        out.append(rel)
    return out


def excluded_table(left_out: pd.DataFrame, roots: Sequence[Path] = ()) -> Table | None:
    if left_out.empty:
        return None
    disp = left_out.assign(path=_relative(left_out["path"], roots))
    disp = disp.rename(columns={"path": "Run", "status": "Status", "file": "File", "reason": "Reason"})
    t = Table("excluded_runs", "Runs left out, with the file and the reason", left_out, disp.astype(str))
    t.tex_spec = "lllp{2.6in}"
    return t


# --------------------------------------------------------------------------------------------- the report


@dataclass
class Report:
    """Everything the report computed: its tables by name, the sections, the savings and the runs."""

    sections: list[Section]
    records: list[RunRecord]
    savings: pd.DataFrame  # one row per comparison (savings.saving_summary + section, label)
    seed_savings: pd.DataFrame  # one row per comparison and seed (savings.savings + section, label)
    left_out: pd.DataFrame
    scan: Scan
    provenance: str
    headline: Table | None
    paper_mean: Table | None
    protocol: Table
    provenance_table: Table
    table1: Table | None
    section_tables: dict[str, list[Table]]
    vs_gamma: list[Table]
    excluded: Table | None
    key: str  # the report's tasks and a digest of its sections, for LaTeX labels
    window: int
    reduction: float
    cross_task: CrossTask | None = None  # a store of at least 2 tasks: profiles, speedups, IQM

    @property
    def cross_tables(self) -> list[Table]:
        return self.cross_task.tables if self.cross_task is not None else []

    @property
    def tables(self) -> list[Table]:
        out = [t for t in (self.headline, self.paper_mean, self.table1) if t is not None]
        out += [t for s in self.sections for t in self.section_tables.get(s.key, [])]
        out += [*self.vs_gamma, *self.cross_tables, self.protocol, self.provenance_table]
        return out + ([self.excluded] if self.excluded is not None else [])


def build_report(
    runs: Scan | Sequence[Any],
    reduction: float = 0.95,
    window: int = 400,
    alpha: float = 0.05,
    paper: bool = False,
    protocols: Sequence[str] = (),
    roots: Sequence[Path] = (),
) -> Report:
    """All tables of the report from a :class:`~overshoot.analysis.results.Scan` (or what :func:`scan` takes);
    ``protocols`` keeps only runs whose protocol id starts with one of them; ``paper`` adds the paper's
    7-task mean. Raises ReportError when no run is usable."""
    sc = runs if isinstance(runs, Scan) else scan(runs)
    records = sc.records
    if protocols:
        known = sorted({r.protocol for r in records})
        records = [r for r in records if any(r.protocol.startswith(p) for p in protocols)]
        if not records:
            raise ReportError(
                f"no usable run has protocol {','.join(protocols)}: "
                f"the store holds {', '.join(known) or 'none'}"
            )
    if not records:
        counts = sc.table["status"].value_counts()
        what = ", ".join(f"{n} {st}" for st, n in counts.items())
        raise ReportError(
            f"none of the {len(sc.table)} runs found is completed with intact logs ({what}): "
            "nothing to report"
        )
    sections = sections_of(records, window)
    summary, per_seed = savings_frames(sections, reduction, window)
    key = (
        "-".join(sorted({s.task for s in sections}))
        + "-"
        + hashlib.sha256(" ".join(s.key for s in sections).encode()).hexdigest()[:6]
    )
    prov, prov_summary = provenance_table(sc, records)
    n_tests = int(summary["p_value"].notna().sum())
    per_section = {
        s.key: savings_tables(
            summary[summary["section"] == s.key],
            per_seed[per_seed["section"] == s.key],
            reduction,
            s.key,
            n_tests,
            shared_clock(s.records),
        )
        for s in sections
    }
    vs = [t for k in ("paper", "seed") if (t := vs_gamma_table(summary, k, reduction)) is not None]
    return Report(
        sections=sections,
        records=records,
        savings=summary,
        seed_savings=per_seed,
        left_out=sc.left_out,
        scan=sc,
        provenance=prov_summary,
        headline=headline_table(headline_frame(summary), reduction, shared_clock(records)),
        paper_mean=paper_mean_table(paper_mean_frame(summary)) if paper else None,
        protocol=protocol_table(sections, reduction, window),
        provenance_table=prov,
        table1=table1_table(table1_frame(sections, alpha), sections, alpha),
        section_tables=per_section,
        vs_gamma=vs,
        excluded=excluded_table(sc.left_out, roots),
        key=key,
        window=window,
        reduction=reduction,
        cross_task=cross_task(per_seed, reduction),
    )
