"""Benchmarking your own optimizer and task: optimizer=custom / a YAML with _target_, task._target_."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from overshoot.analysis import results
from overshoot.config import methods
from overshoot.config.compose import ConfigError, compose, resolve
from overshoot.config.schema import config_hash
from overshoot.store.writer import run_path
from overshoot.train.lifecycle import run_one

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
REPORT = [sys.executable, "-c", "from overshoot.analysis.report import main; main()"]
RADAM = ["optimizer=custom", "optimizer.target=torch.optim.Adamax", "optimizer.family=adam"]


def test_a_torch_optimizer_on_the_command_line_takes_its_familys_hyperparameters(tmp_path: Path) -> None:
    run = resolve(compose([*RADAM, f"out={tmp_path}", "max_steps=30", "progress=none"]))
    assert (run.optimizer, run.family, run.optimizer_target, run.gamma) == (
        "adamax",
        "adam",
        "torch.optim.Adamax",
        0.0,
    )
    adam = resolve(compose(["optimizer=adam", f"out={tmp_path}", "max_steps=30"]))
    assert run.hparams == adam.hparams and config_hash(run) != config_hash(adam)
    opt = methods.build_custom(
        "torch.optim.Adamax", "adam", run.hparams, {"eps": 1e-6}, [torch.zeros(2, requires_grad=True)]
    )
    assert isinstance(opt, torch.optim.Adamax)
    assert (
        opt.defaults["betas"] == (0.9, 0.999)
        and opt.defaults["lr"] == run.hparams.lr
        and opt.defaults["eps"] == 1e-6
    )
    assert run_one(run) == 0
    stored = results.read_run(run_path(run.out, run))
    assert stored.status == "completed" and stored.config["optimizer_target"] == "torch.optim.Adamax"
    assert stored.info["method"] == "adamax" and stored.info["family"] == "adam"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer=custom"], "optimizer=custom needs optimizer.target"),
        (["optimizer=custom", "optimizer.target=torch.optim.Adamax"], "optimizer.family=None is unknown"),
        (
            [*RADAM[:1], "optimizer.target=torch.optim.Nope", "optimizer.family=sgd"],
            "torch.optim has no Nope",
        ),
        ([*RADAM[:1], "optimizer.target=nowhere.Opt", "optimizer.family=sgd"], "cannot import nowhere"),
        ([*RADAM, "optimizer.name=adam"], "optimizer.name=adam is a built-in method"),
        (["task=custom"], "task=custom needs task._target_"),
    ],
)
def test_bad_custom_settings_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        resolve(compose(overrides))
    assert "\n" not in str(e.value)


def test_a_class_that_is_not_an_optimizer_fails_with_its_name(tmp_path: Path) -> None:
    """Refused as bad input before anything is built: one line naming the class, no run directory."""
    bad = ["optimizer=custom", "optimizer.target=collections.Counter", "optimizer.family=sgd"]
    with pytest.raises(ConfigError, match=r"collections\.Counter is not a torch\.optim\.Optimizer subclass"):
        resolve(compose([*bad, f"out={tmp_path}", "max_steps=5", "progress=none"]))
    assert not any(tmp_path.iterdir())


def _bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_the_readme_example_trains_reports_and_compares_with_cm(tmp_path: Path) -> None:
    """README "Benchmark your own optimizer": QHM (examples/my_optim.py) against CM and SGDO on digits."""
    out = tmp_path / "runs"
    args = [
        "--config-dir",
        str(EXAMPLES / "my_configs"),
        "-m",
        "optimizer=sgd,qhm",
        "seed=1",
        "max_steps=3000",
    ]
    r = _bench([*args, f"out={out}", "progress=none"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "digits qhm vs sgd: saving" in r.stdout
    report = [*REPORT, str(out / "digits"), "--out", str(tmp_path / "report")]
    rep = subprocess.run(report, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    savings = pd.read_csv(tmp_path / "report" / "savings_per_seed.csv")
    row = savings[savings["method"] == "qhm"]
    assert len(row) == 1 and row["baseline"].iloc[0] == "sgd" and row["n"].iloc[0] == 1
    assert "qhm" in (tmp_path / "report" / "report.md").read_text()


def test_a_task_of_your_own_trains_alone_in_a_population_sweep(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = [
        "--config-dir",
        str(EXAMPLES / "my_configs"),
        "-m",
        "task=moons",
        "optimizer=sgd,sgd_os",
        "seed=1",
    ]
    r = _bench([*args, "max_steps=200", "population=true", f"out={out}", "progress=none"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 alone: task moons is a task of your own" in r.stdout
    (cfg,) = [p for p in out.rglob("config.yaml") if "/sgd/" in str(p)]
    run = results.read_run(cfg.parent)
    assert run.status == "completed" and run.info["metric"] == "accuracy" and len(run.steps()) == 200
    assert run.config["task_options"]["_target_"] == "my_task.Moons" and run.config["hparams"]["lr"] == 0.05


def test_a_factory_without_the_task_protocol_is_named(tmp_path: Path) -> None:
    from overshoot_tasks import build_task

    with pytest.raises(ValueError, match="built a Namespace without metric, metric_scale, n_train"):
        build_task({"_target_": "argparse.Namespace", "name": "x"}, tmp_path, "cpu", torch.float32)
