"""Fair comparisons, read side: a tuning study's selection on validation and its tuned-against-untuned report.

A study is one directory ``STUDY`` for one task (the commands: :mod:`overshoot.cli.tune`). Selection
(:func:`select_study`) reads the validation rows of ``epochs.csv`` only (:data:`CRITERION`) and writes
``STUDY/selection.json``; the held-out runs it names are trained by ``overshoot-bench-tune rerun``;
:func:`report_study` compares them (savings, Table 1, time-to-target, the sensitivity figure). Nothing here
trains.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overshoot.analysis import metrics as M
from overshoot.analysis import results, savings
from overshoot.analysis.report.model import best_among_eligible
from overshoot.analysis.report.render import Document, Figure, Part, Table, write_document
from overshoot.analysis.report.style import (
    BETTER,
    DASH,
    WORSE,
    family_label,
    format_mean_ci,
    interval_cell,
    metric_factor,
    metric_header,
    num,
    signed,
)
from overshoot.analysis.results import family_rank, method_order, task_label
from overshoot.common.files import atomic_write_text
from overshoot.config import methods
from overshoot.config.compose import HPARAMS
from overshoot.config.schema import config_hash

HELDOUT_SEEDS = tuple(range(10, 101, 10))  # the paper's seeds; the tune sweep uses others
REDUCTIONS = (0.9, 0.95, 0.99)
ARMS = ("untuned", "tuned")
CRITERION = (
    "per method, the setting whose best-over-epochs validation {what}, averaged over the tuning seeds, is "
    "{best}; a setting counts only when it completed on every tuning seed (a diverged or missing trial rules "
    "it out); ties go to the lower mean best validation loss, then to the smaller values of the tuned axes. "
    "The test split is never read."
)
TARGET_RULE = (
    "target per family = the median over the held-out seeds of the untuned family baseline's (CM's, Adam's) "
    "best-over-epochs validation {what}; a run's time-to-target is the step count at the end of the first "
    "epoch whose validation {what} reaches it; a run that never does is censored (counted as slower than "
    "every run that reached it, as AlgoPerf counts a miss; a diverged run counts with the evaluations "
    "before its divergence): 'k of n' reached, the median over all n with misses as infinite ('not "
    "reached' when half or more missed), the median and mean over those that reached it"
)


class TuningError(ValueError):
    """A study that cannot be selected, re-run or reported; the message says what to do."""


# -- loading (the one place that reads the run store) ------------------------------------------------------


def load(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per run directory at or below ``paths``: identity, status, metric, the resolved config
    (``config``), its hyperparameters as ``hp_<key>`` columns, and ``path``. A completed run that
    ``results`` leaves out (a cut or mixed log, an older duplicate) gets status ``left out: <why>``."""
    sc = results.scan(list(paths))
    verdict = sc.table.set_index("path")  # the report's integrity checks: damaged files, duplicates
    rows = []
    for r in sc.runs:
        cfg, info = r.config, r.info
        status = str(info.get("status") or r.status)
        problem = verdict["problem"].get(str(r.path)) if "problem" in verdict else None
        if r.damaged or (status == "completed" and not bool(verdict["usable"].get(str(r.path), False))):
            status = f"left out: {problem or r.problem}"  # listed with the runs not completed
        rows.append(
            {
                "task": cfg.get("task", info.get("task")),
                "optimizer": cfg.get("optimizer", info.get("optimizer")),
                "family": cfg.get("family", info.get("family")),
                "gamma": float(cfg.get("gamma") or 0.0),
                "method": methods.label(str(cfg.get("optimizer")), float(cfg.get("gamma") or 0.0)),
                "seed": int(cfg.get("seed", info.get("seed", -1))),
                "status": status,
                "metric": info.get("metric"),
                "metric_scale": float(info.get("metric_scale") or 1.0),
                "config": cfg,
                "info": info,
                "path": str(r.path),
                **{f"hp_{k}": v for k, v in (cfg.get("hparams") or {}).items()},
            }
        )
    return pd.DataFrame(rows)


def epochs_of(path: str | Path) -> pd.DataFrame:
    """The run's epochs.csv, with ``steps``: the training steps taken when each evaluation ran."""
    ep, st = results.epoch_log(path), results.step_log(path)
    if ep.empty or st.empty:
        return ep.assign(steps=pd.Series(dtype="int64"))
    ends = st.groupby("epoch")["step"].max() + 1
    return ep.assign(steps=ep["epoch"].map(ends).fillna(len(st)).astype("int64"))


def curve_of(path: str | Path) -> np.ndarray:
    """The run's per-step base-weight training loss."""
    return results.step_log(path)["base_loss"].to_numpy(dtype=np.float64)


# -- the tuning trials and the selection ------------------------------------------------------------------


def _setting(config: Mapping[str, Any]) -> str:
    """What a trial computes apart from its seed: the key shared by the tuning seeds of one setting."""
    return config_hash({**config, "seed": None})


def _better(metric: str) -> str:
    return "highest" if metric == "accuracy" else "lowest"


def criterion_text(metric: str) -> str:
    """The selection criterion, spelled out for the report."""
    return CRITERION.format(what=metric, best=_better(metric))


def best_val(path: str | Path, metric: str) -> tuple[float, float]:
    """A run's best-over-epochs validation ``metric`` and best validation loss (NaN without a val split)."""
    ep = results.epoch_log(path)
    return M.best_over_epochs(ep, metric, split="val"), M.best_over_epochs(ep, "loss", split="val")


def trials_frame(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    """Per tuning run its setting and validation scores, and the tuned axes: the hyperparameters that vary
    across one method's runs, each with its grid of values (a value that differs only between families, as
    Lion's beta2, is not an axis)."""
    if runs.empty:
        raise TuningError(
            "no tuning runs found: train them with overshoot-bench -m +sweep=tune out=STUDY/tuning"
        )
    tasks = sorted(set(runs["task"]))
    if len(tasks) != 1:
        raise TuningError(f"a study holds one task, found {tasks}: give each task its own STUDY directory")
    axes: dict[str, list[Any]] = {}
    for k in HPARAMS:
        col = f"hp_{k}"
        if col in runs and (runs.groupby("method")[col].nunique(dropna=False) > 1).any():
            axes[k] = sorted(runs[col].unique().tolist())
    rows = []
    for r in runs.itertuples(index=False):
        ok = r.status == "completed"
        score, loss = best_val(r.path, str(r.metric)) if ok else (math.nan, math.nan)
        rows.append(
            {
                "method": r.method,
                "optimizer": r.optimizer,
                "gamma": r.gamma,
                "family": r.family,
                "seed": r.seed,
                "status": r.status,
                "setting": _setting(r.config),
                **{k: getattr(r, f"hp_{k}") for k in axes},
                "val_metric": score,
                "val_loss": loss,
                "metric": r.metric,
                "path": r.path,
            }
        )
    return pd.DataFrame(rows), axes


def select(trials: pd.DataFrame, axes: Mapping[str, Sequence[Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-setting scores (mean over tuning seeds) and, per method, the selected setting by :data:`CRITERION`.

    A setting's score is NaN (never selected) unless every tuning seed of its method completed with a
    validation score."""
    if trials["val_metric"].isna().all():
        raise TuningError(
            "no tuning run has a validation score: the runs need a validation split (task.val_fraction=0.2; "
            "+sweep=tune sets it)"
        )
    metric = str(trials["metric"].iloc[0])
    sign = -1.0 if metric == "accuracy" else 1.0  # lower is better after the sign
    keys = ["method", "optimizer", "gamma", "family", "setting", *axes]
    settings = []
    for _, mg in trials.groupby("method", sort=False):
        seeds = sorted(set(mg["seed"]))
        for key, g in mg.groupby(keys, sort=False, dropna=False):
            complete = sorted(g["seed"]) == seeds and g["val_metric"].notna().all()
            score = float(g["val_metric"].mean()) if complete else math.nan
            settings.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "seeds": len(g),
                    "score": score,
                    "score_loss": float(g["val_loss"].mean()) if complete else math.nan,
                    "per_seed": ";".join(
                        f"{s}:{v:.6g}" for s, v in zip(g["seed"], g["val_metric"], strict=True)
                    ),
                    "diverged": int((g["status"] == "diverged").sum()),
                }
            )
    table = pd.DataFrame(settings)
    chosen = []
    for method, g in table.groupby("method", sort=False):
        ok = g[g["score"].notna()]
        if ok.empty:
            raise TuningError(f"method {method}: no setting completed on every tuning seed; finish the sweep")
        order = ok.assign(_s=sign * ok["score"]).sort_values(["_s", "score_loss", *axes], kind="stable")
        best = order.iloc[0].drop("_s").to_dict()
        best["edge"] = ",".join(k for k in axes if best[k] in (min(axes[k]), max(axes[k])))
        best["trials"] = int(g["seeds"].sum())
        best["diverged_trials"] = int(g["diverged"].sum())
        chosen.append(best)
    sel = pd.DataFrame(chosen)
    order_key = [
        method_order(str(o), float(g), str(f))
        for o, g, f in zip(sel["optimizer"], sel["gamma"], sel["family"], strict=True)
    ]
    sel = sel.iloc[sorted(range(len(sel)), key=lambda i: order_key[i])]
    return table, sel.reset_index(drop=True)


def select_study(study: Path) -> dict[str, Any]:
    """Select on ``study``/tuning and write selection.json and trials.csv; the selection."""
    runs = load([study / "tuning"])
    trials, axes = trials_frame(runs)
    table, sel = select(trials, axes)
    metric = str(trials["metric"].iloc[0])
    per_method = trials.groupby("method")["seed"]
    config_of = {(r.method, r.setting): r.path for r in trials.itertuples(index=False)}
    out: dict[str, Any] = {
        "task": str(runs["task"].iloc[0]),
        "metric": metric,
        "criterion": criterion_text(metric),
        "axes": axes,
        "tuning_seeds": sorted(int(s) for s in set(trials["seed"])),
        "trials_per_method": {str(m): int(n) for m, n in per_method.count().items()},
        "same_budget": len(set(per_method.count())) == 1
        and len({tuple(sorted(set(g))) for _, g in per_method}) == 1,
        "methods": {},
    }
    for r in sel.to_dict("records"):
        cfg = results.read_run(config_of[r["method"], r["setting"]]).config
        out["methods"][r["method"]] = {
            "optimizer": r["optimizer"],
            "gamma": r["gamma"],
            "family": r["family"],
            "selected": {k: _plain(r[k]) for k in axes},
            "score": r["score"],
            "edge": r["edge"],
            "trials": r["trials"],
            "diverged_trials": r["diverged_trials"],
            "config": {**cfg, "seed": None},
        }
    atomic_write_text(study / "selection.json", json.dumps(out, indent=2, default=str) + "\n")
    atomic_write_text(study / "trials.csv", table.to_csv(index=False))
    return out


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


# -- the comparison ---------------------------------------------------------------------------------------


def heldout_frame(study: Path) -> pd.DataFrame:
    """The held-out manifest joined with the runs it names (arm, method, seed, status, path, ...)."""
    manifest_file = study / "heldout.json"
    if not manifest_file.exists():
        raise TuningError(f"{manifest_file} is missing: run overshoot-bench-tune rerun {study} first")
    manifest = pd.DataFrame(json.loads(manifest_file.read_text())["runs"])
    manifest["path"] = [str((study / "heldout" / p).resolve()) for p in manifest["path"]]
    # The tuned and the untuned arm share a run where the selected setting is the preset's: read it once.
    present = list(dict.fromkeys(p for p in manifest["path"] if (Path(p) / "run.json").exists()))
    runs = load(present) if present else pd.DataFrame(columns=["path", "status"])
    info = runs.drop(columns=["method", "seed"], errors="ignore")
    df = manifest.merge(info, on="path", how="left")
    df["status"] = df["status"].fillna("missing")
    return df


def savings_frame(held: pd.DataFrame, window: int, reductions: Sequence[float] = REDUCTIONS) -> pd.DataFrame:
    """Per arm, method (against its family baseline of the same arm) and reduction level: the summary of
    :func:`overshoot.analysis.savings.saving_summary` (the one computation of every saving, with its window
    rule), each arm standing as the protocol its methods are compared in, plus a 95% bootstrap interval of the
    same per-seed savings; within noise when either interval contains 0."""
    done = held[held["status"] == "completed"]
    if done.empty:
        return pd.DataFrame()
    recs = {str(r.path): r for r in results.scan(list(dict.fromkeys(done["path"]))).records}
    frames = []
    for arm, g in done.groupby("arm", sort=False):
        # The arm is the protocol: its methods run at their own (selected or preset) settings.
        arm_recs = [dataclasses.replace(recs[p], protocol=str(arm)) for p in g["path"] if p in recs]
        for red in reductions:
            summary = savings.saving_summary(arm_recs, red, window)
            per_seed = savings.savings(arm_recs, red, window)
            boot = [
                M.bootstrap_interval(per_seed.loc[per_seed["method"] == m, "saving"].dropna().tolist())
                for m in summary["method"]
            ]
            frames.append(
                summary.drop(columns=["protocol"]).assign(
                    arm=arm,
                    boot_low=[b[0] for b in boot],
                    boot_high=[b[1] for b in boot],
                )
            )
    if not frames:
        return pd.DataFrame()
    sav = pd.concat(frames, ignore_index=True)
    sav["within_noise"] = sav["within_noise"].astype(bool) | np.array(
        [M.contains_zero(lo, hi) for lo, hi in zip(sav["boot_low"], sav["boot_high"], strict=True)],
        dtype=bool,
    )
    return sav[["arm", *(c for c in sav.columns if c != "arm")]]


def table1_frames(held: pd.DataFrame) -> pd.DataFrame:
    """Table 1 (best-over-epochs test metric, metric_scale applied) per arm, from :func:`metrics.table1`."""
    done = held[held["status"] == "completed"]
    out = []
    for arm, g in done.groupby("arm", sort=False):
        rec = pd.DataFrame(
            {
                "task": g["task"],
                "family": g["family"],
                "optimizer": g["optimizer"],
                "gamma": g["gamma"],
                "method": g["method"],
                "seed": g["seed"],
                "value": [
                    M.best_over_epochs(results.epoch_log(p), str(m), float(s))
                    for p, m, s in zip(g["path"], g["metric"], g["metric_scale"], strict=True)
                ],
                "metric": g["metric"],
            }
        )
        bases = {f.name: tuple(b for b in (f.baseline, f.second) if b) for f in methods.FAMILIES.values()}
        out.append(M.table1(rec, bases, order=method_order).assign(arm=arm))
    # "best" only among cells of at least 2 seeds, in a family whose baseline is there (as the report's)
    return (
        best_among_eligible(pd.concat(out, ignore_index=True), ["arm", "family"]) if out else pd.DataFrame()
    )


def time_to_target_frame(held: pd.DataFrame) -> pd.DataFrame:
    """Per arm and method: steps to the family's validation target (:data:`TARGET_RULE`), censored. A run
    that diverged counts with the evaluations it logged before (a miss unless one reached the target)."""
    done = held[held["status"].isin(("completed", "diverged"))]
    if done.empty:
        return pd.DataFrame()
    metric = str(done["metric"].iloc[0])
    higher = metric == "accuracy"
    evals = {p: epochs_of(p) for p in done["path"].unique()}
    rows = []
    for family, fg in done.groupby("family", sort=False):
        fam = methods.FAMILIES.get(str(family))
        base = fg[(fg["arm"] == "untuned") & (fg["method"] == (fam.baseline if fam is not None else ""))]
        base = base[base["status"] == "completed"]
        bests = [M.best_over_epochs(evals[p], metric, split="val") for p in base["path"]]
        bests = [b for b in bests if math.isfinite(b)]
        if not bests:
            continue
        target = float(np.median(bests))
        for (arm, method), g in fg.groupby(["arm", "method"], sort=False):
            times = []
            for p in g["path"]:
                v = evals[p][evals[p]["split"] == "val"]
                times.append(M.steps_to_target(v[metric].tolist(), v["steps"].tolist(), target, higher))
            s = M.time_to_target_summary(times)
            rows.append(
                {
                    "arm": arm,
                    "family": family,
                    "method": method,
                    "optimizer": g["optimizer"].iloc[0],
                    "gamma": g["gamma"].iloc[0],
                    "target": target,
                    "metric": metric,
                    "n": s.n,
                    "diverged": int((g["status"] == "diverged").sum()),
                    "reached": s.reached,
                    "median": s.median,
                    "median_reached": s.median_reached,
                    "mean_reached": s.mean_reached,
                    "per_seed": ";".join(
                        f"{sd}:{'NR' if t is None else t}" for sd, t in zip(g["seed"], times, strict=True)
                    ),
                }
            )
    return pd.DataFrame(rows)


def sensitivity_figure(table: pd.DataFrame, selection: Mapping[str, Any], stem: Path) -> list[Path]:
    """A tuning study's sensitivity to the learning rate: the mean best validation metric over the tuning
    seeds (error = 1 - accuracy for accuracy tasks) vs lr, both axes log with plain-decimal ticks, one line
    per method in a colour, marker and dash of its own, one panel per family, text width. Each method's
    selected lr is its own marker, enlarged with a black edge, and named in the legend; settings ruled out
    (a tuning seed diverged) are crosses at the top, the untuned lr a dashed grey line; the legend sits
    below the panels. ``table`` holds one row per setting (family, optimizer, gamma, lr, the other tuned
    axes, score), ``selection`` the study's selection.json."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    from overshoot.analysis.figstyle import (
        TEXT_IN,
        family_title,
        legend_below,
        method_style,
        plain_number,
        plain_ticks,
        save,
    )

    if "lr" not in table:
        raise TuningError("the sensitivity figure needs lr among the tuned axes (the tune sweep's lr grid)")
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
        ax.set_title(f"{task_label(selection['task'])}: {family_title(family)}")
        ax.grid(True, which="major", alpha=0.3)
    handles["ruled out (a tuning seed diverged)"] = Line2D([], [], color="#444444", marker="x", ls="none")
    handles["untuned lr"] = Line2D([], [], color="#999999", ls="--", lw=1.0)
    legend_below(fig, handles, TEXT_IN)
    return save(fig, stem)


def _pop_size(info: Mapping[str, Any]) -> int:
    pop = info.get("population")
    return int(pop.get("size") or 1) if isinstance(pop, dict) else 1


def _label(method: str, selection: Mapping[str, Any]) -> str:
    m = selection["methods"][method]
    return methods.display_label(m["optimizer"], float(m["gamma"]))


def _arm_frame(
    frame: pd.DataFrame, selection: Mapping[str, Any], cell: Callable[[pd.Series], str]
) -> pd.DataFrame:
    """One row per method (in the selection's order), one column per arm: ``cell`` of the method's row
    in ``frame`` for that arm, "–" where there is none."""
    rows = []
    for method in _order(set(frame["method"]), selection):
        row = {"Method": _label(method, selection)}
        for arm in ARMS:
            r = frame[(frame["arm"] == arm) & (frame["method"] == method)]
            row[arm] = DASH if r.empty else cell(r.iloc[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=["Method", *ARMS])


def _order(names: Iterable[str], selection: Mapping[str, Any]) -> list[str]:
    ms = selection["methods"]
    return sorted(
        names,
        key=lambda m: method_order(ms[m]["optimizer"], float(ms[m]["gamma"]), str(ms[m].get("family", ""))),
    )


def report_study(study: Path, out: Path, command: str = "", protocol_note: str = "") -> list[Path]:
    """Write the comparison of ``study`` to ``out`` as any report is written (report.md, report.html and
    each table as CSV, Markdown and LaTeX), with trials.csv, selection.json and the sensitivity figure."""
    selection = json.loads((study / "selection.json").read_text())
    table = pd.read_csv(study / "trials.csv")
    held = heldout_frame(study)
    done = held[held["status"] == "completed"]
    if done.empty:
        raise TuningError(f"no completed held-out run in {study / 'heldout'}: run overshoot-bench-tune rerun")
    window = int(done["config"].iloc[0]["log"]["window"])
    untuned = done[done["arm"] == "untuned"]
    selection["untuned_lr"] = {
        f: sorted({float(h["lr"]) for h in g["hparams"]}) for f, g in untuned.groupby("family")
    }
    out.mkdir(parents=True, exist_ok=True)
    sav = savings_frame(held, window)
    t1 = table1_frames(held)
    ttt = time_to_target_frame(held)
    figs = sensitivity_figure(table, selection, out / "sensitivity")
    trials = out / "trials.csv"
    atomic_write_text(trials, table.to_csv(index=False))
    atomic_write_text(out / "selection.json", (study / "selection.json").read_text())
    doc = document(selection, held, sav, t1, ttt, window, command, protocol_note)
    png = next(f for f in figs if f.suffix == ".png")
    doc.parts[2].figures.append(
        Figure(
            png,
            png.name,
            f"Sensitivity: best validation {selection['metric']} (mean over the tuning seeds) against lr, "
            "one line per method; each method's selected lr is its marker enlarged with a black edge (the lr "
            "named in the legend), crosses the settings ruled out, the dashed line the untuned lr.",
        )
    )
    written = write_document(doc, out, ("md", "csv", "tex", "html"), [*figs, trials, out / "selection.json"])
    return written


def _task_named(task: str) -> str:
    """``housing (the paper's MLP-CA)``, ``digits (not a paper task)``."""
    label = task_label(task)
    paper = "not a paper task" if label == task else f"the paper's {label}"
    return f"{task} ({paper})"


def _protocol_rows(
    selection: Mapping[str, Any], held: pd.DataFrame, window: int, protocol_note: str
) -> pd.DataFrame:
    """The tuning budget and protocol as (setting, value) rows."""
    done = held[held["status"] == "completed"]
    metric = selection["metric"]
    cfg0 = done["config"].iloc[0]
    hp0 = cfg0["hparams"]
    grid = "; ".join(
        f"{k} in {{{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vs)}}}"
        for k, vs in selection["axes"].items()
    )
    trials = selection["trials_per_method"]
    steps = sorted({int(i.get("steps") or 0) for i in done["info"]})
    infos = list(done["info"])
    versions = sorted(
        {", ".join(f"{k} {v}" for k, v in sorted((i.get("versions") or {}).items())) for i in infos}
    )
    # A population's members each record its wall time: count each member's share of it.
    wall = sum(float(i.get("wall_time_s") or 0.0) / _pop_size(i) for i in infos)
    options = ", ".join(f"{k}={v}" for k, v in cfg0["task_options"].items() if k != "name")
    protocol = (
        f"{hp0['epochs']} epochs, {', '.join(f'{s:,}' for s in steps)} steps per run, schedule "
        f"{hp0['schedule']}, batch {hp0['batch_size']}, precision {cfg0['precision']}"
        + (f", max_steps {cfg0['max_steps']:,}" if cfg0.get("max_steps") else "")
        + (", last partial batch kept" if cfg0.get("drop_last") is False else "")
        + (f"; {protocol_note}" if protocol_note else "")
    )
    rows = {
        "task": f"{_task_named(selection['task'])}; task options: {options}",
        "search space": f"{grid} (every other hyperparameter at the preset's value)",
        "tuning seeds": ", ".join(map(str, selection["tuning_seeds"])),
        "trials per method": f"{', '.join(sorted(set(map(str, trials.values()))))} "
        f"({'the same for every method' if selection['same_budget'] else 'NOT the same for every method'}; "
        f"{sum(trials.values()):,} trials in all)",
        "selection criterion": selection["criterion"],
        "held-out seeds": f"{', '.join(map(str, sorted(set(done['seed']))))} "
        "(disjoint from the tuning seeds)",
        "untuned arm": f"preset={held[held['arm'] == 'untuned']['config'].dropna().iloc[0]['preset']} "
        "values of the tuned axes, everything else as in tuning",
        "protocol": protocol,
        "savings metric": "steps to X% reduction of the base-weight training loss, per seed against the "
        "family baseline of the same arm (savings.saving_summary, the report's computation), trailing mean "
        f"of {window:,} steps (at most a fifth of a run), X in {', '.join(f'{r:g}' for r in REDUCTIONS)}; "
        "mean with 95% t-interval and 95% percentile bootstrap interval over seeds (10,000 resamples); "
        "'within noise' when either interval contains 0",
        "time to target": TARGET_RULE.format(what=metric),
        "device": f"{', '.join(sorted({str(i.get('device')) for i in infos}))}; CPU threads per run "
        f"{', '.join(sorted({str(i.get('cpu_threads')) for i in infos}))}",
        "versions": "; ".join(versions),
        "code revision": ", ".join(sorted({str(i.get("git_rev")) for i in infos})),
        "held-out training time": f"{wall / 60:.1f} min ({len(done):,} runs)",
    }
    return pd.DataFrame({"Setting": list(rows), "Value": list(rows.values())})


def document(
    selection: Mapping[str, Any],
    held: pd.DataFrame,
    sav: pd.DataFrame,
    t1: pd.DataFrame,
    ttt: pd.DataFrame,
    window: int,
    command: str,
    protocol_note: str,
) -> Document:
    """The report of a study as a :class:`~overshoot.analysis.report.render.Document`: the savings first (the
    headline), then budget and protocol, the selected settings, Table 1 and the time to target."""
    done = held[held["status"] == "completed"]
    metric = selection["metric"]
    task = selection["task"]
    doc = Document(
        f"Tuned comparison: {task_label(task)}",
        intro=[
            "Does Overshoot still save steps when every method gets the same tuning budget? Each method of "
            "the paper grid was tuned on the same grid, selected on validation, and re-run on held-out seeds "
            f"beside the untuned (preset) settings under the same protocol. Task: {_task_named(task)}."
        ],
        key=f"tuning-{task}",
    )
    missing = held[held["status"] != "completed"]
    if len(missing):
        doc.warnings.append(
            f"Not completed: {len(missing)} held-out runs, left out of the savings and Table 1; a diverged "
            "run counts as a miss in time-to-target unless it reached the target before ("
            + ", ".join(
                f"{a}/{m}/seed{s}: {st}"
                for a, m, s, st in zip(
                    missing["arm"], missing["method"], missing["seed"], missing["status"], strict=True
                )
            )
            + ")."
        )
    # the headline: savings per reduction level, untuned vs tuned
    head = Part("Step savings against the family baseline, untuned vs tuned")
    head.paragraphs.append(
        "Per-seed saving in %, mean [95% t-interval] / [95% bootstrap interval]; n = seeds where both "
        "reached the threshold, of the seeds paired; 'within noise' = an interval contains 0."
    )

    def saving_cell(r0: pd.Series) -> str:
        if r0["n"] == 0:
            return M.NOT_REACHED
        cell = interval_cell(r0["mean"], r0["low"], r0["high"])
        if math.isfinite(r0["boot_low"]):
            cell += f" / [{signed(r0['boot_low'])}, {signed(r0['boot_high'])}]"
        return cell + f", n={r0['n']}/{r0['n_pairs']}" + (", within noise" if r0["within_noise"] else "")

    for red in REDUCTIONS if not sav.empty else ():
        sr = sav[sav["reduction"] == red]
        head.tables.append(
            Table(
                "savings",
                f"Step saving % to {red:.0%} loss reduction, untuned vs tuned arm (trailing mean of "
                f"{', '.join(f'{w:,}' for w in sorted(set(sr['window'])))} steps)",
                sr.reset_index(drop=True),
                _arm_frame(sr, selection, saving_cell),
                section=f"{red:g}",
            )
        )
    doc.parts.append(head)
    # protocol, collapsed
    proto = Part("Tuning budget and protocol", collapsed=True, code=command)
    prows = _protocol_rows(selection, held, window, protocol_note)
    proto.tables.append(Table("protocol", "The tuning budget and the protocol of every run", prows, prows))
    doc.parts.append(proto)
    # selection
    rows = []
    for method in _order(selection["methods"], selection):
        m = selection["methods"][method]
        un = held[(held["arm"] == "untuned") & (held["method"] == method)]["hparams"]
        un_vals = un.iloc[0] if len(un) else {}
        rows.append(
            {
                "Method": _label(method, selection),
                **{
                    f"selected {k}": f"{m['selected'][k]:g}"
                    if isinstance(m["selected"][k], float)
                    else str(m["selected"][k])
                    for k in selection["axes"]
                },
                **{f"untuned {k}": f"{un_vals.get(k, math.nan):g}" for k in selection["axes"]},
                f"val {metric} (tuning mean)": f"{m['score']:.4g}",
                "at grid edge": m["edge"] or "no",
                "trials (diverged)": f"{m['trials']} ({m.get('diverged_trials', 0)})",
            }
        )
    sel = pd.DataFrame(rows)
    doc.parts.append(
        Part("Selected settings", tables=[Table("selection", "The setting selected per method", sel, sel)])
    )
    # Table 1
    if not t1.empty:
        scale = float(done["metric_scale"].iloc[0])
        factor = metric_factor(metric, 1.0)  # the values carry metric_scale already (table1_frames)
        what = metric_header(metric, scale, task)

        def t1_cell(r0: pd.Series) -> str:
            return format_mean_ci(r0["mean"] * factor, r0["half_width"] * factor) + f" (n = {r0['n']})"

        disp = _arm_frame(t1, selection, t1_cell)
        t = Table(
            "table1",
            f"Best-over-epochs {what}, mean ± 95% t-interval over the held-out seeds (n); bold: best of its "
            f"family in that arm among cells of at least 2 seeds with the family's baseline; {BETTER} / "
            f"{WORSE}: paired t-test by seed against the better family baseline, p < 0.05",
            t1,
            disp,
        )
        for i, method in enumerate(_order(set(t1["method"]), selection)):
            for arm in ARMS:
                r = t1[(t1["arm"] == arm) & (t1["method"] == method)]
                if r.empty:
                    continue
                for flag in ("better", "worse"):
                    if bool(r[flag].iloc[0]):
                        t.mark(i, arm, flag)
                if bool(r["best"].iloc[0]):
                    t.mark(i, arm, "bold")
        doc.parts.append(Part(f"Table 1: best {what}", tables=[t]))
    # time to target
    if not ttt.empty:
        part = Part("Time to a validation target", paragraphs=[TARGET_RULE.format(what=metric) + "."])

        def ttt_cell(r0: pd.Series) -> str:
            med = (
                M.NOT_REACHED
                if r0["median"] is None or not math.isfinite(r0["median"])
                else num(r0["median"], 0)
            )
            div = f" ({r0['diverged']} diverged)" if r0["diverged"] else ""
            return (
                f"{r0['reached']} of {r0['n']}{div}; median {med}; over reached: median "
                f"{num(r0['median_reached'], 0)}, mean {num(r0['mean_reached'], 0)}"
            )

        for family, fg in ttt.groupby("family", sort=False):
            target = float(fg["target"].iloc[0])
            part.tables.append(
                Table(
                    "time_to_target",
                    f"{family_label(str(family))} family, target validation {metric} "
                    f"{'≥' if metric == 'accuracy' else '≤'} {target:.4g}",
                    fg.reset_index(drop=True),
                    _arm_frame(fg, selection, ttt_cell),
                    section=str(family),
                )
            )
        doc.parts.append(part)
    doc.parts.append(
        Part(
            "Files",
            paragraphs=[
                "savings.csv (per arm, method and reduction: the summary of the per-seed savings), "
                "table1.csv, "
                "time_to_target.csv (per-seed steps), trials.csv (every tuning setting's validation score), "
                "selection.json (the selected settings and their configs), sensitivity.png/.pdf; each table "
                "also as .md and .tex."
            ],
        )
    )
    return doc
