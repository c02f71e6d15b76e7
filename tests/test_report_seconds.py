"""Seconds to target in the report: the headline and per-seed savings tables show Seconds B, Seconds O and
the time saving beside the step columns, with the numbers of savings.saving_summary; a store logged before
the training clock gets no seconds columns. The hand-made store is test_seconds's (seed 2 untimed)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from test_seconds import WINDOW, K, _write

from overshoot.analysis import results, savings
from overshoot.analysis.report import build_report
from overshoot.analysis.report.render import to_markdown

SECONDS = ["Seconds B", "Seconds O", "Time saving % [95% CI]"]


def _store(out: Path, seeds: tuple[int, ...]) -> results.Scan:
    for (opt, gamma), ks in K.items():
        for seed in seeds:
            _write(out, opt, gamma, seed, ks[seed])
    return results.scan([out])


def test_seconds_beside_steps(tmp_path: Path) -> None:
    sc = _store(tmp_path, (0, 1, 2))
    rep = build_report(sc, window=WINDOW)
    (want,) = savings.saving_summary(sc.records, 0.95, WINDOW).to_dict("records")
    assert rep.headline is not None
    per_seed = next(t for t in rep.section_tables[rep.sections[0].key] if t.name == "savings_per_seed")
    for table, after in ((rep.headline, "Steps O"), (per_seed, "Within noise")):
        cols = list(table.display.columns)
        assert cols[cols.index(after) + 1 : cols.index(after) + 4] == SECONDS, cols
        (row,) = table.data.to_dict("records")
        for c in ("seconds_baseline_mean", "seconds_method_mean", "seconds_n", "seconds_mean"):
            assert row[c] == want[c], c
        assert math.isnan(row["seconds_half_width"]) and row["seconds_missing"] == 1
        # the method's 80 steps take 160 s against the baseline's 110 s mean: the seconds go the other way
        (disp,) = table.display[SECONDS].to_dict("records")
        assert disp == {"Seconds B": "110", "Seconds O": "160", "Time saving % [95% CI]": "−60.0"}
        assert "before the training clock" in table.caption and "one device" in table.caption
        assert "population" not in table.caption  # single runs: each reads its own clock
    assert "Time saving % [95% CI]" in to_markdown(rep.headline)


def test_a_populations_shared_clock_is_named(tmp_path: Path) -> None:
    """Members of one population read one clock: their seconds follow their steps, and the caption says so."""
    sc = _store(tmp_path, (0, 1))
    sc.records[0].config["population"] = True
    rep = build_report(sc, window=WINDOW)
    assert rep.headline is not None and "share its clock" in rep.headline.caption


def test_the_csv_holds_the_summarys_seconds(tmp_path: Path) -> None:
    sc = _store(tmp_path / "store", (0, 1, 2))
    from overshoot.analysis.report.cli import main

    out = tmp_path / "report"
    assert main([str(tmp_path / "store"), "--out", str(out), "--window", str(WINDOW)]) in (0, None)
    want = savings.saving_summary(sc.records, 0.95, WINDOW).iloc[0]
    for name in ("headline.csv", "savings_per_seed.csv"):
        got = pd.read_csv(out / name).iloc[0]
        for c in ("seconds_baseline_mean", "seconds_method_mean", "seconds_mean", "seconds_n"):
            assert got[c] == pytest.approx(want[c]), (name, c)
    assert "Time saving % [95% CI]" in (out / "headline.md").read_text()


def test_an_untimed_store_has_no_seconds_columns(tmp_path: Path) -> None:
    rep = build_report(_store(tmp_path, (2,)), window=WINDOW)
    assert rep.headline is not None and not set(SECONDS) & set(rep.headline.display.columns)
    assert "Seconds" not in rep.headline.caption
    for t in rep.section_tables[rep.sections[0].key]:
        assert not set(SECONDS) & set(t.display.columns), t.name
