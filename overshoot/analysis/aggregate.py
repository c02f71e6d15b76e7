"""Across tasks: performance profiles (MLCommons AlgoPerf), the geometric mean of speedups, the interquartile
mean (IQM, rliable's aggregate) with stratified bootstrap intervals, and the Holm correction of a report's
tests. Everything starts from the per-seed savings of :func:`overshoot.analysis.savings.savings`, so every
step count here is the one the savings tables show.

    from overshoot.analysis import aggregate, results, savings
    sc = results.scan(["runs"])
    t = aggregate.targets(savings.savings(sc.records))   # steps (and seconds) to target per seed
    prof, ratios, left_out = aggregate.profiles(aggregate.task_times(t))

Definitions (the report's captions repeat them):

* **target**: per task (a task and its family's protocol), family and seed, the threshold of the savings
  path: the family baseline's smoothed training loss reduced by the report's reduction (95%); every method of
  the family, the baseline included, is timed to that threshold in real steps (the end of the smoothing
  window), and in seconds (the savings path's: the steps log's elapsed training time, :data:`TIME_COLUMN`,
  after that many steps) when the runs record it.
* **a method's time on a task**: the median over its seeds, a seed that never reaches the target counting as
  infinitely many steps; so a method missing on at least half its seeds misses the task (time infinite).
* **best method** of a task: the family's method with the least time on it (the baseline is one of them).
* **ratio**: a method's time over the best method's; infinite for a miss. The performance profile of a method
  is the fraction of the family's tasks whose ratio is at most tau (a miss never counts). A method must have
  runs on every task of its family to be profiled; one that lacks a task is left out and listed.
* **speedup** on a task: the baseline's time over the method's (above 1: faster); the geometric mean is over
  the tasks where both reached the target (the tasks missed are counted beside it).
* **IQM**: the interquartile mean (25% trimmed mean) of the per-seed speedups k_baseline / k_method over all
  tasks' seeds, a seed the method misses scoring 0 and a seed whose baseline misses left out (counted); its
  interval is a percentile bootstrap that resamples seeds within each task (stratified, as rliable's
  ``StratifiedBootstrap``) with :func:`scipy.stats.bootstrap`. rliable itself pins ``arch<8``, whose releases
  before 8 do not import under pandas 3, so the same statistic is computed here with scipy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# The steps log's elapsed training time: seconds at the end of each step.
TIME_COLUMN = "time_s"
MEASURES = ("steps", "seconds")
TARGET_COLUMNS = ("task", "protocol", "family", "baseline", "method", "seed", "steps", "seconds")
TASK_COLUMNS = ("task", "protocol", "family", "baseline", "method", "seeds", "reached", "steps", "seconds")
PROFILE_COLUMNS = ("measure", "family", "method", "tau", "fraction", "n_tasks")
RATIO_COLUMNS = ("measure", "family", "task", "protocol", "method", "value", "best", "ratio")
LEFT_OUT_COLUMNS = ("measure", "family", "method", "reason")
SPEEDUP_COLUMNS = (
    "measure",
    "family",
    "baseline",
    "method",
    "n_tasks",
    "tasks_reached",
    "tasks_missed",
    "tasks_baseline_missed",
    "geomean_speedup",
    "n_scores",
    "seeds_missed",
    "seeds_baseline_missed",
    "iqm",
    "iqm_low",
    "iqm_high",
)
# The taus a profile table shows (the figure draws the whole grid).
TABLE_TAUS = (1.0, 1.05, 1.1, 1.25, 1.5, 2.0)


def targets(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Steps and seconds to the target per (task, protocol, family, method, seed), the family baseline's
    own rows included (columns ``TARGET_COLUMNS``), from :func:`overshoot.analysis.savings.savings`'s
    frame: its step counts and the seconds at them (``seconds_baseline``, ``seconds_method``: steps.csv's
    ``time_s``), the same numbers as the savings tables'. Both are inf for a miss; seconds are NaN for a
    run logged before the training clock."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for row in per_seed.itertuples(index=False):
        task, protocol, family = str(row.task), str(row.protocol), str(row.family)
        seed = int(row.seed)
        for method, k, secs in (
            (str(row.baseline), row.k_baseline, row.seconds_baseline),
            (str(row.method), row.k_method, row.seconds_method),
        ):
            key = (task, protocol, family, method, seed)
            if key in seen:
                continue
            seen.add(key)
            missed = bool(pd.isna(k))
            rows.append(
                {
                    "task": task,
                    "protocol": protocol,
                    "family": family,
                    "baseline": str(row.baseline),
                    "method": method,
                    "seed": seed,
                    "steps": math.inf if missed else float(k),
                    "seconds": math.inf if missed else float(secs),
                }
            )
    return pd.DataFrame(rows, columns=list(TARGET_COLUMNS))


def _median(values: np.ndarray) -> float:
    """The median with misses as inf; NaN when a value is unknown (no time recorded)."""
    if values.size == 0 or np.isnan(values).any():
        return math.nan
    return float(np.median(values))


def task_times(targets_: pd.DataFrame) -> pd.DataFrame:
    """A method's time on each task (columns ``TASK_COLUMNS``): the median over its seeds of the steps and
    of the seconds to target, a miss counting as infinite; ``reached`` of ``seeds`` reached it."""
    import pandas as pd

    rows = []
    keys = ["task", "protocol", "family", "baseline", "method"]
    for key, g in targets_.groupby(keys, sort=False):
        steps = g["steps"].to_numpy(dtype=np.float64)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "seeds": len(g),
                "reached": int(np.isfinite(steps).sum()),
                "steps": _median(steps),
                "seconds": _median(g["seconds"].to_numpy(dtype=np.float64)),
            }
        )
    return pd.DataFrame(rows, columns=list(TASK_COLUMNS))


def tau_grid(ratios: Iterable[float], points: int = 401) -> np.ndarray:
    """The profile's taus: from 1 to 5% past the largest finite ratio (at least to 1.5), plus every finite
    ratio itself so each step of a profile is drawn where it happens."""
    r = np.asarray([x for x in ratios if math.isfinite(x)], dtype=np.float64)
    top = max(1.5, 1.05 * float(r.max())) if r.size else 1.5
    return np.unique(np.concatenate([np.linspace(1.0, top, points), r, np.asarray(TABLE_TAUS)]))


def profiles(
    times: pd.DataFrame, measure: str = "steps", taus: Sequence[float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Performance profiles per family from :func:`task_times`: (profile, ratios, left out).

    profile (``PROFILE_COLUMNS``): per family, method and tau, the fraction of the family's tasks on which
    the method's ``measure`` is at most tau times the best method's; ratios (``RATIO_COLUMNS``): each
    method's value, the task's best and their ratio (inf for a miss, and for every method on a task that no
    method reached); left out (``LEFT_OUT_COLUMNS``): the methods that lack a task of their family, and
    families with fewer than 2 tasks or (seconds) without a recorded time."""
    import pandas as pd

    if measure not in MEASURES:
        raise ValueError(f"measure {measure!r} is not one of {', '.join(MEASURES)}")
    prof_rows: list[dict[str, Any]] = []
    ratio_rows: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    for family, g in times.groupby("family", sort=False):
        units = list(dict.fromkeys(zip(g["task"], g["protocol"], strict=True)))
        if len(units) < 2:
            left.append({"measure": measure, "family": family, "method": "", "reason": "fewer than 2 tasks"})
            continue
        if g[measure].isna().any():
            left.append(
                {
                    "measure": measure,
                    "family": family,
                    "method": "",
                    "reason": f"runs without a recorded time ({TIME_COLUMN} in steps.csv)",
                }
            )
            continue
        keep = []
        for method, mg in g.groupby("method", sort=False):
            have = set(zip(mg["task"], mg["protocol"], strict=True))
            missing = [f"{t} [{p}]" for t, p in units if (t, p) not in have]
            if missing:
                left.append(
                    {
                        "measure": measure,
                        "family": family,
                        "method": method,
                        "reason": "no runs on " + ", ".join(missing),
                    }
                )
            else:
                keep.append(method)
        sel = g[g["method"].isin(keep)]
        family_ratios: dict[str, list[float]] = {m: [] for m in keep}
        for (task, protocol), ug in sel.groupby(["task", "protocol"], sort=False):
            vals = ug[measure].to_numpy(dtype=np.float64)
            best = float(vals.min())
            for method, v in zip(ug["method"], vals, strict=True):
                ratio = float(v) / best if math.isfinite(best) and math.isfinite(v) else math.inf
                family_ratios[str(method)].append(ratio)
                ratio_rows.append(
                    {
                        "measure": measure,
                        "family": family,
                        "task": task,
                        "protocol": protocol,
                        "method": method,
                        "value": float(v),
                        "best": best,
                        "ratio": ratio,
                    }
                )
        grid = np.asarray(
            taus if taus is not None else tau_grid(r for v in family_ratios.values() for r in v)
        )
        for method in keep:
            r = np.asarray(family_ratios[method], dtype=np.float64)
            for tau in grid:
                prof_rows.append(
                    {
                        "measure": measure,
                        "family": family,
                        "method": method,
                        "tau": float(tau),
                        "fraction": float(np.mean(r <= tau)),
                        "n_tasks": len(units),
                    }
                )
    return (
        pd.DataFrame(prof_rows, columns=list(PROFILE_COLUMNS)),
        pd.DataFrame(ratio_rows, columns=list(RATIO_COLUMNS)),
        pd.DataFrame(left, columns=list(LEFT_OUT_COLUMNS)),
    )


def geometric_mean(values: Iterable[float]) -> float:
    """exp(mean(log v)) of positive finite values; NaN when there are none."""
    v = np.asarray(list(values), dtype=np.float64)
    return float(np.exp(np.mean(np.log(v)))) if v.size else math.nan


def iqm(values: np.ndarray, axis: int | None = None) -> Any:
    """The interquartile mean: the mean of the middle 50% (scipy's 25% trimmed mean, rliable's IQM)."""
    from scipy import stats

    return stats.trim_mean(values, 0.25, axis=axis)


def stratified_iqm_interval(
    strata: Sequence[np.ndarray], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM of all ``strata``'s values (one array of seeds per task),
    each stratum resampled within itself (rliable's stratified bootstrap); a stratum of one value enters
    every resample as it is. (NaN, NaN) when no stratum has two values."""
    from scipy import stats

    multi = [np.asarray(s, dtype=np.float64) for s in strata if len(s) >= 2]
    fixed = np.concatenate([np.asarray(s, dtype=np.float64) for s in strata if len(s) < 2] or [np.empty(0)])
    if not multi:
        return math.nan, math.nan
    allv = np.concatenate([*multi, fixed])
    if np.all(allv == allv[0]):
        return float(allv[0]), float(allv[0])

    def statistic(*samples: np.ndarray, axis: int = -1) -> Any:
        shape = samples[0].shape[:-1]
        parts = [*samples, np.broadcast_to(fixed, (*shape, fixed.size))]
        return iqm(np.concatenate(parts, axis=-1), axis=-1)

    res = stats.bootstrap(
        tuple(multi),
        statistic,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def speedups(
    targets_: pd.DataFrame,
    measure: str = "steps",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per family and method other than the baseline (columns ``SPEEDUP_COLUMNS``): the geometric mean
    over tasks of the speedup baseline time / method time (:func:`task_times`' medians; tasks where either
    missed counted, not averaged), and the IQM of the per-seed speedups over all tasks with its stratified
    bootstrap interval (a seed the method misses scores 0; one whose baseline misses is left out and
    counted). Families with fewer than 2 tasks are left out (see :func:`profiles`)."""
    import pandas as pd

    if measure not in MEASURES:
        raise ValueError(f"measure {measure!r} is not one of {', '.join(MEASURES)}")
    times = task_times(targets_)
    rows: list[dict[str, Any]] = []
    for (family, baseline), g in times.groupby(["family", "baseline"], sort=False):
        units = list(dict.fromkeys(zip(g["task"], g["protocol"], strict=True)))
        if len(units) < 2 or g[measure].isna().any():
            continue
        base = {
            (t, p): v
            for t, p, m, v in zip(g["task"], g["protocol"], g["method"], g[measure], strict=True)
            if m == baseline
        }
        tg = targets_[(targets_["family"] == family) & (targets_["baseline"] == baseline)]
        base_seed = {
            (t, p, s): v
            for t, p, m, s, v in zip(
                tg["task"], tg["protocol"], tg["method"], tg["seed"], tg[measure], strict=True
            )
            if m == baseline
        }
        for method, mg in g.groupby("method", sort=False):
            if method == baseline:
                continue
            reached, missed, base_missed = [], 0, 0
            for t, p, v in zip(mg["task"], mg["protocol"], mg[measure], strict=True):
                b = base.get((t, p), math.nan)
                if not math.isfinite(b):
                    base_missed += 1
                elif not math.isfinite(v):
                    missed += 1
                else:
                    reached.append(b / v)
            strata: list[np.ndarray] = []
            seeds_missed = seeds_base_missed = 0
            ms = tg[tg["method"] == method]
            for (t, p), sg in ms.groupby(["task", "protocol"], sort=False):
                scores = []
                for s, v in zip(sg["seed"], sg[measure], strict=True):
                    b = base_seed.get((t, p, s), math.nan)
                    if not math.isfinite(b):
                        seeds_base_missed += 1
                    elif not math.isfinite(v):
                        seeds_missed += 1
                        scores.append(0.0)
                    else:
                        scores.append(b / v)
                if scores:
                    strata.append(np.asarray(scores, dtype=np.float64))
            allv = np.concatenate(strata) if strata else np.empty(0)
            low, high = stratified_iqm_interval(strata, confidence, n_resamples, seed)
            rows.append(
                {
                    "measure": measure,
                    "family": family,
                    "baseline": baseline,
                    "method": method,
                    "n_tasks": len(mg),
                    "tasks_reached": len(reached),
                    "tasks_missed": missed,
                    "tasks_baseline_missed": base_missed,
                    "geomean_speedup": geometric_mean(reached),
                    "n_scores": int(allv.size),
                    "seeds_missed": seeds_missed,
                    "seeds_baseline_missed": seeds_base_missed,
                    "iqm": float(iqm(allv)) if allv.size else math.nan,
                    "iqm_low": low,
                    "iqm_high": high,
                }
            )
    return pd.DataFrame(rows, columns=list(SPEEDUP_COLUMNS))


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' ``multipletests(method='holm')``) over the finite ``pvalues``
    (the family of tests); NaN stays NaN and does not count as a test."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(list(pvalues), dtype=np.float64)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def saving_p_value(savings: Iterable[float]) -> float:
    """Two-sided one-sample t-test of per-seed savings against 0 (the test the savings' t-interval
    inverts); NaN under 2 finite values or when they are all equal."""
    v = np.asarray([x for x in savings if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size < 2 or np.all(v == v[0]):
        return math.nan
    from scipy import stats

    return float(stats.ttest_1samp(v, 0.0).pvalue)
