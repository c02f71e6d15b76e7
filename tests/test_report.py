"""overshoot-bench-report on a synthetic run store written through store.RunWriter and on small stores
built by the CLI (tests/report_store.py): sections per protocol, gamma 0 as baseline, the window rule,
the terminal."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from report_store import WINDOW as CLI_WINDOW
from report_store import cli_store, copy_store
from scipy import stats

from overshoot.analysis import metrics as M
from overshoot.analysis import report as R
from overshoot.analysis import results, savings
from overshoot.config import methods
from overshoot.config.schema import STEP_COLUMNS, config_hash
from overshoot.store.writer import RunWriter, run_path

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
    "protocol",
    "table1",
    "savings_paper",
    "savings_per_seed",
    "savings_seeds",
    "savings_vs_gamma",
    "savings_vs_gamma_per_seed",
    "headline",
    "provenance",
    "excluded_runs",
    "profile_steps",  # the store holds two tasks: the cross-task section
    "profile_seconds",
    "speedups",
    "task_times",
)
FORMATS = ("md", "csv", "tex")


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
    task_name: str | None = None,
    family: str | None = None,
    target: str | None = None,
    max_steps: int | None = None,
) -> Path:
    """A synthetic completed run with the metric of ``task``, stored as task ``task_name`` (default: task);
    an optimizer of the user's names its ``family`` and class ``target``, as ``optimizer=custom`` stores."""
    metric, scale = TASKS[task]
    family = methods.get(opt, family).family
    task = task_name or task
    config: dict[str, object] = {
        "task": task,
        "optimizer": opt,
        "family": family,
        "gamma": gamma,
        "seed": seed,
        "hparams": {
            "lr": lr,
            "momentum": 0.9,
            "beta2": 0.999,
            "batch_size": 64,
            "epochs": N_EPOCHS,
            "weight_decay": 0.0,
            "schedule": "constant",
            "delay": 50,
        },
    }
    if target is not None:
        config.update(optimizer_target=target, optimizer_kwargs={})
    n_steps = N_STEPS
    if max_steps is not None:  # a run cut short: its own protocol
        config["max_steps"] = n_steps = max_steps
    rng = np.random.default_rng(seed * 1000 + int(tau))
    t = np.arange(n_steps)
    loss = 2.0 * np.exp(-t / (tau * (1 + 0.03 * rng.standard_normal()))) + 0.05 + 0.02 * rng.random(n_steps)
    w = RunWriter(run_path(out, config), step_columns=(*STEP_COLUMNS, "distance"))
    w.start(
        config,
        {"task": task, "optimizer": opt, "family": family, "gamma": gamma, "seed": seed},
        resume_rows=(0, 0),
    )
    per_epoch = n_steps // N_EPOCHS
    w.append_steps(
        {
            "step": t + 1,
            "epoch": t // per_epoch,
            "base_loss": loss,
            "train_loss": loss,
            "lr": np.full(n_steps, 1e-3),
            "grad_norm": np.ones(n_steps),
            "time_s": 0.01 * (t + 1),
            "distance": 1.0 / (1.0 + gamma) + 0.01 * rng.random(n_steps),
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
    w.write_info(
        status=status,
        metric=metric,
        metric_scale=scale,
        ended=ended,
        steps=n_steps,
        device="cpu (x86_64)",
        cpu_threads=1,
        git_rev="abc123",
        versions={"torch": "2.14.1"},
    )
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


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cli_store(tmp_path_factory)


def test_report_writes_every_table_figure_and_says_where(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "rep"
    rc = R.main([str(store), "--out", str(out), "--window", str(WINDOW), "--paper"])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in TABLES:
        for fmt in FORMATS:
            f = out / f"{name}.{fmt}"
            assert f.is_file() and f.stat().st_size > 0, f
    for name in FIGURES:
        for fmt in ("png", "pdf"):
            f = out / "figures" / f"{name}.{fmt}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert (out / "report.html").stat().st_size > 10_000
    # The terminal: headline, protocols, where it wrote; not every table.
    n_files = sum(1 for f in out.rglob("*") if f.is_file())
    assert f"Wrote {n_files} files to {out}/" in printed
    assert "SGDO vs CM" in printed and "Protocols:" in printed and "MLP-CA, SGD family, protocol " in printed
    assert "Missed O/B" not in printed and "k_B" not in printed  # not the per-section tables
    md = (out / "report.md").read_text()
    assert "status failed" in md and "status running" in md  # listed, left out
    assert "AdamO γ=7" not in (out / "table1.md").read_text()
    tex = (out / "table1.tex").read_text()
    assert r"\textbf{" in tex and r"$\pm$" in tex and r"\multicolumn" in tex and r"\cmidrule" in tex
    assert "Table 1" not in tex and "MLP-CA" in tex  # no 'Table N:' in captions; paper task labels
    # The headline opens every report: per task and method, with the paper's label or "not a paper task";
    # the paper's 7-task mean only beside a mean over paper tasks, marked n of 7.
    assert md.index("## Headline") < md.index("## Protocol and provenance") < md.index("## Table 1")
    assert printed.index("Saving % [95% CI]") < printed.index("Protocols:")
    head = (out / "headline.md").read_text()
    assert (
        "| digits | not a paper task | SGDO γ=3 | CM |" in head and "| MLP-CA | MLP-CA | AdamO γ=5 |" in head
    )
    paper = (out / "paper_mean.csv").read_text().splitlines()
    assert paper[0] == "comparison,family,gamma,paper_7_task_mean,tasks_measured,measured_mean,comparable"
    assert any(line.startswith("SGDO vs CM,sgd,3.0,23.77,1,") and line.endswith(",False") for line in paper)
    assert "(1 of 7 tasks)" in (out / "paper_mean.md").read_text()


def test_report_numbers_match_metrics_on_the_store(store: Path) -> None:
    sc = results.scan([store])
    random.Random(0).shuffle(sc.records)  # pairing must follow seeds, not directory order
    rep = R.build_report(sc, 0.95, WINDOW)
    assert len(rep.records) == len(TASKS) * len(METHODS) * len(SEEDS)
    assert (
        len(rep.left_out) == 2 and [s.windows for s in rep.sections] == [{"sgd": WINDOW, "adam": WINDOW}] * 2
    )
    recs = {(r.task, r.method, r.seed): r for r in rep.records}
    row = rep.savings.set_index(["task", "method"]).loc[("housing", "adam_os-g5")]
    base = {s: recs[("housing", "adam", s)].base_loss for s in SEEDS}
    meth = {s: recs[("housing", "adam_os-g5", s)].base_loss for s in SEEDS}
    ps = M.paper_saving(base.values(), meth.values(), 0.95, WINDOW)
    ss = M.per_seed_saving(base, meth, 0.95, WINDOW)
    assert row["paper_saving"] == pytest.approx(ps.saving)
    assert row["mean"] == pytest.approx(ss.summary.mean) and row["n"] == 3
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(ss.savings), scale=stats.sem(ss.savings))
    assert (row["low"], row["high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_two_protocols_gamma_zero_baseline_and_the_window_rule(
    cli: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "rep"
    assert R.main([str(cli), "--out", str(out), "--window", str(CLI_WINDOW), "--no-figures"]) == 0
    printed = capsys.readouterr().out
    rep = R.build_report(results.scan([cli]), 0.95, CLI_WINDOW)
    assert len(rep.records) == 12 and rep.left_out.empty  # nothing dropped
    # digits' Adam family has two protocols (300 steps at lr 0.001 and the 150-step lr 0.002 gamma sweep):
    # the 300-step SGD and Adam protocols share one task setting and one section, the sweep has its own.
    assert len(rep.sections) == 2 and len({s.key for s in rep.sections}) == 2
    by_base = {(r["section"], r["method"]): r["baseline"] for _, r in rep.savings.iterrows()}
    # The sweep's gamma 0 is AdamW by definition, so the CLI trained it as the adam run; every saving is
    # compared with its family baseline within its own protocol.
    sweep = next(s for s in rep.sections if any(r.method == "adam_os-g5" for r in s.records))
    assert by_base == {
        (sweep.key, "adam_os-g5"): "adam",
        **{(s.key, "sgd_os-g3"): "sgd" for s in rep.sections if "sgd" in s.protocols},
        **{(s.key, "adam_os-g3"): "adam" for s in rep.sections if s is not sweep and "adam" in s.protocols},
    }
    # The 150-step sweep is short for the 50-step window: it shrinks to a fifth of the run, and says so.
    assert sweep.windows == {"adam": 30} and "shrinks" in sweep.window_note("adam", CLI_WINDOW)
    assert {w for s in rep.sections if s is not sweep for w in s.windows.values()} == {CLI_WINDOW}
    md = (out / "report.md").read_text()
    assert "runs of 150 steps are short for the 50-step window" in md and "short for the" in printed
    assert "30-step trailing mean" in (out / "savings_paper.md").read_text()
    assert "has 2 sections (task settings or protocols)" in printed
    # --protocol picks one
    pid = sweep.protocols["adam"]
    assert R.main([str(cli), "--out", str(tmp_path / "one"), "--protocol", pid, "--no-figures"]) == 0
    proto = (tmp_path / "one" / "protocol.csv").read_text()
    assert pid in proto and proto.count("\n") == 2
    assert R.main([str(cli), "--out", str(tmp_path / "none"), "--protocol", "zzzz", "--no-figures"]) == 2
    assert "no usable run has protocol zzzz" in capsys.readouterr().err


def test_an_adamo_gamma_zero_run_is_the_baseline_where_no_adamw_run_exists(cli: Path, tmp_path: Path) -> None:
    """Stores written before gamma 0 resolved to the baseline hold ``adam_os-g0`` runs: the report takes them
    as the Adam family's baseline of their protocol."""
    store = copy_store(cli, tmp_path / "runs")
    for d in sorted((store / "digits" / "adam").iterdir()):
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        if cfg["hparams"]["lr"] != 0.002:
            continue
        cfg.update(optimizer="adam_os", gamma=0.0)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        info = json.loads((d / "run.json").read_text())
        info.update(optimizer="adam_os", gamma=0.0, method="adam_os-g0", config_hash=config_hash(cfg))
        (d / "run.json").write_text(json.dumps(info))
        dest = run_path(store, cfg)  # the directory named by the edited config's hash
        dest.parent.mkdir(exist_ok=True)
        d.rename(dest)
    rep = R.build_report(results.scan([store]), 0.95, CLI_WINDOW)
    assert len(rep.records) == 12 and rep.left_out.empty
    sweep = next(s for s in rep.sections if any(r.method == "adam_os-g0" for r in s.records))
    by_base = {(r["section"], r["method"]): r["baseline"] for _, r in rep.savings.iterrows()}
    assert by_base[(sweep.key, "adam_os-g5")] == "adam_os-g0"
    out = tmp_path / "rep"
    assert R.main([str(store), "--out", str(out), "--window", str(CLI_WINDOW), "--no-figures"]) == 0
    assert "AdamO γ=0 (= Adam) is the Adam family's baseline (no Adam run)" in (out / "report.md").read_text()


def test_latex_labels_are_unique_and_name_task_and_protocol(cli: Path, store: Path, tmp_path: Path) -> None:
    labels: list[str] = []
    for src, name in ((cli, "a"), (store, "b")):
        out = tmp_path / name
        assert R.main([str(src), "--out", str(out), "--window", "50", "--no-figures", "--format", "tex"]) == 0
        for f in out.glob("*.tex"):
            labels += re.findall(r"\\label\{([^}]*)\}", f.read_text())
    assert len(labels) == len(set(labels)) > 10
    rep = R.build_report(results.scan([cli]), 0.95, 50)
    for sec in rep.sections:
        for t in rep.tables:
            if t.section == sec.key:
                label = R.tex_label(t, rep.key)
                assert "digits" in label and all(p in label for p in sec.protocols.values())


def test_empty_tables_are_not_written(store: Path, tmp_path: Path) -> None:
    only = tmp_path / "only"
    for p in results.run_dirs([store]):
        if "/digits/" in str(p) and "/sgd/" in str(p) and "seed10" in str(p):
            shutil.copytree(p, only / p.name)
    assert R.main([str(only), "--out", str(tmp_path / "o"), "--window", "50", "--no-figures"]) == 0
    written = {f.name for f in (tmp_path / "o").iterdir()}
    assert "table1.tex" in written and "protocol.md" in written
    assert not {n for n in written if n.startswith(("savings", "headline", "excluded"))}


def test_report_formats_subset_and_no_figures(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv-only"
    assert R.main([str(store), "--out", str(out), "--format", "csv", "--no-figures", "--window", "50"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {f"{t}.csv" for t in TABLES} | {"runs.csv", "runs.parquet"}


@pytest.mark.parametrize(
    "args",
    [
        ["{missing}"],
        ["{empty}"],
        ["{store}", "--format", "md,xml"],
        ["{store}", "--reduction", "0"],
        ["{store}", "--reduction", "150"],
        ["{store}", "--window", "0"],
        ["{store}", "--alpha", "1.5"],
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


def test_provenance_one_spelling_per_device_and_dirty_flagged(store: Path, tmp_path: Path) -> None:
    s = tmp_path / "runs"
    shutil.copytree(store, s)
    dirs = [
        p for p in results.run_dirs([s]) if json.loads((p / "run.json").read_text())["status"] == "completed"
    ]
    variants = [
        {"device": "cpu (x86_64, 2 threads)", "cpu_threads": None, "git_rev": "abc123"},
        {"device": "cpu (x86_64)", "cpu_threads": 1, "git_rev": "def456-dirty"},
    ]
    for i, p in enumerate(dirs[:20]):
        info = json.loads((p / "run.json").read_text())
        (p / "run.json").write_text(json.dumps({**info, **variants[i % 2]}))
    rep = R.build_report(results.scan([s]), 0.95, WINDOW)
    prov = next(t for t in rep.tables if t.name == "provenance")
    assert set(prov.display["Device"]) == {"cpu (x86_64)"}
    assert set(prov.display["Revision"]) == {"abc123", "def456*"}
    assert "dirty" in prov.caption and "2 code revisions, 1 of them dirty" in rep.provenance
    assert set(prov.display["Threads"]) == {"1", "1, 2"}


def test_cut_log_and_garbage_run_json_are_listed_and_the_rest_reported(
    cli: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    s = tmp_path / "runs"
    shutil.copytree(cli, s, ignore=shutil.ignore_patterns(".multirun"))
    dirs = results.run_dirs([s])
    cut = next(p for p in dirs if p.parent.name == "sgd")
    lines = (cut / "steps.csv").read_text().splitlines(keepends=True)
    (cut / "steps.csv").write_text("".join(lines[: len(lines) * 45 // 100]))
    garbage = next(p for p in dirs if p.parent.name == "adam_os-g3")
    (garbage / "run.json").write_text("not json at all")
    out = tmp_path / "rep"
    assert R.main([str(s), "--out", str(out), "--window", str(CLI_WINDOW), "--no-figures"]) == 0
    assert "10 completed runs used, 2 left out" in capsys.readouterr().out
    excluded = (out / "excluded_runs.md").read_text()
    assert (
        f"digits/sgd/{cut.name} | completed | steps.csv | holds 134 rows but run.json says 300 steps"
        in excluded
    )
    assert f"digits/adam_os-g3/{garbage.name} | unreadable | run.json | does not parse" in excluded
    # the cut CM run is not used: its seed's pair is gone, the other seed still gives a saving
    row = R.build_report(results.scan([s]), 0.95, CLI_WINDOW).savings.set_index("method").loc["sgd_os-g3"]
    assert row["n_pairs"] == 1 and np.isfinite(row["paper_saving"])


def test_the_report_csv_gives_the_savings_of_results_and_other_families_change_none(
    store: Path, tmp_path: Path
) -> None:
    """One number per question: the report's savings CSVs are savings.savings / saving_summary of the same
    runs; a short run of the other family, added beside them, changes no number of the first family."""
    s = tmp_path / "runs"
    for p in results.run_dirs([store]):
        if "/housing/" in str(p) and ("/sgd/" in str(p) or "/sgd_os-g3/" in str(p)):
            shutil.copytree(p, s / p.relative_to(store))
    out = tmp_path / "a"
    assert (
        R.main([str(s), "--out", str(out), "--window", str(WINDOW), "--no-figures", "--format", "csv"]) == 0
    )
    seeds = pd.read_csv(out / "savings_seeds.csv").set_index(["method", "seed"])
    want = savings.savings(results.scan([s]), 0.95, WINDOW).set_index(["method", "seed"])
    assert len(seeds) == len(SEEDS) and (seeds["saving"] == want["saving"]).all()
    assert (seeds["k_method"] == want["k_method"]).all() and (seeds["window"] == WINDOW).all()
    summary = savings.saving_summary(results.scan([s]), 0.95, WINDOW).iloc[0]
    row = pd.read_csv(out / "savings_per_seed.csv").iloc[0]
    assert (row["mean"], row["low"], row["high"]) == (summary["mean"], summary["low"], summary["high"])
    # an unrelated 150-step AdamO run (and its AdamW baseline) of the same task setting
    for opt, gamma in (("adam", 0.0), ("adam_os", 5.0)):
        write_run(s, "housing", opt, gamma, 30.0, SEEDS[0], max_steps=150)
    out2 = tmp_path / "b"
    assert (
        R.main([str(s), "--out", str(out2), "--window", str(WINDOW), "--no-figures", "--format", "csv"]) == 0
    )
    for name in ("headline", "savings_per_seed", "savings_seeds", "savings_paper", "table1"):
        before, after = pd.read_csv(out / f"{name}.csv"), pd.read_csv(out2 / f"{name}.csv")
        keys = [c for c in ("section", "label") if c in before]  # the section's name gains its protocol
        after = after[after["family"] == "sgd"].drop(columns=keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(before.drop(columns=keys), after, obj=name)
    assert "adam_os-g5" in set(pd.read_csv(out2 / "headline.csv")["method"])  # the other family is there
    # the protocol table shows every key of the protocol id, max_steps and what it cut among them
    proto = pd.read_csv(out2 / "protocol.csv", dtype=str).set_index("Family")
    assert proto.loc["Adam", "max_steps"] == "150" and proto.loc["SGD", "max_steps"] == "–"
    assert proto.loc["Adam", "Steps trained"] == "150 (max_steps 150 cut the 4-epoch schedule)"
    assert proto.loc["SGD", "Steps per epoch"] == "200" and proto.loc["SGD", "Epochs completed"] == "4 of 4"


def test_table1_marks_best_only_among_cells_of_two_seeds_with_a_baseline(tmp_path: Path) -> None:
    s = tmp_path / "runs"
    for seed in SEEDS:
        write_run(s, "housing", "sgd", 0.0, 200.0, seed)
        write_run(s, "housing", "adam_os", 3.0, 125.0, seed)  # the Adam family without its baseline
    write_run(s, "housing", "sgd_os", 5.0, 20.0, SEEDS[0])  # a lone, much better run
    rep = R.build_report(results.scan([s]), 0.95, WINDOW)
    t1 = R.table1_frame(rep.sections).set_index("method")
    assert t1.loc["sgd_os-g5", "n"] == 1 and t1.loc["sgd_os-g5", "mean"] < t1.loc["sgd", "mean"]
    assert t1["best"].to_dict() == {"sgd": True, "sgd_os-g5": False, "adam_os-g3": False}
    shown = rep.table1.display.set_index("Method")["MLP-CA"] if rep.table1 is not None else None
    assert shown is not None and shown["SGDO γ=5"].endswith("(n = 1)")
