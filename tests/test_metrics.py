"""Steps to loss reduction, savings (paper-style and per seed) and Table 1 statistics on hand-made data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from overshoot.analysis import metrics as M
from overshoot.analysis.results import method_order

SGD_BASELINES = {"sgd": ("sgd", "nesterov")}


def step_curve(drop: int, n: int = 2000, hi: float = 2.0, lo: float = 0.0) -> np.ndarray:
    """Loss ``hi`` for ``drop`` steps, then ``lo``: with window w and reduction 0.95 the trailing mean
    2*(drop-k)/w first reaches 0.1 at k = drop - floor(0.05*w) (no ties for w = 30)."""
    return np.concatenate([np.full(drop, hi), np.full(n - drop, lo)])


def naive_smooth(x: np.ndarray, w: int) -> np.ndarray:
    """The public notebook's trailing mean, verbatim up to the window name."""
    values = x
    return np.array([np.mean(values[i - w : i]) for i in range(w, len(values))])


def naive_first(s: np.ndarray, thr: float) -> int | None:
    for k, v in enumerate(s):
        if v <= thr:
            return k
    return None


def test_trailing_mean_matches_direct_means() -> None:
    x = np.random.default_rng(0).random(500)
    np.testing.assert_allclose(M.trailing_mean(x, 37), naive_smooth(x, 37), rtol=1e-12)
    assert M.trailing_mean(x, 37).shape == (500 - 37,)  # the window ending at the last step is left out
    assert M.trailing_mean(x, 500).size == 0 and M.trailing_mean(x, 501).size == 0
    assert M.trailing_mean(x, 499).shape == (1,)
    assert M.trailing_mean(x, 499)[0] == pytest.approx(x[:499].mean())
    with pytest.raises(ValueError, match="window"):
        M.trailing_mean(x, 0)


def test_paper_saving_matches_the_notebook_window_for_window() -> None:
    """A hand-made curve whose last step drops: the notebook's S leaves that window out, so S[-1], the
    threshold and the saving all differ from a trailing mean that keeps it."""
    w = 400
    values = np.concatenate([np.linspace(2.0, 1.0, 600), np.full(399, 1.0), [0.0]])  # N = 1000
    s = naive_smooth(values, w)
    assert s.shape == (600,)
    np.testing.assert_allclose(M.trailing_mean(values, w), s, rtol=1e-12, atol=1e-15)
    assert s[-1] == pytest.approx(np.mean(values[599:999]))  # steps N-401 .. N-2
    method = np.concatenate([np.linspace(2.0, 1.0, 450), np.full(550, 1.0)])
    sm = naive_smooth(method, w)
    thr = s[0] - 0.95 * (s[0] - s[-1])
    kb, ko = naive_first(s, thr), naive_first(sm, thr)
    assert kb is not None and ko is not None
    r = M.paper_saving([values], [method], 0.95, w)
    assert r.threshold == pytest.approx(thr, rel=1e-12)
    assert (r.k_baseline, r.k_method) == (kb, ko)
    assert r.saving == pytest.approx(100 * (kb - ko) / kb)
    # Keeping the last window (S with N - w + 1 entries) moves the threshold and the baseline's crossing.
    kept = np.array([np.mean(values[k : k + w]) for k in range(len(values) - w + 1)])
    thr_kept = kept[0] - 0.95 * (kept[0] - kept[-1])
    assert thr_kept < thr and naive_first(kept, thr_kept) != kb


def test_steps_to_reduction_counts_real_steps_at_window_end() -> None:
    # 2*(1000-k)/30 <= 0.1  <=>  k >= 998.5: first index 999, window end 999 + 30.
    assert M.steps_to_reduction(step_curve(1000), 0.95, 30) == 1029
    # 85%: threshold 0.3, 2*(1000-k)/30 <= 0.3 <=> k >= 995.5.
    assert M.steps_to_reduction(step_curve(1000), 0.85, 30) == 996 + 30
    # An explicit threshold is used as given: 2*(1000-k)/30 <= 1.01 <=> k >= 984.85.
    assert M.steps_to_reduction(step_curve(1000), 0.95, 30, threshold=1.01) == 985 + 30


def test_steps_to_reduction_not_reached_is_none() -> None:
    assert M.steps_to_reduction(step_curve(1000), 0.95, 30, threshold=-1.0) is None
    assert M.steps_to_reduction(np.ones(100), 0.95, 400) is None  # shorter than the window
    assert M.steps_to_reduction(np.linspace(1.0, 2.0, 1000), 0.95, 30) is None  # loss grows
    assert M.steps_to_reduction(np.full(1000, 3.0), 0.95, 30) is None  # no reduction at all
    diverged = step_curve(1000)
    diverged[1500:] = np.nan
    assert M.steps_to_reduction(diverged, 0.95, 30) is None


def test_paper_saving_single_seed_exact() -> None:
    r = M.paper_saving([step_curve(1000)], [step_curve(600)], 0.95, 30)
    assert r.threshold == pytest.approx(0.1)
    assert (r.k_baseline, r.k_method) == (999, 599)  # indices, as the paper counted
    assert r.saving == pytest.approx(100 * (999 - 599) / 999)
    assert r.reached


def test_paper_saving_seed_mean_matches_naive_recomputation() -> None:
    rng = np.random.default_rng(1)
    base = [step_curve(900 + 37 * s) + 0.01 * rng.random(2000) for s in range(4)]
    meth = [step_curve(500 + 53 * s) + 0.01 * rng.random(2000) for s in range(4)]
    w = 40
    sb, so = naive_smooth(np.mean(base, axis=0), w), naive_smooth(np.mean(meth, axis=0), w)
    thr = sb[0] - 0.95 * (sb[0] - sb[-1])
    kb, ko = naive_first(sb, thr), naive_first(so, thr)
    assert kb is not None and ko is not None
    r = M.paper_saving(base, meth, 0.95, w)
    assert (r.k_baseline, r.k_method) == (kb, ko)
    assert r.saving == pytest.approx(100 * (kb - ko) / kb)


def test_paper_saving_not_reached_is_a_value() -> None:
    never = step_curve(600, lo=1.0)  # flattens at 1.0, far above the baseline's threshold 0.1
    r = M.paper_saving([step_curve(1000)], [never], 0.95, 30)
    assert r.k_baseline == 999 and r.k_method is None and r.saving is None and not r.reached
    grows = np.linspace(1.0, 2.0, 2000)  # a baseline without loss reduction never reaches
    r = M.paper_saving([grows], [step_curve(600)], 0.95, 30)
    assert r.k_baseline is None and r.saving is None and math.isnan(r.threshold)


def test_per_seed_saving_exact_and_ci_matches_scipy() -> None:
    seeds = [30, 10, 20, 40]
    base = {s: step_curve(1000 + 10 * s) for s in seeds}
    meth = {s: step_curve(600 + 7 * s) for s in seeds}
    meth[99] = step_curve(500)  # a seed without a baseline is not paired
    r = M.per_seed_saving(base, meth, 0.95, 30)
    assert r.seeds == (10, 20, 30, 40)
    kb = [1000 + 10 * s - 1 + 30 for s in r.seeds]
    ko = [600 + 7 * s - 1 + 30 for s in r.seeds]
    assert r.k_baseline == tuple(kb) and r.k_method == tuple(ko)
    expected = [100 * (b - o) / b for b, o in zip(kb, ko, strict=True)]
    np.testing.assert_allclose(r.savings, expected, rtol=1e-12)
    lo, hi = stats.t.interval(0.95, len(expected) - 1, loc=np.mean(expected), scale=stats.sem(expected))
    assert r.summary.n == 4
    assert r.summary.mean == pytest.approx(np.mean(expected))
    assert (r.summary.low, r.summary.high) == (pytest.approx(lo), pytest.approx(hi))


def test_per_seed_saving_counts_not_reached() -> None:
    base = {1: step_curve(1000), 2: step_curve(1100), 3: np.linspace(1.0, 2.0, 2000)}
    meth = {1: step_curve(600), 2: step_curve(700, lo=1.0), 3: step_curve(500)}
    r = M.per_seed_saving(base, meth, 0.95, 30)
    assert r.savings[1] is None and r.savings[2] is None
    assert r.n_not_reached == 1 and r.n_baseline_not_reached == 1
    assert r.summary.n == 1 and r.summary.mean == pytest.approx(100 * (1029 - 629) / 1029)
    assert math.isnan(r.summary.half_width)
    none = M.per_seed_saving({1: step_curve(1000)}, {1: np.full(2000, 5.0)}, 0.95, 30)
    assert not none.reached and none.n_not_reached == 1


def test_mean_ci_matches_scipy() -> None:
    x = [1.0, 2.5, 2.0, 4.0, 3.5]
    ci = M.mean_ci(x, 0.95)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert (ci.low, ci.high, ci.n) == (pytest.approx(lo), pytest.approx(hi), 5)
    assert M.mean_ci([], 0.95).n == 0
    assert M.mean_ci([float("nan"), 2.0]).n == 1


def test_best_over_epochs() -> None:
    e = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1, 2, 2],
            "split": ["val", "test"] * 3,
            "loss": [0.9, 0.8, 0.5, 0.6, 0.7, 0.4],
            "accuracy": [0.99, 0.5, 0.7, 0.9, 0.8, 0.6],
        }
    )
    assert M.best_over_epochs(e, "accuracy") == 0.9
    assert M.best_over_epochs(e, "loss", 100.0) == pytest.approx(40.0)
    assert math.isnan(M.best_over_epochs(e.iloc[0:0], "loss"))
    with pytest.raises(ValueError, match="metric"):
        M.best_over_epochs(e, "f1")


def _records(values: dict[str, dict[int, float]], metric: str = "accuracy") -> pd.DataFrame:
    rows = []
    for method, per_seed in values.items():
        opt, _, g = method.partition("-g")
        for seed, v in per_seed.items():
            rows.append((method, opt, float(g or 0), seed, v))
    rng = np.random.default_rng(3)
    rows = [rows[i] for i in rng.permutation(len(rows))]  # order must not matter: pairing is by seed
    return pd.DataFrame(
        {
            "task": "t",
            "family": "sgd",
            "optimizer": [r[1] for r in rows],
            "gamma": [r[2] for r in rows],
            "method": [r[0] for r in rows],
            "seed": [r[3] for r in rows],
            "value": [r[4] for r in rows],
            "metric": metric,
        }
    )


def test_table1_best_star_and_pairing_by_seed() -> None:
    seeds = [10, 20, 30, 40, 50]
    nag = {10: 0.80, 20: 0.90, 30: 0.70, 40: 0.85, 50: 0.75}
    cm = {s: v - 0.02 for s, v in nag.items()}
    shift = {10: 0.031, 20: 0.029, 30: 0.030, 40: 0.032, 50: 0.028}
    g3 = {s: nag[s] + shift[s] for s in seeds}  # clearly better than NAG, seed by seed
    noise = {10: 0.01, 20: -0.012, 30: 0.005, 40: -0.004, 50: 0.002}
    g5 = {s: nag[s] + noise[s] for s in seeds}  # no real difference
    t = M.table1(
        _records({"sgd": cm, "nesterov": nag, "sgd_os-g3": g3, "sgd_os-g5": g5}),
        SGD_BASELINES,
        order=method_order,
    )
    t = t.set_index("method")
    assert list(t.index) == ["sgd", "nesterov", "sgd_os-g3", "sgd_os-g5"]
    assert t.loc["sgd_os-g3", "best"] and t["best"].sum() == 1
    assert t.loc["sgd_os-g3", "reference"] == "nesterov" and t.loc["sgd", "reference"] == ""
    a, b = [g3[s] for s in seeds], [nag[s] for s in seeds]
    assert t.loc["sgd_os-g3", "p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t.loc["sgd_os-g3", "star"] and not t.loc["sgd_os-g5", "star"]
    assert t.loc["sgd_os-g5", "p_value"] == pytest.approx(
        stats.ttest_rel([g5[s] for s in seeds], [nag[s] for s in seeds]).pvalue
    )
    assert not t.loc["nesterov", "star"] and math.isnan(t.loc["nesterov", "p_value"])
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(a), scale=stats.sem(a))
    assert t.loc["sgd_os-g3", "mean"] == pytest.approx(np.mean(a))
    assert t.loc["sgd_os-g3", "half_width"] == pytest.approx((hi - lo) / 2)


def test_table1_loss_rows_prefer_lower_and_pick_better_baseline() -> None:
    cm = {1: 1.0, 2: 1.2, 3: 1.1}
    nag = {1: 1.3, 2: 1.4, 3: 1.5}  # worse (higher loss): CM is the reference
    os3 = {1: 0.9, 2: 1.0, 3: 1.05}
    t = M.table1(_records({"sgd": cm, "nesterov": nag, "sgd_os-g3": os3}, "loss"), SGD_BASELINES)
    t = t.set_index("method")
    assert t.loc["sgd_os-g3", "best"] and not t.loc["sgd", "best"]
    assert t.loc["sgd_os-g3", "reference"] == "sgd"
    assert t.loc["sgd_os-g3", "mean_diff"] == pytest.approx(np.mean([-0.1, -0.2, -0.05]))


def test_table1_needs_its_columns() -> None:
    with pytest.raises(ValueError, match="columns"):
        M.table1(pd.DataFrame({"task": ["t"]}), SGD_BASELINES)


def test_table1_marks_the_direction_and_takes_given_baselines() -> None:
    g0 = {1: 0.80, 2: 0.90, 3: 0.70, 4: 0.85, 5: 0.75}
    worse = {s: v - 0.03 - 0.001 * s for s, v in g0.items()}  # clearly worse, seed by seed
    better = {s: v + 0.02 + 0.001 * s for s, v in g0.items()}
    recs = _records({"sgd_os-g0": g0, "sgd_os-g3": better, "sgd_os-g7": worse})
    t = M.table1(recs, baselines={"sgd": ("sgd_os-g0",)}).set_index("method")
    assert t.loc["sgd_os-g3", "reference"] == "sgd_os-g0" and t.loc["sgd_os-g0", "reference"] == ""
    assert t.loc["sgd_os-g3", "better"] and not t.loc["sgd_os-g3", "worse"]
    assert t.loc["sgd_os-g7", "worse"] and not t.loc["sgd_os-g7", "better"] and t.loc["sgd_os-g7", "star"]
    # for a loss, lower is better: the same numbers flip direction
    t = M.table1(_records({"sgd_os-g0": g0, "sgd_os-g7": worse}, "loss"), baselines={"sgd": ("sgd_os-g0",)})
    assert t.set_index("method").loc["sgd_os-g7", "better"]


def test_table1_compares_every_method_that_is_not_a_baseline() -> None:
    """A user's optimizer of the family (no gamma, not an overshoot method) is tested against the better
    baseline like SGDO is, and sorts after the built-in methods."""
    cm = {1: 0.80, 2: 0.90, 3: 0.70, 4: 0.85}
    nag = {s: v - 0.01 for s, v in cm.items()}
    mine = {s: v + 0.02 + 0.001 * s for s, v in cm.items()}
    recs = _records({"mysgd": mine, "sgd": cm, "nesterov": nag, "sgd_os-g3": cm})
    t = M.table1(recs, SGD_BASELINES, order=method_order).set_index("method")
    assert list(t.index) == ["sgd", "nesterov", "sgd_os-g3", "mysgd"]
    assert t.loc["mysgd", "reference"] == "sgd" and t.loc["mysgd", "n_pairs"] == 4
    a, b = [mine[s] for s in cm], [cm[s] for s in cm]
    assert t.loc["mysgd", "p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t.loc["mysgd", "better"] and t.loc["mysgd", "best"]
    assert t.loc["sgd", "reference"] == t.loc["nesterov", "reference"] == ""
