"""Metrics of the paper (arXiv 2501.09556, sections 5 and 6): steps to X% loss reduction, step savings
against the family baseline, and the statistics of Table 1.

Two savings computations are offered:

* :func:`paper_saving` repeats the paper's computation exactly (seed-mean curve, trailing mean, threshold
  from the baseline, first crossing counted as an index into the smoothed array, relative saving);
* :func:`per_seed_saving` is this project's own variant, not the paper's: runs are paired by seed, each
  seed's threshold comes from its own baseline run, steps are counted as real training steps (the end of the
  smoothing window), and the savings get a mean and a 95% t-interval.

Both smooth with :func:`trailing_mean`, the notebook's trailing mean window for window.

"Not reached" is a value (``None`` step counts and savings, counted in ``n_not_reached``), never an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from overshoot.analysis.choices import WINDOW_FRACTION

if TYPE_CHECKING:
    import pandas as pd

NOT_REACHED = "not reached"

FloatArray = np.ndarray


def trailing_mean(x: Sequence[float] | np.ndarray, window: int) -> FloatArray:
    """The paper's trailing mean: S[k] = mean(x[k : k + window]) for k = 0 .. len(x) - window - 1.

    This is the public notebook's ``[np.mean(x[i - window:i]) for i in range(window, len(x))]`` window for
    window: the mean of the window that ends at the last step is left out, so S has ``len(x) - window``
    entries (empty when x is not longer than the window). Computed in float64 from a cumulative sum; the
    rounding error is of order ``eps * sum|x|``. A NaN in ``x`` makes every later entry NaN.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}: pass a positive smoothing window")
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size <= window:
        return np.empty(0, dtype=np.float64)
    c = np.concatenate(([0.0], np.cumsum(a)))
    return (c[window:-1] - c[: -window - 1]) / window


def reduction_threshold(smoothed: np.ndarray, reduction: float = 0.95) -> float:
    """thr = S[0] - reduction * (S[0] - S[-1]) for a smoothed curve S.

    NaN (nothing can reach it) when S is empty, holds a NaN at either end, or does not decrease
    (S[-1] >= S[0]): a curve without loss reduction has no step count rather than a count of 0."""
    if not 0.0 < reduction <= 1.0:
        raise ValueError(f"reduction must lie in (0, 1], got {reduction}: pass e.g. 0.95 for 95%")
    if len(smoothed) == 0 or not smoothed[-1] < smoothed[0]:
        return math.nan
    return float(smoothed[0] - reduction * (smoothed[0] - smoothed[-1]))


def first_crossing(smoothed: np.ndarray, threshold: float) -> int | None:
    """The first index k with smoothed[k] <= threshold, or None when there is none (NaN never crosses)."""
    if not math.isfinite(threshold):
        return None
    hit = np.flatnonzero(np.asarray(smoothed) <= threshold)
    return int(hit[0]) if hit.size else None


def steps_to_reduction(
    loss: Sequence[float] | np.ndarray,
    reduction: float = 0.95,
    window: int = 400,
    threshold: float | None = None,
) -> int | None:
    """Training steps one curve needs until its trailing mean first reaches the loss-reduction threshold.

    The count is in real steps: the first crossing index plus ``window`` (the step at which that window
    ends), so short runs are not favoured. Without ``threshold`` it comes from the curve's own first and last
    smoothed values. None when the threshold is never reached or the curve is shorter than the window.
    """
    s = trailing_mean(loss, window)
    if s.size == 0:
        return None
    thr = reduction_threshold(s, reduction) if threshold is None else float(threshold)
    k = first_crossing(s, thr)
    return None if k is None else k + window


def window_for(requested: int, planned_steps: int) -> int:
    """The smoothing window of a comparison whose runs train ``planned_steps`` steps (their protocol's
    length): the ``requested`` window, shrunk to a ``WINDOW_FRACTION``-th of the planned steps when it is
    longer than that (at least 1). A function of the request and the protocol only, so no run outside a
    comparison changes its window."""
    if requested < 1:
        raise ValueError(f"window must be >= 1, got {requested}: pass a positive smoothing window")
    return (
        requested
        if requested * WINDOW_FRACTION <= planned_steps
        else max(1, planned_steps // WINDOW_FRACTION)
    )


def relative_saving(k_baseline: int | None, k_method: int | None) -> float | None:
    """100 * (k_B - k_O) / k_B; None when either was not reached or k_B is 0 (saving undefined)."""
    if k_baseline is None or k_method is None or k_baseline == 0:
        return None
    return 100.0 * (k_baseline - k_method) / k_baseline


def seed_mean_curve(curves: Iterable[Sequence[float] | np.ndarray]) -> FloatArray:
    """Element-wise mean over seeds, cut to the shortest curve (the paper assumes equal lengths)."""
    arrays = [np.asarray(c, dtype=np.float64).ravel() for c in curves]
    if not arrays:
        raise ValueError("no curves given: pass at least one loss curve per method")
    n = min(a.size for a in arrays)
    return np.mean(np.stack([a[:n] for a in arrays]), axis=0)


@dataclass(frozen=True)
class PaperSaving:
    """The paper's saving of one method against its baseline (step counts are smoothed-array indices)."""

    threshold: float
    k_baseline: int | None
    k_method: int | None
    saving: float | None  # percent; None = not reached (see ``k_*``) or undefined

    @property
    def reached(self) -> bool:
        return self.saving is not None


def paper_saving(
    baseline_curves: Iterable[Sequence[float] | np.ndarray],
    method_curves: Iterable[Sequence[float] | np.ndarray],
    reduction: float = 0.95,
    window: int = 400,
) -> PaperSaving:
    """The saving exactly as the paper computed it (arXiv 2501.09556, its public code's notebook).

    Seed-mean each method's curves element-wise, smooth with the trailing mean, take the threshold from
    the baseline's first and last smoothed values, find the first index where each smoothed curve is at or
    below it and return 100 * (k_B - k_O) / k_B with k counted as indices into the smoothed arrays.
    """
    sb = trailing_mean(seed_mean_curve(baseline_curves), window)
    so = trailing_mean(seed_mean_curve(method_curves), window)
    thr = reduction_threshold(sb, reduction)
    kb, ko = first_crossing(sb, thr), first_crossing(so, thr)
    return PaperSaving(threshold=thr, k_baseline=kb, k_method=ko, saving=relative_saving(kb, ko))


@dataclass(frozen=True)
class MeanCI:
    """Mean with the half width of a two-sided t confidence interval (NaN when n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Mean and t-interval half width t_{(1+c)/2, n-1} * s / sqrt(n) of the finite ``values``."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    n = int(a.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0)
    if n == 1:
        return MeanCI(float(a[0]), math.nan, 1)
    sem = float(np.std(a, ddof=1)) / math.sqrt(n)
    from scipy import stats  # imported here: the training CLI needs metrics but not scipy's 2 s import

    return MeanCI(float(a.mean()), float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem, n)


@dataclass(frozen=True)
class SeedSavings:
    """Per-seed savings of one method against its baseline, paired by seed, in real training steps."""

    seeds: tuple[int, ...]  # seeds present for both methods, ascending
    k_baseline: tuple[int | None, ...]
    k_method: tuple[int | None, ...]
    savings: tuple[float | None, ...]  # percent per seed; None = not reached
    summary: MeanCI  # over the seeds where both reached
    n_not_reached: int  # seeds where the method missed the threshold its baseline reached
    n_baseline_not_reached: int  # seeds whose baseline never reached its own threshold
    thresholds: tuple[float, ...] = ()  # per seed: the loss its baseline's curve sets (NaN: none)

    @property
    def reached(self) -> bool:
        return self.summary.n > 0


def per_seed_saving(
    baseline: Mapping[int, Sequence[float] | np.ndarray],
    method: Mapping[int, Sequence[float] | np.ndarray],
    reduction: float = 0.95,
    window: int = 400,
    confidence: float = 0.95,
) -> SeedSavings:
    """Savings paired by seed: for each seed in both maps, the threshold comes from that seed's baseline
    curve, both step counts are real steps (window end), and the saving is 100 * (k_B - k_O) / k_B.
    The summary is the mean and ``confidence`` t-interval over the seeds where both reached it."""
    seeds = tuple(sorted(set(baseline) & set(method)))
    kbs: list[int | None] = []
    kos: list[int | None] = []
    savings: list[float | None] = []
    thresholds: list[float] = []
    for s in seeds:
        sb = trailing_mean(baseline[s], window)
        thr = reduction_threshold(sb, reduction)
        thresholds.append(thr)
        kb = steps_to_reduction(baseline[s], reduction, window, threshold=thr)
        ko = steps_to_reduction(method[s], reduction, window, threshold=thr)
        kbs.append(kb)
        kos.append(ko)
        savings.append(relative_saving(kb, ko))
    return SeedSavings(
        seeds=seeds,
        k_baseline=tuple(kbs),
        k_method=tuple(kos),
        savings=tuple(savings),
        summary=mean_ci([v for v in savings if v is not None], confidence),
        n_not_reached=sum(kb is not None and ko is None for kb, ko in zip(kbs, kos, strict=True)),
        n_baseline_not_reached=sum(kb is None for kb in kbs),
        thresholds=tuple(thresholds),
    )


def best_over_epochs(epochs: pd.DataFrame, metric: str, scale: float = 1.0, split: str = "test") -> float:
    """A run's best ``split`` metric over its epochs times ``scale``: max accuracy, or min loss for loss
    tasks (NaN when the run logged none)."""
    import pandas as pd

    if metric not in ("accuracy", "loss"):
        raise ValueError(f"unknown metric {metric!r}: use 'accuracy' or 'loss'")
    if epochs.empty or "split" not in epochs:
        return math.nan
    vals = pd.to_numeric(epochs.loc[epochs["split"] == split, metric], errors="coerce").dropna()
    if vals.empty:
        return math.nan
    best = vals.max() if metric == "accuracy" else vals.min()
    return float(best) * scale


TABLE1_INPUT = ("task", "family", "optimizer", "gamma", "method", "seed", "value", "metric")
TABLE1_COLUMNS = (
    "task",
    "family",
    "optimizer",
    "gamma",
    "method",
    "metric",
    "mean",
    "half_width",
    "n",
    "best",
    "reference",
    "n_pairs",
    "mean_diff",
    "p_value",
    "star",
    "better",
    "worse",
)


def paired_test(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float, float, int]:
    """Two-sided paired t-test of a vs b over the seeds both have: (mean of a - b, p-value, pairs).

    p is NaN with fewer than two pairs or when every difference is equal."""
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]))
    if not seeds:
        return math.nan, math.nan, 0
    x = np.array([a[s] for s in seeds], dtype=np.float64)
    y = np.array([b[s] for s in seeds], dtype=np.float64)
    diff = float(np.mean(x - y))
    if len(seeds) < 2 or np.allclose(x - y, (x - y)[0], rtol=0.0, atol=0.0):
        return diff, math.nan, len(seeds)
    from scipy import stats

    return diff, float(stats.ttest_rel(x, y).pvalue), len(seeds)


def table1(
    records: pd.DataFrame,
    baselines: Mapping[str, Sequence[str]],
    alpha: float = 0.05,
    confidence: float = 0.95,
    order: Callable[[str, float, str], Any] | None = None,
) -> pd.DataFrame:
    """Table 1 statistics from one row per run (columns ``TABLE1_INPUT``; value = best test metric).

    Per (task, method): mean and t-interval over seeds; ``best`` marks the best mean of each task's family
    (highest accuracy, lowest loss); every method of a family other than its ``baselines`` (family ->
    method names, e.g. CM and NAG) gets a two-sided paired t-test, paired by seed, against the better of
    those baselines; ``star`` = p < alpha, ``better``/``worse`` its direction. Rows go by ``order``
    (optimizer, gamma, family) -> sort key within each (task, family), else in the order of ``records``.
    """
    import pandas as pd

    missing = [c for c in TABLE1_INPUT if c not in records.columns]
    if missing:
        raise ValueError(f"table1 records lack columns {missing}: build them with one row per run")
    rows: list[dict[str, object]] = []
    if records.empty:
        return pd.DataFrame(columns=list(TABLE1_COLUMNS))
    for (task, family), grp in records.groupby(["task", "family"], sort=True):
        metric = str(grp["metric"].iloc[0])
        higher = metric == "accuracy"
        by_method: dict[str, dict[int, float]] = {}
        meta: dict[str, tuple[str, float]] = {}
        for method, mg in grp.groupby("method", sort=False):
            by_method[str(method)] = {int(s): float(v) for s, v in zip(mg["seed"], mg["value"], strict=True)}
            meta[str(method)] = (str(mg["optimizer"].iloc[0]), float(mg["gamma"].iloc[0]))
        cis = {m: mean_ci(v.values(), confidence) for m, v in by_method.items()}
        finite = [ci.mean for ci in cis.values() if math.isfinite(ci.mean)]
        best_val = (max(finite) if higher else min(finite)) if finite else math.nan
        names = tuple(baselines.get(str(family), ()))
        bases = [b for b in names if b in cis and math.isfinite(cis[b].mean)]
        ref = None
        if bases:
            ref = (max if higher else min)(bases, key=lambda b: cis[b].mean)
        methods: list[str] = list(by_method)
        if order is not None:
            keys = {m: order(*meta[m], str(family)) for m in methods}
            methods.sort(key=keys.__getitem__)
        for method in methods:
            opt, gamma = meta[method]
            ci = cis[method]
            diff, p, npairs = math.nan, math.nan, 0
            reference = ""
            if ref is not None and method not in names:
                reference = ref
                diff, p, npairs = paired_test(by_method[method], by_method[ref])
            rows.append(
                {
                    "task": task,
                    "family": family,
                    "optimizer": opt,
                    "gamma": gamma,
                    "method": method,
                    "metric": metric,
                    "mean": ci.mean,
                    "half_width": ci.half_width,
                    "n": ci.n,
                    "best": bool(math.isfinite(ci.mean) and ci.mean == best_val),
                    "reference": reference,
                    "n_pairs": npairs,
                    "mean_diff": diff,
                    "p_value": p,
                    "star": bool(math.isfinite(p) and p < alpha),
                    "better": bool(math.isfinite(p) and p < alpha and (diff > 0) == higher),
                    "worse": bool(math.isfinite(p) and p < alpha and (diff > 0) != higher),
                }
            )
    return pd.DataFrame(rows, columns=list(TABLE1_COLUMNS))


def bootstrap_interval(
    values: Iterable[float | None], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of the finite ``values`` (resampling them, e.g. seeds, with
    replacement; ``seed`` fixes the resamples). (NaN, NaN) with fewer than two values."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return math.nan, math.nan
    if np.all(a == a[0]):
        return float(a[0]), float(a[0])
    from scipy import stats

    res = stats.bootstrap(
        (a,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def contains_zero(low: float, high: float) -> bool:
    """Whether the interval [low, high] contains 0, or is undefined (NaN): a difference within noise."""
    return not (math.isfinite(low) and math.isfinite(high)) or low <= 0.0 <= high


def steps_to_target(
    values: Sequence[float], steps: Sequence[int], target: float, higher_is_better: bool
) -> int | None:
    """The step count of the first evaluation whose value reaches ``target`` (``>=`` when higher is better,
    e.g. accuracy; ``<=`` for a loss); None when none does: a censored run (time-to-target at least its
    last step). ``steps[i]`` is the number of training steps taken when ``values[i]`` was evaluated."""
    if len(values) != len(steps):
        raise ValueError(f"{len(values)} values but {len(steps)} step counts: pass one step per evaluation")
    for v, s in zip(values, steps, strict=True):
        if math.isfinite(v) and (v >= target if higher_is_better else v <= target):
            return int(s)
    return None


@dataclass(frozen=True)
class TimeToTarget:
    """Time-to-target of a set of runs with misses censored: ``reached`` of ``n`` runs reached the target;
    ``median`` counts a miss as infinitely slow (None when half or more missed, so the median is a miss);
    ``mean_reached`` and ``median_reached`` are over the runs that reached it (None when none did)."""

    n: int
    reached: int
    median: float | None
    median_reached: float | None
    mean_reached: float | None


def time_to_target_summary(times: Iterable[int | None]) -> TimeToTarget:
    """Summary of per-run steps to a target (None = missed: censored, counted as slower than any hit)."""
    t = list(times)
    hits = np.asarray([x for x in t if x is not None], dtype=np.float64)
    n = len(t)
    med: float | None = None
    if n and hits.size:
        full = np.sort(np.concatenate([hits, np.full(n - hits.size, np.inf)]))
        m = float(np.median(full))
        med = m if math.isfinite(m) else None
    return TimeToTarget(
        n=n,
        reached=int(hits.size),
        median=med,
        median_reached=float(np.median(hits)) if hits.size else None,
        mean_reached=float(hits.mean()) if hits.size else None,
    )
