"""The harness end to end on the bundled digits task: run store, resume, skip, determinism, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import single_run_parts

from overshoot.analysis import results
from overshoot.config.compose import ConfigError, compose, resolve
from overshoot.train.lifecycle import run_one
from overshoot.train.runtime import Interrupted
from overshoot.train.single import train

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
FAST = ["max_steps=240", "progress=lines"]


def bench(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env or os.environ.copy()
    )


def only_run(out: Path) -> Path:
    runs = [p.parent for p in out.rglob("run.json")]
    assert len(runs) == 1, runs
    return runs[0]


def test_cli_digits_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    r = bench(f"out={out}", *FAST, "optimizer=adam_os", "gamma=5", "delay=20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = only_run(out)
    assert path.relative_to(out).parts[:2] == ("digits", "adam_os-g5")
    info = json.loads((path / "run.json").read_text())
    assert info["status"] == "completed"
    keys = ("config_hash", "started", "ended", "wall_time_s", "steps_per_s", "versions", "device", "final")
    for key in keys:
        assert info[key] is not None, key
    assert info["steps"] == 240
    steps = pd.read_csv(path / "steps.csv")
    assert list(steps.columns) == ["step", "epoch", "base_loss", "train_loss", "lr", "grad_norm", "time_s"]
    assert steps["step"].tolist() == list(range(240))
    # After the 20-step delay the overshoot weights differ from the base weights: the two losses differ.
    assert (steps["base_loss"][:20] == steps["train_loss"][:20]).all()
    assert (steps["base_loss"][40:] != steps["train_loss"][40:]).any()
    epochs = pd.read_csv(path / "epochs.csv")
    assert set(epochs["split"]) >= {"test"}
    assert epochs["accuracy"].between(0, 1).all()
    assert not (path / "checkpoint.pt").exists()
    assert "steps to its own 95% loss reduction" in r.stdout and str(path) in r.stdout

    again = bench(f"out={out}", *FAST, "optimizer=adam_os", "gamma=5", "delay=20", cwd=tmp_path)
    assert again.returncode == 0 and "skipped, already completed" in again.stdout


def _curve(out: Path, *overrides: str) -> pd.DataFrame:
    """A run's steps.csv but its time_s (the clock's readings, which no rerun repeats)."""
    assert run_one(compose([f"out={out}", "progress=none", *overrides])) == 0
    return results.read_run(only_run(out)).steps().drop(columns="time_s")


def test_same_seed_same_curve_and_seed_zero_is_seeded(tmp_path: Path) -> None:
    a = _curve(tmp_path / "a", "seed=0", "max_steps=120")
    b = _curve(tmp_path / "b", "seed=0", "max_steps=120")
    c = _curve(tmp_path / "c", "seed=1", "max_steps=120")
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["base_loss"].to_numpy(), c["base_loss"].to_numpy())


def test_base_loss_logging_leaves_trajectory_unchanged(tmp_path: Path) -> None:
    on = _curve(tmp_path / "on", "optimizer=sgd_os", "gamma=3", "max_steps=150", "log.base_loss=true")
    off = _curve(tmp_path / "off", "optimizer=sgd_os", "gamma=3", "max_steps=150", "log.base_loss=false")
    # train_loss is the loss at the overshoot weights: bit-identical iff the trajectories are.
    np.testing.assert_array_equal(on["train_loss"].to_numpy(), off["train_loss"].to_numpy())
    assert (on["base_loss"] != on["train_loss"]).any()


def _stop_after(n_checks: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n_checks

    return should_stop


def test_resume_after_interruption_reproduces_the_curve(tmp_path: Path) -> None:
    overrides = ["optimizer=adam_os", "gamma=3", "delay=10", "max_steps=700", "progress=none"]
    ref = _curve(tmp_path / "ref", *overrides)

    run = resolve(compose([f"out={tmp_path / 'cut'}", *overrides]))
    task, writer, device = single_run_parts(run)
    with pytest.raises(Interrupted):
        train(run, task, writer, device, should_stop=_stop_after(300))
    cut_rows = len(results.read_run(writer.path).steps()) if (writer.path / "run.json").exists() else 0
    assert 0 < cut_rows < 700 and writer.checkpoint_file.exists()
    # The last rows after the checkpoint are written again on resume, never duplicated.
    train(run, task, writer, device)
    pd.testing.assert_frame_equal(pd.read_csv(writer.steps_file).drop(columns="time_s"), ref)


def test_killed_run_resumes_from_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = [f"out={out}", "optimizer=sgd_os", "gamma=5", "max_steps=1000", "checkpoint_every=0"]
    args.append("progress=none")
    proc = subprocess.Popen([*BENCH, *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("checkpoint.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    path = only_run(out)
    assert json.loads((path / "run.json").read_text())["status"] == "running"  # killed: nobody marked it
    r = bench(*args, cwd=tmp_path)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stdout + r.stderr
    ref = _curve(tmp_path / "ref", *args[1:])
    pd.testing.assert_frame_equal(results.read_run(path).steps().drop(columns="time_s"), ref)


def test_sigterm_marks_failed_and_relaunch_completes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = [f"out={out}", "optimizer=sgd", "max_steps=1000", "checkpoint_every=0", "progress=none"]
    proc = subprocess.Popen([*BENCH, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("steps.csv")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err.decode()
    info = json.loads((only_run(out) / "run.json").read_text())
    assert info["status"] == "failed" and info["reason"].startswith("interrupted")
    r = bench(*args, cwd=tmp_path)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stdout + r.stderr
    assert len(results.read_run(only_run(out)).steps()) == 1000


def test_diverged_run_keeps_partial_curve(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    r = bench(f"out={out}", "optimizer=sgd", "lr=1e6", "max_steps=400", "progress=none", cwd=tmp_path)
    assert r.returncode == 1
    assert "diverged" in r.stdout and "Traceback" not in r.stderr
    path = only_run(out)
    info = json.loads((path / "run.json").read_text())
    assert info["status"] == "diverged"
    steps = pd.read_csv(path / "steps.csv")
    assert 0 < len(steps) < 400 and not np.isfinite(steps["base_loss"].iloc[-1])
    assert np.isfinite(steps["base_loss"].iloc[:-1]).all()
    again = bench(f"out={out}", "optimizer=sgd", "lr=1e6", "max_steps=400", "progress=none", cwd=tmp_path)
    assert again.returncode == 0 and "skipped, already diverged" in again.stdout  # a result, not redone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=nope"], "unknown task=nope: choose one of cifar, cifar100, custom, digits"),
        (["optimizer=adm"], "unknown optimizer=adm (did you mean optimizer=adam?): choose one of adam,"),
        (["learning_rate=0.1"], "unknown setting learning_rate"),
        (["+learning_rate=0.1"], "unknown setting learning_rate (did you mean lr?)"),
        (["+log.windw=3"], "unknown setting log.windw"),
        (["lr=["], "no viable alternative"),
        (["momentum=1.5"], "momentum=1.5 is invalid"),
        (["optimizer=adam", "beta2=1"], "beta2=1 is invalid"),
        (["optimizer=adam", "eps=-1"], "eps=-1 is invalid: eps must be > 0"),
        (["threads=0"], "threads=0 is invalid"),
        (["threads=abc"], "threads='abc' is not an integer"),
        (["seed=-1"], "seed=-1 is invalid"),
        (["batch_size=100000"], "batch_size=100000 exceeds the 1437 training examples: lower batch_size"),
        (["batch_size=1500"], "batch_size=1500 exceeds the 1437 training examples"),
        (["drop_last=false", "batch_size=1500"], "batch_size=1500 exceeds the 1437 training examples"),
        (["optimizer=sgd", "gamma=3"], "gamma=3 has no effect with optimizer=sgd"),
        (["optimizer=sgd_os", "gamma=-1"], "gamma must be >= 0"),
        (["task=housing", "data.root=/nonexistent"], "OVERSHOOT_DATA"),
        (["precision=fp16"], "precision=fp16 is unknown"),
        (["batch_size=0"], "batch_size=0 is invalid"),
        (["lr=abc"], "lr='abc' is not a finite number"),
        (["seed=1.5"], "seed=1.5 is not an integer"),
    ],
)
def test_bad_input_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    r = bench(f"out={tmp_path / 'runs'}", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line, no traceback
    assert not list((tmp_path / "runs").rglob("steps.csv"))
    for f in (tmp_path / "runs").rglob("run.json"):  # found after the run was claimed: recorded as failed
        info = json.loads(f.read_text())
        assert info["status"] == "failed" and message.split(":")[0] in info["reason"]


def test_resolve_rejects_gamma_on_baselines() -> None:
    with pytest.raises(ConfigError, match="optimizer=adam"):
        resolve(compose(["optimizer=adam", "gamma=5"]))
    run = resolve(compose(["optimizer=adam_os"]))
    assert run.gamma == 5.0 and run.family == "adam"
    fm = resolve(compose(["task=fmnist", "optimizer=sgd_os", "gamma=3"]))
    assert fm.hparams.epochs == 50 and fm.hparams.lr == 1e-3
    assert resolve(compose(["task=fmnist", "optimizer=adam"])).hparams.epochs == 10
    tuned = resolve(compose(["task=fmnist", "optimizer=sgd", "preset=tuned"]))
    assert tuned.hparams.batch_size == 32 and tuned.task_options["width"] == "tuned"


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a small file of every dataset in its real on-disk format."""
    from fixtures import write_every_dataset

    return write_every_dataset(tmp_path_factory.mktemp("data"))


TASK_NAMES = [
    *("digits", "housing", "vae_fmnist", "vae_mnist", "fmnist"),
    *("cifar", "cifar100", "gpt2_qqp", "gpt2_text"),
]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_task_runs_through_the_cli(
    name: str, fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERSHOOT_CACHE", str(tmp_path / "cache"))
    extra = ["task.seq_len=32"] if name == "gpt2_text" else []
    out = tmp_path / "runs"
    args = [f"task={name}", f"data.root={fixture_root}", "optimizer=adam_os", "delay=0", "batch_size=4"]
    assert run_one(compose([*args, "max_steps=3", f"out={out}", "progress=none", *extra])) == 0
    run = results.read_run(only_run(out))
    assert run.status == "completed" and len(run.steps()) == 3
    assert np.isfinite(run.steps()[["base_loss", "train_loss", "grad_norm"]].to_numpy()).all()
    assert "test" in set(run.epochs()["split"])


@pytest.mark.parametrize("name", ["cifar100", "gpt2_qqp"])  # BatchNorm statistics; dropout
def test_base_loss_logging_leaves_stateful_models_unchanged(
    name: str, fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERSHOOT_CACHE", str(tmp_path / "cache"))
    args = [f"task={name}", f"data.root={fixture_root}", "optimizer=sgd_os", "gamma=3", "batch_size=4"]
    args += ["max_steps=4", "progress=none", "lr=0.01"]
    on = _curve(tmp_path / "on", *args, "log.base_loss=true")
    off = _curve(tmp_path / "off", *args, "log.base_loss=false")
    np.testing.assert_array_equal(on["train_loss"].to_numpy(), off["train_loss"].to_numpy())
    assert (on["base_loss"] != on["train_loss"]).any()
    # Evaluation uses the BatchNorm running statistics: equal test losses mean they were left untouched.
    on_eval, off_eval = (results.read_run(only_run(tmp_path / d)).epochs() for d in ("on", "off"))
    pd.testing.assert_frame_equal(on_eval, off_eval)


def test_threads_auto_gives_a_large_model_the_default_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """In one process (a sweep), a small model's one thread does not stick to the larger models after it."""
    from torch import nn

    from overshoot.train import runtime

    monkeypatch.setattr(runtime, "CPU_THREADS", 2)
    cpu = torch.device("cpu")
    try:
        runtime.set_cpu_threads("auto", nn.Linear(10, 10), cpu)
        assert torch.get_num_threads() == 1
        runtime.set_cpu_threads("auto", nn.Linear(1000, 1000), cpu)  # 1,001,000 parameters
        assert torch.get_num_threads() == 2
        runtime.set_cpu_threads(3, nn.Linear(10, 10), cpu)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)  # conftest's setting
