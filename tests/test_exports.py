"""Exports (overshoot.analysis.exports): the run table as CSV and parquet, the logs as parquet, and the
reader (results.curves, step_log, epoch_log) reading them back equal to the store's CSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_aggregate import write_two_task_store

from overshoot.analysis import exports, results


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_task_store(tmp_path_factory.mktemp("two-task"))


@pytest.fixture(scope="module")
def export(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    written = exports.export_parquet([store], out)
    assert sorted(p.name for p in written) == [
        "epochs.parquet",
        "runs.csv",
        "runs.parquet",
        "steps.parquet",
    ]
    return out


def test_parquet_logs_equal_the_stores_csv(store: Path, export: Path) -> None:
    from_csv = results.curves([store])
    assert len(from_csv) == 12 * 200
    pd.testing.assert_frame_equal(pd.read_parquet(export / "steps.parquet"), from_csv)
    pd.testing.assert_frame_equal(pd.read_parquet(export / "epochs.parquet"), exports.epochs_long([store]))
    # the reader takes the export (its folder or its file) as it takes the store
    pd.testing.assert_frame_equal(results.curves(export), from_csv)
    pd.testing.assert_frame_equal(results.curves(export / "steps.parquet"), from_csv)


def test_run_table_round_trips(store: Path, export: Path) -> None:
    table = results.load([store])
    pq = pd.read_parquet(export / "runs.parquet")
    csv = pd.read_csv(export / "runs.csv")
    assert list(pq.columns) == list(table.columns) == list(csv.columns)
    for c in ("task", "method", "seed", "status", "steps", "protocol", "path", "usable"):
        assert pq[c].tolist() == table[c].tolist() == csv[c].tolist(), c


def test_step_and_epoch_logs_read_parquet_as_csv(store: Path, tmp_path: Path) -> None:
    run = results.scan([store]).records[0].path
    steps, epochs = results.step_log(run), results.epoch_log(run)
    converted = tmp_path / "run"
    converted.mkdir()
    exports.write_parquet(steps, converted / "steps.parquet")
    exports.write_parquet(epochs, converted / "epochs.parquet")
    # a run folder whose logs were converted, and the parquet files named directly
    pd.testing.assert_frame_equal(results.step_log(converted), steps)
    pd.testing.assert_frame_equal(results.epoch_log(converted), epochs)
    pd.testing.assert_frame_equal(results.step_log(converted / "steps.parquet"), steps)
    pd.testing.assert_frame_equal(results.step_log(run / "steps.csv"), steps)
    shutil.copy(run / "steps.csv", converted / "steps.csv")  # the CSV, the store's format, comes first
    pd.testing.assert_frame_equal(results.step_log(converted), steps)


def test_a_mixed_type_config_column_is_text_in_parquet(tmp_path: Path) -> None:
    table = pd.DataFrame({"a": [1, "x", None], "b": ["p", "q", None], "c": [1.0, 2.0, float("nan")]})
    exports.write_run_table(table, tmp_path)
    pq = pd.read_parquet(tmp_path / "runs.parquet")
    assert pq["a"].iloc[:2].tolist() == ["1", "x"] and pq["b"].iloc[:2].tolist() == ["p", "q"]
    assert pq[["a", "b", "c"]].iloc[2].isna().all()
    assert pq["c"].iloc[:2].tolist() == [1.0, 2.0]
