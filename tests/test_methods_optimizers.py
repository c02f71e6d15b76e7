"""The registry's Lion, RAdam (each with and without overshoot) and Schedule-Free AdamW, and a user's
optimizer wrapped in Overshoot: config, families, builders, both evaluation points, the missing extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from overshoot.config import methods
from overshoot.config.compose import ConfigError, compose, resolve
from overshoot.optim import Overshoot, ScheduleFreeEval
from overshoot.store.writer import run_path
from overshoot.train import population
from overshoot.train.lifecycle import run_one

ADAMAX = ["optimizer=custom", "optimizer.target=torch.optim.Adamax", "optimizer.family=adam"]


def _run(tmp_path: Path, *overrides: str):
    return resolve(compose([*overrides, f"out={tmp_path}", "max_steps=40", "progress=none", "threads=1"]))


@pytest.mark.parametrize(
    ("optimizer", "family", "baseline", "label"),
    [
        ("lion", "lion", "lion", "lion"),
        ("lion_os", "lion", "lion", "lion_os-g5"),
        ("radam", "radam", "radam", "radam"),
        ("radam_os", "radam", "radam", "radam_os-g5"),
        ("sf_adamw", "adam", "adam", "sf_adamw"),
    ],
)
def test_each_method_has_its_family_baseline_and_the_adam_presets(
    tmp_path: Path, optimizer: str, family: str, baseline: str, label: str
) -> None:
    run = _run(tmp_path, f"optimizer={optimizer}")
    m = methods.get(run.optimizer)
    assert (run.family, m.baseline, m.label(run.gamma)) == (family, baseline, label)
    adam = _run(tmp_path, "optimizer=adam").hparams
    beta2 = 0.99 if family == "lion" else adam.beta2  # Lion keeps its authors' b2
    assert run.hparams == adam.__class__(**{**adam.__dict__, "beta2": beta2})
    assert (
        _run(tmp_path, f"optimizer={optimizer}", "beta2=0.95").hparams.beta2 == 0.95
    )  # the command line wins
    # gamma 0 of an overshoot method is its family baseline's run, as for SGDO/AdamO
    if m.overshoot:
        assert _run(tmp_path, f"optimizer={optimizer}", "gamma=0").optimizer == baseline
    # populations leave them to single runs, saying why
    assert "has no population update" in str(population.eligible(run))


def test_builders_wrap_the_packages_optimizers(tmp_path: Path) -> None:
    from lion_pytorch import Lion
    from schedulefree import AdamWScheduleFree

    ps = [torch.nn.Parameter(torch.zeros(3))]
    for name, gamma, inner in [("lion_os", 3.0, Lion), ("radam_os", 5.0, torch.optim.RAdam)]:
        run = _run(tmp_path, f"optimizer={name}", f"gamma={gamma}", "lr=0.004")
        opt = methods.build_optimizer(methods.get(name), ps, run.hparams, run.gamma)
        assert isinstance(opt, Overshoot) and isinstance(opt.optimizer, inner)
        group = opt.param_groups[0]
        assert (group["gamma"], group["delay"], group["lr"]) == (gamma, run.hparams.delay, 0.004)
        assert group["betas"] == (run.hparams.momentum, run.hparams.beta2)
    radam = methods.build_optimizer(methods.get("radam"), ps, run.hparams, 0.0)
    assert type(radam) is torch.optim.RAdam and radam.defaults["decoupled_weight_decay"]
    sf = methods.build_optimizer(methods.get("sf_adamw"), ps, run.hparams, 0.0)
    assert isinstance(sf, ScheduleFreeEval) and isinstance(sf.optimizer, AdamWScheduleFree)
    assert sf.param_groups[0]["train_mode"]  # ready to step


def test_a_missing_package_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lion_pytorch", None)
    with pytest.raises(ConfigError, match=r"pip install 'overshoot-bench\[optimizers\]'") as e:
        _run(tmp_path, "optimizer=lion_os")
    assert "\n" not in str(e.value) and "lion-pytorch" in str(e.value)
    assert _run(tmp_path, "optimizer=radam_os").optimizer == "radam_os"  # torch's RAdam needs no extra


def test_a_users_optimizer_wrapped_in_overshoot(tmp_path: Path) -> None:
    run = _run(tmp_path, *ADAMAX, "optimizer.overshoot=3")
    assert (run.optimizer, run.gamma, methods.label(run.optimizer, run.gamma)) == ("adamax", 3.0, "adamax-g3")
    assert methods.display_label(run.optimizer, run.gamma) == "adamax γ=3"
    opt = methods.build_optimizer(
        methods.get(run.optimizer, run.family), [torch.nn.Parameter(torch.zeros(2))], run.hparams, run.gamma,
        target=run.optimizer_target,
    )  # fmt: skip
    assert isinstance(opt, Overshoot) and isinstance(opt.optimizer, torch.optim.Adamax)
    assert opt.param_groups[0]["delay"] == run.hparams.delay
    assert _run(tmp_path, *ADAMAX, "optimizer.overshoot=true", "gamma=7").gamma == 7.0
    plain = _run(tmp_path, *ADAMAX, "optimizer.overshoot=0")
    assert (plain.optimizer, plain.gamma) == ("adamax", 0.0)  # gamma 0: the user's optimizer as it is
    with pytest.raises(ConfigError, match="disagree"):
        _run(tmp_path, *ADAMAX, "optimizer.overshoot=3", "gamma=5")
    with pytest.raises(ConfigError, match="is a built-in method"):
        _run(tmp_path, "optimizer=custom", "optimizer.target=torch.optim.RAdam", "optimizer.family=adam")


@pytest.mark.parametrize("overrides", [["optimizer=sf_adamw"], ["optimizer=radam_os", "delay=5"], ADAMAX])
def test_both_evaluation_points_are_logged(tmp_path: Path, overrides: list[str]) -> None:
    run = _run(tmp_path, *overrides)
    assert run_one(run) == 0
    steps = pd.read_csv(run_path(run.out, run) / "steps.csv")
    apart = (steps["base_loss"] - steps["train_loss"]).abs()
    two_points = methods.get(run.optimizer, run.family).two_points(run.gamma)
    if run.optimizer == "adamax":  # without overshoot one point: the same loss
        assert not two_points and (apart == 0).all()
    else:
        assert two_points and (apart > 0).sum() > 10


def test_a_family_default_is_not_a_tuned_axis() -> None:
    from overshoot.analysis import tuning

    rows = []
    for method, beta2 in (("adam", 0.999), ("lion", 0.99)):  # Lion's own b2: constant within the method
        for lr in (0.001, 0.002):
            hp = {"lr": lr, "beta2": beta2}
            rows.append(
                {"task": "digits", "method": method, "optimizer": method, "gamma": 0.0, "family": method,
                 "seed": 1, "status": "diverged", "config": {"optimizer": method, "hparams": hp},
                 "metric": "accuracy", "path": "unread", **{f"hp_{k}": v for k, v in hp.items()}}
            )  # fmt: skip
    _, axes = tuning.trials_frame(pd.DataFrame(rows))
    assert axes == {"lr": [0.001, 0.002]}


def test_the_report_draws_the_gap_between_the_two_losses(tmp_path: Path) -> None:
    from overshoot.analysis import figures
    from overshoot.analysis.report.tables import build_report
    from overshoot.analysis.results import scan

    for o in ("optimizer=adam", "optimizer=sf_adamw"):
        assert run_one(_run(tmp_path, o)) == 0
    report = build_report(scan([tmp_path]), window=10)
    paths = figures.two_point_gap(report, tmp_path / "fig" / "two_point_gap")
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"] and all(p.stat().st_size > 0 for p in paths)
    assert "two_point_gap" in figures.captions(report)
    only_adam = build_report(scan([tmp_path / "digits" / "adam"]), window=10)
    assert figures.two_point_gap(only_adam, tmp_path / "fig" / "none") == []  # one point: nothing to draw
