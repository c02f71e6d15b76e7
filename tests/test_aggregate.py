"""Across tasks (overshoot.analysis.aggregate): performance profiles, the geometric mean of speedups and the
IQM on a hand-made two-task store whose steps to target are known exactly, and the Holm correction against
a hand computation.

The store's training losses are steps: 1 before step K, 0 from K on. With a 10-step window the trailing
mean first reaches the baseline's 95% threshold (0.05) at index K, so the steps to target are K + 10; a
curve that stays at 1 never reaches it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from overshoot.analysis import aggregate as A
from overshoot.analysis import results, savings
from overshoot.config import methods
from overshoot.config.schema import STEP_COLUMNS
from overshoot.store.writer import RunWriter, run_path

N_STEPS, WINDOW = 200, 10
NEVER = None
# task -> method (optimizer, gamma) -> K per seed 0, 1 (None: never reaches the target)
K = {
    "digits": {("sgd", 0.0): (90, 110), ("sgd_os", 3.0): (70, 70), ("sgd_os", 5.0): (50, NEVER)},
    "housing": {("sgd", 0.0): (150, 150), ("sgd_os", 3.0): (110, 130), ("sgd_os", 5.0): (70, 90)},
}
METRIC = {"digits": ("accuracy", 1.0), "housing": ("loss", 100.0)}
SECONDS_PER_STEP = {"sgd": 1.0, "sgd_os-g3": 2.0, "sgd_os-g5": 1.0}  # time_s: g3's steps cost twice CM's


def write_step_run(out: Path, task: str, opt: str, gamma: float, seed: int, k: int | None) -> Path:
    """A completed run whose base loss is 1 before step ``k`` and 0 from it on (1 throughout for None)."""
    metric, scale = METRIC[task]
    family = methods.get(opt).family
    config: dict[str, object] = {
        "task": task,
        "optimizer": opt,
        "family": family,
        "gamma": gamma,
        "seed": seed,
        "hparams": {"lr": 0.01, "momentum": 0.9, "batch_size": 32, "epochs": 2, "delay": 0},
    }
    t = np.arange(N_STEPS)
    loss = np.ones(N_STEPS) if k is None else (t < k).astype(np.float64)
    w = RunWriter(run_path(out, config), step_columns=STEP_COLUMNS)
    w.start(
        config,
        {"task": task, "optimizer": opt, "family": family, "gamma": gamma, "seed": seed},
        resume_rows=(0, 0),
    )
    w.append_steps(
        {
            "step": t + 1,
            "epoch": t // (N_STEPS // 2),
            "base_loss": loss,
            "train_loss": loss,
            "lr": np.full(N_STEPS, 0.01),
            "grad_norm": np.ones(N_STEPS),
            "time_s": SECONDS_PER_STEP[methods.label(opt, gamma)] * (t + 1.0),
        }
    )
    acc = ["0.9", "0.9"] if metric == "accuracy" else ["", ""]
    w.append_epochs(
        {
            "epoch": [0, 0, 1, 1],
            "split": ["val", "test"] * 2,
            "loss": [0.5, 0.5, 0.4, 0.4],
            "accuracy": acc * 2,
        }
    )
    w.write_info(
        status="completed",
        metric=metric,
        metric_scale=scale,
        ended="2026-01-01T00:00:00",
        steps=N_STEPS,
        device="cpu (x86_64)",
        cpu_threads=1,
        git_rev="abc123",
        versions={"torch": "2.14.1"},
    )
    return w.path


def write_two_task_store(out: Path) -> Path:
    for task, by_method in K.items():
        for (opt, gamma), ks in by_method.items():
            for seed, k in enumerate(ks):
                write_step_run(out, task, opt, gamma, seed, k)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_task_store(tmp_path_factory.mktemp("two-task"))


@pytest.fixture(scope="module")
def scanned(store: Path) -> results.Scan:
    sc = results.scan([store])
    assert len(sc.records) == 12 and sc.left_out.empty
    return sc


@pytest.fixture(scope="module")
def targets(scanned: results.Scan) -> pd.DataFrame:
    return A.targets(savings.savings(scanned.records, 0.95, WINDOW))


def _steps(k: int | None) -> float:
    return math.inf if k is None else k + WINDOW


def test_targets_are_the_savings_paths_steps(targets: pd.DataFrame) -> None:
    got = {
        (t, m, s): v
        for t, m, s, v in zip(
            targets["task"], targets["method"], targets["seed"], targets["steps"], strict=True
        )
    }
    want = {
        (task, methods.label(o, g), seed): _steps(k)
        for task, by in K.items()
        for (o, g), ks in by.items()
        for seed, k in enumerate(ks)
    }
    assert got == want
    per_step = targets["method"].map(SECONDS_PER_STEP)
    assert targets["seconds"].tolist() == (per_step * targets["steps"]).tolist()  # time_s after those steps


def test_profiles_match_the_hand_computation(targets: pd.DataFrame) -> None:
    times = A.task_times(targets)
    med = times.set_index(["task", "method"])["steps"]
    assert med[("digits", "sgd")] == 110 and med[("digits", "sgd_os-g3")] == 80
    assert math.isinf(med[("digits", "sgd_os-g5")])  # one of two seeds missed: the median is a miss
    assert med[("housing", "sgd_os-g5")] == 90
    prof, ratios, left = A.profiles(times, "steps", taus=[1.0, 1.4, 1.5, 1.8, 2.0])
    assert left.empty
    r = ratios.set_index(["task", "method"])["ratio"]
    assert r[("digits", "sgd")] == 110 / 80 and r[("digits", "sgd_os-g3")] == 1.0
    assert math.isinf(r[("digits", "sgd_os-g5")])
    assert r[("housing", "sgd")] == 160 / 90 and r[("housing", "sgd_os-g3")] == 130 / 90
    rho = prof.pivot_table(index="method", columns="tau", values="fraction")
    assert rho.loc["sgd"].tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert rho.loc["sgd_os-g3"].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert rho.loc["sgd_os-g5"].tolist() == [0.5, 0.5, 0.5, 0.5, 0.5]  # the digits miss never counts
    assert set(prof["n_tasks"]) == {2}


def test_geometric_mean_and_iqm_match_the_hand_computation(targets: pd.DataFrame) -> None:
    sp = A.speedups(targets, "steps", n_resamples=2000).set_index("method")
    assert list(sp.index) == ["sgd_os-g3", "sgd_os-g5"]
    assert sp.loc["sgd_os-g3", "geomean_speedup"] == pytest.approx(math.sqrt(110 / 80 * 160 / 130), rel=1e-12)
    # sgd_os-g5 missed digits: the mean is over housing alone, the miss counted beside it
    assert sp.loc["sgd_os-g5", "geomean_speedup"] == pytest.approx(160 / 90, rel=1e-12)
    assert (sp.loc["sgd_os-g5", "tasks_reached"], sp.loc["sgd_os-g5", "tasks_missed"]) == (1, 1)
    # per-seed speedups: g3 (1.25, 1.5 | 4/3, 8/7), IQM = mean of the middle two = (1.25 + 4/3) / 2
    assert sp.loc["sgd_os-g3", "iqm"] == pytest.approx((1.25 + 4 / 3) / 2, rel=1e-12)
    # g5 (5/3, miss -> 0 | 2, 1.6): middle two 1.6 and 5/3
    assert sp.loc["sgd_os-g5", "iqm"] == pytest.approx((1.6 + 5 / 3) / 2, rel=1e-12)
    assert sp.loc["sgd_os-g5", "seeds_missed"] == 1
    for m in sp.index:
        lo, hi = sp.loc[m, "iqm_low"], sp.loc[m, "iqm_high"]
        assert lo <= sp.loc[m, "iqm"] <= hi and lo < hi


def test_stratified_bootstrap_resamples_within_tasks_only() -> None:
    # Two tasks whose values never mix: every resample keeps two values of each task, so the IQM of four
    # values (the middle two) is one value of each task: its interval stays inside [10 + 1, 10 + 2].
    lo, hi = A.stratified_iqm_interval([np.array([0.0, 1.0]), np.array([10.0, 11.0])], n_resamples=2000)
    assert 5.0 <= lo <= hi <= 6.0
    # a task of one seed enters every resample as it is: [1, 1, 7] in each, trimmed mean of 3 values = 3
    lo, hi = A.stratified_iqm_interval([np.array([1.0, 1.0]), np.array([7.0])], n_resamples=500)
    assert (lo, hi) == pytest.approx((3.0, 3.0))


def test_seconds_profile_uses_the_time_column(scanned: results.Scan, targets: pd.DataFrame) -> None:
    t = targets
    row = t[(t["task"] == "digits") & (t["method"] == "sgd_os-g3") & (t["seed"] == 0)].iloc[0]
    assert row["seconds"] == 2.0 * 80  # the elapsed time after its 80 steps
    _, ratios, left = A.profiles(A.task_times(t), "seconds", taus=[1.0])
    assert left.empty
    r = ratios.set_index(["task", "method"])["ratio"]
    assert r[("digits", "sgd")] == 1.0 and r[("digits", "sgd_os-g3")] == 160 / 110
    # without a time column the seconds profile is left out with the reason
    per_seed = savings.savings(scanned.records, 0.95, WINDOW)
    untimed = A.targets(per_seed.assign(seconds_baseline=math.nan, seconds_method=math.nan))
    prof, _, left = A.profiles(A.task_times(untimed), "seconds")
    assert prof.empty and list(left["reason"]) == ["runs without a recorded time (time_s in steps.csv)"]


def test_a_method_missing_a_task_is_left_out_and_listed(targets: pd.DataFrame) -> None:
    t = targets[~((targets["task"] == "housing") & (targets["method"] == "sgd_os-g5"))]
    prof, _, left = A.profiles(A.task_times(t), "steps")
    assert "sgd_os-g5" not in set(prof["method"])
    assert left.loc[0, "method"] == "sgd_os-g5" and "housing" in left.loc[0, "reason"]


def test_holm_matches_a_hand_computation() -> None:
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> max(0.06, 0.04)
    got = A.holm([0.01, 0.04, math.nan, 0.03, 0.005])
    assert got[[0, 1, 3, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02], rel=1e-12)
    assert math.isnan(got[2])
    assert A.holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])  # capped at the running max, never above 1
    assert A.holm([0.7, 0.9]).tolist() == [1.0, 1.0]


def test_table1_marks_follow_the_holm_adjusted_p() -> None:
    from overshoot.analysis.report.model import holm_marks

    t1 = pd.DataFrame(
        {
            "metric": ["accuracy", "accuracy", "loss", "loss"],
            "mean_diff": [0.5, -0.5, 0.5, -0.5],
            "p_value": [0.01, 0.04, 0.03, math.nan],
        }
    )
    got = holm_marks(t1, alpha=0.05)
    assert got["p_holm"].iloc[:3].tolist() == pytest.approx([0.03, 0.06, 0.06])  # 3 tests: 0.01 x 3, ...
    assert got["star"].tolist() == [True, False, False, False]  # 0.04 and 0.03 pass alone, not after Holm
    assert got["better"].tolist() == [True, False, False, False] and not got["worse"].any()
    assert got["p_value"].iloc[1] == 0.04  # the test's own p is kept


def test_the_report_of_two_tasks_has_the_cross_task_section(store: Path, tmp_path: Path) -> None:
    from overshoot.analysis import report as R
    from overshoot.analysis.report import cli, crosstask
    from overshoot.analysis.report.render import Figure

    out = tmp_path / "rep"
    rep = R.build_report(results.scan([store]), 0.95, WINDOW)
    assert rep.cross_task is not None
    cli.write_report(rep, out, ["md", "csv"], figures=False)
    for name in ("profile_steps", "profile_seconds", "speedups", "task_times"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.md").is_file()
    assert "## Across tasks" in (out / "report.md").read_text()
    # the profile figure, and the document places it in the section
    png, pdf = crosstask.profile_figure(rep.cross_task, tmp_path / "figures" / "profiles")
    assert png.stat().st_size > 0 and pdf.suffix == ".pdf"
    doc = cli.document(rep, [Figure(png, "figures/profiles.png", "profiles")])
    part = next(p for p in doc.parts if p.title == "Across tasks")
    assert [f.rel for f in part.figures] == ["figures/profiles.png"]
    assert [t.name for t in part.tables] == ["profile_steps", "profile_seconds", "speedups", "task_times"]
    prof = pd.read_csv(out / "profile_steps.csv")
    at_2 = prof[prof["tau"] == 2.0].set_index("method")["fraction"]
    assert at_2.to_dict() == {"sgd": 1.0, "sgd_os-g3": 1.0, "sgd_os-g5": 0.5}
    # the savings tables' p (Holm): each comparison's t-test p, Holm-adjusted across the report's tests
    seeds = pd.read_csv(out / "savings_per_seed.csv")
    p = seeds["p_value"].to_numpy()
    assert np.isnan(p).sum() == 1  # digits SGDO gamma=5: one seed reached, no test
    assert seeds["p_holm"].to_numpy() == pytest.approx(A.holm(p), nan_ok=True)
    assert "Holm-corrected across the 3 tests" in (out / "savings_per_seed.md").read_text()


def test_the_profile_figure_of_a_store_with_one_untimed_task(store: Path, tmp_path: Path) -> None:
    """A task logged before the training clock (no time_s) beside a timed one: the seconds profile is left
    out with its reason and the figure still draws the steps profile."""
    import shutil

    from overshoot.analysis import report as R
    from overshoot.analysis.report import crosstask

    mixed = tmp_path / "mixed"
    shutil.copytree(store, mixed)
    for f in (mixed / "housing").rglob("steps.csv"):
        rows = [line.rsplit(",", 1)[0] for line in f.read_text().splitlines()]
        f.write_text("\n".join(rows) + "\n")
    rep = R.build_report(results.scan([mixed]), 0.95, WINDOW)
    assert rep.cross_task is not None
    png, _ = crosstask.profile_figure(rep.cross_task, tmp_path / "profiles")
    assert png.stat().st_size > 0
