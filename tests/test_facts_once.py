"""Each fact stated once: a sweep job's config is resolved once; the paper grid's method list is written
in one config file."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from overshoot.config.compose import CONFIG_DIR

COUNT_RESOLVES = textwrap.dedent(
    """
    import sys
    import overshoot.config.compose as compose
    import overshoot.train.lifecycle as lifecycle
    import overshoot.train.sweep as sweep
    from overshoot.cli.main import main

    calls = []
    def counting(cfg):
        calls.append(1)
        return compose.resolve(cfg)
    sweep.resolve = lifecycle.resolve = counting
    sys.argv = ["overshoot-bench", *sys.argv[1:]]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    print("RESOLVES", len(calls), "EXIT", code, file=sys.stderr)
    """
)


@pytest.mark.parametrize("population", ["false", "true"])
def test_a_sweep_job_is_resolved_once(population: str, tmp_path: Path) -> None:
    args = ["-m", "optimizer=sgd,sgd_os", "gamma=3", "max_steps=1", "threads=1", "progress=none"]
    args += [f"population={population}", f"out={tmp_path}"]
    cmd = [sys.executable, "-c", COUNT_RESOLVES, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    last = p.stderr.strip().splitlines()[-1].split()
    assert last[0] == "RESOLVES" and last[3] == "0", p.stdout + p.stderr
    assert int(last[1]) == 2, f"2 jobs resolved {last[1]} times:\n{p.stdout}{p.stderr}"


def test_the_paper_method_list_is_written_once() -> None:
    lists = [
        p.relative_to(CONFIG_DIR)
        for p in CONFIG_DIR.rglob("*.yaml")
        if re.search(r"^\s*\+method:", p.read_text(), re.MULTILINE)
    ]
    assert lists == [Path("hydra/sweeper/params/paper_methods.yaml")]


def test_which_methods_take_gamma_is_the_registrys() -> None:
    from overshoot.config import methods
    from overshoot.config.compose import compose, takes_gamma

    for name, method in methods.METHODS.items():
        node = (CONFIG_DIR / "optimizer" / f"{name}.yaml").read_text()
        assert not re.search(r"^(overshoot|family):", node, re.MULTILINE), (
            f"optimizer/{name}.yaml restates it"
        )
        assert takes_gamma(compose([f"optimizer={name}"]).optimizer) == method.overshoot, name
    custom = ["optimizer=custom", "optimizer.target=torch.optim.Adamax", "optimizer.family=adam"]
    assert not takes_gamma(compose(custom).optimizer)
    assert takes_gamma(compose([*custom, "optimizer.overshoot=3"]).optimizer)


def test_the_default_gamma_is_one_number() -> None:
    """The gamma a run gets when none is given is the optimizers' own default, and --help shows it."""
    import torch

    from overshoot.config.compose import compose, resolve
    from overshoot.config.methods import DEFAULT_GAMMA
    from overshoot.optim import SGDO, AdamO, Overshoot

    p = [torch.nn.Parameter(torch.zeros(2))]
    built = [SGDO(p, lr=0.1, momentum=0.9), AdamO(p, lr=1e-3), Overshoot(torch.optim.SGD(p, lr=0.1))]
    assert [o.param_groups[0]["gamma"] for o in built] == [DEFAULT_GAMMA] * 3
    custom = ["optimizer=custom", "optimizer.target=torch.optim.Adamax", "optimizer.family=adam"]
    for overrides in (["optimizer=sgd_os"], ["optimizer=adam_os"], [*custom, "optimizer.overshoot=true"]):
        assert resolve(compose(overrides)).gamma == DEFAULT_GAMMA, overrides
    cmd = [sys.executable, "-m", "overshoot.cli.entry", "--help"]
    help_text = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    assert f"gamma=null ({DEFAULT_GAMMA:g} for the methods that take it)" in help_text


def test_the_batch_size_is_checked_once_against_the_tasks_training_set() -> None:
    from overshoot_tasks.base import steps_per_epoch

    from overshoot.config.compose import ConfigError, compose, resolve

    # No table of training-set sizes in the config layer: a batch size is checked against the built task.
    assert resolve(compose(["task=cifar", "batch_size=10000000"])).hparams.batch_size == 10_000_000
    assert steps_per_epoch(10, 10) == steps_per_epoch(10, 10, drop_last=False) == 1
    for drop_last in (True, False):
        with pytest.raises(ValueError, match="batch_size=11 exceeds the 10 training examples"):
            steps_per_epoch(10, 11, drop_last)
    # A task of the user's may not take a built-in task's name (the task group's names).
    with pytest.raises(ConfigError, match="a name of its own"):
        resolve(compose(["task=custom", "task._target_=mymodule.MyTask", "task.name=cifar100"]))


@pytest.mark.parametrize("population", [False, True])
def test_an_api_sweep_job_is_resolved_once(
    population: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import overshoot.config.compose as compose
    from overshoot import bench
    from overshoot.train import lifecycle, sweep

    calls = []

    def counting(cfg: Any) -> Any:
        calls.append(1)
        return compose.resolve(cfg)

    for module in (bench, lifecycle, sweep):
        monkeypatch.setattr(module, "resolve", counting)
    tiny = {"max_steps": 1, "threads": 1, "progress": "none"}
    runs = bench.sweep(optimizer=["sgd", "sgd_os"], population=population, out=str(tmp_path), **tiny)
    assert [r.status for r in runs] == ["completed"] * 2
    assert len(calls) == 2, f"2 jobs resolved {len(calls)} times"


ARGUMENT_CHECKS = textwrap.dedent(
    """
    import sys
    import overshoot.optim.checks
    from overshoot.config.compose import ConfigError, compose, resolve

    for bad in (["lr=-1"], ["optimizer=sgd_os", "gamma=-1"], ["optimizer=adam", "beta2=1"], ["delay=-1"]):
        try:
            resolve(compose(bad))
        except ConfigError as e:
            print(e)
    print("TORCH", "torch" in sys.modules)
    """
)


def test_the_argument_checks_are_the_optimizers_and_import_no_torch() -> None:
    """The run config refuses bad input with the optimizers' own checks (overshoot.optim.checks), and
    neither those checks nor the refusal import torch."""
    import torch

    from overshoot.optim import SGDO, AdamO, Overshoot, checks

    out = subprocess.run([sys.executable, "-c", ARGUMENT_CHECKS], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert lines == [
        "lr=-1 is invalid: lr must be >= 0",
        "gamma=-1 is invalid: gamma must be >= 0 (the paper uses 3, 5 or 7)",
        "beta2=1 is invalid: Adam's beta2 must be in [0, 1)",
        "delay=-1 is invalid: delay must be >= 0 (AdamO's overshoot ramp delay, in steps)",
        "TORCH False",
    ], out.stdout + out.stderr
    p = [torch.nn.Parameter(torch.zeros(2))]
    refused = [
        (lambda: SGDO(p, lr=-1.0), "Invalid learning rate: -1.0"),
        (lambda: SGDO(p, lr=0.1, gamma=-1.0), "Invalid gamma value: -1.0"),
        (lambda: AdamO(p, betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
        (lambda: AdamO(p, delay=-1), "Invalid delay value: -1"),
        (lambda: Overshoot(torch.optim.SGD(p, lr=0.1), gamma=-1.0), "Invalid gamma value: -1.0"),
    ]
    for build, message in refused:
        with pytest.raises(checks.ArgumentError, match=re.escape(message)):
            build()


def test_the_docs_state_the_default_gamma() -> None:
    """README and docs/cli.md state the optimizers' default gamma, not a number of their own."""
    from overshoot.optim.checks import DEFAULT_GAMMA

    root = Path(__file__).resolve().parents[1]
    for doc in ("README.md", "docs/cli.md"):
        stated = re.findall(r"takes `gamma=` \(default ([\d.]+)\)", (root / doc).read_text())
        assert stated and {float(s) for s in stated} == {DEFAULT_GAMMA}, doc
