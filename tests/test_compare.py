"""``overshoot-bench-report A B --compare`` on two synthetic stores of different code revisions: digits under
one protocol in both (SGDO faster in B), housing under another lr in each (named, not matched), AdamW only in
A (listed). The matched numbers are each store's own report numbers, the difference B - A with scipy's Welch
interval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import write_run

from overshoot.analysis import report as R

SEEDS = (10, 20, 30)


def _store(root: Path, rev: str, sgdo_tau: float, housing_lr: float, adam: bool) -> Path:
    runs = [("digits", "sgd", 0.0, 200.0, 1e-3), ("digits", "sgd_os", 3.0, sgdo_tau, 1e-3)]
    runs += [("housing", "sgd", 0.0, 200.0, housing_lr), ("housing", "sgd_os", 3.0, 160.0, housing_lr)]
    if adam:
        runs.append(("digits", "adam", 0.0, 150.0, 1e-3))
    for task, opt, gamma, tau, lr in runs:
        for seed in SEEDS:
            path = write_run(root, task, opt, gamma, tau, seed, lr=lr)
            info = json.loads((path / "run.json").read_text())
            info["git_rev"] = rev  # the two stores come from two code revisions
            (path / "run.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("compare")
    a = _store(base / "a", "aaaa1111", 160.0, 1e-3, adam=True)
    b = _store(base / "b", "bbbb2222", 120.0, 2e-3, adam=False)
    out = base / "out"
    assert R.main([str(a), str(b), "--compare", "--out", str(out), "--window", "100"]) == 0
    return a, b, out


def test_matched_rows_and_their_difference(compared: tuple[Path, Path, Path]) -> None:
    a, b, out = compared
    rows = pd.read_csv(out / "compare.csv")
    # only digits' SGD family is in both stores under one protocol
    assert list(rows["method"]) == ["sgd", "sgd_os-g3"] and set(rows["task"]) == {"digits"}
    per_seed = {
        s: R.build_report([s], window=100).seed_savings.query("task == 'digits' and method == 'sgd_os-g3'")
        for s in (a, b)
    }
    va, vb = (per_seed[s]["saving"].to_numpy(dtype=float) for s in (a, b))
    os_ = rows.set_index("method").loc["sgd_os-g3"]
    assert os_["saving_a"] == pytest.approx(va.mean()) and os_["saving_b"] == pytest.approx(vb.mean())
    ci = stats.ttest_ind(vb, va, equal_var=False).confidence_interval(0.95)
    assert os_["saving_diff"] == pytest.approx(vb.mean() - va.mean())
    assert (os_["saving_low"], os_["saving_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert os_["saving_diff"] > 0  # B's SGDO converges faster (tau 120 vs 160)
    # CM trained alike in both: its steps and best metric differ by exactly 0; it has no saving of its own
    cm = rows.set_index("method").loc["sgd"]
    assert cm["steps_diff"] == 0 and cm["best_diff"] == 0 and math.isnan(cm["saving_a"])
    assert (cm["steps_a"], cm["best_a"]) == (cm["steps_b"], cm["best_b"])
    assert np.isfinite(cm["steps_low"]) and cm["steps_low"] < 0 < cm["steps_high"]
    # seconds to the same target: the synthetic clock ticks 0.01 s a step
    assert cm["seconds_a"] == pytest.approx(0.01 * cm["steps_a"]) and cm["seconds_diff"] == 0
    assert os_["seconds_diff"] == pytest.approx(0.01 * os_["steps_diff"])


def test_protocol_mismatch_is_named_and_one_store_runs_listed(compared: tuple[Path, Path, Path]) -> None:
    _, _, out = compared
    mism = pd.read_csv(out / "protocols_differ.csv")
    assert len(mism) == 1 and mism.loc[0, "task"] == "housing" and mism.loc[0, "family"] == "sgd"
    assert mism.loc[0, "protocol_a"] != mism.loc[0, "protocol_b"]
    assert mism.loc[0, "differences"] == "lr: 0.001 → 0.002"
    only = pd.read_csv(out / "only_in_one.csv")
    adam = only[only["methods"] == "adam"]
    assert list(adam["store"]) == ["A"] and "B has no digits run of the Adam family" in adam["reason"].iloc[0]
    housing = only[only["task"] == "housing"]
    assert sorted(housing["store"]) == ["A", "B"] and housing["methods"].eq("sgd sgd_os-g3").all()
    assert housing["reason"].str.contains("another protocol").all()
    html = (out / "report.html").read_text()
    assert "aaaa1111" in html and "bbbb2222" in html  # the stores' revisions
    assert "Protocols that differ" in (out / "report.md").read_text()


def test_compare_needs_two_stores(
    compared: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, _, _ = compared
    assert R.main([str(a), "--compare"]) == 2
    assert "--compare takes exactly two run stores, got 1" in capsys.readouterr().err
