"""The report's model over the run table: task sections (what is compared with what), the savings of each
section from :func:`overshoot.analysis.savings.saving_summary` and :func:`overshoot.analysis.savings.savings`
(the one computation of every step saving), Table 1 statistics and the headline frames."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from overshoot.analysis import aggregate, results, savings
from overshoot.analysis import metrics as M
from overshoot.analysis.report.style import paper_label
from overshoot.analysis.results import PAPER_LABEL, RunRecord, family_rank, method_order, task_label
from overshoot.config import methods

# Hyperparameters a family's preset sets for itself: two families' protocols that differ only in these (and
# in the method) ran the same task setting and share a section.
FAMILY_HPARAMS = ("lr", "momentum", "beta2", "eps", "weight_decay", "delay")

# arXiv 2501.09556's headline: mean step saving (%) to 95% loss reduction over 7 tasks, per family, gamma.
PAPER_HEADLINE: dict[tuple[str, float], float] = {
    ("sgd", 3.0): 23.77,
    ("sgd", 5.0): 26.19,
    ("sgd", 7.0): 26.54,
    ("adam", 3.0): 15.27,
    ("adam", 5.0): 19.53,
    ("adam", 7.0): 20.11,
}
N_PAPER_TASKS = len(PAPER_LABEL)
# The headline's comparison per family: 'SGDO vs CM', 'AdamO vs Adam'.
COMPARISON = {
    f.name: f"{methods.METHODS[f.overshoot].display} vs {methods.METHODS[f.baseline].display}"
    for f in methods.FAMILIES.values()
}


class ReportError(Exception):
    """Bad input to the report: printed as one line, exit status 2."""


def setting_id(config: Mapping[str, Any]) -> str:
    """8 hex digits naming a run's task setting: its protocol without the hyperparameters a family's preset
    sets for itself (:data:`FAMILY_HPARAMS`) and without the family."""
    hp = {k: v for k, v in (config.get("hparams") or {}).items() if k not in FAMILY_HPARAMS}
    kept = {
        k: (hp if k == "hparams" else v)
        for k, v in config.items()
        if k not in results.METHOD_KEYS and k not in results.NUMBERLESS_KEYS and k != "family"
    }
    blob = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


@dataclass
class Section:
    """The runs of one task setting, one protocol per family: everything compared with each other."""

    task: str
    protocols: dict[str, str]  # family -> protocol id
    records: list[RunRecord]
    windows: dict[str, int]  # family -> the smoothing window of its comparisons (metrics.window_for)
    label: str = ""  # the task's paper label, plus the protocols when the task has several sections

    @property
    def key(self) -> str:
        """Unique within a report: task and protocol ids (used in LaTeX labels and CSV)."""
        return "-".join([self.task, *(self.protocols[f] for f in self.families)])

    @property
    def families(self) -> list[str]:
        return sorted(self.protocols, key=family_rank)

    @property
    def paper_label(self) -> str:
        return paper_label(self.task)

    def family_records(self, family: str) -> list[RunRecord]:
        return [r for r in self.records if r.family == family]

    def baseline(self, family: str) -> str | None:
        """The method name of the family baseline: CM/AdamW, else SGDO/AdamO at gamma 0; None without."""
        return savings.family_baseline(family, {r.method for r in self.family_records(family)})

    def baselines(self, family: str) -> tuple[str, ...]:
        """The methods that count as baselines of the family in Table 1 (baseline, then NAG or NAdam)."""
        fam = methods.FAMILIES.get(family)
        base = self.baseline(family)
        return tuple(b for b in (base, fam.second if fam else None) if b)

    def window_note(self, family: str, requested: int) -> str:
        w = self.windows.get(family, requested)
        if w == requested:
            return ""
        shortest = min(r.steps for r in self.family_records(family))
        return (
            f"runs of {shortest:,} steps are short for the {requested}-step window: it shrinks to a "
            f"{M.WINDOW_FRACTION}th of the run, {w} steps (pass --window to choose another)"
        )


def task_rank(task: str) -> tuple[int, str]:
    """The paper's order of its tasks (MLP-CA, VAE-FM, ..., GPT-2), then the others by name."""
    order = list(PAPER_LABEL)
    return (order.index(task) if task in order else len(order), task)


def sections_of(records: Sequence[RunRecord], window: int) -> list[Section]:
    """Group records into sections: per task and task setting (:func:`setting_id`), the families'
    protocols share one section when each family has exactly one protocol there; otherwise every protocol
    gets its own section. Runs of one protocol from several stores fall into one section."""
    out: list[Section] = []
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.task, setting_id(r.config)), []).append(r)
    for (task, _), recs in sorted(groups.items(), key=lambda kv: (task_rank(kv[0][0]), kv[0][1])):
        per_family: dict[str, set[str]] = {}
        for r in recs:
            per_family.setdefault(r.family, set()).add(r.protocol)
        if all(len(p) == 1 for p in per_family.values()):
            splits = [{f: next(iter(p)) for f, p in per_family.items()}]
        else:
            splits = [{f: p} for f, ps in sorted(per_family.items()) for p in sorted(ps)]
        for protocols in splits:
            members = [r for r in recs if protocols.get(r.family) == r.protocol]
            windows = {
                f: M.window_for(window, min(r.steps for r in members if r.family == f)) for f in protocols
            }
            out.append(Section(task, protocols, members, windows))
    counts = pd.Series([s.task for s in out], dtype=object).value_counts()
    for s in out:
        s.label = task_label(s.task)
        if counts[s.task] > 1:
            s.label += " [" + "/".join(s.protocols[f] for f in s.families) + "]"
    return out


def section_of_protocol(sections: Sequence[Section]) -> dict[tuple[str, str], Section]:
    return {(s.task, p): s for s in sections for p in s.protocols.values()}


def savings_frames(
    sections: Sequence[Section], reduction: float, window: int, confidence: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The savings of the sections' runs from :func:`overshoot.analysis.savings.saving_summary` (one row per
    comparison) and :func:`overshoot.analysis.savings.savings` (one row per seed), each with the section's key
    and label; rows in the sections' order, then the methods'."""
    recs = [r for s in sections for r in s.records]
    summary = savings.saving_summary(recs, reduction, window, confidence)
    per_seed = savings.savings(recs, reduction, window)
    where = section_of_protocol(sections)
    rank = {s.key: i for i, s in enumerate(sections)}
    frames = []
    for df in (summary, per_seed):
        secs = [where[(t, p)] for t, p in zip(df["task"], df["protocol"], strict=True)]
        df = df.assign(section=[s.key for s in secs], label=[s.label for s in secs])
        order = [
            (rank[s.key], method_order(str(o), float(g), str(f)), *([sd] if "seed" in df else []))
            for s, o, g, f, sd in zip(
                secs, df["optimizer"], df["gamma"], df["family"], df.get("seed", df["gamma"]), strict=True
            )
        ]
        df = df.iloc[sorted(range(len(df)), key=order.__getitem__)].reset_index(drop=True)
        frames.append(df[["section", "label", *(c for c in df.columns if c not in ("section", "label"))]])
    return untimed_seeds(saving_tests(frames[0], frames[1]), frames[1]), frames[1]


def untimed_seeds(summary: pd.DataFrame, per_seed: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``seconds_missing``: per comparison, the paired seeds with a step count to target
    (baseline or method) but no seconds at it (runs logged before the training clock: steps.csv without
    time_s)."""
    keys = ["task", "protocol", "family", "method"]
    missing = (per_seed["k_baseline"].notna() & per_seed["seconds_baseline"].isna()) | (
        per_seed["k_method"].notna() & per_seed["seconds_method"].isna()
    )
    counts = missing.groupby([per_seed[k] for k in keys], sort=False, observed=True).sum()
    n = [int(counts.get(tuple(k), 0)) for k in summary[keys].itertuples(index=False, name=None)]
    return summary.assign(seconds_missing=n)


def saving_tests(summary: pd.DataFrame, per_seed: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``p_value``, the two-sided one-sample t-test of each comparison's per-seed savings
    against 0 (:func:`overshoot.analysis.aggregate.saving_p_value`; NaN under 2 seeds), and ``p_holm``,
    Holm-adjusted across every comparison of the frame that has a p-value."""
    keys = ["task", "protocol", "family", "method"]
    by = {
        tuple(k): g["saving"].to_numpy(dtype=float)
        for k, g in per_seed.groupby(keys, sort=False, observed=True)
    }
    p = [
        aggregate.saving_p_value(by.get(tuple(k), []))
        for k in summary[keys].itertuples(index=False, name=None)
    ]
    return summary.assign(p_value=p, p_holm=aggregate.holm(p))


def table1_frame(sections: Sequence[Section], alpha: float = 0.05) -> pd.DataFrame:
    """Table 1 statistics (:func:`overshoot.analysis.metrics.table1`) per section, with the section's key and
    label; ``best`` marks the best mean of a family only among cells of at least 2 seeds, and only where
    the family has a baseline in the section."""
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
        t = M.table1(pd.DataFrame(rows, columns=list(M.TABLE1_INPUT)), bases, alpha=alpha, order=method_order)
        frames.append(t.assign(section=sec.key, label=sec.label))
    if not frames:
        return pd.DataFrame(columns=[*M.TABLE1_COLUMNS, "section", "label"])
    t1 = best_among_eligible(pd.concat(frames, ignore_index=True), ["section", "family"], sections)
    return holm_marks(t1, alpha)


def holm_marks(t1: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Table 1 with ``p_holm``, its paired t-tests' p-values Holm-adjusted across the whole table (every
    task, family and method tested), and ``star``, ``better``, ``worse`` from ``p_holm < alpha``;
    ``p_value`` stays the test's own."""
    t1 = t1.copy()
    t1["p_holm"] = aggregate.holm(t1["p_value"])
    sig = (t1["p_holm"] < alpha).to_numpy(dtype=bool)
    up = ((t1["mean_diff"] > 0) == (t1["metric"] == "accuracy")).to_numpy(dtype=bool)
    t1["star"], t1["better"], t1["worse"] = sig, sig & up, sig & ~up
    return t1


def best_among_eligible(
    t1: pd.DataFrame, by: Sequence[str], sections: Sequence[Section] | None = None
) -> pd.DataFrame:
    """``t1`` with ``best`` recomputed: per group ``by``, the best mean (highest accuracy, lowest loss)
    among cells with at least 2 seeds, in a group that holds its family's baseline."""
    t1 = t1.copy()
    t1["best"] = False
    for _, g in t1.groupby(list(by), sort=False):
        family = str(g["family"].iloc[0])
        if sections is not None:
            sec = next(s for s in sections if s.key == g["section"].iloc[0])
            has_base = sec.baseline(family) is not None
        else:
            has_base = savings.family_baseline(family, set(g["method"])) is not None
        ok = g[(g["n"] >= 2) & g["mean"].map(math.isfinite)]
        if not has_base or ok.empty:
            continue
        higher = str(g["metric"].iloc[0]) == "accuracy"
        best = ok["mean"].max() if higher else ok["mean"].min()
        t1.loc[ok.index[ok["mean"] == best], "best"] = True
    return t1


def headline_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-task, per-method summary every report opens with: one row per section and method other
    than the baseline, from the savings summary (saving at the report's reduction, its interval, within
    noise, steps to target of both sides, seeds, the task's paper label) and the same in seconds (elapsed
    training seconds to target of both sides, the seconds saving and its half width, the seeds it is
    over, the seeds logged without seconds)."""
    cols = ["section", "task", "label", "paper_label", "family", "method", "baseline", "window"]
    cols += [
        "n_pairs",
        "n",
        "baseline_not_reached",
        "k_baseline_mean",
        "k_method_mean",
        "mean",
        "low",
        "high",
        "within_noise",
        "seconds_baseline_mean",
        "seconds_method_mean",
        "seconds_n",
        "seconds_mean",
        "seconds_half_width",
        "seconds_missing",
    ]
    out = summary.assign(paper_label=summary["task"].map(paper_label))
    return out[cols].reset_index(drop=True)


def paper_mean_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's 7-task mean saving per family and gamma (arXiv 2501.09556) beside this report's mean
    over the paper tasks it measured (n of 7 tasks), both paper-style; a non-paper task never enters it."""
    rows = []
    paper = summary[summary["task"].isin(list(PAPER_LABEL))]
    for (family, gamma), ref in sorted(
        PAPER_HEADLINE.items(), key=lambda kv: (family_rank(kv[0][0]), kv[0][1])
    ):
        sel = paper[
            (paper["family"] == family)
            & (paper["gamma"] == gamma)
            & paper["optimizer"].map(lambda o: methods.is_overshoot(str(o)))
        ]
        vals = sel.groupby("task")["paper_saving"].mean().dropna()
        rows.append(
            {
                "comparison": COMPARISON.get(family, family),
                "family": family,
                "gamma": gamma,
                "paper_7_task_mean": ref,
                "tasks_measured": len(vals),
                "measured_mean": float(vals.mean()) if len(vals) else math.nan,
                "comparable": len(vals) == N_PAPER_TASKS,
            }
        )
    return pd.DataFrame(rows)
