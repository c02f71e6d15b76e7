"""The Python API (overshoot.bench), gamma sweeps that include their baseline, the end-of-sweep summary,
the TensorBoard and W&B loggers read back, and the progress label and rate."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fixtures import single_run_parts

from overshoot import bench
from overshoot.config.compose import ConfigError, compose, resolve
from overshoot.train import engine, runtime, sweep
from overshoot.train.population import _population_label

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
TINY = {"max_steps": 60, "progress": "none", "log": {"window": 20}}


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env or os.environ.copy()
    )


def _methods(out: Path) -> list[str]:
    return sorted(p.parent.parent.name for p in out.rglob("run.json"))


# -- the Python API ---------------------------------------------------------------------------------------


def test_api_run_returns_the_run(tmp_path: Path) -> None:
    r = bench.run(task="digits", optimizer="sgd_os", gamma=5, seed=3, out=str(tmp_path), **TINY)
    assert r.status == "completed" and r.exit_code == 0
    assert r.path.parent.name == "sgd_os-g5" and r.path.is_dir() and r.path.name.startswith("seed3-")
    assert r.method == "sgd_os-g5" and r.config["gamma"] == 5.0 and r.config["seed"] == 3
    assert isinstance(r.steps, pd.DataFrame) and list(r.steps["step"]) == list(range(60))
    assert np.isfinite(r.steps["base_loss"]).all()
    assert isinstance(r.epochs, pd.DataFrame) and set(r.epochs["split"]) == {"test"}
    m = r.metrics
    assert m["steps"] == 60 and m["steps_per_s"] > 0 and 0 < m["test_accuracy"] <= 1
    assert "steps_to_95" in m and "best_test_accuracy" in m
    ended = r.info["ended"]
    again = bench.run(task="digits", optimizer="sgd_os", gamma=5, seed=3, out=str(tmp_path), **TINY)
    assert again.path == r.path and again.info["ended"] == ended  # read back, not trained again
    assert "sgd_os-g5/seed3" in repr(again)


def test_api_bad_settings_raise_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gamma=5 has no effect with optimizer=sgd"):
        bench.run(optimizer="sgd", gamma=5, out=str(tmp_path))
    with pytest.raises(ConfigError, match=r"Could not find 'task/nope': choose one of .*digits"):
        bench.run(task="nope", out=str(tmp_path))
    with pytest.raises(ConfigError, match=r"To append to your config use \+oops=1"):
        bench.run(oops=1, out=str(tmp_path))
    with pytest.raises(ConfigError, match="is a list of values: sweep over them"):
        bench.run(seed=[1, 2], out=str(tmp_path))
    with pytest.raises(ConfigError, match="OVERSHOOT_DATA"):  # reported by the task (run_one's exit 2)
        bench.run(task="housing", out=str(tmp_path), data={"root": str(tmp_path / "none")}, progress="none")
    assert not list(tmp_path.rglob("steps.csv"))


def test_api_sweep_trains_the_baseline_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = bench.sweep(optimizer=["sgd", "sgd_os"], gamma=[3, 5], seed=[1], out=str(tmp_path), **TINY)
    assert [r.method for r in runs] == ["sgd", "sgd_os-g3", "sgd_os-g5"]
    assert all(r.status == "completed" for r in runs)
    assert capsys.readouterr().out.count("digits/sgd/seed1: starting") == 1
    assert _methods(tmp_path) == ["sgd", "sgd_os-g3", "sgd_os-g5"]
    with pytest.raises(ConfigError, match="lr='x' is not a finite number"):  # checked before anything trains
        bench.sweep(optimizer=["sgd", "sgd_os"], lr=["x"], out=str(tmp_path / "bad"), **TINY)
    assert not (tmp_path / "bad").exists()


def test_api_sweep_as_population(tmp_path: Path) -> None:
    runs = bench.sweep(optimizer=["sgd", "sgd_os"], seed=[1, 2], population=True, out=str(tmp_path), **TINY)
    assert [(r.method, r.config["seed"]) for r in runs] == [
        ("sgd", 1), ("sgd", 2), ("sgd_os-g5", 1), ("sgd_os-g5", 2)
    ]  # fmt: skip
    assert all(r.status == "completed" and r.info.get("population") for r in runs)


# -- gamma sweeps through the CLI -------------------------------------------------------------------------


def test_gamma_sweep_listing_the_baseline(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["-m", "optimizer=sgd,sgd_os", "gamma=3,5", "max_steps=60", "progress=none", "log.window=20"]
    r = _cli(*args, f"out={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("digits/sgd/seed0: starting") == 1
    copies = [ln for ln in r.stdout.splitlines() if "skipped, the same run as job 0" in ln]
    assert copies == [
        "digits/sgd/seed0: skipped, the same run as job 0 of this sweep: sgd takes no gamma "
        "(gamma=5 dropped); it trains once"
    ]
    assert _methods(out) == ["sgd", "sgd_os-g3", "sgd_os-g5"]
    # The closing summary: one saving line per method against its baseline, then the report command.
    summary = [ln for ln in r.stdout.splitlines() if ln.startswith("overshoot-bench: digits sgd_os")]
    assert len(summary) == 2 and all(" vs sgd: " in ln for ln in summary), r.stdout
    assert f"overshoot-bench: report: overshoot-bench-report {out / 'digits'}" in r.stdout
    assert "1 copy skipped" in r.stdout


def test_gamma_sweep_from_zero(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    r = _cli(
        "-m", "optimizer=sgd_os", "gamma=0,3", "max_steps=60", "progress=none", f"out={out}", cwd=tmp_path
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _methods(out) == ["sgd", "sgd_os-g3"]  # gamma 0 is CM: the sgd baseline's run
    assert "sgd_os at gamma 0 is sgd" in r.stdout
    assert "sgd_os-g3 vs sgd: " in r.stdout


def test_single_run_keeps_the_helpful_error(tmp_path: Path) -> None:
    r = _cli("optimizer=sgd", "gamma=5", f"out={tmp_path}", cwd=tmp_path)
    assert r.returncode == 2
    assert "use optimizer=sgd_os gamma=5" in r.stderr and "-m optimizer=sgd,sgd_os gamma=3,5,7" in r.stderr
    assert resolve(compose(["optimizer=adam_os", "gamma=0"])).optimizer == "adam"
    assert resolve(compose(["optimizer=sgd", "gamma=0"])).optimizer == "sgd"


def test_sweep_claims_are_per_run_and_survive_a_requeue(tmp_path: Path) -> None:
    a = resolve(compose([f"out={tmp_path}", "optimizer=sgd"]))
    b = resolve(compose([f"out={tmp_path}", "optimizer=sgd_os"]))
    assert sweep.sweep_job_of(tmp_path / "sweep", a, 3) == 3
    assert sweep.sweep_job_of(tmp_path / "sweep", a, 5) == 3  # a copy
    assert sweep.sweep_job_of(tmp_path / "sweep", a, 3) == 3  # job 3 requeued: still the owner
    assert sweep.sweep_job_of(tmp_path / "sweep", b, 5) == 5


# -- loggers ----------------------------------------------------------------------------------------------


def test_tensorboard_events_hold_the_logged_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = bench.run(optimizer="sgd_os", gamma=3, out=str(tmp_path), log={"tensorboard": True, "window": 20},
                  max_steps=60, progress="none")  # fmt: skip
    acc = EventAccumulator(str(r.path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for col in ("base_loss", "train_loss", "lr", "grad_norm", "epoch"):
        events = acc.Scalars(f"train/{col}")
        assert [e.step for e in events] == list(r.steps["step"])
        np.testing.assert_allclose([e.value for e in events], r.steps[col], rtol=1e-6)
    for split in set(r.epochs["split"]):  # digits has a test split only
        e = r.epochs[r.epochs["split"] == split]
        for col in ("loss", "accuracy"):
            events = acc.Scalars(f"{split}/{col}")
            assert [ev.step for ev in events] == list(e["epoch"])
            np.testing.assert_allclose([ev.value for ev in events], e[col], rtol=1e-6)
    assert not any(t.startswith("train/distance") for t in tags)
    assert any(t.startswith("config") for t in acc.Tags()["tensors"])
    text = acc.Tensors(next(t for t in acc.Tags()["tensors"] if t.startswith("config")))[0]
    assert b"optimizer: sgd_os" in text.tensor_proto.string_val[0]


def test_tensorboard_after_a_killed_run_holds_each_step_once(tmp_path: Path) -> None:
    """A process killed after logging steps past its last checkpoint: the relaunch's events replace them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from overshoot.store.writer import RunWriter
    from overshoot.train.single import train

    run = resolve(compose([f"out={tmp_path}", "optimizer=sgd", "max_steps=120", "progress=none",
                           "log.tensorboard=true", "checkpoint_every=1e9"]))  # fmt: skip
    task, writer, device = single_run_parts(run)
    calls = {"n": 0}

    def killed() -> bool:
        calls["n"] += 1
        if calls["n"] > 100:
            raise RuntimeError("killed")
        return False

    with pytest.raises(RuntimeError, match="killed"):
        train(run, task, writer, device, should_stop=killed)
    first = EventAccumulator(str(writer.path / "tensorboard"))
    first.Reload()
    assert len(first.Scalars("train/base_loss")) > 0  # steps logged, no checkpoint written
    assert not writer.checkpoint_file.exists()
    train(run, task, RunWriter(writer.path), device)
    acc = EventAccumulator(str(writer.path / "tensorboard"))
    acc.Reload()
    steps = pd.read_csv(writer.steps_file)
    events = acc.Scalars("train/base_loss")
    assert [e.step for e in events] == list(steps["step"]) == list(range(120))
    np.testing.assert_allclose([e.value for e in events], steps["base_loss"], rtol=1e-6)


def _wandb_records(path: Path) -> list[Any]:
    """The records of a W&B offline run file (LevelDB-log framing: 32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, part, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if n == 0 and kind == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7 : pos + 7 + n], pos + 7 + n
        part = chunk if kind in (1, 2) else part + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
    return out


def test_wandb_offline_run_holds_the_logged_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    r = bench.run(optimizer="adam_os", gamma=5, out=str(tmp_path / "runs"), log={"wandb": True, "window": 20},
                  max_steps=60, progress="none")  # fmt: skip
    (run_file,) = (tmp_path / "wb" / "wandb").glob(f"offline-run-*-{r.info['wandb_id']}/run-*.wandb")
    records = _wandb_records(run_file)
    history = []
    config: dict[str, Any] = {}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            )
        elif kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
    assert config["task"] == "digits" and config["optimizer"] == "adam_os" and config["gamma"] == 5.0
    steps = [h for h in history if "train/base_loss" in h]
    assert [h["step"] for h in steps] == list(r.steps["step"])
    np.testing.assert_allclose([h["train/base_loss"] for h in steps], r.steps["base_loss"], rtol=1e-12)
    np.testing.assert_allclose([h["train/lr"] for h in steps], r.steps["lr"], rtol=1e-12)
    test = r.epochs[r.epochs["split"] == "test"]
    logged = [h for h in history if "test/loss" in h]
    assert [h["epoch"] for h in logged] == list(test["epoch"])
    np.testing.assert_allclose([h["test/accuracy"] for h in logged], test["accuracy"], rtol=1e-12)


def test_loggers_are_off_by_default(tmp_path: Path) -> None:
    r = bench.run(optimizer="sgd", out=str(tmp_path), **TINY)
    assert not (r.path / "tensorboard").exists() and not (r.path / "wandb").exists()
    assert "wandb_id" not in r.info


# -- terminal ---------------------------------------------------------------------------------------------


def test_progress_lines_name_task_method_seed_and_gamma(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench.run(optimizer="sgd_os", gamma=7, seed=4, out=str(tmp_path), max_steps=40, progress="lines")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ": step " in ln]
    assert lines and all(ln.startswith("digits/sgd_os-g7/seed4: step ") for ln in lines), lines
    assert " steps/s, eta " in lines[-1]


def test_progress_bar_label(capsys: pytest.CaptureFixture[str]) -> None:
    run = resolve(compose(["task=housing", "optimizer=adam_os", "gamma=3", "seed=10"]))
    assert runtime.run_label(run) == "housing/adam_os-g3/seed10"
    assert runtime.run_label(run.replace(optimizer="adam", gamma=0.0)) == "housing/adam/seed10"
    p = engine.Progress("bar", 100, 0, runtime.run_label(run))
    p.update(50, 0.25)
    p.close()
    err = capsys.readouterr().err
    assert "housing/adam_os-g3/seed10:" in err and "loss 0.25" in err and "steps/s" in err


def test_progress_rate_leaves_evaluation_out(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(engine.time, "perf_counter", lambda: clock[0])
    p = engine.Progress("none", 1000, 0, "x")
    clock[0] += 2.0  # 20 training steps in 2 s
    with p.paused():
        clock[0] += 6.0  # evaluation
    assert p.rate(20) == pytest.approx(10.0)
    assert engine.format_rate(0.4123) == "0.412" and engine.format_rate(11.84) == "11.8"
    assert engine.format_rate(2541.2) == "2541"


def test_population_label_names_methods_and_seeds() -> None:
    base = resolve(compose(["optimizer=sgd"]))
    runs = [
        base.replace(optimizer=o, gamma=g, seed=s) for o, g in (("sgd", 0.0), ("sgd_os", 3.0)) for s in (1, 2)
    ]
    assert _population_label(runs) == "digits/population of 4 (sgd,sgd_os-g3; seed 1,2)"
    many = [r.replace(seed=s) for r in runs[:1] for s in range(10, 101, 10)]
    assert _population_label(many) == "digits/population of 10 (sgd; seed 10..100 (10))"
