"""``overshoot-bench-report``: savings tables, Table 1 and the paper's figures from a run store.

Usage: ``overshoot-bench-report [RUNS...] [--out DIR] [--format md,csv,tex,html] [--paper] [--reduction 95]
[--window 400] [--alpha 0.05] [--protocol ID[,ID]] [--no-figures]``.

Runs are read with :func:`overshoot.results.scan`; runs that are not completed, whose logs are cut or do
not parse, and older true duplicates (same config hash) are listed with the reason and left out. Runs are
compared only within one protocol (:func:`overshoot.results.protocol_id`): each task gets one section per
protocol, a family's methods against its baseline of the same protocol (CM or AdamW, else SGDO/AdamO at
gamma 0, which are CM and AdamW). Every method of a family other than its two baselines is compared with
them: the overshoot methods at each gamma and a user's optimizer (``optimizer=custom``), which is labelled
by its name and follows the built-in methods. Every table goes to ``--out`` (default
``<first RUNS>/report``) once per format, beside ``report.md`` and the self-contained ``report.html``; the
figures (PNG and PDF) go to ``<out>/figures``. The terminal gets the headline, the protocols and where the
files went.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from overshoot import methods
from overshoot import metrics as M
from overshoot.results import (
    PAPER_LABEL,
    RunRecord,
    Scan,
    family_rank,
    is_second_baseline,
    method_order,
    scan,
    task_label,
)
from overshoot.store import atomic_write_text

__all__ = ["RunRecord", "build_report", "main"]

FORMATS = ("md", "csv", "tex", "html")
MINUS = "\u2212"
BETTER, WORSE = "↑", "↓"
# A section's window is at most this fraction of its shortest run (the rule for short runs).
WINDOW_FRACTION = 5

# paper.md section 6: mean step saving (%) to 95% loss reduction over the 7 tasks, per family and gamma.
PAPER_HEADLINE: dict[tuple[str, float], float] = {
    ("sgd", 3.0): 23.77,
    ("sgd", 5.0): 26.19,
    ("sgd", 7.0): 26.54,
    ("adam", 3.0): 15.27,
    ("adam", 5.0): 19.53,
    ("adam", 7.0): 20.11,
}
# The headline's comparison per family: 'SGDO vs CM', 'AdamO vs Adam'.
COMPARISON = {
    f.name: f"{methods.METHODS[f.overshoot].display} vs {methods.METHODS[f.baseline].display}"
    for f in methods.FAMILIES.values()
}
# The column of the savings-vs-gamma tables that holds the second baselines: 'NAG / NAdam'.
SECOND_COLUMN = " / ".join(
    methods.METHODS[f.second].display for f in methods.FAMILIES.values() if f.second is not None
)


class ReportError(Exception):
    """Bad input to the report: printed as one line, exit status 2."""


# --------------------------------------------------------------------------------------------- sections


@dataclass
class Section:
    """The runs of one task under one protocol per family: everything compared with each other."""

    task: str
    protocols: dict[str, str]  # family -> protocol id
    records: list[RunRecord]
    window: int  # the smoothing window used (after the short-run rule)
    window_note: str  # why it differs from the requested one ("" when it does not)
    label: str = ""  # the task's paper label, plus the protocols when the task has several sections

    @property
    def key(self) -> str:
        """Unique within a report: task and protocol ids (used in LaTeX labels and CSV)."""
        return "-".join([self.task, *(self.protocols[f] for f in sorted(self.protocols, key=family_rank))])

    def baseline(self, family: str) -> str | None:
        """The method name of the family baseline: CM/AdamW, else SGDO/AdamO at gamma 0; None without."""
        fam = methods.FAMILIES.get(family)
        if fam is None:
            return None
        present = {r.method for r in self.records if r.family == family}
        for name in (fam.baseline, methods.label(fam.overshoot, 0.0)):
            if name in present:
                return name
        return None

    def baselines(self, family: str) -> tuple[str, ...]:
        """The methods that count as baselines of the family in Table 1 (baseline, then NAG or NAdam);
        every other method of the family is compared with the better of them."""
        fam = methods.FAMILIES.get(family)
        base = self.baseline(family)
        return tuple(b for b in (base, fam.second if fam else None) if b)


def _task_rank(task: str) -> tuple[int, str]:
    """The paper's order of its tasks (MLP-CA, VAE-FM, ..., GPT-2), then the others by name."""
    order = list(PAPER_LABEL)
    return (order.index(task) if task in order else len(order), task)


def sections_of(records: Sequence[RunRecord], window: int) -> list[Section]:
    """Group records into sections: per task, the families' protocols share one section when each family
    has exactly one protocol there; otherwise every protocol gets its own section."""
    out: list[Section] = []
    by_task: dict[str, list[RunRecord]] = {}
    for r in records:
        by_task.setdefault(r.task, []).append(r)
    for task, recs in sorted(by_task.items(), key=lambda kv: _task_rank(kv[0])):
        per_family: dict[str, set[str]] = {}
        for r in recs:
            per_family.setdefault(r.family, set()).add(r.protocol)
        if all(len(p) == 1 for p in per_family.values()):
            groups = [{f: next(iter(p)) for f, p in per_family.items()}]
        else:
            groups = [{f: p} for f, ps in sorted(per_family.items()) for p in sorted(ps)]
        for protocols in groups:
            members = [r for r in recs if protocols.get(r.family) == r.protocol]
            shortest = min(r.steps for r in members)
            w = window
            note = ""
            if window * WINDOW_FRACTION > shortest:
                w = max(1, shortest // WINDOW_FRACTION)
                note = (
                    f"runs of {shortest} steps are short for the {window}-step window: it shrinks to a "
                    f"{WINDOW_FRACTION}th of the shortest run, {w} steps (pass --window to choose another)"
                )
            out.append(Section(task, protocols, members, w, note))
    counts = pd.Series([s.task for s in out]).value_counts()
    for s in out:
        s.label = task_label(s.task)
        if counts[s.task] > 1:
            s.label += " [" + "/".join(s.protocols[f] for f in sorted(s.protocols, key=family_rank)) + "]"
    return out


# --------------------------------------------------------------------------------------------- numbers


SAVINGS_COLUMNS = (
    "section",
    "task",
    "label",
    "protocol",
    "window",
    "family",
    "optimizer",
    "gamma",
    "x_gamma",
    "method",
    "baseline",
    "threshold",
    "paper_k_baseline",
    "paper_k_method",
    "paper_saving",
    "seeds",
    "seed_pairs",
    "seed_n",
    "seed_mean",
    "seed_half_width",
    "seed_low",
    "seed_high",
    "seed_not_reached",
    "seed_baseline_not_reached",
    "seed_steps_baseline",
    "seed_steps_method",
)


def _mean_steps(ks: Sequence[int | None]) -> float:
    vals = [k for k in ks if k is not None]
    return float(np.mean(vals)) if vals else math.nan


def _by_method(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for r in sorted(records, key=lambda r: (method_order(r.optimizer, r.gamma, r.family), r.seed)):
        out.setdefault(r.method, []).append(r)
    return out


def savings_frame(sections: Sequence[Section], reduction: float = 0.95) -> pd.DataFrame:
    """One row per (section, family, method other than the baseline): the paper-style saving and this
    project's per-seed saving against the family baseline of the same protocol."""
    rows: list[dict[str, Any]] = []
    for sec in sections:
        for family in sorted(sec.protocols, key=family_rank):
            base_name = sec.baseline(family)
            if base_name is None:
                continue
            runs_of = _by_method([r for r in sec.records if r.family == family])
            base = runs_of[base_name]
            for method, runs in runs_of.items():
                if method == base_name:
                    continue
                w = sec.window
                ps = M.paper_saving([r.base_loss for r in base], [r.base_loss for r in runs], reduction, w)
                ss = M.per_seed_saving(
                    {r.seed: r.base_loss for r in base}, {r.seed: r.base_loss for r in runs}, reduction, w
                )
                rows.append(
                    {
                        "section": sec.key,
                        "task": sec.task,
                        "label": sec.label,
                        "protocol": sec.protocols[family],
                        "window": w,
                        "family": family,
                        "optimizer": runs[0].optimizer,
                        "gamma": runs[0].gamma,
                        "x_gamma": runs[0].x_gamma,
                        "method": method,
                        "baseline": base_name,
                        "threshold": ps.threshold,
                        "paper_k_baseline": ps.k_baseline,
                        "paper_k_method": ps.k_method,
                        "paper_saving": math.nan if ps.saving is None else ps.saving,
                        "seeds": " ".join(map(str, ss.seeds)),
                        "seed_pairs": len(ss.seeds),
                        "seed_n": ss.summary.n,
                        "seed_mean": ss.summary.mean,
                        "seed_half_width": ss.summary.half_width,
                        "seed_low": ss.summary.low,
                        "seed_high": ss.summary.high,
                        "seed_not_reached": ss.n_not_reached,
                        "seed_baseline_not_reached": ss.n_baseline_not_reached,
                        "seed_steps_baseline": _mean_steps(ss.k_baseline),
                        "seed_steps_method": _mean_steps(ss.k_method),
                    }
                )
    df = pd.DataFrame(rows, columns=list(SAVINGS_COLUMNS))
    for c in ("paper_k_baseline", "paper_k_method"):
        df[c] = df[c].astype("Int64")
    return df


def table1_frame(sections: Sequence[Section], alpha: float = 0.05) -> pd.DataFrame:
    """Table 1 statistics (see :func:`overshoot.metrics.table1`) per section, with the section's key."""
    frames = []
    for sec in sections:
        rows = [
            {
                "task": r.task,
                "family": r.family,
                "optimizer": r.optimizer,
                "gamma": r.gamma,
                "method": r.method,
                "seed": r.seed,
                "value": M.best_over_epochs(r.epochs, r.metric, r.metric_scale),
                "metric": r.metric,
            }
            for r in sec.records
        ]
        bases = {f: sec.baselines(f) for f in sec.protocols}
        recs = pd.DataFrame(rows, columns=list(M.TABLE1_INPUT))
        t = M.table1(recs, bases, alpha=alpha, order=method_order)
        frames.append(t.assign(section=sec.key, label=sec.label))
    if not frames:
        return pd.DataFrame(columns=[*M.TABLE1_COLUMNS, "section", "label"])
    return pd.concat(frames, ignore_index=True)


def headline_frame(savings: pd.DataFrame, paper: bool = False) -> pd.DataFrame:
    """Mean paper-style saving of the overshoot methods over the sections per family and gamma (the
    paper's headline), optionally beside the paper's numbers (paper.md section 6) and measured - paper."""
    cols = ["comparison", "family", "gamma", "sections", "sections_not_reached", "measured"]
    if paper:
        cols += ["paper", "difference"]
    os_rows = savings[savings["optimizer"].map(lambda o: methods.is_overshoot(str(o))).astype(bool)]
    keys = set(zip(os_rows["family"], os_rows["gamma"], strict=True))
    if paper:
        keys |= set(PAPER_HEADLINE)
    rows = []
    for family, gamma in sorted(keys, key=lambda k: (family_rank(k[0]), k[1])):
        sel = os_rows[(os_rows["family"] == family) & (os_rows["gamma"] == gamma)]
        vals = sel["paper_saving"].dropna()
        measured = float(vals.mean()) if len(vals) else math.nan
        row: dict[str, Any] = {
            "comparison": COMPARISON.get(family, family),
            "family": family,
            "gamma": gamma,
            "sections": len(vals),
            "sections_not_reached": len(sel) - len(vals),
            "measured": measured,
        }
        if paper:
            ref = PAPER_HEADLINE.get((family, gamma), math.nan)
            row["paper"] = ref
            row["difference"] = measured - ref
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------- tables


@dataclass
class Table:
    """A table in two forms: ``data`` (numbers, for CSV) and ``display`` (strings, for md/tex/html).

    ``marks`` holds cell marks ('bold', 'better', 'worse') by (row, column); ``groups`` the row groups of
    a table whose rows fall into families (label, first row, last row), drawn as header rows in LaTeX;
    ``subheader`` an optional second header line; ``section`` the section key for per-section tables."""

    name: str
    caption: str
    data: pd.DataFrame
    display: pd.DataFrame
    marks: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    groups: list[tuple[str, int, int]] = field(default_factory=list)
    subheader: list[str] | None = None
    section: str = ""
    heading: str = ""  # the Markdown/HTML heading (default: the caption)
    tex_spec: str = ""  # the tabular column spec (default: text columns left, the rest right)

    def mark(self, row: int, col: str, what: str) -> None:
        self.marks.setdefault((row, col), set()).add(what)


def signed(x: float, digits: int = 1) -> str:
    """A number with a true minus sign (U+2212); '–' when not finite."""
    if not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}".replace("-", MINUS)


def _num(x: Any, digits: int = 1) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    return signed(float(x), digits)


def _decimals(half_width: float, mean: float) -> int:
    """Decimals that show two significant digits of the interval (4 significant of the mean without one)."""
    if math.isfinite(half_width) and half_width > 0:
        return int(min(6, max(0, 1 - math.floor(math.log10(half_width)))))
    if math.isfinite(mean) and mean != 0:
        return int(min(6, max(0, 3 - math.floor(math.log10(abs(mean))))))
    return 3


def format_mean_ci(mean: float, half_width: float, digits: int | None = None) -> str:
    """'m ± h' (just 'm' without an interval, '–' without a mean), with a true minus sign."""
    if not math.isfinite(mean):
        return "–"
    d = _decimals(half_width, mean) if digits is None else digits
    if not math.isfinite(half_width):
        return signed(mean, d)
    return f"{signed(mean, d)} ± {half_width:.{d}f}"


def _family_label(family: str) -> str:
    """'SGD', 'Adam' (a family the registry does not know keeps its name)."""
    f = methods.FAMILIES.get(family)
    return f.label if f is not None else family


def _order_of(key: tuple[Any, Any, Any]) -> tuple[int, tuple[int, float], str]:
    """:func:`method_order` of an (optimizer, gamma, family) triple of a frame."""
    return method_order(str(key[0]), float(key[1]), str(key[2]))


def _split_label(method: str) -> tuple[str, float]:
    """The optimizer and gamma of a method label: 'sgd_os-g5' -> ('sgd_os', 5.0); any other label (a
    baseline, a user's optimizer) is its optimizer, at gamma 0."""
    opt, sep, g = method.rpartition("-g")
    if sep and methods.is_overshoot(opt):
        try:
            return opt, float(g)
        except ValueError:
            pass
    return method, 0.0


def _method_label(method: str, family_baseline: str | None = None) -> str:
    opt, gamma = _split_label(method)
    label = methods.display_label(opt, gamma)
    m = methods.METHODS.get(opt)
    if family_baseline == method and m is not None and m.overshoot:  # gamma 0 standing in for CM/Adam
        label += f" (= {methods.METHODS[m.baseline].display})"
    return label


def _paper_cell(row: pd.Series) -> str:
    s = row["paper_saving"]
    if isinstance(s, float) and math.isfinite(s):
        return signed(s)
    if pd.isna(row["paper_k_baseline"]):
        return "baseline " + M.NOT_REACHED
    if pd.isna(row["paper_k_method"]):
        return M.NOT_REACHED
    return "undefined"


def _seed_cell(row: pd.Series) -> str:
    if row["seed_n"] == 0:
        if row["seed_pairs"] == 0:
            return "no seed in common"
        if row["seed_baseline_not_reached"] == row["seed_pairs"]:
            return "baseline " + M.NOT_REACHED
        return M.NOT_REACHED
    return format_mean_ci(row["seed_mean"], row["seed_half_width"], 1)


def _windows(savings: pd.DataFrame) -> str:
    ws = savings.drop_duplicates("section")
    vals = sorted(set(ws["window"]))
    if len(vals) == 1:
        return f"{int(vals[0])}-step trailing mean"
    return (
        "trailing mean of "
        + ", ".join(f"{int(w)} ({lab})" for w, lab in zip(ws["window"], ws["label"], strict=True))
        + " steps"
    )


def savings_tables(savings: pd.DataFrame, reduction: float, section: str) -> list[Table]:
    """The paper-style and the per-seed savings tables of one section's rows."""
    if savings.empty:
        return []
    pct = f"{reduction * 100:g}%"
    win = _windows(savings)
    task = str(savings["label"].iloc[0])
    method = [_method_label(m) for m in savings["method"]]
    baseline = [_method_label(b, b) for b in savings["baseline"]]
    paper_disp = pd.DataFrame(
        {
            "Method": method,
            "Baseline": baseline,
            "k_B": savings["paper_k_baseline"].map(_num),
            "k_O": savings["paper_k_method"].map(_num),
            "Saving %": [_paper_cell(r) for _, r in savings.iterrows()],
        }
    )
    seed_disp = pd.DataFrame(
        {
            "Method": method,
            "Baseline": baseline,
            "Pairs": savings["seed_pairs"].map(str),
            "Reached": savings["seed_n"].map(str),
            "Steps B": savings["seed_steps_baseline"].map(lambda x: _num(x, 0)),
            "Steps O": savings["seed_steps_method"].map(lambda x: _num(x, 0)),
            "Saving % ± CI": [_seed_cell(r) for _, r in savings.iterrows()],
            "O missed": savings["seed_not_reached"].map(str),
            "B missed": savings["seed_baseline_not_reached"].map(str),
        }
    )
    paper_cols = ["section", "task", "protocol", "window", "family", "optimizer", "gamma", "method"]
    paper_cols += ["baseline", "threshold", "paper_k_baseline", "paper_k_method", "paper_saving"]
    seed_cols = [*paper_cols[:9], *(c for c in SAVINGS_COLUMNS if c.startswith("seed"))]
    return [
        Table(
            "savings_paper",
            f"{task}: step saving to {pct} loss reduction computed as in the paper: seed-mean training loss, "
            f"{win} (the notebook's, leaving out the window that ends at the last step), threshold "
            f"{pct} of the baseline's reduction, k_B and k_O = first index of the smoothed curve at or "
            "below it",
            savings[paper_cols].reset_index(drop=True),
            paper_disp.reset_index(drop=True),
            section=section,
        ),
        Table(
            "savings_per_seed",
            f"{task}: step saving to {pct} loss reduction per seed (this project's variant, not the "
            f"paper's): each seed's run against the same seed's baseline, {win}, steps counted at the "
            "window's end; "
            "mean ± 95% t-interval over the seeds where both reached the baseline's threshold (Reached, of "
            "Pairs); O missed / B missed: seeds where the method / the baseline never reached it",
            savings[seed_cols].reset_index(drop=True),
            seed_disp.reset_index(drop=True),
            section=section,
        ),
    ]


def vs_gamma_table(savings: pd.DataFrame, kind: str, reduction: float) -> Table | None:
    """Savings vs gamma: rows (family, section), plus a mean row per family over several sections;
    columns: the second baseline (NAG or NAdam at gamma = mu or b1), each gamma, then the user's methods."""
    if savings.empty:
        return None
    pct = f"{reduction * 100:g}%"
    value = "paper_saving" if kind == "paper" else "seed_mean"
    is_os = savings["optimizer"].map(lambda o: methods.is_overshoot(str(o))).astype(bool)
    is_second = savings["optimizer"].map(lambda o: is_second_baseline(str(o))).astype(bool)
    gammas = sorted(set(savings.loc[is_os, "gamma"]))
    own = savings[~is_os & ~is_second]
    own_methods = set(zip(own["optimizer"], own["gamma"], own["family"], strict=True))
    own_columns = [methods.display_label(str(o), float(g)) for o, g, _ in sorted(own_methods, key=_order_of)]
    column = [
        f"γ={g:g}" if os_ else SECOND_COLUMN if sec else methods.display_label(str(o), float(g))
        for o, g, os_, sec in zip(savings["optimizer"], savings["gamma"], is_os, is_second, strict=True)
    ]
    rows = savings.assign(
        column=column,
        cell=[(_paper_cell(r) if kind == "paper" else _seed_cell(r)) for _, r in savings.iterrows()],
        fam=savings["family"].map(lambda f: _family_label(str(f)) + " family"),
    )
    fam_rank = {_family_label(str(f)) + " family": family_rank(str(f)) for f in savings["family"]}
    columns = [SECOND_COLUMN, *(f"γ={g:g}" for g in gammas), *dict.fromkeys(own_columns)]
    disp = rows.pivot_table(
        index=["fam", "label"], columns="column", values="cell", aggfunc="first", sort=False
    )
    disp = disp.reindex(columns=[c for c in columns if c in disp.columns]).fillna("–")
    if savings["section"].nunique() > 1:
        means = rows.groupby(["fam", "column"], sort=False)[value].agg(["mean", "count", "size"])
        for fam in rows["fam"].unique():
            cells = {}
            for col in disp.columns:
                if (fam, col) in means.index:
                    m = means.loc[(fam, col)]
                    n, size = int(m["count"]), int(m["size"])
                    cells[col] = f"{signed(float(m['mean']))} ({n}/{size} sections)" if n else "–"
            disp.loc[(fam, "mean over sections"), :] = pd.Series(cells)
        disp = disp.sort_index(
            level=0, key=lambda idx: idx.map(lambda f: fam_rank.get(f, len(fam_rank))), sort_remaining=False
        )
    disp = disp.fillna("–").reset_index().rename(columns={"fam": "Family", "label": "Task"})
    disp.columns.name = None
    data = rows[["section", "task", "family", "method", "x_gamma", value, "seed_half_width"]].rename(
        columns={"x_gamma": "gamma", value: "saving"}
    )
    if kind == "paper":
        data = data.drop(columns="seed_half_width")
    name = "savings_vs_gamma" if kind == "paper" else "savings_vs_gamma_per_seed"
    how = "paper-style" if kind == "paper" else "per-seed mean ± 95% t-interval (this project's variant)"
    return Table(name, f"Step saving % to {pct} loss reduction vs γ, {how}; {_windows(savings)}", data, disp)


def table1_table(t1: pd.DataFrame, sections: Sequence[Section], alpha: float) -> Table | None:
    """Table 1, one column per section (task), one row per method under its family's header."""
    if t1.empty:
        return None
    sub = []
    for s in sections:
        r = s.records[0]
        if r.metric == "accuracy":  # shown in percent; the CSV keeps the run's own scale
            sub.append("test acc. %")
        else:
            what = "test MSE" if s.task == "housing" else "test loss"
            sub.append(what + ("" if r.metric_scale == 1 else f" ×{r.metric_scale:g}"))
    pct = {s.key: 100.0 if s.records[0].metric == "accuracy" else 1.0 for s in sections}
    table = Table(
        "table1",
        "Best test metric over epochs (higher accuracy, lower loss is better; accuracy in %), mean ± 95% "
        "t-interval over "
        f"seeds; bold: best of its family; {BETTER} / {WORSE}: significantly better / worse than the "
        f"better of the family's two baselines (two-sided paired t-test by seed, α = {alpha:g})",
        t1.reset_index(drop=True),
        pd.DataFrame(),
        subheader=["", *sub],
        heading="Table 1: best test metric",
    )
    scale = t1["section"].map(pct)
    order = [
        method_order(str(o), float(g), str(f))
        for o, g, f in zip(t1["optimizer"], t1["gamma"], t1["family"], strict=True)
    ]
    rank = {k: i for i, k in enumerate(sorted(set(order)))}
    long = t1.assign(
        row=[rank[k] for k in order],
        cell=[
            format_mean_ci(m, h) for m, h in zip(t1["mean"] * scale, t1["half_width"] * scale, strict=True)
        ],
        mark=[
            {w for w, on in (("bold", b), ("better", u), ("worse", d)) if on}
            for b, u, d in zip(t1["best"], t1["better"], t1["worse"], strict=True)
        ],
    )
    cells = long.pivot_table(index="row", columns="section", values="cell", aggfunc="first")
    marks = long.pivot_table(index="row", columns="section", values="mark", aggfunc="first")
    keys = [s.key for s in sections]
    cells, marks = cells.reindex(columns=keys).sort_index(), marks.reindex(columns=keys).sort_index()
    rows = long.drop_duplicates("row").set_index("row").sort_index()
    disp = cells.fillna("–").set_axis([s.label for s in sections], axis=1)
    labels = [
        methods.display_label(str(o), float(g)) for o, g in zip(rows["optimizer"], rows["gamma"], strict=True)
    ]
    disp.insert(0, "Method", labels)
    table.display = disp.reset_index(drop=True)
    for i, row_marks in enumerate(marks.itertuples(index=False)):
        for sec, m in zip(sections, row_marks, strict=True):
            for what in m if isinstance(m, set) else ():
                table.mark(i, sec.label, what)
    families = rows["family"].astype(str).to_numpy()
    for family in sorted(set(families), key=family_rank):
        idx = np.flatnonzero(families == family)
        table.groups.append((_family_label(family) + " family", int(idx[0]), int(idx[-1])))
    return table


def headline_table(head: pd.DataFrame, paper: bool) -> Table | None:
    if head.empty:
        return None
    disp = pd.DataFrame(
        {
            "Comparison": head["comparison"],
            "γ": head["gamma"].map(lambda g: f"{g:g}"),
            "Sections": head["sections"].map(str),
            "Measured %": head["measured"].map(_num),
        }
    )
    if paper:
        disp["Paper %"] = head["paper"].map(lambda x: _num(x, 2))
        disp["Difference"] = head["difference"].map(
            lambda x: "–" if not math.isfinite(x) else ("+" if x >= 0 else "") + signed(x)
        )
    caption = "Headline: mean paper-style step saving over the task sections measured" + (
        " beside the paper's (the mean over its 7 tasks, paper section 6)" if paper else ""
    )
    return Table("headline", caption, head, disp)


def _hp(r: RunRecord, key: str) -> str:
    """A hyperparameter of a run as shown in the protocol table ('–' when the config lacks it)."""
    v = (r.config.get("hparams") or {}).get(key)
    if v is None:
        return "–"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _seed_list(seeds: Sequence[int]) -> str:
    s = sorted(set(seeds))
    if len(s) > 3 and all(b - a == s[1] - s[0] for a, b in itertools.pairwise(s)):
        return f"{len(s)} ({s[0]}, {s[1]}, …, {s[-1]})"
    return f"{len(s)} (" + ", ".join(map(str, s)) + ")"


def _protocol_method(method: str, runs: Sequence[RunRecord], family_baseline: str | None) -> str:
    """A method as the protocol table lists it: its label, a user's optimizer with its class and arguments
    ('radam (torch.optim.RAdam, decoupled_weight_decay=True)')."""
    label = _method_label(method, family_baseline)
    target = runs[0].config.get("optimizer_target")
    if not target:
        return label
    kwargs = runs[0].config.get("optimizer_kwargs") or {}
    return f"{label} (" + ", ".join([str(target), *(f"{k}={v}" for k, v in kwargs.items())]) + ")"


def protocol_table(sections: Sequence[Section], reduction: float) -> Table:
    """What produced the numbers: per section and family, the settings every run there shares."""
    rows = []
    for sec in sections:
        for family in sorted(sec.protocols, key=family_rank):
            recs = [r for r in sec.records if r.family == family]
            r = recs[0]
            steps = sorted({x.steps for x in recs})
            betas = f"β1 {_hp(r, 'momentum')}, β2 {_hp(r, 'beta2')}" if family == "adam" else None
            rows.append(
                {
                    "section": sec.key,
                    "Task": sec.label,
                    "Family": _family_label(family),
                    "Protocol": sec.protocols[family],
                    "Steps": "/".join(f"{s:,}" for s in steps),
                    "Epochs": _hp(r, "epochs"),
                    "Max steps": str(r.config.get("max_steps") or "–"),
                    "Batch": _hp(r, "batch_size"),
                    "lr": _hp(r, "lr"),
                    "Momentum": betas or f"μ {_hp(r, 'momentum')}",
                    "Weight decay": _hp(r, "weight_decay"),
                    "Schedule": _hp(r, "schedule"),
                    "Preset": r.config.get("preset", "–"),
                    "Delay": _hp(r, "delay") if family == "adam" else "–",
                    "Precision": r.config.get("precision", "–"),
                    "Methods": ", ".join(
                        _protocol_method(m, runs, sec.baseline(family))
                        for m, runs in _by_method(recs).items()
                    ),
                    "Seeds": _seed_list([x.seed for x in recs]),
                    "Runs": len(recs),
                    "Window": f"{sec.window}" + (" (shrunk)" if sec.window_note else ""),
                    "Reduction": f"{reduction * 100:g}%",
                }
            )
    df = pd.DataFrame(rows)
    disp = df.drop(columns=["section"]).set_index(["Task", "Family"]).T
    disp.columns = [f"{t}, {f} family" for t, f in disp.columns]
    disp = disp.astype(str).rename_axis("Setting").reset_index()
    return Table(
        "protocol",
        "Protocol: the settings shared by every run compared in each task section and family (seeds and "
        "the method's optimizer and γ aside), the smoothing window and the loss reduction of the savings",
        df,
        disp,
        tex_spec="l" * len(disp.columns),
    )


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
            "Threads": data["threads"].replace("", "–"),
            "torch": data["torch"],
            "Python": data["python"],
            "Package": data["overshoot"],
            "Revision": [r + ("*" if d else "") for r, d in zip(data["git_rev"], data["dirty"], strict=True)],
            "Runs": data["runs"].map(str),
            "Trained (UTC)": [_span(a, b) for a, b in zip(data["started"], data["ended"], strict=True)],
        }
    )
    revs = data.drop_duplicates("git_rev")
    n_dirty = int(revs["dirty"].sum())
    devices = sorted(set(data["device"]))
    summary = (
        f"{len(used)} runs on {len(devices)} device{'s' if len(devices) != 1 else ''} "
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


def _span(start: Any, end: Any) -> str:
    """'2026-12-01 09:35 – 09:37' (the date once when both ends share it); '?' for a missing end."""

    def minute(t: Any) -> str:
        return t[:16].replace("T", " ") if isinstance(t, str) and t else "?"

    a, b = minute(start), minute(end)
    return f"{a} – {b[11:] if len(b) > 11 and a[:10] == b[:10] else b}"


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


# --------------------------------------------------------------------------------------------- rendering


def _cell_md(t: Table, i: int, c: str, v: Any) -> str:
    s = str(v).replace("|", "\\|")
    marks = t.marks.get((i, c), set())
    if "bold" in marks:
        s = f"**{s}**"
    if "better" in marks:
        s += " " + BETTER
    if "worse" in marks:
        s += " " + WORSE
    return s


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table of ``table.display`` (bold as **x**, significance as ↑ / ↓)."""
    cols = [str(c) for c in table.display.columns]
    head = cols
    if table.subheader:
        head = [f"{c} ({s})" if s else c for c, s in zip(cols, table.subheader, strict=True)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i, row in enumerate(table.display.itertuples(index=False)):
        lines.append(
            "| " + " | ".join(_cell_md(table, i, c, v) for c, v in zip(cols, row, strict=True)) + " |"
        )
    return "\n".join(lines) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "γ": r"$\gamma$",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "μ": r"$\mu$",
    "×": r"$\times$",
    "–": "--",
    MINUS: r"$-$",
    BETTER: r"$\uparrow$",
    WORSE: r"$\downarrow$",
    "…": r"\ldots{}",
}


def tex_escape(s: str) -> str:
    """``s`` with LaTeX special characters escaped and ±, γ, ×, −, ↑, ↓ as math."""
    parts = re.split(r"\b(k_[BO])\b", s)  # the paper's step counts k_B, k_O as math
    out = "".join(f"${p}$" if i % 2 else "".join(_TEX.get(ch, ch) for ch in p) for i, p in enumerate(parts))
    return re.sub(r"(?<!\\)\$\$", "", out)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s.lower()).strip("-")


def _tex_width(cols: Sequence[str], display: pd.DataFrame) -> float:
    """Rough width in inches of the table at \\small with 4pt column separation."""
    widths = []
    for j, c in enumerate(cols):
        cells = [str(c), *(str(v) for v in display.iloc[:, j])]
        widths.append(max(len(x) for x in cells) * 0.075 + 0.11)
    return sum(widths)


def to_latex(table: Table, label: str) -> str:
    """A booktabs table of ``table.display`` with caption and ``\\label{label}``: ``table`` when it fits
    a column of a two-column paper, else ``table*``; family row groups as \\multicolumn headers with a
    \\cmidrule; bold as \\textbf, significance as $\\uparrow$ / $\\downarrow$."""
    cols = [str(c) for c in table.display.columns]
    n = len(cols)
    width = _tex_width(cols, table.display)
    env = "table" if width <= 3.3 else "table*"
    size = r"\small" if width <= 6.9 else r"\footnotesize"
    spec = "l" * min(n, 2 if table.name not in ("table1", "protocol") else 1)
    spec = table.tex_spec or spec + "r" * (n - len(spec))
    lines = [
        rf"\begin{{{env}}}[t]",
        r"\centering",
        size,
        r"\setlength{\tabcolsep}{" + ("3pt" if table.name == "table1" else "4pt") + "}",
        r"\caption{" + tex_escape(table.caption) + "}",
        r"\label{" + label + "}",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(tex_escape(c) for c in cols) + r" \\",
    ]
    if table.subheader:
        lines.append(" & ".join(r"{\scriptsize " + tex_escape(s) + "}" for s in table.subheader) + r" \\")
    lines.append(r"\midrule")
    starts = {g[1]: g for g in table.groups}
    for i, row in enumerate(table.display.itertuples(index=False)):
        if i in starts:
            if i > 0:
                lines.append(r"\addlinespace")
            lines.append(rf"\multicolumn{{{n}}}{{l}}{{\textit{{{tex_escape(starts[i][0])}}}}} \\")
            lines.append(rf"\cmidrule(lr){{1-{n}}}")
        cells = []
        for c, v in zip(cols, row, strict=True):
            s = tex_escape(str(v))
            if table.name == "table1":  # the interval in a smaller size: seven tasks fit the text width
                s = s.replace(r" $\pm$ ", r"{\scriptsize${}\pm{}$", 1) + ("}" if " ± " in str(v) else "")
            marks = table.marks.get((i, c), set())
            if "bold" in marks:
                s = r"\textbf{" + s + "}"
            if "better" in marks:
                s += r"$^{\uparrow}$"
            if "worse" in marks:
                s += r"$^{\downarrow}$"
            cells.append(s)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def tex_label(table: Table, report_key: str) -> str:
    """A label unique within a report: the table's name, then its section (task and protocols) or, for a
    table over the whole report, the report's tasks and protocol digest."""
    return "tab:" + _slug(table.name) + "-" + (table.section or report_key)


# --------------------------------------------------------------------------------------------- driver


@dataclass
class Report:
    """Everything the report computed: the tables, the sections and the inputs of the figures."""

    tables: list[Table]
    sections: list[Section]
    records: list[RunRecord]
    savings: pd.DataFrame
    left_out: pd.DataFrame
    scan: Scan
    provenance: str
    headline: Table | None
    protocol: Table
    key: str  # the report's tasks and a digest of its sections, for LaTeX labels
    window: int
    reduction: float


def build_report(
    runs: Scan | Sequence[Any],
    reduction: float = 0.95,
    window: int = 400,
    alpha: float = 0.05,
    paper: bool = False,
    protocols: Sequence[str] = (),
    roots: Sequence[Path] = (),
) -> Report:
    """All tables of the report from a :class:`~overshoot.results.Scan` (or what :func:`scan` takes);
    ``protocols`` keeps only runs whose protocol id starts with one of them. Raises ReportError when no
    run is usable."""
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
    savings = savings_frame(sections, reduction)
    key = (
        "-".join(sorted({s.task for s in sections}))
        + "-"
        + hashlib.sha256(" ".join(s.key for s in sections).encode()).hexdigest()[:6]
    )
    protocol = protocol_table(sections, reduction)
    prov, prov_summary = provenance_table(sc, records)
    head = headline_table(headline_frame(savings, paper), paper)
    tables: list[Table] = [protocol, prov]
    if head is not None:
        tables.append(head)
    t1 = table1_table(table1_frame(sections, alpha), sections, alpha)
    if t1 is not None:
        tables.append(t1)
    for sec in sections:
        tables += savings_tables(savings[savings["section"] == sec.key], reduction, sec.key)
    for kind in ("paper", "seed"):
        vg = vs_gamma_table(savings, kind, reduction)
        if vg is not None:
            tables.append(vg)
    ex = excluded_table(sc.left_out, roots)
    if ex is not None:
        tables.append(ex)
    return Report(
        tables,
        sections,
        records,
        savings,
        sc.left_out,
        sc,
        prov_summary,
        head,
        protocol,
        key,
        window,
        reduction,
    )


def _notes(report: Report) -> list[str]:
    notes = []
    for sec in report.sections:
        if sec.window_note:
            notes.append(f"{sec.label}: {sec.window_note}.")
        lengths = sorted({r.steps for r in sec.records})
        if len(lengths) > 1:
            notes.append(
                f"{sec.label}: runs of one protocol differ in length ({', '.join(map(str, lengths))} steps): "
                "the paper-style seed-mean curves are cut to the shortest run of each method."
            )
        for family in sorted(sec.protocols, key=family_rank):
            base = sec.baseline(family)
            fam = _family_label(family)
            f = methods.FAMILIES.get(family)
            if f is None:
                notes.append(f"{sec.label}: family {family} has no known baseline.")
            elif base is None:
                notes.append(
                    f"{sec.label}: the {fam} family has no baseline run "
                    f"({methods.display_label(f.baseline, 0)} or {methods.display_label(f.overshoot, 0)}) in "
                    f"protocol {sec.protocols[family]}: no savings for it (add optimizer={f.baseline} runs)."
                )
            elif base != f.baseline:
                notes.append(
                    f"{sec.label}: {_method_label(base, base)} is the {fam} family's baseline "
                    f"(no {methods.display_label(f.baseline, 0)} run)."
                )
    tasks = pd.Series([s.task for s in report.sections]).value_counts()
    for task, n in tasks.items():
        if n > 1:
            notes.append(
                f"{task_label(str(task))} has {n} protocols: one section each, compared only within it "
                "(pick one with --protocol ID)."
            )
    return notes


def render_markdown(report: Report, figures: Sequence[Path] = ()) -> str:
    """The whole report as one Markdown document: summary, protocol, provenance, headline, Table 1, then
    one part per section with its savings tables, the savings vs gamma, the ``figures`` (paths relative
    to the report) with their captions and the runs left out."""
    used, out_n = len(report.records), len(report.left_out)
    parts = [
        "# overshoot-bench report\n",
        f"{used} completed runs used, {out_n} left out; {len(report.sections)} task section"
        f"{'s' if len(report.sections) != 1 else ''}. {report.provenance}.\n",
    ]
    notes = _notes(report)
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes) + "\n")
    by_section: dict[str, list[Table]] = {}
    for t in report.tables:
        if t.section:
            by_section.setdefault(t.section, []).append(t)
    for t in report.tables:
        if t.section or t.name == "excluded_runs":
            continue
        parts.append(
            f"## {t.heading or t.caption}\n\n"
            + ("" if not t.heading else t.caption + ".\n\n")
            + to_markdown(t)
        )
        if t.name == "table1":
            for sec in report.sections:
                if sec.key in by_section:
                    parts.append(f"## {sec.label}: savings (protocol {', '.join(sec.protocols.values())})\n")
                    for st in by_section[sec.key]:
                        parts.append(f"### {st.caption}\n\n" + to_markdown(st))
    ex = [t for t in report.tables if t.name == "excluded_runs"]
    if figures:
        caps = figure_captions(report)
        parts.append("## Figures\n")
        for f in figures:
            parts.append(
                f"![{f.stem}]({f.as_posix()})\n\n{caps.get(f.stem, f.stem)} (PDF: {f.with_suffix('.pdf')})\n"
            )
    parts.append("## Runs left out\n\n" + (to_markdown(ex[0]) if ex else "none\n"))
    return "\n".join(parts)


def write_tables(report: Report, out: Path, formats: Sequence[str]) -> list[Path]:
    """Write each table once per format as ``<out>/<name>.<fmt>`` (atomically; per-section tables of one
    name go in one file, a LaTeX table each); the written paths. Empty tables are not written."""
    written = []
    names: dict[str, list[Table]] = {}
    for t in report.tables:
        if not t.display.empty:
            names.setdefault(t.name, []).append(t)
    for name, ts in names.items():
        for fmt in formats:
            if fmt == "md":
                text = "\n".join(f"## {t.caption}\n\n" + to_markdown(t) for t in ts)
            elif fmt == "tex":
                text = "\n".join(to_latex(t, tex_label(t, report.key)) for t in ts)
            elif fmt == "csv":
                text = pd.concat([t.data for t in ts], ignore_index=True).to_csv(index=False)
            else:
                continue
            path = out / f"{name}.{fmt}"
            atomic_write_text(path, text)
            written.append(path)
    return written


def terminal_summary(report: Report, out: Path, n_files: int) -> str:
    """What the terminal shows: the headline, the protocols in brief, the notes and where the files went."""
    lines = [
        f"{len(report.records)} completed runs used, {len(report.left_out)} left out; {report.provenance}.",
        "",
    ]
    if report.headline is not None:
        lines += [report.headline.caption + ":", to_markdown(report.headline)]
    lines.append("Protocols:")
    for _, row in report.protocol.data.iterrows():
        lines.append(
            f"  {row['Task']}, {row['Family']} family, protocol {row['Protocol']}: {row['Steps']} steps, "
            f"batch {row['Batch']}, "
            f"lr {row['lr']}, {row['Momentum']}, wd {row['Weight decay']}, {row['Schedule']}, preset "
            f"{row['Preset']}, seeds {row['Seeds']}, window {row['Window']}"
        )
    notes = _notes(report)
    if notes:
        lines += ["", *notes]
    if len(report.left_out):
        lines.append(f"{len(report.left_out)} runs left out: see excluded_runs.md")
    opened = [f for f in ("report.html", "report.md") if (out / f).exists()]
    lines += ["", f"Wrote {n_files} files to {out}/" + (f" (open {' or '.join(opened)})" if opened else "")]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ReportError(message)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = _Parser(
        prog="overshoot-bench-report",
        description="Savings tables, Table 1 and figures of the paper from an overshoot-bench run store.",
    )
    p.add_argument("runs", nargs="*", default=["runs"], help="run store directories (default: runs)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: <first RUNS>/report)")
    p.add_argument("--format", default="md,csv,tex,html", help="comma-separated subset of md,csv,tex,html")
    p.add_argument(
        "--paper", action="store_true", help="show the paper's headline numbers and the difference"
    )
    p.add_argument("--reduction", type=float, default=95.0, help="loss reduction in percent (default 95)")
    p.add_argument(
        "--window",
        type=int,
        default=400,
        help="trailing-mean window in steps (default 400, the paper's; "
        f"at most 1/{WINDOW_FRACTION} of a section's shortest run)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the t-tests")
    p.add_argument("--protocol", default="", help="report only these protocol ids (comma-separated prefixes)")
    p.add_argument("--no-figures", action="store_true", help="write only the tables")
    a = p.parse_args(argv)
    a.formats = [f.strip() for f in a.format.split(",") if f.strip()]
    bad = [f for f in a.formats if f not in FORMATS]
    if bad or not a.formats:
        raise ReportError(
            f"unknown format {','.join(bad) or a.format!r}: "
            f"use a comma-separated subset of {','.join(FORMATS)}"
        )
    if not 0 < a.reduction <= 100:
        raise ReportError(
            f"--reduction {a.reduction} is not a percentage in (0, 100]: pass e.g. --reduction 95"
        )
    if a.window < 1:
        raise ReportError(f"--window {a.window} must be a positive number of steps")
    if not 0 < a.alpha < 1:
        raise ReportError(f"--alpha {a.alpha} must lie in (0, 1)")
    a.protocols = [x.strip() for x in a.protocol.split(",") if x.strip()]
    return a


def write_report(report: Report, out: Path, formats: Sequence[str], figures: bool = True) -> list[Path]:
    """Every output file of ``report`` under ``out``: the tables, report.md, the figures and report.html."""
    written = write_tables(report, out, formats)
    figs: list[Path] = []
    if figures:
        from overshoot.figures import write_all

        figs = write_all(report, out / "figures")
        written += figs
    pngs = [f for f in figs if f.suffix == ".png"]
    if "md" in formats:
        atomic_write_text(out / "report.md", render_markdown(report, [f.relative_to(out) for f in pngs]))
        written.append(out / "report.md")
    if "html" in formats:
        atomic_write_text(out / "report.html", render_html(report, pngs))
        written.append(out / "report.html")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 on bad input, with one line on stderr)."""
    try:
        a = _parse(argv)
        sc = scan(a.runs)
        if sc.table.empty:
            raise ReportError(f"no runs found under {' '.join(map(str, a.runs))}: pass a run store directory")
        report = build_report(
            sc, a.reduction / 100, a.window, a.alpha, a.paper, a.protocols, [Path(r) for r in a.runs]
        )
        out = a.out if a.out is not None else Path(a.runs[0]) / "report"
        written = write_report(report, out, a.formats, not a.no_figures)
    except (ReportError, OSError, ValueError) as e:
        # Unusable input (paths, arguments): one line on stderr, no traceback.
        print("overshoot-bench-report: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    print(terminal_summary(report, out, len(written)))
    return 0


# --------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:80em;
padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-variant-numeric:tabular-nums}
th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:left;white-space:nowrap}
th{background:#f4f4f4;cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}tr.group td{font-style:italic;background:#fafafa}
.caption{color:#555;max-width:60em}.better{color:#1a7f37}.worse{color:#b42318}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;max-width:60em}
"""

_JS = """
(function(){
  function key(text){
    var t=text.replace(/\\u2212/g,'-').replace(/,/g,'').trim();
    var m=t.match(/^[-+]?\\d*\\.?\\d+(e[-+]?\\d+)?/i);
    return m?parseFloat(m[0]):null;
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.querySelectorAll('thead th');
    heads.forEach(function(th,col){
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        heads.forEach(function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0];
        var rows=Array.prototype.slice.call(body.rows)
          .filter(function(r){return !r.classList.contains('group');});
        rows.sort(function(a,b){
          var x=a.cells[col].textContent,y=b.cells[col].textContent,kx=key(x),ky=key(y),c;
          if(kx!==null&&ky!==null){c=kx-ky;}else if(kx!==null){c=-1;}
          else if(ky!==null){c=1;}else{c=x.localeCompare(y);}
          return asc?c:-c;
        });
        body.querySelectorAll('tr.group').forEach(function(g){g.remove();});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
})();
"""


def _esc(s: Any) -> str:
    import html

    return html.escape(str(s), quote=True)


def to_html(table: Table) -> str:
    """A sortable HTML table of ``table.display`` (click a header to sort; family groups as header rows)."""
    cols = [str(c) for c in table.display.columns]
    head = cols
    if table.subheader:
        head = [f"{c} ({s})" if s else c for c, s in zip(cols, table.subheader, strict=True)]
    out = [f'<table class="sortable" data-name="{_esc(table.name)}">', "<thead><tr>"]
    out += [f'<th scope="col">{_esc(c)}</th>' for c in head]
    out.append("</tr></thead><tbody>")
    starts = {g[1]: g[0] for g in table.groups}
    for i, row in enumerate(table.display.itertuples(index=False)):
        if i in starts:
            out.append(f'<tr class="group"><td colspan="{len(cols)}">{_esc(starts[i])}</td></tr>')
        cells = []
        for c, v in zip(cols, row, strict=True):
            s = _esc(v)
            marks = table.marks.get((i, c), set())
            if "bold" in marks:
                s = f"<strong>{s}</strong>"
            if "better" in marks:
                s += f' <span class="better" title="significantly better">{BETTER}</span>'
            if "worse" in marks:
                s += f' <span class="worse" title="significantly worse">{WORSE}</span>'
            cells.append(f"<td>{s}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def figure_captions(report: Report) -> dict[str, str]:
    """The caption of each figure by file stem (the window and the band named)."""
    ws = sorted({s.window for s in report.sections})
    win = (
        f"{ws[0]}-step"
        if len(ws) == 1
        else "per-section (" + ", ".join(f"{s.label} {s.window}" for s in report.sections) + ")"
    )
    pct = f"{report.reduction * 100:g}%"
    return {
        "loss_grid": (
            f"Training loss at the base weights, seed mean of the {win} trailing mean "
            "(plotted at the window's "
            f"last step; the first window is shaded), band = seed min–max; dashed: the {pct} reduction "
            "threshold from the family baseline, ticks: each method's first crossing (k_B, k_O). Right: test "
            "loss per epoch, seed mean and min–max."
        ),
        "saving_vs_gamma": (
            f"Steps saved to {pct} loss reduction vs γ ({win} window): per-seed mean ± 95% t-interval "
            "(this project's variant, seed count in the legend) and paper-style (×); the baseline at 0, "
            "NAG at "
            "γ = μ, NAdam at γ = β1; the two families are offset sideways."
        ),
        "gamma_mu_plane": (
            "The γ-μ plane of SGD with overshoot: CM, NAG, plain SGD and the negative-momentum region, the "
            "paper's empirical optimum γ*, the γ the runs tried and the measured best γ per task section "
            "(largest per-seed mean saving)."
        ),
        "distance_vs_gamma": "Average weighted distance vs γ per run, coloured by its mean training loss.",
    }


def render_html(report: Report, pngs: Sequence[Path]) -> str:
    """The whole report as one self-contained HTML file: protocol and provenance first, sortable tables,
    the figures embedded as PNG data; no network access needed to open it."""
    import base64

    tasks = ", ".join(s.label for s in report.sections)
    md_intro = (
        f"{len(report.records)} completed runs used, {len(report.left_out)} left out; "
        f"{len(report.sections)} task section{'s' if len(report.sections) != 1 else ''}. {report.provenance}."
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>overshoot-bench report: {_esc(tasks)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>overshoot-bench report: {_esc(tasks)}</h1>",
        f"<p>{_esc(md_intro)}</p>",
    ]
    notes = _notes(report)
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    by_section: dict[str, list[Table]] = {}
    for t in report.tables:
        if t.section:
            by_section.setdefault(t.section, []).append(t)
    for t in report.tables:
        if t.section or t.name == "excluded_runs" or t.display.empty:
            continue
        parts.append(f"<h2>{_esc(t.heading or t.caption.split(':')[0])}</h2>")
        parts.append(f'<p class="caption">{_esc(t.caption)}.</p>' + to_html(t))
        if t.name == "table1":
            for sec in report.sections:
                for st in by_section.get(sec.key, []):
                    parts.append(f"<h3>{_esc(sec.label)}: {_esc(st.name.replace('_', ' '))}</h3>")
                    parts.append(f'<p class="caption">{_esc(st.caption)}.</p>' + to_html(st))
    if pngs:
        caps = figure_captions(report)
        parts.append("<h2>Figures</h2>")
        for png in pngs:
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            cap = caps.get(png.stem, png.stem)
            parts.append(
                f'<figure id="fig-{_esc(png.stem)}"><img alt="{_esc(png.stem)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{_esc(png.stem.replace("_", " "))}: '
                f"{_esc(cap)} (PDF beside it in figures/)</figcaption></figure>"
            )
    ex = [t for t in report.tables if t.name == "excluded_runs"]
    parts.append("<h2>Runs left out</h2>" + (to_html(ex[0]) if ex else "<p>none</p>"))
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
