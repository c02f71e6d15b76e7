"""``overshoot-bench-report``: savings tables, Table 1 and the paper's figures from a run store.

Usage: ``overshoot-bench-report [RUNS...] [--out DIR] [--format md,csv,tex] [--paper] [--reduction 95]
[--window 400] [--alpha 0.05] [--no-figures]``. Completed runs are aggregated; running, failed and
diverged runs (and older duplicates of a task/method/seed) are listed and left out. Every table is written
to ``--out`` (default ``<first RUNS path>/report``) once per format, the figures (PNG and PDF) to
``<out>/figures`` unless ``--no-figures``, and the Markdown of everything is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import yaml

from overshoot import metrics as M
from overshoot.store import Run, atomic_write_text, find_runs, method_name

FORMATS = ("md", "csv", "tex")

# paper.md section 6: mean step saving (%) to 95% loss reduction over the 7 tasks, per family and gamma.
PAPER_HEADLINE: dict[tuple[str, float], float] = {
    ("sgd", 3.0): 23.77,
    ("sgd", 5.0): 26.19,
    ("sgd", 7.0): 26.54,
    ("adam", 3.0): 15.27,
    ("adam", 5.0): 19.53,
    ("adam", 7.0): 20.11,
}
COMPARISON = {"sgd": "SGDO vs CM", "adam": "AdamO vs Adam"}
# Table 1 scale of a task's metric, used only when a run.json lacks ``metric_scale`` (paper: MLP-CA MSE x100).
FALLBACK_METRIC_SCALE = {"housing": 100.0}


class ReportError(Exception):
    """Bad input to the report: printed as one line, exit status 2."""


@dataclass
class RunRecord:
    """One completed run, loaded once for every table and figure."""

    task: str
    family: str
    optimizer: str
    gamma: float
    seed: int
    metric: str
    metric_scale: float
    momentum: float | None  # mu (SGD family) or b1 (Adam family)
    path: Path
    base_loss: np.ndarray
    epochs: pd.DataFrame
    distance: np.ndarray | None = None

    @property
    def method(self) -> str:
        return method_name(self.optimizer, self.gamma)

    @property
    def label(self) -> str:
        return M.method_label(self.optimizer, self.gamma)

    @property
    def x_gamma(self) -> float:
        """Where the method sits on the gamma axis: NAG at mu, NAdam at b1, baselines at 0."""
        if self.optimizer in ("nesterov", "nadam"):
            return self.momentum if self.momentum is not None else 0.9
        return self.gamma


@dataclass
class Table:
    """A table in two forms: ``data`` (numbers, written as CSV) and ``display`` (strings, for md/tex)."""

    name: str
    title: str
    data: pd.DataFrame
    display: pd.DataFrame
    bold: set[tuple[int, str]] = field(default_factory=set)  # (row, column) cells in bold
    star: set[tuple[int, str]] = field(default_factory=set)  # (row, column) cells with a star


# --------------------------------------------------------------------------------------------- loading


def _hparam(config: Mapping[str, Any], key: str) -> Any:
    for node in (config.get("hparams"), config.get("optimizer"), config):
        if isinstance(node, Mapping) and node.get(key) is not None:
            return node[key]
    return None


def _momentum(config: Mapping[str, Any]) -> float | None:
    """mu (SGD family) or b1 (Adam family): ``hparams.momentum``, else the first of ``betas``."""
    mu = _hparam(config, "momentum")
    if mu is not None:
        return float(mu)
    betas = _hparam(config, "betas")
    return float(betas[0]) if isinstance(betas, Sequence) and betas else None


def _name(node: Any) -> str:
    """An optimizer or task name given as a string or as a config node with ``name``."""
    if isinstance(node, Mapping):
        node = node.get("name")
    return "" if node is None else str(node)


def _infer_metric(epochs: pd.DataFrame) -> str:
    """'accuracy' when the epoch log holds any accuracy, else 'loss' (for run.json files without 'metric')."""
    if "accuracy" in epochs and pd.to_numeric(epochs["accuracy"], errors="coerce").notna().any():
        return "accuracy"
    return "loss"


def load_records(runs: Iterable[Run]) -> tuple[list[RunRecord], pd.DataFrame]:
    """The completed runs as records, and a frame (path, status, reason) of the runs left out.

    Of several completed runs of one (task, method, seed) the one that ended last is kept."""
    kept: dict[tuple[str, str, int], tuple[str, RunRecord]] = {}
    left_out: list[dict[str, str]] = []
    for run in runs:
        info, cfg = run.info, run.config
        if run.status != "completed":
            left_out.append({"path": str(run.path), "status": run.status, "reason": f"status {run.status}"})
            continue
        opt = _name(info.get("optimizer") or cfg.get("optimizer"))
        task = _name(info.get("task") or cfg.get("task"))
        family = str(info.get("family") or cfg.get("family") or M.FAMILY_OF.get(opt, ""))
        steps = run.steps()
        if not opt or not task or "base_loss" not in steps or steps.empty:
            left_out.append(
                {
                    "path": str(run.path),
                    "status": run.status,
                    "reason": "no base_loss steps, task or optimizer",
                }
            )
            continue
        steps = steps.sort_values("step")
        dist = None
        if "distance" in steps:
            d = pd.to_numeric(steps["distance"], errors="coerce").to_numpy(np.float64)
            dist = d if np.isfinite(d).any() else None
        epochs = run.epochs()
        rec = RunRecord(
            task=task,
            family=family,
            optimizer=opt,
            gamma=float(info.get("gamma") or cfg.get("gamma") or 0.0),
            seed=int(info.get("seed", cfg.get("seed", 0))),
            metric=str(info.get("metric") or _infer_metric(epochs)),
            metric_scale=float(info.get("metric_scale") or FALLBACK_METRIC_SCALE.get(task, 1.0)),
            momentum=_momentum(cfg),
            path=run.path,
            base_loss=pd.to_numeric(steps["base_loss"], errors="coerce").to_numpy(np.float64),
            epochs=epochs,
            distance=dist,
        )
        key = (task, rec.method, rec.seed)
        ended = str(info.get("ended") or "")
        if key in kept:
            old_ended, old = kept[key]
            newer, older = (rec, old) if ended >= old_ended else (old, rec)
            left_out.append(
                {"path": str(older.path), "status": "completed", "reason": f"duplicate of {newer.path}"}
            )
            if newer is old:
                continue
        kept[key] = (ended, rec)
    records = sorted((r for _, r in kept.values()), key=lambda r: (r.task, r.family, r.method, r.seed))
    return records, pd.DataFrame(left_out, columns=["path", "status", "reason"])


# --------------------------------------------------------------------------------------------- numbers


SAVINGS_COLUMNS = (
    "task",
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


def _group(records: Sequence[RunRecord]) -> dict[tuple[str, str], dict[str, list[RunRecord]]]:
    out: dict[tuple[str, str], dict[str, list[RunRecord]]] = {}
    for r in records:
        out.setdefault((r.task, r.family), {}).setdefault(r.method, []).append(r)
    return out


def _mean_steps(ks: Sequence[int | None]) -> float:
    vals = [k for k in ks if k is not None]
    return float(np.mean(vals)) if vals else math.nan


def savings_frame(records: Sequence[RunRecord], reduction: float = 0.95, window: int = 400) -> pd.DataFrame:
    """One row per (task, family, non-baseline method): the paper-style and the per-seed saving
    against the family baseline (CM or Adam). Families without baseline runs get no rows."""
    rows: list[dict[str, Any]] = []
    groups = sorted(_group(records).items(), key=lambda kv: (kv[0][0], _family_rank(kv[0][1])))
    for (task, family), methods in groups:
        base_name = M.FAMILY_BASELINES.get(family, ("",))[0]
        base = methods.get(base_name)
        if not base:
            continue
        for method, runs in sorted(methods.items(), key=lambda kv: M.method_sort_key(*_og(kv[1]))):
            if method == base_name:
                continue
            ps = M.paper_saving([r.base_loss for r in base], [r.base_loss for r in runs], reduction, window)
            ss = M.per_seed_saving(
                {r.seed: r.base_loss for r in base}, {r.seed: r.base_loss for r in runs}, reduction, window
            )
            rows.append(
                {
                    "task": task,
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


def _og(runs: Sequence[RunRecord]) -> tuple[str, float]:
    return runs[0].optimizer, runs[0].gamma


def table1_frame(records: Sequence[RunRecord], alpha: float = 0.05) -> pd.DataFrame:
    """Table 1 statistics (see :func:`overshoot.metrics.table1`) of the records."""
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
        for r in records
    ]
    return M.table1(pd.DataFrame(rows, columns=list(M.TABLE1_INPUT)), alpha=alpha)


def headline_frame(savings: pd.DataFrame, paper: bool = False) -> pd.DataFrame:
    """Mean paper-style saving over tasks per family and gamma (the paper's headline), optionally beside
    the paper's numbers (paper.md section 6) and the difference measured - paper."""
    cols = ["comparison", "family", "gamma", "tasks", "tasks_not_reached", "measured"]
    if paper:
        cols += ["paper", "difference"]
    rows = []
    os_rows = savings[savings["optimizer"].astype(str).str.endswith("_os")]
    keys = set(zip(os_rows["family"], os_rows["gamma"], strict=True))
    if paper:
        keys |= set(PAPER_HEADLINE)
    for family, gamma in sorted(keys, key=lambda k: (_family_rank(k[0]), k[1])):
        sel = os_rows[(os_rows["family"] == family) & (os_rows["gamma"] == gamma)]
        vals = sel["paper_saving"].dropna()
        measured = float(vals.mean()) if len(vals) else math.nan
        row: dict[str, Any] = {
            "comparison": COMPARISON.get(family, family),
            "family": family,
            "gamma": gamma,
            "tasks": len(vals),
            "tasks_not_reached": len(sel) - len(vals),
            "measured": measured,
        }
        if paper:
            ref = PAPER_HEADLINE.get((family, gamma), math.nan)
            row["paper"] = ref
            row["difference"] = measured - ref
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------- display


def _family_rank(family: str) -> int:
    return list(COMPARISON).index(family) if family in COMPARISON else len(COMPARISON)


def _num(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or x is pd.NA:
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.{digits}f}"


def _decimals(half_width: float, mean: float) -> int:
    """Decimals that show two significant digits of the interval (4 significant of the mean without one)."""
    if math.isfinite(half_width) and half_width > 0:
        return int(min(6, max(0, 1 - math.floor(math.log10(half_width)))))
    if math.isfinite(mean) and mean != 0:
        return int(min(6, max(0, 3 - math.floor(math.log10(abs(mean))))))
    return 3


def format_mean_ci(mean: float, half_width: float, digits: int | None = None) -> str:
    """'m ± h' (just 'm' without an interval, '–' without a mean)."""
    if not math.isfinite(mean):
        return "–"
    d = _decimals(half_width, mean) if digits is None else digits
    return f"{mean:.{d}f} ± {half_width:.{d}f}" if math.isfinite(half_width) else f"{mean:.{d}f}"


def _paper_cell(row: pd.Series) -> str:
    s = row["paper_saving"]
    if isinstance(s, float) and math.isfinite(s):
        return f"{s:.1f}"
    if pd.isna(row["paper_k_baseline"]):
        return "baseline " + M.NOT_REACHED
    if pd.isna(row["paper_k_method"]):
        return M.NOT_REACHED
    return "undefined"


def _seed_cell(row: pd.Series) -> str:
    if row["seed_n"] == 0:
        return "baseline " + M.NOT_REACHED if row["seed_not_reached"] == 0 else M.NOT_REACHED
    return format_mean_ci(row["seed_mean"], row["seed_half_width"], 1)


def _label(optimizer: str, gamma: float) -> str:
    return M.method_label(optimizer, gamma)


def savings_tables(savings: pd.DataFrame, reduction: float, window: int) -> list[Table]:
    """The paper-style and the per-seed savings tables, and both savings-vs-gamma layouts."""
    pct = f"{reduction * 100:g}%"
    paper_disp = pd.DataFrame(
        {
            "Task": savings["task"],
            "Method": [_label(o, g) for o, g in zip(savings["optimizer"], savings["gamma"], strict=True)],
            "Baseline": [M.DISPLAY_NAME.get(b, b) for b in savings["baseline"]],
            "k_B (index)": savings["paper_k_baseline"].map(_num),
            "k_O (index)": savings["paper_k_method"].map(_num),
            "Saving %": [_paper_cell(r) for _, r in savings.iterrows()],
        }
    )
    seed_disp = pd.DataFrame(
        {
            "Task": savings["task"],
            "Method": paper_disp["Method"],
            "Baseline": paper_disp["Baseline"],
            "Seeds": savings["seed_n"].map(str) + "/" + savings["seeds"].map(lambda s: str(len(s.split()))),
            "Steps B": savings["seed_steps_baseline"].map(lambda x: _num(x, 0)),
            "Steps O": savings["seed_steps_method"].map(lambda x: _num(x, 0)),
            "Saving % (95% CI)": [_seed_cell(r) for _, r in savings.iterrows()],
            "Not reached": savings["seed_not_reached"].map(str),
        }
    )
    paper_cols = ["task", "family", "optimizer", "gamma", "method", "baseline", "threshold"]
    paper_cols += ["paper_k_baseline", "paper_k_method", "paper_saving"]
    seed_cols = [c for c in SAVINGS_COLUMNS if c.startswith("seed") or c in paper_cols[:6]]
    return [
        Table(
            "savings_paper",
            f"Step saving to {pct} loss reduction, computed as in the paper (seed-mean curve, "
            f"{window}-step trailing mean, steps as smoothed-array indices)",
            savings[paper_cols].reset_index(drop=True),
            paper_disp.reset_index(drop=True),
        ),
        Table(
            "savings_per_seed",
            f"Step saving to {pct} loss reduction per seed (paired by seed, real steps at the window's end), "
            "mean ± 95% t-interval over seeds where both reached it",
            savings[seed_cols].reset_index(drop=True),
            seed_disp.reset_index(drop=True),
        ),
        _vs_gamma(savings, "paper", f"Saving % to {pct} loss reduction vs gamma, paper-style"),
        _vs_gamma(savings, "seed", f"Saving % to {pct} loss reduction vs gamma, per-seed mean ± 95% CI"),
    ]


def _vs_gamma(savings: pd.DataFrame, kind: str, title: str) -> Table:
    """Rows (family, task) plus a mean-over-tasks row per family; columns: the second baseline, then gamma."""
    name = "savings_vs_gamma" if kind == "paper" else "savings_vs_gamma_per_seed"
    value_col = "paper_saving" if kind == "paper" else "seed_mean"
    gammas = (
        sorted(set(savings.loc[savings["optimizer"].str.endswith("_os"), "gamma"])) if len(savings) else []
    )
    headers = ["Family", "Task", "NAG / NAdam", *(f"γ={g:g}" for g in gammas)]
    disp_rows: list[list[str]] = []
    data_rows: list[dict[str, Any]] = []
    for family in sorted(set(savings["family"]), key=_family_rank):
        fam = savings[savings["family"] == family]
        second = M.FAMILY_BASELINES.get(family, ("", ""))[1]
        for task in sorted(set(fam["task"])):
            t = fam[fam["task"] == task]
            cells = [M.FAMILY_LABEL.get(family, family) + " family", task]
            for col in [second, *gammas]:
                sel = (
                    t[t["optimizer"] == col]
                    if isinstance(col, str)
                    else t[t["optimizer"].str.endswith("_os") & (t["gamma"] == col)]
                )
                if sel.empty:
                    cells.append("–")
                    continue
                row = sel.iloc[0]
                cells.append(_paper_cell(row) if kind == "paper" else _seed_cell(row))
                data_rows.append(
                    {
                        "family": family,
                        "task": task,
                        "method": row["method"],
                        "gamma": row["x_gamma"],
                        "saving": row[value_col],
                        **({"half_width": row["seed_half_width"]} if kind == "seed" else {}),
                    }
                )
            disp_rows.append(cells)
        cells = [M.FAMILY_LABEL.get(family, family) + " family", "mean over tasks"]
        for col in [second, *gammas]:
            sel = (
                fam[fam["optimizer"] == col]
                if isinstance(col, str)
                else fam[fam["optimizer"].str.endswith("_os") & (fam["gamma"] == col)]
            )
            vals = sel[value_col].dropna()
            cells.append(f"{vals.mean():.1f} ({len(vals)}/{len(sel)} tasks)" if len(vals) else "–")
        disp_rows.append(cells)
    return Table(name, title, pd.DataFrame(data_rows), pd.DataFrame(disp_rows, columns=headers))


def table1_table(t1: pd.DataFrame, records: Sequence[RunRecord]) -> Table:
    """Table 1 wide: one row per task, one column per method; bold = best in family, star = p < alpha."""
    methods = sorted({(r.optimizer, r.gamma) for r in records}, key=lambda m: M.method_sort_key(*m))
    labels = [_label(o, g) for o, g in methods]
    scale = {r.task: (r.metric, r.metric_scale) for r in records}
    rows: list[list[str]] = []
    bold: set[tuple[int, str]] = set()
    star: set[tuple[int, str]] = set()
    for i, task in enumerate(sorted(set(t1["task"]))):
        metric, sc = scale.get(task, ("accuracy", 1.0))
        what = ("test accuracy" if metric == "accuracy" else "test loss") + ("" if sc == 1 else f" ×{sc:g}")
        cells = [task, what]
        for (opt, gamma), label in zip(methods, labels, strict=True):
            sel = t1[(t1["task"] == task) & (t1["optimizer"] == opt) & (t1["gamma"] == gamma)]
            if sel.empty:
                cells.append("–")
                continue
            row = sel.iloc[0]
            cells.append(format_mean_ci(row["mean"], row["half_width"]))
            if row["best"]:
                bold.add((i, label))
            if row["star"]:
                star.add((i, label))
        rows.append(cells)
    disp = pd.DataFrame(rows, columns=["Task", "Metric", *labels])
    return Table(
        "table1",
        "Table 1: best test metric over epochs, mean ± 95% t-interval over seeds; bold = best in family, "
        "* = paired t-test (by seed) against the better family baseline rejects equality",
        t1.reset_index(drop=True),
        disp,
        bold,
        star,
    )


def headline_table(head: pd.DataFrame, paper: bool) -> Table:
    disp = pd.DataFrame(
        {
            "Comparison": head["comparison"],
            "γ": head["gamma"].map(lambda g: f"{g:g}"),
            "Tasks": head["tasks"].map(str),
            "Measured %": head["measured"].map(_num),
        }
    )
    if paper:
        disp["Paper %"] = head["paper"].map(lambda x: _num(x, 2))
        disp["Difference"] = head["difference"].map(lambda x: "–" if not math.isfinite(x) else f"{x:+.1f}")
    title = "Headline: mean paper-style saving over the tasks measured" + (
        " beside the paper's numbers (the mean over its 7 tasks)" if paper else ""
    )
    return Table("headline", title, head, disp)


def _device_label(info: dict[str, Any]) -> str:
    """run.json's device, with the CPU threads the run trained on where it recorded them."""
    dev, threads = str(info.get("device") or "?"), info.get("cpu_threads")
    if dev.startswith("cpu") and threads and "thread" not in dev:  # older runs put them in the device
        dev += f", {threads} thread{'s' if threads != 1 else ''}"
    return dev


def provenance_table(records: Sequence[RunRecord]) -> Table:
    """Where and with which versions the runs used ran: one row per (device, versions, git revision)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in records:
        info = json.loads((r.path / "run.json").read_text())
        v = info.get("versions") or {}
        fields = [_device_label(info), v.get("torch"), v.get("python"), v.get("overshoot")]
        fields.append(info.get("git_rev"))
        key = tuple(str(x or "?") for x in fields)
        groups.setdefault(key, []).append(info)
    rows = [
        {
            "Device": k[0],
            "torch": k[1],
            "Python": k[2],
            "overshoot-bench": k[3],
            "git revision": k[4][:12] + ("-dirty" if k[4].endswith("-dirty") else ""),
            "Runs": len(infos),
            "From": min(str(i.get("started", "?")) for i in infos)[:16],
            "To": max(str(i.get("ended", "?")) for i in infos)[:16],
        }
        for k, infos in sorted(groups.items())
    ]
    df = pd.DataFrame(rows)
    title = "Provenance: the devices and versions the runs used ran on"
    return Table("provenance", title, df, df.astype(str))


def excluded_table(left_out: pd.DataFrame) -> Table:
    disp = left_out.rename(columns={"path": "Run", "status": "Status", "reason": "Reason"})
    return Table("excluded_runs", "Runs left out", left_out, disp)


# --------------------------------------------------------------------------------------------- rendering


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table of ``table.display`` (bold as **x**, star as x\\*)."""
    cols = [str(c) for c in table.display.columns]

    def cell(i: int, c: str, v: Any) -> str:
        s = str(v).replace("|", "\\|")
        if (i, c) in table.bold:
            s = f"**{s}**"
        if (i, c) in table.star:
            s += "\\*"
        return s

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i, row in enumerate(table.display.itertuples(index=False)):
        lines.append("| " + " | ".join(cell(i, c, v) for c, v in zip(cols, row, strict=True)) + " |")
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
    "×": r"$\times$",
    "–": "--",
}


def tex_escape(s: str) -> str:
    """``s`` with LaTeX special characters escaped and ±, γ, × as math."""
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment of ``table.display`` (bold as \\textbf, star as $^*$)."""
    cols = [str(c) for c in table.display.columns]
    spec = "ll" + "r" * max(0, len(cols) - 2)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + tex_escape(table.title) + "}",
        r"\label{tab:" + table.name.replace("_", "-") + "}",
        r"\begin{tabular}{" + spec[: len(cols)] + "}",
        r"\toprule",
        " & ".join(tex_escape(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(table.display.itertuples(index=False)):
        cells = []
        for c, v in zip(cols, row, strict=True):
            s = tex_escape(str(v))
            if (i, c) in table.bold:
                s = r"\textbf{" + s + "}"
            if (i, c) in table.star:
                s += r"$^{*}$"
            cells.append(s)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(tables: Sequence[Table], out: Path, formats: Sequence[str]) -> list[Path]:
    """Write each table once per format as ``<out>/<name>.<fmt>`` (atomically); the written paths."""
    written = []
    for t in tables:
        for fmt in formats:
            if fmt == "md":
                text = f"## {t.title}\n\n" + to_markdown(t)
            elif fmt == "tex":
                text = to_latex(t)
            elif fmt == "csv":
                text = t.data.to_csv(index=False)
            else:
                raise ReportError(f"unknown format {fmt!r}: use any of {','.join(FORMATS)}")
            path = out / f"{t.name}.{fmt}"
            atomic_write_text(path, text)
            written.append(path)
    return written


# --------------------------------------------------------------------------------------------- driver


@dataclass
class Report:
    """Everything the report computed: the tables in print order, and the inputs of the figures."""

    tables: list[Table]
    records: list[RunRecord]
    savings: pd.DataFrame
    left_out: pd.DataFrame


def build_report(
    runs: Sequence[Run],
    reduction: float = 0.95,
    window: int = 400,
    alpha: float = 0.05,
    paper: bool = False,
) -> Report:
    """All tables of the report from ``runs`` (raises ReportError when no run is usable)."""
    records, left_out = load_records(runs)
    if not records:
        raise ReportError(f"none of the {len(runs)} runs found is completed: nothing to report")
    savings = savings_frame(records, reduction, window)
    tables = [
        table1_table(table1_frame(records, alpha), records),
        *savings_tables(savings, reduction, window),
        headline_table(headline_frame(savings, paper), paper),
        provenance_table(records),
        excluded_table(left_out),
    ]
    return Report(tables, records, savings, left_out)


def render_markdown(report: Report) -> str:
    """The whole report as one Markdown document."""
    parts = ["# overshoot-bench report\n", f"{len(report.records)} completed runs used.\n"]
    for t in report.tables:
        if t.name == "excluded_runs" and t.display.empty:
            parts.append("## Runs left out\n\nnone\n")
            continue
        parts.append(f"## {t.title}\n\n" + to_markdown(t))
    return "\n".join(parts)


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
    p.add_argument("--format", default="md,csv,tex", help="comma-separated subset of md,csv,tex")
    p.add_argument(
        "--paper", action="store_true", help="show the paper's headline numbers and the difference"
    )
    p.add_argument("--reduction", type=float, default=95.0, help="loss reduction in percent (default 95)")
    p.add_argument("--window", type=int, default=400, help="trailing-mean window in steps (default 400)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the t-tests")
    p.add_argument("--no-figures", action="store_true", help="write only the tables")
    a = p.parse_args(argv)
    a.formats = [f.strip() for f in a.format.split(",") if f.strip()]
    bad = [f for f in a.formats if f not in FORMATS]
    if bad or not a.formats:
        raise ReportError(
            f"unknown format {','.join(bad) or a.format!r}: use a comma-separated subset of md,csv,tex"
        )
    if not 0 < a.reduction <= 100:
        raise ReportError(
            f"--reduction {a.reduction} is not a percentage in (0, 100]: pass e.g. --reduction 95"
        )
    if a.window < 1:
        raise ReportError(f"--window {a.window} must be a positive number of steps")
    if not 0 < a.alpha < 1:
        raise ReportError(f"--alpha {a.alpha} must lie in (0, 1)")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 on bad input, with one line on stderr)."""
    try:
        a = _parse(argv)
        runs = find_runs(a.runs)
        if not runs:
            raise ReportError(f"no runs found under {' '.join(map(str, a.runs))}: pass a run store directory")
        report = build_report(runs, a.reduction / 100, a.window, a.alpha, a.paper)
        out = a.out if a.out is not None else Path(a.runs[0]) / "report"
        write_tables(report.tables, out, a.formats)
        md = render_markdown(report)
        if "md" in a.formats:
            atomic_write_text(out / "report.md", md)
        if not a.no_figures:
            from overshoot.figures import write_all

            write_all(report.records, report.savings, out / "figures", a.window, a.reduction / 100)
    except (ReportError, OSError, ValueError, yaml.YAMLError) as e:
        # Unusable input (paths, arguments, unreadable run files): one line on stderr, no traceback.
        print("overshoot-bench-report: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
