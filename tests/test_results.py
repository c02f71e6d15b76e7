"""overshoot.analysis.results on a store built by the CLI: the run table, protocols, integrity checks on
read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from report_store import cli_store, copy_store

from overshoot.analysis import results, savings
from overshoot.store.claim import DEAD


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cli_store(tmp_path_factory)


def test_load_one_row_per_run_with_config_metrics_and_protocol(store: Path) -> None:
    df = results.load([store])
    assert len(df) == 12 and df["usable"].all() and (df["status"] == "completed").all()
    for col in (
        "task",
        "method",
        "optimizer",
        "family",
        "gamma",
        "seed",
        "lr",
        "batch_size",
        "momentum",
        "schedule",
        "epochs",
        "max_steps",
        "steps",
        "final_test_accuracy",
        "best_test_accuracy",
        "steps_to_95",
        "config_hash",
        "protocol",
        "device",
        "torch",
        "git_rev",
        "path",
    ):
        assert col in df.columns, col
    assert set(df["steps"]) == {300, 150}
    # A baseline and its overshoot method share a protocol; another lr or step count is another protocol.
    per = df.groupby(["family", "lr", "max_steps"])["protocol"].nunique()
    assert (per == 1).all() and df["protocol"].nunique() == 3
    sgd = df[df["family"] == "sgd"]
    assert set(sgd["method"]) == {"sgd", "sgd_os-g3"} and sgd["protocol"].nunique() == 1
    assert df["config_hash"].is_unique
    # pivots work on it directly
    pivot = df.pivot_table("best_test_accuracy", "method", "protocol")
    assert pivot.notna().sum().sum() == df.groupby(["method", "protocol"]).ngroups


def test_curves_are_the_step_records_in_long_form(store: Path) -> None:
    c = results.curves([store])
    assert len(c) == 8 * 300 + 4 * 150
    assert {"task", "method", "seed", "protocol", "step", "base_loss", "path"} <= set(c.columns)
    one = c[(c["method"] == "adam_os-g5") & (c["seed"] == 1)]
    assert list(one["step"]) == list(range(150))


def test_protocol_ignores_seed_method_and_storage(store: Path) -> None:
    run = results.scan([store]).runs[0]
    cfg = run.config
    same = {**cfg, "seed": 99, "optimizer": "sgd_os", "gamma": 7.0, "out": "/elsewhere", "device": "cuda"}
    assert results.protocol_id(same) == results.protocol_id(cfg)
    assert results.protocol_id({**cfg, "hparams": {**cfg["hparams"], "lr": 0.5}}) != results.protocol_id(cfg)
    # a user's optimizer is a method of the family: its class and arguments are not the protocol's
    mine = {
        **cfg,
        "optimizer": "adamax",
        "optimizer_target": "torch.optim.Adamax",
        "optimizer_kwargs": {"x": 1},
    }
    assert results.protocol_id(mine) == results.protocol_id(cfg)


def test_a_run_named_twice_is_read_once(store: Path) -> None:
    sc = results.scan([store, store / "digits", store / "digits" / "sgd"])
    assert len(sc.records) == 12 and sc.left_out.empty and len(sc.table) == 12


def test_cut_steps_csv_and_garbage_run_json_are_listed_not_fatal(store: Path, tmp_path: Path) -> None:
    s = copy_store(store, tmp_path / "runs")
    dirs = results.run_dirs([s])
    cut, garbage = dirs[0], dirs[1]
    n_steps = json.loads((cut / "run.json").read_text())["steps"]
    lines = (cut / "steps.csv").read_text().splitlines(keepends=True)
    (cut / "steps.csv").write_text("".join(lines[: len(lines) * 45 // 100]))
    (garbage / "run.json").write_text('{"status": "compl')
    sc = results.scan([s])
    assert len(sc.table) == 12 and len(sc.records) == 10
    out = sc.left_out.set_index("path")
    assert (
        out.loc[str(cut), "file"] == "steps.csv"
        and f"rows but run.json says {n_steps} steps" in out.loc[str(cut), "reason"]
    )
    assert out.loc[str(garbage), "file"] == "run.json" and out.loc[str(garbage), "status"] == "unreadable"
    assert "does not parse" in out.loc[str(garbage), "reason"]
    row = sc.table.set_index("path").loc[str(cut)]
    assert not row["usable"] and "steps.csv" in row["problem"]
    # A row cut in the middle (the last line half written) is caught even when the count is not checked.
    info = json.loads((dirs[2] / "run.json").read_text())
    del info["steps"]
    (dirs[2] / "run.json").write_text(json.dumps(info))
    text = (dirs[2] / "steps.csv").read_text()
    (dirs[2] / "steps.csv").write_text(text[: text.rindex(",", 0, len(text) - 5)])
    assert str(dirs[2]) in set(results.scan([s]).left_out["path"])


def test_true_duplicates_keep_the_newest_and_say_why(store: Path, tmp_path: Path) -> None:
    s = copy_store(store, tmp_path / "runs")
    src = results.run_dirs([s])[0]
    dup = src.parent / (src.name + "-copy")
    shutil.copytree(src, dup)
    info = json.loads((dup / "run.json").read_text())
    info["ended"] = "2999-01-01T00:00:00+00:00"
    (dup / "run.json").write_text(json.dumps(info))
    sc = results.scan([s])
    assert len(sc.records) == 12 and str(dup.resolve()) in {str(r.path) for r in sc.records}
    (reason,) = sc.left_out.loc[sc.left_out["path"] == str(src.resolve()), "reason"]
    assert reason.startswith(f"duplicate of {dup.resolve()}") and "same config hash" in reason


def test_running_run_whose_process_is_gone_is_listed_as_interrupted(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    host, now = socket.gethostname(), time.time()
    for name, pid in (("alive", os.getpid()), ("dead", dead.pid)):
        d = tmp_path / "digits" / "sgd" / f"seed0-{name}"
        d.mkdir(parents=True)
        info = {"status": "running", "task": "digits", "optimizer": "sgd", "seed": 0}
        (d / "run.json").write_text(json.dumps({**info, "host": host, "pid": pid, "heartbeat": now}))
    sc = results.scan([tmp_path])
    status = {Path(p).name: s for p, s in zip(sc.left_out["path"], sc.left_out["status"], strict=True)}
    assert status == {"seed0-alive": "running", "seed0-dead": DEAD}


def test_one_spelling_per_device() -> None:
    assert results.device_name({"device": "cpu (x86_64, 2 threads)"}) == ("cpu (x86_64)", 2)
    assert results.device_name({"device": "cpu (x86_64, 1 threads)"}) == ("cpu (x86_64)", 1)
    assert results.device_name({"device": "cpu (x86_64)", "cpu_threads": 4}) == ("cpu (x86_64)", 4)
    assert results.device_name({"device": "NVIDIA H100 80GB HBM3 (cuda:0)", "cpu_threads": 16}) == (
        "NVIDIA H100 80GB HBM3",
        16,
    )


def test_missing_store_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run store"):
        results.load([tmp_path / "nope"])
    assert results.load([tmp_path]).empty and isinstance(results.load([tmp_path]), pd.DataFrame)


def test_savings_are_the_per_seed_savings_with_the_protocols_window(store: Path) -> None:
    from overshoot.analysis import metrics as M

    sc = results.scan([store])
    per_seed = savings.savings(sc, 0.95, 400)
    summary = savings.saving_summary(sc, 0.95, 400).set_index(["protocol", "method"])
    # 300-step runs shrink a 400-step window to 60, the 150-step protocol to 30: each by its own length.
    assert set(zip(per_seed["method"], per_seed["window"], strict=True)) == {
        ("sgd_os-g3", 60),
        ("adam_os-g3", 60),
        ("adam_os-g5", 30),
    }
    for (protocol, method), g in per_seed.groupby(["protocol", "method"]):
        recs = [r for r in sc.records if r.protocol == protocol]
        base = {r.seed: r.base_loss for r in recs if r.method == g["baseline"].iloc[0]}
        mine = {r.seed: r.base_loss for r in recs if r.method == method}
        want = M.per_seed_saving(base, mine, 0.95, int(g["window"].iloc[0]))
        assert list(g["seed"]) == list(want.seeds)
        assert list(g["k_baseline"]) == list(want.k_baseline) and list(g["k_method"]) == list(want.k_method)
        row = summary.loc[(protocol, method)]
        assert row["mean"] == pytest.approx(want.summary.mean) and row["n_pairs"] == 2
        ps = M.paper_saving(base.values(), mine.values(), 0.95, int(g["window"].iloc[0]))
        assert row["paper_saving"] == pytest.approx(ps.saving)
    # A comparison's numbers do not depend on the other runs read with it.
    alone = [r for r in sc.records if r.family == "sgd"]
    pd.testing.assert_frame_equal(
        savings.savings(alone, 0.95, 400).reset_index(drop=True),
        per_seed[per_seed["family"] == "sgd"].reset_index(drop=True),
    )


def test_window_rule() -> None:
    from overshoot.analysis.metrics import window_for

    assert window_for(400, 2000) == 400 and window_for(400, 1999) == 399 and window_for(400, 800) == 160
    assert window_for(50, 3) == 1
    with pytest.raises(ValueError, match="positive"):
        window_for(0, 100)


def _left_out(out: Path, run: Path) -> tuple[str, str]:
    """The file and reason ``scan`` gives for ``run``, the store's other runs still used."""
    sc = results.scan([out])
    assert len(sc.records) == len(sc.table) - 1
    rows = sc.left_out[sc.left_out["path"] == str(run.resolve())]
    assert len(rows) == 1, sc.left_out
    return str(rows["file"].iloc[0]), str(rows["reason"].iloc[0])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("task", "fmnist"),
        ("optimizer", "adam"),
        ("family", "adam"),
        ("method", "adam"),
        ("gamma", 7.0),
        ("seed", 9),
        ("metric", "accuraxy"),
        ("final", {"best_test_accuraxy": 0.9}),
        ("final", {"best_test_loss": 0.1}),
    ],
)
def test_a_run_json_naming_another_run_leaves_it_out(
    store: Path, tmp_path: Path, key: str, value: object
) -> None:
    """A damaged string or number in run.json that stays valid JSON: checked against config.yaml (whose
    hash names the directory) and the keys ``final`` may hold, never read as another run."""
    s = copy_store(store, tmp_path / "runs")
    run = next(
        d for d in results.run_dirs([s]) if json.loads((d / "run.json").read_text())["optimizer"] == "sgd_os"
    )
    info = json.loads((run / "run.json").read_text())
    assert info["metric"] == "accuracy" and info["family"] == "sgd" and info["seed"] != 9
    (run / "run.json").write_text(json.dumps({**info, key: value}))
    file, reason = _left_out(s, run)
    assert file == "run.json" and f"field {key} " in reason


@pytest.mark.parametrize(
    ("log", "old", "new"),
    [("epochs.csv", "accuracy", "accxracy"), ("steps.csv", "grad_norm", "grad_nxrm")],
)
def test_a_damaged_log_header_leaves_the_run_out(
    store: Path, tmp_path: Path, log: str, old: str, new: str
) -> None:
    """A header the writer never writes is a damaged file, not a log without that column."""
    s = copy_store(store, tmp_path / "runs")
    run = results.run_dirs([s])[0]
    text = (run / log).read_text()
    (run / log).write_text(text.replace(old, new, 1))
    file, reason = _left_out(s, run)
    assert file == log and "header" in reason


def test_a_completed_run_missing_evaluations_is_left_out(store: Path, tmp_path: Path) -> None:
    """epochs.csv cut at a row's end: run.json's eval_rows (written at finish) says how many it held."""
    s = copy_store(store, tmp_path / "runs")
    run = results.run_dirs([s])[0]
    lines = (run / "epochs.csv").read_text().splitlines(keepends=True)
    n = len(lines) - 1
    assert json.loads((run / "run.json").read_text())["eval_rows"] == n > 1
    (run / "epochs.csv").write_text("".join(lines[:-1]))
    file, reason = _left_out(s, run)
    assert file == "epochs.csv" and f"holds {n - 1} rows but run.json says {n}" in reason


def test_a_run_json_key_one_byte_off_leaves_the_run_out(store: Path, tmp_path: Path) -> None:
    """A damaged byte in a key (``steps_to_9x``) is a damaged run.json, not a run without that field."""
    s = copy_store(store, tmp_path / "runs")
    run = results.run_dirs([s])[0]
    f = run / "run.json"
    f.write_text(f.read_text().replace('"steps_to_95"', '"steps_to_9x"'))
    file, reason = _left_out(s, run)
    assert file == "run.json" and "steps_to_9x" in reason and "one character from steps_to_95" in reason


@pytest.mark.parametrize(
    ("log", "old", "new"), [("epochs.csv", ",test,", ",txst,"), ("steps.csv", ",0.", ",x.")]
)
def test_a_damaged_log_cell_leaves_the_run_out(
    store: Path, tmp_path: Path, log: str, old: str, new: str
) -> None:
    """A damaged split name in epochs.csv (its rows would not count as the test split's), or a damaged cell in
    a steps.csv column the results do not read: a damaged file."""
    s = copy_store(store, tmp_path / "runs")
    run = results.run_dirs([s])[0]
    text = (run / log).read_text()
    i = text.rindex(old)
    (run / log).write_text(text[:i] + new + text[i + len(old) :])
    file, reason = _left_out(s, run)
    assert file == log and ("split 'txst'" in reason or "not a number ('x." in reason)
