"""overshoot-bench-report on a synthetic run store written through store.RunWriter, and on a tiny real one."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from overshoot import metrics as M
from overshoot import report as R
from overshoot.store import STEP_COLUMNS, RunWriter, find_runs, run_path

TASKS = {"digits": ("accuracy", 1.0), "housing": ("loss", 100.0)}
# (optimizer, gamma, time constant of the synthetic loss: smaller = faster)
METHODS = [
    ("sgd", 0.0, 200.0),
    ("nesterov", 0.0, 180.0),
    ("sgd_os", 3.0, 160.0),
    ("sgd_os", 5.0, 150.0),
    ("adam", 0.0, 150.0),
    ("nadam", 0.0, 140.0),
    ("adam_os", 3.0, 125.0),
    ("adam_os", 5.0, 120.0),
]
SEEDS = (10, 20, 100)
N_STEPS, N_EPOCHS = 800, 4
WINDOW = 100
FIGURES = ("loss_grid", "saving_vs_gamma", "gamma_mu_plane", "distance_vs_gamma")
TABLES = (
    "table1",
    "savings_paper",
    "savings_per_seed",
    "savings_vs_gamma",
    "savings_vs_gamma_per_seed",
    "headline",
    "provenance",
    "excluded_runs",
)


def write_run(
    out: Path,
    task: str,
    opt: str,
    gamma: float,
    tau: float,
    seed: int,
    status: str = "completed",
    ended: str = "2026-01-01T00:00:00",
    lr: float = 1e-3,
) -> Path:
    metric, scale = TASKS[task]
    family = M.FAMILY_OF[opt]
    config = {
        "task": task,
        "optimizer": opt,
        "family": family,
        "gamma": gamma,
        "seed": seed,
        "hparams": {"lr": lr, "momentum": 0.9, "batch_size": 64, "epochs": N_EPOCHS},
    }
    rng = np.random.default_rng(seed * 1000 + int(tau))
    t = np.arange(N_STEPS)
    loss = 2.0 * np.exp(-t / (tau * (1 + 0.03 * rng.standard_normal()))) + 0.05 + 0.02 * rng.random(N_STEPS)
    w = RunWriter(run_path(out, config), step_columns=(*STEP_COLUMNS, "distance"))
    w.start(
        config,
        {"task": task, "optimizer": opt, "family": family, "gamma": gamma, "seed": seed},
        resume_rows=(0, 0),
    )
    per_epoch = N_STEPS // N_EPOCHS
    w.append_steps(
        {
            "step": t + 1,
            "epoch": t // per_epoch,
            "base_loss": loss,
            "train_loss": loss,
            "lr": np.full(N_STEPS, 1e-3),
            "grad_norm": np.ones(N_STEPS),
            "distance": 1.0 / (1.0 + gamma) + 0.01 * rng.random(N_STEPS),
        }
    )
    ep = np.arange(N_EPOCHS)
    test_loss = 0.5 * np.exp(-ep / (tau / 150)) + 0.1 + 0.01 * rng.random(N_EPOCHS)
    acc = 0.8 + 0.1 * (1 - np.exp(-ep)) * (200 / tau) / 2 + 0.005 * rng.random(N_EPOCHS)
    acc_col = [repr(float(a)) if metric == "accuracy" else "" for a in acc]
    w.append_epochs(
        {
            "epoch": np.repeat(ep, 2),
            "split": ["val", "test"] * N_EPOCHS,
            "loss": np.repeat(test_loss, 2),
            "accuracy": np.repeat(acc_col, 2),
        }
    )
    w.write_info(status=status, metric=metric, metric_scale=scale, ended=ended)
    return w.path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    for task in TASKS:
        for opt, gamma, tau in METHODS:
            for seed in SEEDS:
                write_run(out, task, opt, gamma, tau, seed)
    write_run(out, "digits", "adam_os", 7.0, 200.0, 10, status="failed")
    write_run(out, "digits", "adam_os", 7.0, 200.0, 20, status="running")
    return out


def test_report_writes_every_table_and_figure(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "rep"
    rc = R.main([str(store), "--out", str(out), "--window", str(WINDOW), "--paper"])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in TABLES:
        for fmt in R.FORMATS:
            f = out / f"{name}.{fmt}"
            assert f.is_file() and f.stat().st_size > 0, f
    for name in FIGURES:
        for fmt in ("png", "pdf"):
            f = out / "figures" / f"{name}.{fmt}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert (out / "report.md").read_text().strip() == printed.strip()
    # The failed and the running run are listed and left out; the gamma-7 method never completed.
    assert "status failed" in printed and "status running" in printed
    assert "AdamO γ=7" not in (out / "table1.md").read_text()
    tex = (out / "table1.tex").read_text()
    assert r"\textbf{" in tex and r"$\pm$" in tex and r"\begin{tabular}" in tex
    head = (out / "headline.csv").read_text().splitlines()
    assert head[0] == "comparison,family,gamma,tasks,tasks_not_reached,measured,paper,difference"
    assert any(line.startswith("SGDO vs CM,sgd,3.0,2,0,") and "23.77" in line for line in head)


def test_report_numbers_match_metrics_on_the_store(store: Path) -> None:
    runs = find_runs([store])
    random.Random(0).shuffle(runs)  # pairing must follow seeds, not directory order
    rep = R.build_report(runs, 0.95, WINDOW)
    assert len(rep.records) == len(TASKS) * len(METHODS) * len(SEEDS)
    assert len(rep.left_out) == 2
    recs = {(r.task, r.method, r.seed): r for r in rep.records}
    row = rep.savings.set_index(["task", "method"]).loc[("housing", "adam_os-g5")]
    base = {s: recs[("housing", "adam", s)].base_loss for s in SEEDS}
    meth = {s: recs[("housing", "adam_os-g5", s)].base_loss for s in SEEDS}
    ps = M.paper_saving(base.values(), meth.values(), 0.95, WINDOW)
    ss = M.per_seed_saving(base, meth, 0.95, WINDOW)
    assert row["paper_saving"] == pytest.approx(ps.saving)
    assert row["seed_mean"] == pytest.approx(ss.summary.mean) and row["seed_n"] == 3
    assert row["x_gamma"] == 5.0
    assert rep.savings.set_index(["task", "method"]).loc[("digits", "nesterov"), "x_gamma"] == 0.9

    t1 = next(t for t in rep.tables if t.name == "table1").data.set_index(["task", "method"])
    cell = t1.loc[("housing", "sgd_os-g3")]
    vals = {
        m: [M.best_over_epochs(recs[("housing", m, s)].epochs, "loss", 100.0) for s in SEEDS]
        for m in ("sgd", "nesterov", "sgd_os-g3")
    }
    ref = "sgd" if np.mean(vals["sgd"]) < np.mean(vals["nesterov"]) else "nesterov"
    assert cell["reference"] == ref
    assert cell["p_value"] == pytest.approx(stats.ttest_rel(vals["sgd_os-g3"], vals[ref]).pvalue)
    assert cell["mean"] == pytest.approx(np.mean(vals["sgd_os-g3"]))
    assert cell["mean"] > 1.0  # housing's test MSE is scaled x100


def test_report_formats_subset_and_no_figures(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "csv_only"
    assert R.main([str(store), "--out", str(out), "--format", "csv", "--no-figures", "--window", "50"]) == 0
    assert sorted(p.suffix for p in out.iterdir()) == [".csv"] * len(TABLES)
    assert "| Task |" in capsys.readouterr().out


def test_not_reached_renders_as_text(tmp_path: Path) -> None:
    for seed in (1, 2):
        write_run(tmp_path, "digits", "adam", 0.0, 300.0, seed)
        p = write_run(tmp_path, "digits", "adam_os", 3.0, 250.0, seed)
        steps = p / "steps.csv"  # a loss that stays flat never reaches the baseline's threshold
        lines = steps.read_text().splitlines()
        cols = lines[0].split(",")
        i = cols.index("base_loss")
        rows = [r.split(",") for r in lines[1:]]
        for r in rows:
            r[i] = "3.0"
        steps.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    rep = R.build_report(find_runs([tmp_path]), 0.95, WINDOW)
    md = R.render_markdown(rep)
    assert M.NOT_REACHED in md
    row = rep.savings.iloc[0]
    assert row["seed_not_reached"] == 2 and np.isnan(row["paper_saving"])


def test_duplicates_keep_the_latest_run(tmp_path: Path) -> None:
    old = write_run(tmp_path, "digits", "adam", 0.0, 150.0, 1, ended="2026-01-01T00:00:00")
    new = write_run(tmp_path, "digits", "adam", 0.0, 150.0, 1, ended="2026-01-02T00:00:00", lr=2e-3)
    records, left_out = R.load_records(reversed(find_runs([tmp_path])))
    assert [r.path for r in records] == [new]
    assert list(left_out["path"]) == [str(old)] and "duplicate" in left_out["reason"].iloc[0]


@pytest.mark.parametrize(
    "args",
    [
        ["{missing}"],
        ["{empty}"],
        ["{store}", "--format", "md,html"],
        ["{store}", "--reduction", "120"],
        ["{store}", "--window", "0"],
        ["{store}", "--bogus"],
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "store": store}
    argv = [a.format(**paths) for a in args] + ["--out", str(tmp_path / "o"), "--no-figures"]
    assert R.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("overshoot-bench-report: ")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_console_script_bad_input_has_no_traceback(tmp_path: Path) -> None:
    exe = shutil.which("overshoot-bench-report") or str(
        Path(sys.executable).with_name("overshoot-bench-report")
    )
    if not Path(exe).exists():
        pytest.skip("overshoot-bench-report is not installed (pip install -e .)")
    proc = subprocess.run([exe, str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no run store" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("overshoot-bench") is None, reason="overshoot-bench console script not installed"
)
def test_tiny_real_store_from_the_cli(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = ["overshoot-bench", "-m", "optimizer=adam,adam_os", "seed=0,1", "max_steps=120", f"out={runs}"]
    cmd += ["log.window=50", "log.distance=true", "progress=none", "device=cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r.status for r in find_runs([runs])] == ["completed"] * 4
    out = tmp_path / "report"
    proc = subprocess.run(
        ["overshoot-bench-report", str(runs), "--out", str(out), "--paper", "--window", "50"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in TABLES:
        for fmt in R.FORMATS:
            assert (out / f"{name}.{fmt}").stat().st_size > 0
    for name in FIGURES:
        for fmt in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{fmt}").stat().st_size > 1000
    assert "| digits | test accuracy |" in proc.stdout and "AdamO γ=5" in proc.stdout
    rep = R.build_report(find_runs([runs]), 0.95, 50)
    assert len(rep.records) == 4 and rep.left_out.empty
    row = rep.savings.iloc[0]
    assert (row["task"], row["method"], row["seed_n"]) == ("digits", "adam_os-g5", 2)
    assert np.isfinite(row["paper_saving"]) and np.isfinite(row["seed_mean"])


def test_provenance_names_the_cpu_threads(tmp_path: Path) -> None:
    infos = [
        {"device": "cpu (x86_64)", "cpu_threads": 1},
        {"device": "cpu (x86_64)", "cpu_threads": 4},
        {"device": "cpu (x86_64, 2 threads)", "cpu_threads": None},  # written before cpu_threads existed
        {"device": "NVIDIA H100 80GB HBM3 (cuda:0)", "cpu_threads": 16},
    ]
    records = []
    for i, info in enumerate(infos):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "run.json").write_text(json.dumps({**info, "git_rev": "abc"}))
        records.append(SimpleNamespace(path=tmp_path / str(i)))
    devices = set(R.provenance_table(records).data["Device"])  # type: ignore[arg-type]
    assert devices == {
        "cpu (x86_64), 1 thread",
        "cpu (x86_64), 4 threads",
        "cpu (x86_64, 2 threads)",
        "NVIDIA H100 80GB HBM3 (cuda:0)",
    }
