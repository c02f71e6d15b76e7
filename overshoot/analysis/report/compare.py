"""Two run stores side by side (``overshoot-bench-report A B --compare``): per task, protocol, family and
method present in both, the step saving, the steps to target and the best test metric of each store and
their difference B - A with a Welch interval over the per-seed values. Protocols of one task and family that
differ between the stores are named with the config keys that differ, never matched; methods present in
only one store are listed."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from overshoot.analysis import metrics as M
from overshoot.analysis.report.model import ReportError, savings_frames, sections_of
from overshoot.analysis.report.render import Document, Part, Table, to_markdown, write_document
from overshoot.analysis.report.style import (
    family_label,
    interval_cell,
    method_label,
    metric_factor,
    metric_header,
    num,
    seed_list,
    split_label,
)
from overshoot.analysis.report.tables import protocol_keys
from overshoot.analysis.results import RunRecord, Scan, family_rank, method_order, scan, task_label

Key = tuple[str, str, str, str]  # task, protocol, family, method


@dataclass
class Side:
    """One store's numbers per (task, protocol, family, method): seeds, per-seed savings, steps to target
    and best test metric, the protocol's config."""

    name: str
    root: Path
    scan: Scan
    records: list[RunRecord]
    seeds: dict[Key, list[int]] = field(default_factory=dict)
    saving: dict[Key, list[float]] = field(default_factory=dict)
    steps: dict[Key, list[float]] = field(default_factory=dict)
    seconds: dict[Key, list[float]] = field(default_factory=dict)  # training seconds to the same target
    best: dict[Key, list[float]] = field(default_factory=dict)
    metric: dict[str, str] = field(default_factory=dict)  # task -> its best-metric header
    config: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (task, protocol) -> config


def _finite(xs: Sequence[Any]) -> list[float]:
    return [float(x) for x in xs if x is not None and not pd.isna(x) and math.isfinite(float(x))]


def side(name: str, root: Path, reduction: float, window: int, protocols: Sequence[str] = ()) -> Side:
    """Read one store (:func:`results.scan`) and compute its per-seed numbers with the report's sections and
    savings (:func:`model.savings_frames`, the one saving computation)."""
    sc = scan([root])
    recs = [r for r in sc.records if not protocols or any(r.protocol.startswith(p) for p in protocols)]
    if not recs:
        raise ReportError(f"no usable run in {root}: --compare needs completed runs in both stores")
    s = Side(name, root, sc, recs)
    for r in recs:
        k: Key = (r.task, r.protocol, r.family, r.method)
        s.seeds.setdefault(k, []).append(r.seed)
        factor = metric_factor(r.metric, r.metric_scale)
        s.best.setdefault(k, []).append(M.best_over_epochs(r.epochs, r.metric, factor))
        s.metric.setdefault(r.task, metric_header(r.metric, r.metric_scale, r.task))
        s.config.setdefault((r.task, r.protocol), r.config)
    _, per_seed = savings_frames(sections_of(recs, window), reduction, window)
    base_steps: dict[Key, dict[int, tuple[float, float]]] = {}
    for _, row in per_seed.iterrows():
        k = (str(row["task"]), str(row["protocol"]), str(row["family"]), str(row["method"]))
        s.saving.setdefault(k, []).append(row["saving"])
        s.steps.setdefault(k, []).append(row["k_method"])
        s.seconds.setdefault(k, []).append(row.get("seconds_method", math.nan))
        kb = (k[0], k[1], k[2], str(row["baseline"]))
        base_steps.setdefault(kb, {})[int(row["seed"])] = (
            row["k_baseline"],
            row.get("seconds_baseline", math.nan),
        )
    for kb, by_seed in base_steps.items():
        s.steps.setdefault(kb, [by_seed[sd][0] for sd in sorted(by_seed)])
        s.seconds.setdefault(kb, [by_seed[sd][1] for sd in sorted(by_seed)])
    return s


def welch(a: Sequence[Any], b: Sequence[Any], confidence: float = 0.95) -> tuple[float, float, float]:
    """mean(b) - mean(a) of the finite values and its Welch t-interval (NaN bounds with fewer than 2 values
    on a side or no spread)."""
    x, y = _finite(a), _finite(b)
    if not x or not y:
        return math.nan, math.nan, math.nan
    d = float(np.mean(y) - np.mean(x))
    if len(x) < 2 or len(y) < 2 or (np.std(x) == 0 and np.std(y) == 0):
        return d, math.nan, math.nan
    with warnings.catch_warnings():  # nearly equal values: scipy warns of precision loss, the interval stands
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(y, x, equal_var=False).confidence_interval(confidence)
    return d, float(ci.low), float(ci.high)


def _mean(xs: Sequence[Any]) -> float:
    v = _finite(xs)
    return float(np.mean(v)) if v else math.nan


def _order(k: Key) -> tuple[Any, ...]:
    task, protocol, family, method = k
    opt, gamma = split_label(method)
    return (task, family_rank(family), protocol, method_order(opt, gamma, family))


def matched_table(a: Side, b: Side, reduction: float, confidence: float) -> Table:
    """The rows of every (task, protocol, family, method) in both stores."""
    keys = sorted(set(a.seeds) & set(b.seeds), key=_order)
    rows, disp = [], []
    groups: list[tuple[str, int, int]] = []
    pct = f"{confidence * 100:g}%"
    for i, k in enumerate(keys):
        task, protocol, family, method = k
        if not groups or keys[i - 1][:3] != k[:3]:
            label = (
                f"{task_label(task)}, {family_label(family)} family, protocol {protocol} "
                f"(Best: {a.metric.get(task, '')})"
            )
            groups.append((label, i, i))
        groups[-1] = (groups[-1][0], groups[-1][1], i)
        row: dict[str, Any] = {
            "task": task,
            "family": family,
            "method": method,
            "protocol": protocol,
            "seeds_a": " ".join(map(str, sorted(a.seeds[k]))),
            "seeds_b": " ".join(map(str, sorted(b.seeds[k]))),
        }
        cells = {
            "Method": method_label(method),
            "Seeds A / B": f"{len(a.seeds[k])} / {len(b.seeds[k])}",
        }
        for what, vals_a, vals_b, digits in (
            ("saving", a.saving.get(k, []), b.saving.get(k, []), 1),
            ("steps", a.steps.get(k, []), b.steps.get(k, []), 0),
            ("seconds", a.seconds.get(k, []), b.seconds.get(k, []), 2),
            ("best", a.best[k], b.best[k], 2),
        ):
            ma, mb = _mean(vals_a), _mean(vals_b)
            d, lo, hi = welch(vals_a, vals_b, confidence)
            row.update(
                {f"{what}_a": ma, f"{what}_b": mb, f"{what}_diff": d, f"{what}_low": lo, f"{what}_high": hi}
            )
            row[f"{what}_n_a"], row[f"{what}_n_b"] = len(_finite(vals_a)), len(_finite(vals_b))
            label = {"saving": "Saving %", "steps": "Steps", "seconds": "Seconds", "best": "Best"}[what]
            cells[f"{label} A"] = num(ma, digits)
            cells[f"{label} B"] = num(mb, digits)
            cells[f"Δ {label.split()[0].lower()} [{pct}]"] = interval_cell(d, lo, hi, digits)
        row["metric"] = a.metric.get(task, "")
        rows.append(row)
        disp.append(cells)
    caption = (
        f"Matched: every task, protocol and method present in both stores (A = {a.root}, B = {b.root}), "
        "grouped by task, family and protocol. "
        f"Saving % = step saving to {reduction * 100:g}% loss reduction against the family baseline (mean "
        "over the seeds where both reached it; – for the baseline itself); Steps = steps to that threshold "
        "(mean over the seeds that reached it; – where the family has no comparison in that store); "
        "Seconds = the training seconds at that step (steps.csv's time_s; – for runs logged without it); "
        "Best = best test metric over the epochs (the task's Table 1 metric: accuracy in %, a loss scaled "
        f"as in Table 1), seed mean. Δ = B − A with its {pct} Welch "
        "t-interval over the per-seed values (no interval under 2 values a side); seeds need not pair"
    )
    return Table("compare", caption, pd.DataFrame(rows), pd.DataFrame(disp), groups=groups)


def _differences(ca: dict[str, Any], cb: dict[str, Any]) -> str:
    ka, kb = protocol_keys(ca), protocol_keys(cb)
    out = []
    for key in sorted(set(ka) | set(kb)):
        va, vb = ka.get(key, "(unset)"), kb.get(key, "(unset)")
        if va != vb:
            out.append(f"{key}: {va} → {vb}")
    return "; ".join(out) or "none among the protocol keys"


def mismatch_table(a: Side, b: Side) -> Table | None:
    """Per task and family present in both stores, each pair of protocols found in one store only, with the
    config keys that differ (A's value → B's). Their runs are not compared."""
    only_a = {(k[0], k[2], k[1]) for k in a.seeds} - {(k[0], k[2], k[1]) for k in b.seeds}
    only_b = {(k[0], k[2], k[1]) for k in b.seeds} - {(k[0], k[2], k[1]) for k in a.seeds}
    rows = []
    for task, family, pa in sorted(only_a):
        for tb, fb, pb in sorted(only_b):
            if (tb, fb) != (task, family):
                continue
            rows.append(
                {
                    "task": task,
                    "family": family,
                    "protocol_a": pa,
                    "protocol_b": pb,
                    "differences": _differences(a.config[(task, pa)], b.config[(task, pb)]),
                    "methods_a": ", ".join(
                        method_label(k[3]) for k in sorted(a.seeds, key=_order) if k[:3] == (task, pa, family)
                    ),
                    "methods_b": ", ".join(
                        method_label(k[3]) for k in sorted(b.seeds, key=_order) if k[:3] == (task, pb, family)
                    ),
                }
            )
    if not rows:
        return None
    data = pd.DataFrame(rows)
    disp = pd.DataFrame(
        {
            "Task": data["task"].map(task_label),
            "Family": data["family"].map(family_label),
            "Protocol A": data["protocol_a"],
            "Protocol B": data["protocol_b"],
            "Differs (A → B)": data["differences"],
            "Methods A": data["methods_a"],
            "Methods B": data["methods_b"],
        }
    )
    return Table(
        "protocols_differ",
        "Protocols that differ: a task and family run under another protocol in each store, with the config "
        "keys that differ (A's value → B's); their runs are not compared (rerun one store with the other's "
        "settings, or compare within one protocol)",
        data,
        disp,
    )


def only_table(a: Side, b: Side) -> Table | None:
    """The runs found in one store only, per store, task, family, protocol and reason, with their methods."""
    tf = {s.name: {(k[0], k[2]) for k in s.seeds} for s in (a, b)}
    groups: dict[tuple[str, str, str, str, str], list[Key]] = {}
    for here, there in ((a, b), (b, a)):
        for k in sorted(set(here.seeds) - set(there.seeds), key=_order):
            task, protocol, family, _ = k
            if any(o[:3] == (task, protocol, family) for o in there.seeds):
                why = f"{there.name} has no run of these methods under this protocol"
            elif (task, family) in tf[there.name]:
                why = f"{there.name} ran this task and family under another protocol (Protocols that differ)"
            else:
                why = f"{there.name} has no {task_label(task)} run of the {family_label(family)} family"
            groups.setdefault((here.name, task, family, protocol, why), []).append(k)
    if not groups:
        return None
    rows = []
    for (store, task, family, protocol, why), keys in groups.items():
        side_ = a if store == a.name else b
        seeds = sorted({sd for k in keys for sd in side_.seeds[k]})
        rows.append(
            {
                "store": store,
                "task": task,
                "family": family,
                "protocol": protocol,
                "methods": " ".join(k[3] for k in keys),
                "seeds": " ".join(map(str, seeds)),
                "reason": why,
            }
        )
    data = pd.DataFrame(rows)
    disp = pd.DataFrame(
        {
            "Store": data["store"],
            "Task": data["task"].map(task_label),
            "Family": data["family"].map(family_label),
            "Protocol": data["protocol"],
            "Methods": [", ".join(method_label(m) for m in ms.split()) for ms in data["methods"]],
            "Seeds": [seed_list([int(x) for x in s.split()]) for s in data["seeds"]],
            "Why not compared": data["reason"],
        }
    )
    return Table("only_in_one", "Runs in one store only, not compared, with the reason", data, disp)


def stores_table(a: Side, b: Side) -> Table:
    """Each store: its path, runs used and left out, code revisions, devices and torch versions."""
    rows = []
    for s in (a, b):
        t = s.scan.table[s.scan.table["path"].isin({str(r.path) for r in s.records})]
        revs = sorted(
            {
                f"{r}{'*' if d else ''}"
                for r, d in zip(t["git_rev"].fillna("unknown"), t["dirty"], strict=True)
            }
        )
        rows.append(
            {
                "store": s.name,
                "path": str(s.root),
                "runs_used": len(s.records),
                "left_out": len(s.scan.left_out),
                "revisions": ", ".join(revs),
                "devices": "; ".join(sorted(set(t["device"].fillna("?").astype(str)))),
                "torch": ", ".join(sorted(set(t["torch"].fillna("?").astype(str)))),
            }
        )
    data = pd.DataFrame(rows)
    disp = data.rename(
        columns={
            "store": "Store",
            "path": "Path",
            "runs_used": "Runs used",
            "left_out": "Left out",
            "revisions": "Code revisions",
            "devices": "Devices",
            "torch": "torch",
        }
    ).astype(str)
    return Table(
        "stores", "The two stores: runs used and left out, code revisions (* = dirty), devices", data, disp
    )


def compare_document(a: Side, b: Side, reduction: float, confidence: float) -> Document:
    """The comparison as a document: the stores, the matched rows, the protocols that differ, the runs
    found in one store only."""
    matched = matched_table(a, b, reduction, confidence)
    mism = mismatch_table(a, b)
    only = only_table(a, b)
    n = len(matched.data)
    doc = Document(
        f"overshoot-bench comparison: A = {a.root} vs B = {b.root}",
        intro=[
            f"{n} task/protocol/method group{'s' * (n != 1)} in both stores compared; runs are matched only "
            "within one protocol (the same config apart from seed and method)."
        ],
        warnings=[
            f"{len(mism.data)} protocol pair{'s' * (len(mism.data) != 1)} of one task and family differ "
            "between the stores and are not compared: listed under 'Protocols that differ'."
        ]
        if mism is not None
        else [],
        key="compare",
    )
    doc.parts.append(Part("Stores", tables=[stores_table(a, b)]))
    matched_part = Part("Matched: in both stores", tables=[matched])
    if not n:
        matched_part.tables = []
        matched_part.paragraphs.append("No task, protocol and method is present in both stores.")
    doc.parts.append(matched_part)
    doc.parts.append(
        Part(
            "Protocols that differ",
            tables=[mism] if mism is not None else [],
            paragraphs=[] if mism else ["None."],
        )
    )
    doc.parts.append(
        Part(
            "Runs in one store only",
            tables=[only] if only is not None else [],
            paragraphs=[] if only else ["None."],
        )
    )
    return doc


def compare_command(
    roots: Sequence[str | Path],
    out: Path | None,
    formats: Sequence[str],
    reduction: float = 0.95,
    window: int = 400,
    alpha: float = 0.05,
    protocols: Sequence[str] = (),
) -> tuple[str, list[Path]]:
    """``overshoot-bench-report A B --compare``: the comparison written under ``out`` (default
    ``<A>/compare``) and the text for the terminal."""
    if len(roots) != 2:
        raise ReportError(
            f"--compare takes exactly two run stores, got {len(roots)}: overshoot-bench-report A B --compare"
        )
    a = side("A", Path(roots[0]), reduction, window, protocols)
    b = side("B", Path(roots[1]), reduction, window, protocols)
    doc = compare_document(a, b, reduction, 1 - alpha)
    out = out if out is not None else Path(roots[0]) / "compare"
    written = write_document(doc, out, formats)
    lines = [f"A = {a.root}, B = {b.root}", ""]
    for part in doc.parts[1:]:
        for t in part.tables:
            lines += [t.caption.split(":")[0] + ":", "", to_markdown(t)]
        if not part.tables:
            lines += [f"{part.title}: {' '.join(part.paragraphs)}", ""]
    lines.append(f"Wrote {len(written)} files to {out}/")
    return "\n".join(lines), written
