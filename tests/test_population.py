"""Population mode: members reproduce their single runs' curves; grouping; resume; the switch."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import overshoot.train.lifecycle as lifecycle
import overshoot.train.population as population
from overshoot.analysis import results
from overshoot.config.compose import compose, resolve
from overshoot.store.writer import run_path
from overshoot.train.lifecycle import run_one, run_population
from overshoot.train.population import plan_populations
from overshoot.train.runtime import StopRequest

SGD_MEMBERS = [["optimizer=sgd", "seed=1"], ["optimizer=nesterov", "seed=2"], ["+method=sgd_os_g3", "seed=1"]]
ADAM_MEMBERS = [["optimizer=adam", "seed=1"], ["+method=adam_os_g5", "seed=2"], ["optimizer=nadam", "seed=3"]]


def _common(task: str, root: Path, out: Path) -> list[str]:
    return [
        f"task={task}",
        *(["task.width=tuned"] if task == "fmnist" else []),
        "precision=fp64",
        "device=cpu",
        "max_steps=100",
        f"batch_size={ {'housing': 16, 'fmnist': 4}.get(task, 2) }",  # small conv batches: fp64 on a CPU
        "delay=5",  # AdamO's overshoot starts within the 100 steps
        "progress=none",
        "checkpoint_every=1e9",
        f"data.root={root}",
        f"out={out}",
    ]


def _runs(task: str, members: list[list[str]], root: Path, out: Path) -> list[dict]:
    """Resolved configs of ``members`` (2c2d at the tuned widths 16/32/64: the same layers, a faster test)."""
    return [resolve(compose(_common(task, root, out) + m)) for m in members]


@pytest.mark.parametrize(
    ("task", "members"),
    [
        ("housing", SGD_MEMBERS),
        ("housing", ADAM_MEMBERS),
        ("fmnist", SGD_MEMBERS),
        ("vae_fmnist", ADAM_MEMBERS),
    ],
    ids=["mlp-sgd", "mlp-adam", "conv-sgd", "vae-adam"],
)
def test_member_curves_equal_single_runs(
    task: str, members: list[list[str]], root: Path, tmp_path: Path
) -> None:
    pop_runs = _runs(task, members, root, tmp_path / "pop")
    assert run_population(pop_runs) == [0] * len(members)
    for m in members:
        assert run_one(compose(_common(task, root, tmp_path / "single") + m)) == 0
    for r in pop_runs:
        p = results.read_run(run_path(r.out, r))
        s = results.read_run(run_path(tmp_path / "single", r))
        ps, ss = p.steps(), s.steps()
        assert len(ps) == len(ss) == 100
        assert list(ps.columns) == list(ss.columns)
        for col in ("base_loss", "train_loss", "grad_norm"):
            assert np.abs(ps[col].to_numpy() - ss[col].to_numpy()).max() <= 1e-10, (r.optimizer, col)
        assert (ps["lr"].to_numpy() == ss["lr"].to_numpy()).all()
        pe, se = p.epochs(), s.epochs()
        assert list(pe["split"]) == list(se["split"]) and list(pe["epoch"]) == list(se["epoch"])
        assert np.abs(pe["loss"].to_numpy() - se["loss"].to_numpy()).max() <= 1e-10
        np.testing.assert_allclose(pe["accuracy"].to_numpy(float), se["accuracy"].to_numpy(float), atol=1e-12)
        assert p.status == s.status == "completed"
        assert set(p.info) - {"population"} == set(s.info)
        assert p.info["config_hash"] == s.info["config_hash"] and p.info["population"]["size"] == len(members)
        assert {k: v for k, v in p.config.items() if k not in ("out", "population")} == {
            k: v for k, v in s.config.items() if k not in ("out", "population")
        }
        assert not (p.path / "checkpoint.pt").exists()


def test_members_with_overshoot_differ_from_their_baseline(root: Path, tmp_path: Path) -> None:
    runs = _runs("housing", [["optimizer=sgd", "seed=1"], ["+method=sgd_os_g3", "seed=1"]], root, tmp_path)
    assert run_population(runs) == [0, 0]
    cm, os_ = (results.read_run(run_path(tmp_path, r)).steps() for r in runs)
    assert cm["base_loss"].iloc[0] == os_["base_loss"].iloc[0]  # same seed: same init, same first batch
    assert np.abs(cm["base_loss"].to_numpy() - os_["base_loss"].to_numpy()).max() > 1e-3
    assert (os_["base_loss"] != os_["train_loss"]).iloc[1:].all()  # logged at the base weights


def test_plan_populations_groups_by_family_and_hyperparameters(root: Path, tmp_path: Path) -> None:
    methods = ["sgd", "nesterov", "sgd_os_g3", "sgd_os_g5", "sgd_os_g7", "adam", "nadam", "adam_os_g3"]
    base = [f"out={tmp_path}", f"data.root={root}", "task=fmnist"]
    runs = [resolve(compose([*base, f"+method={m}", f"seed={s}"])) for m in methods for s in (10, 20)]
    runs.append(resolve(compose([*base, "+method=sgd", "seed=30", "lr=0.5"])))  # other hyperparameters
    runs.append(runs[0])  # a duplicate is trained once
    pops, alone = plan_populations(runs)
    assert sorted(len(p) for p in pops) == [6, 10]  # NAdam joins the Adam family
    sgd = next(p for p in pops if len(p) == 10)
    assert {(r.optimizer, r.gamma, r.seed) for r in sgd} == {
        (m, g, s) for m, g in [("sgd", 0), ("nesterov", 0), ("sgd_os", 3), ("sgd_os", 5), ("sgd_os", 7)]
        for s in (10, 20)
    }  # fmt: skip
    assert sorted((r.optimizer, r.seed) for r in alone) == [("sgd", 30)]
    pops, alone = plan_populations(runs, max_size=3)
    assert max(map(len, pops)) == 3 and sum(map(len, pops)) + len(alone) == len(runs) - 1
    bn = resolve(compose([f"out={tmp_path}", "task=cifar100", "optimizer=sgd"]))
    assert plan_populations([bn, bn.replace(seed=1)]) == ([], [bn, bn.replace(seed=1)])
    assert population.member_gamma(runs[2]) == 0.9  # NAG is SGDO at gamma = mu


def _stop_after(n_checks: int):
    """A stand-in for ``stop_requests`` whose flag turns true (as after SIGTERM) at the n-th check."""

    class Flag(StopRequest):
        calls = 0

        def __call__(self) -> bool:
            self.calls += 1
            if self.calls > n_checks:
                self.signum = signal.SIGTERM
            return super().__call__()

    @contextlib.contextmanager
    def requests() -> Iterator[StopRequest]:
        yield Flag()

    return requests


def test_interrupted_population_resumes_to_the_same_curves(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [*SGD_MEMBERS[:1], *SGD_MEMBERS[2:]]
    whole = _runs("housing", members, root, tmp_path / "whole")
    assert run_population(whole) == [0, 0]
    runs = _runs("housing", members, root, tmp_path / "cut")
    monkeypatch.setattr(lifecycle, "stop_requests", _stop_after(40))
    assert run_population(runs) == [143, 143]
    assert all(results.read_run(run_path(r.out, r)).status == "failed" for r in runs)
    assert (population.population_dir(runs) / "checkpoint.pt").exists()
    monkeypatch.undo()
    assert run_population(runs) == [0, 0]
    for a, b in zip(whole, runs, strict=True):
        sa, sb = results.read_run(run_path(a.out, a)).steps(), results.read_run(run_path(b.out, b)).steps()
        timeless = [c for c in sa.columns if c != "time_s"]  # the clock differs; it is tested in test_engine
        pd.testing.assert_frame_equal(sa[timeless], sb[timeless])
        assert results.read_run(run_path(b.out, b)).status == "completed"
    assert not population.population_dir(runs).exists()
    assert run_population(runs) == [0, 0]  # completed: skipped


def test_population_switch_on_the_command_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "from overshoot.cli.main import main; main()", "-m", "population=true"]
    args = ["+method=sgd,sgd_os_g3", "seed=1", "max_steps=20", f"out={tmp_path / 'runs'}", "progress=none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "2 runs in 1 populations" in r.stdout
    infos = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("run.json")]
    assert sorted(i["method"] for i in infos) == ["sgd", "sgd_os-g3"]
    assert all(i["status"] == "completed" and i["population"]["size"] == 2 for i in infos)
    cfgs = [yaml.safe_load(p.read_text()) for p in (tmp_path / "runs").rglob("config.yaml")]
    assert all(c["population"] for c in cfgs)
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.count("skipped, already completed") == 2, r.stdout


def test_state_dict_round_trip_keeps_the_device_step_state(root: Path, tmp_path: Path) -> None:
    from overshoot_tasks import build_task

    runs = _runs("housing", ADAM_MEMBERS, root, tmp_path)
    t = build_task(runs[0].task_options, root, torch.device("cpu"), torch.float64)
    pop = population.Population(runs, t, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for step in range(5):
        pop.set_lr(1e-3 * (1 + step))
        for p in pop.params.values():
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        pop.update()
        assert pop.state["step"] == step  # update() leaves the host mirror alone: capturing it is harmless
        pop.advance_host()
    for old_format in (False, True):  # True: a checkpoint written before mu_product was saved
        sd = pop.state_dict()
        if old_format:
            sd = {k: v for k, v in sd.items() if k != "mu_product"}
        again = population.Population(runs, t, torch.device("cpu"))
        again.load_state_dict(sd)
        assert float(again.t) == 5 and float(again.prev_lr) == 5e-3 and again.state["step"] == 5
        assert torch.equal(again.mu_product, pop.mu_product)
        for k, p in pop.params.items():
            assert torch.equal(again.params[k], p) and torch.equal(again.state["v"][k], pop.state["v"][k])


def test_population_members_feed_their_own_tensorboard_logs(root: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = _runs("housing", SGD_MEMBERS[:2], root, tmp_path)
    runs = [r.replace(log=dataclasses.replace(r.log, tensorboard=True)) for r in runs]
    assert run_population(runs) == [0, 0]
    for r in runs:
        path = run_path(r.out, r)
        acc = EventAccumulator(str(path / "tensorboard"))
        acc.Reload()
        steps = pd.read_csv(path / "steps.csv")
        events = acc.Scalars("train/base_loss")
        assert [e.step for e in events] == list(steps["step"]) == list(range(100))
        np.testing.assert_allclose([e.value for e in events], steps["base_loss"], rtol=1e-6)


def test_a_cosine_population_takes_the_closed_form_schedule(root: Path, tmp_path: Path) -> None:
    """The members' lr is lr_at's at every step (no scheduler, so no warning about the order of steps)."""
    import warnings

    from overshoot.train.runtime import lr_at

    runs = [
        r.replace(hparams=dataclasses.replace(r.hparams, schedule="cosine"))
        for r in _runs("housing", SGD_MEMBERS[:2], root, tmp_path)
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_population(runs) == [0, 0]
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    lrs = results.read_run(run_path(runs[0].out, runs[0])).steps()["lr"]
    total = runs[0].hparams.epochs * 15  # the fixture's 240 training rows in batches of 16
    assert lrs.tolist() == [lr_at(k, runs[0].hparams, total) for k in range(100)]
    assert lrs.iloc[0] == runs[0].hparams.lr and lrs.iloc[-1] < lrs.iloc[1] < lrs.iloc[0]
