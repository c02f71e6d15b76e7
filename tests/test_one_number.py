"""One number per question: the per-run line, the sweep's closing line, ``results``, ``bench``, the report's
savings CSVs and the tuning report give the same saving for the same runs, whatever else the store holds;
and a damaged store file leaves its run out (with the file and the reason) instead of becoming a number.

The agreement test collects each surface's numbers with a ``*_numbers`` helper; a new surface joins by adding
its helper to ``test_every_surface_gives_the_same_saving``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from overshoot import bench
from overshoot.analysis import report as R
from overshoot.analysis import results, savings, tuning
from overshoot.analysis.report.style import interval_cell
from overshoot.cli import tune as tune_cli
from overshoot.store.writer import RunWriter, run_path, without_time

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
COMMON = ["threads=1", "progress=none", "device=cpu", "log.window=100"]
SGD = ["-m", "optimizer=sgd,sgd_os", "gamma=3", "seed=0,1", "max_steps=300", *COMMON]
ADAM_SHORT = ["optimizer=adam_os", "gamma=3", "seed=0", "max_steps=150", *COMMON]
LINE = re.compile(
    r"saving vs (\w+): (-?\d+\.\d)% \(steps to the \w+ run's 95% threshold: (\d+) vs (\d+), window (\d+)\)"
)
CLOSING = re.compile(
    r"digits sgd_os-g3 vs sgd: saving (-?\d+\.\d)% \+- (\d+\.\d) of the steps to 95% loss reduction "
    r"\((\d+) seeds, 95% t-interval, window (\d+)\)"
)


def _cli(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*BENCH, *args, f"out={out}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A CLI store of CM and SGDO gamma 3 on digits (seeds 0, 1; 300 steps) and the sweep's output."""
    out = tmp_path_factory.mktemp("one-number") / "runs"
    return out, _cli(*SGD, out=out).stdout


def per_run_numbers(stdout: str) -> dict[int, tuple[float, int, int, int]]:
    """seed -> (saving, steps of the method, steps of the baseline, window) from the per-run lines."""
    found: dict[int, tuple[float, int, int, int]] = {}
    for block in re.split(r"\n(?=digits/)", stdout):
        head = re.match(r"digits/sgd_os-g3/seed(\d+): completed", block)
        m = LINE.search(block)
        if head and m:
            found[int(head.group(1))] = (float(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)))
    return found


def closing_numbers(stdout: str) -> tuple[float, float, int, int]:
    """(mean, half width, seeds, window) from the sweep's closing line."""
    m = CLOSING.search(stdout)
    assert m, stdout[-2000:]
    return float(m.group(1)), float(m.group(2)), int(m.group(3)), int(m.group(4))


def results_numbers(out: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The per-seed rows and the summary row of SGDO gamma 3 vs CM from results."""
    sc = results.scan([out])
    per_seed = savings.savings(sc, 0.95, 100)
    summary = savings.saving_summary(sc, 0.95, 100)
    return per_seed[per_seed["method"] == "sgd_os-g3"].reset_index(drop=True), summary.set_index(
        "method"
    ).loc["sgd_os-g3"]


def bench_numbers(out: Path) -> pd.Series:
    """The summary row of SGDO gamma 3 vs CM from the Python API (the runs read back, not trained)."""
    kw = {"max_steps": 300, "threads": 1, "progress": "none", "device": "cpu", "out": str(out)}
    runs = [bench.run("digits", "sgd", seed=s, log={"window": 100}, **kw) for s in (0, 1)]
    runs += [bench.run("digits", "sgd_os", gamma=3, seed=s, log={"window": 100}, **kw) for s in (0, 1)]
    assert all(r.status == "completed" and r.exit_code == 0 for r in runs)
    return bench.savings(runs, 0.95, 100).set_index("method").loc["sgd_os-g3"]


def report_numbers(out: Path, dest: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The per-seed rows and the summary row of SGDO gamma 3 from ``overshoot-bench-report STORE --out DIR``
    (its default window, CSV only)."""
    assert R.main([str(out), "--out", str(dest), "--no-figures", "--format", "csv"]) == 0
    seeds = pd.read_csv(dest / "savings_seeds.csv")
    summary = pd.read_csv(dest / "savings_per_seed.csv").set_index("method").loc["sgd_os-g3"]
    return seeds[seeds["method"] == "sgd_os-g3"].reset_index(drop=True), summary


def _trial(study: Path, run: Path, seed: int, lr: float, val: float) -> None:
    """A completed tuning trial (written, not trained) of the stored run's config at ``seed`` and ``lr``
    whose best validation accuracy is ``val``."""
    cfg = results.read_run(run).config
    cfg = {**cfg, "seed": seed, "hparams": {**cfg["hparams"], "lr": lr}, "out": str(study / "tuning")}
    w = RunWriter(run_path(study / "tuning", cfg))
    w.start(cfg, {"metric": "accuracy", "metric_scale": 1.0}, resume_rows=(0, 0))
    steps = {"step": [0, 1], "epoch": [0, 1], "base_loss": [1.0, 0.5], "train_loss": [1.0, 0.5]}
    w.append_steps({**steps, "lr": [lr, lr], "grad_norm": [1.0, 1.0], "time_s": [0.1, 0.2]})
    acc = [0.5, 0.5, val, val]  # epoch 0 then 1, val then test
    w.append_epochs({"epoch": [0, 0, 1, 1], "split": ["val", "test"] * 2, "loss": [0.5] * 4, "accuracy": acc})
    w.write_info(status="completed", steps=2)


def tuning_numbers(out: Path, tmp: Path) -> tuple[pd.DataFrame, str]:
    """The savings rows (both arms, 95%) of SGDO gamma 3 and report.md from ``overshoot-bench-tune report``
    on a study whose held-out runs are the store's runs: its trials (written, not trained) select each
    method's stored lr over twice it, so the tuned and the untuned arm name the same runs."""
    study = tmp / "study"
    study.mkdir()
    (study / "heldout").symlink_to(out.resolve(), target_is_directory=True)
    rows, lrs = [], {}
    for run in results.run_dirs([out]):
        cfg, method = results.read_run(run).config, run.parent.name
        lrs[method] = float(cfg["hparams"]["lr"])
        if cfg["seed"] == 0:
            for seed in (5, 6):  # tuning seeds, disjoint from the held-out 0 and 1
                _trial(study, run, seed, lrs[method], 0.9)
                _trial(study, run, seed, 2 * lrs[method], 0.8)
        for arm in tuning.ARMS:
            rel = str(run.relative_to(out))
            rows.append(
                {"arm": arm, "method": method, "seed": cfg["seed"], "path": rel, "hparams": cfg["hparams"]}
            )
    sel = tuning.select_study(study)
    assert {m: v["selected"]["lr"] for m, v in sel["methods"].items()} == lrs
    (study / "heldout.json").write_text(json.dumps({"seeds": [0, 1], "runs": rows}))
    dest = tmp / "tuning-report"
    assert tune_cli.main(["report", str(study), "--out", str(dest)]) == 0
    sav = pd.read_csv(dest / "savings.csv")
    sav = sav[(sav["method"] == "sgd_os-g3") & (sav["reduction"] == 0.95)].reset_index(drop=True)
    return sav, (dest / "report.md").read_text()


def test_every_surface_gives_the_same_saving(store: tuple[Path, str], tmp_path: Path) -> None:
    out, stdout = store
    per_seed, summary = results_numbers(out)
    lines = per_run_numbers(stdout)
    assert sorted(lines) == [0, 1] and list(per_seed["seed"]) == [0, 1]
    for _, row in per_seed.iterrows():
        saving, k_method, k_base, window = lines[int(row["seed"])]
        assert (k_method, k_base, window) == (row["k_method"], row["k_baseline"], row["window"])
        assert saving == round(row["saving"], 1)
        assert saving == round(100 * (k_base - k_method) / k_base, 1)  # the line's numbers give its saving
    assert set(per_seed["window"]) == {60}  # 100 shrunk to a fifth of the 300 planned steps
    mean, half, n, window = closing_numbers(stdout)
    assert (mean, half, n, window) == (round(summary["mean"], 1), round(summary["half_width"], 1), 2, 60)
    assert summary["mean"] == pytest.approx(per_seed["saving"].mean())
    api = bench_numbers(out)
    assert api["mean"] == pytest.approx(summary["mean"]) and api["window"] == summary["window"]
    # the report's CSVs: the same per-seed savings and summary (its default window shrinks to the same 60)
    rep_seed, rep = report_numbers(out, tmp_path / "report")
    for col in ("seed", "saving", "k_method", "k_baseline", "window"):
        assert list(rep_seed[col]) == pytest.approx(list(per_seed[col]), rel=1e-12), col
    for col in ("mean", "low", "high", "half_width", "n", "window"):
        assert rep[col] == pytest.approx(summary[col], rel=1e-12), col
    assert (round(rep["mean"], 1), round(rep["half_width"], 1)) == (mean, half)
    # the tuning report on a study whose held-out runs are these runs: each arm, in its CSV and its text
    sav, text = tuning_numbers(out, tmp_path)
    assert sorted(sav["arm"]) == ["tuned", "untuned"]
    for _, row in sav.iterrows():
        for col in ("mean", "low", "high", "half_width", "n", "window"):
            assert row[col] == pytest.approx(summary[col], rel=1e-12), (row["arm"], col)
        assert (round(row["mean"], 1), round(row["half_width"], 1)) == (mean, half)
    assert interval_cell(summary["mean"], summary["low"], summary["high"]) in text
    assert "trailing mean of 60 steps" in text


def test_a_short_run_of_the_other_family_changes_nothing(store: tuple[Path, str], tmp_path: Path) -> None:
    src, stdout = store
    out = tmp_path / "runs"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".multirun"))
    before_seed, before = results_numbers(out)
    rep_before_seed, rep_before = report_numbers(out, tmp_path / "before")
    _cli(*ADAM_SHORT, out=out)  # AdamO alone, half as long: another family, another protocol
    after_seed, after = results_numbers(out)
    pd.testing.assert_frame_equal(before_seed, after_seed)
    pd.testing.assert_series_equal(before, after)
    rep_after_seed, rep_after = report_numbers(out, tmp_path / "after")
    keys = ["section", "label"]  # the section's name may gain its protocol
    pd.testing.assert_frame_equal(
        rep_before_seed.drop(columns=keys, errors="ignore"),
        rep_after_seed.drop(columns=keys, errors="ignore"),
    )
    pd.testing.assert_series_equal(
        rep_before.drop(keys, errors="ignore"), rep_after.drop(keys, errors="ignore")
    )
    again = _cli(*SGD, out=out).stdout  # every run skipped; the closing line is the same
    assert "skipped, already completed" in again
    assert closing_numbers(again) == closing_numbers(stdout)


# -- damaged store files: left out with the file and the reason ---------------------------------------


def _copy(store: tuple[Path, str], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the store and the run directory of SGDO gamma 3, seed 0 in it."""
    out = tmp_path / "runs"
    shutil.copytree(store[0], out, ignore=shutil.ignore_patterns(".multirun"))
    (run,) = (out / "digits" / "sgd_os-g3").glob("seed0-*")
    return out, run


def _left_out(out: Path, run: Path) -> tuple[str, str]:
    sc = results.scan([out])
    assert len(sc.records) == 3  # the other runs are intact and used
    rows = sc.left_out[sc.left_out["path"] == str(run.resolve())]
    assert len(rows) == 1, sc.left_out
    return str(rows["file"].iloc[0]), str(rows["reason"].iloc[0])


def _edit_info(run: Path, **changes: object) -> None:
    info = json.loads((run / "run.json").read_text())
    info.update(changes)
    (run / "run.json").write_text(json.dumps({k: v for k, v in info.items() if v is not ...}))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("final", "abc"),
        ("versions", ["2.4"]),
        ("started", 5),
        ("gamma", "three"),
        ("seed", "0"),
        ("metric_scale", "x100"),
        ("wall_time_s", "abc"),
        ("steps", 300.5),
    ],
)
def test_a_wrong_typed_run_json_field_leaves_the_run_out(
    store: tuple[Path, str], tmp_path: Path, key: str, value: object
) -> None:
    out, run = _copy(store, tmp_path)
    _edit_info(run, **{key: value})
    file, reason = _left_out(out, run)
    assert file == "run.json" and f"field {key} " in reason
    df = results.load([out])
    assert int(df["usable"].sum()) == 3


def test_nan_losses_in_a_completed_run_leave_it_out(store: tuple[Path, str], tmp_path: Path) -> None:
    out, run = _copy(store, tmp_path)
    lines = (run / "steps.csv").read_text().splitlines(keepends=True)
    for i in (40, 41, 120, 200):
        cells = lines[i].split(",")
        cells[2] = "nan"
        lines[i] = ",".join(cells)
    (run / "steps.csv").write_text("".join(lines))
    file, reason = _left_out(out, run)
    assert file == "steps.csv" and "4 base_loss that are not finite (first at step 39)" in reason


def test_an_edited_config_leaves_the_run_out(store: tuple[Path, str], tmp_path: Path) -> None:
    out, run = _copy(store, tmp_path)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(re.sub(r"\n  lr: [^\n]+", "\n  lr: 0.5", text))
    file, reason = _left_out(out, run)
    assert file == "config.yaml" and "an edited config" in reason


def test_a_completed_status_on_a_short_log_leaves_the_run_out(
    store: tuple[Path, str], tmp_path: Path
) -> None:
    """An interrupted run's run.json edited to 'completed' (no step count, a log cut at a whole row)."""
    out, run = _copy(store, tmp_path)
    _edit_info(run, steps=..., final=..., ended=..., steps_to_95=...)
    lines = (run / "steps.csv").read_text().splitlines(keepends=True)
    (run / "steps.csv").write_text("".join(lines[:181]))
    file, reason = _left_out(out, run)
    assert file == "run.json" and "records no steps" in reason
    _edit_info(run, steps=300)
    file, reason = _left_out(out, run)
    assert file == "steps.csv" and "holds 180 rows but run.json says 300 steps" in reason


def test_the_cli_trains_a_damaged_run_again_and_says_why(store: tuple[Path, str], tmp_path: Path) -> None:
    out, run = _copy(store, tmp_path)
    lines = (run / "steps.csv").read_text().splitlines(keepends=True)
    cells = lines[101].split(",")
    cells[2] = "inf"
    lines[101] = ",".join(cells)
    (run / "steps.csv").write_text("".join(lines))
    args = ["optimizer=sgd_os", "gamma=3", "seed=0", "max_steps=300", *COMMON]
    proc = subprocess.run([*BENCH, *args, f"out={out}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (warning,) = [line for line in proc.stderr.splitlines() if "not resumed" in line]
    assert f"{run / 'steps.csv'} holds 1 base_loss that are not finite" in warning
    assert "skipped" not in proc.stdout and "digits/sgd_os-g3/seed0: completed" in proc.stdout
    (aside,) = run.glob(".damaged-*")
    assert (aside / "steps.csv").exists() and (aside / "run.json").exists()
    fresh = results.read_run(run)
    assert fresh.usable and fresh.record is not None
    # Training is deterministic: the retrained run equals the intact copy.
    (orig,) = (store[0] / "digits" / "sgd_os-g3").glob("seed0-*")
    assert without_time((run / "steps.csv").read_text()) == without_time((orig / "steps.csv").read_text())


def test_the_per_run_reader_imports_neither_torch_nor_pandas(store: tuple[Path, str]) -> None:
    (run,) = (store[0] / "digits" / "sgd_os-g3").glob("seed0-*")
    code = (
        "import sys; from overshoot.analysis import results; r = results.read_run(sys.argv[1]); "
        "print(r.usable, r.finished, 'torch' in sys.modules, 'pandas' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["True", "True", "False", "False"], proc.stderr


def test_summary_flags_an_interval_that_includes_zero(store: tuple[Path, str]) -> None:
    s = savings.saving_summary(results.scan([store[0]]), 0.95, 100).set_index("method").loc["sgd_os-g3"]
    assert s["within_noise"] == (s["low"] <= 0 <= s["high"] or not math.isfinite(s["half_width"]))
    assert s["per_seed"].count(":") == 2 and s["n_pairs"] == 2
