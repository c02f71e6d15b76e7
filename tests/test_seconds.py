"""Seconds to target beside steps to target: savings.savings and savings.saving_summary give the elapsed
training seconds (steps.csv's time_s) at the step counts of the step saving, and a seconds saving from the
same seeds, pairing and window; runs logged before the training clock read, with NaN seconds.

The hand-made store's losses are 1 before step K and 0 from it on: with a 10-step window the steps to the
baseline's 95% threshold are K + 10; time_s after step t (0-based) is SECONDS_PER_STEP * (t + 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from overshoot.analysis import results, savings
from overshoot.config.schema import STEP_COLUMNS, UNTIMED_STEP_COLUMNS
from overshoot.store.writer import RunWriter, run_path

N_STEPS, WINDOW = 200, 10
SECONDS_PER_STEP = {"sgd": 1.0, "sgd_os": 2.0}  # the overshoot run's steps cost twice the baseline's
# (optimizer, gamma) -> K per seed; seed 2 is logged without time_s (a run begun before the clock)
K = {("sgd", 0.0): (90, 110, 90), ("sgd_os", 3.0): (70, None, 70)}


def _write(out: Path, opt: str, gamma: float, seed: int, k: int | None) -> None:
    config = {
        "task": "digits",
        "optimizer": opt,
        "family": "sgd",
        "gamma": gamma,
        "seed": seed,
        "hparams": {"lr": 0.01, "momentum": 0.9, "batch_size": 32, "epochs": 2, "delay": 0},
    }
    timed = seed != 2
    w = RunWriter(run_path(out, config), step_columns=STEP_COLUMNS if timed else UNTIMED_STEP_COLUMNS)
    w.start(
        config,
        {"task": "digits", "optimizer": opt, "family": "sgd", "gamma": gamma, "seed": seed},
        resume_rows=(0, 0),
    )
    t = np.arange(N_STEPS)
    loss = np.ones(N_STEPS) if k is None else (t < k).astype(np.float64)
    w.append_steps(
        {
            "step": t,
            "epoch": t // (N_STEPS // 2),
            "base_loss": loss,
            "train_loss": loss,
            "lr": np.full(N_STEPS, 0.01),
            "grad_norm": np.ones(N_STEPS),
            "time_s": SECONDS_PER_STEP[opt] * (t + 1.0),
        }
    )
    w.append_epochs(
        {"epoch": [0, 0, 1, 1], "split": ["val", "test"] * 2, "loss": [0.5] * 4, "accuracy": [0.9] * 4}
    )
    w.write_info(status="completed", metric="accuracy", metric_scale=1.0, steps=N_STEPS, eval_rows=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> list[results.RunRecord]:
    out = tmp_path_factory.mktemp("store")
    for (opt, gamma), ks in K.items():
        for seed, k in enumerate(ks):
            _write(out, opt, gamma, seed, k)
    scan = results.scan([out])
    assert len(scan.records) == 6, scan
    return list(scan.records)


def test_old_and_new_headers_read(store: list[results.RunRecord]) -> None:
    by_seed = {(r.optimizer, r.seed): r for r in store}
    assert by_seed["sgd", 2].time_s is None
    np.testing.assert_array_equal(by_seed["sgd_os", 0].time_s, 2.0 * np.arange(1, N_STEPS + 1))


def test_seconds_to_target_per_seed(store: list[results.RunRecord]) -> None:
    df = savings.savings(store, 0.95, WINDOW).set_index("seed")
    assert list(df.columns[-3:]) == ["seconds_baseline", "seconds_method", "seconds_saving"]
    assert df["k_baseline"].tolist() == [100, 120, 100] and df["k_method"].tolist()[::2] == [80, 80]
    # seed 0: the method's 80 steps take 160 s, the baseline's 100 steps 100 s: 60 % more seconds
    assert (df.loc[0, "seconds_baseline"], df.loc[0, "seconds_method"]) == (100.0, 160.0)
    assert df.loc[0, "saving"] == 20.0 and df.loc[0, "seconds_saving"] == -60.0
    # seed 1: the method never reaches the target; seed 2: logged without time_s
    assert df.loc[1, "seconds_baseline"] == 120.0 and math.isnan(df.loc[1, "seconds_method"])
    assert math.isnan(df.loc[1, "seconds_saving"])
    assert (
        df.loc[2, "saving"] == 20.0
        and df.loc[2, ["seconds_baseline", "seconds_method", "seconds_saving"]].isna().all()
    )


def test_the_summary_takes_the_same_seconds(store: list[results.RunRecord]) -> None:
    (row,) = savings.saving_summary(store, 0.95, WINDOW).to_dict("records")
    per_seed = savings.savings(store, 0.95, WINDOW)
    assert row["seconds_n"] == 1 and row["seconds_mean"] == -60.0 and math.isnan(row["seconds_half_width"])
    assert row["seconds_baseline_mean"] == per_seed["seconds_baseline"].mean() == 110.0
    assert row["seconds_method_mean"] == 160.0
    assert row["n"] == 2 and row["mean"] == 20.0  # the step saving: seeds 0 and 2
