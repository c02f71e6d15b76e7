"""The commands of ``overshoot-bench`` that train nothing (help, the composed config, bad input, a finished
run's skip) import neither torch nor pandas: each runs in a fresh interpreter that checks ``sys.modules`` once
the command has exited (the other console scripts: test_light_help.py)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHECK = textwrap.dedent(
    """
    import runpy, sys
    module, sys.argv = sys.argv[1], sys.argv[1:]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as e:
        code = e.code
    heavy = sorted(m for m in ("torch", "pandas") if m in sys.modules)
    print("HEAVY", ",".join(heavy) or "-", "EXIT", code, file=sys.stderr)
    """
)


def _run(module: str, *args: str) -> tuple[str, int, str]:
    """(the heavy modules imported, the exit status, stdout and stderr) of ``python -m module args``."""
    p = subprocess.run(
        [sys.executable, "-c", CHECK, module, *args], capture_output=True, text=True, timeout=120
    )
    last = p.stderr.strip().splitlines()[-1].split()
    assert last[0] == "HEAVY", p.stderr
    return last[1], int(last[3]), p.stdout + p.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--help"], 0),
        (["--cfg", "job"], 0),
        (["lr=-1"], 2),
        (["nosuch=1"], 2),
        (["+nosuch=1"], 2),
        (["optimizer=nope"], 2),
    ],
)
def test_bench_without_training_imports_no_torch(args: list[str], code: int, tmp_path: Path) -> None:
    heavy, got, err = _run("overshoot.cli.entry", *args, f"out={tmp_path}")
    assert got == code, err
    assert heavy == "-", f"overshoot-bench {' '.join(args)} imported {heavy}"


@pytest.mark.slow
def test_skip_of_a_finished_run_imports_no_torch(tmp_path: Path) -> None:
    args = ["threads=1", "max_steps=2", "progress=none", f"out={tmp_path}"]
    subprocess.run([sys.executable, "-m", "overshoot.cli.entry", *args], check=True, capture_output=True)
    heavy, got, err = _run("overshoot.cli.entry", *args)
    assert got == 0, err
    assert "skipped, already completed" in err
    assert heavy == "-", f"the skip path imported {heavy}"


def test_sweeper_composes_each_job_once_as_hydra_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch check composes each job once, from one composition per choice of config groups; the
    launcher gets that config (not a copy or a second composition), equal to Hydra's own composition."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    configs = Path(__file__).resolve().parent.parent / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base=None):
        hydra_loader = GlobalHydra.instance().config_loader()
        # imported after Hydra's plugin scan, which imports hydra_plugins' modules anew
        from hydra_plugins.overshoot_sweeper.overshoot_sweeper import ComposingLoader, OvershootSweeper

        master = hydra_loader.load_configuration("config", [], RunMode.MULTIRUN)
        bases: list[list[str]] = []
        compose_base = hydra_loader.load_configuration
        monkeypatch.setattr(
            hydra_loader,
            "load_configuration",
            lambda **kw: bases.append(kw["overrides"]) or compose_base(**kw),
        )
        loader = ComposingLoader(hydra_loader)
        sweeper = OvershootSweeper.__new__(OvershootSweeper)  # only the check: no launcher set up
        sweeper.loader, sweeper.config = loader, master
        batch = [
            [f"seed={s}", f"+method={m}", "task=housing", "lr=0.01"] for m in ("sgd", "adam") for s in (1, 2)
        ]
        sweeper.validate_batch_is_legal(batch)
        assert len(bases) == 2  # one composition per +method choice, not per job
        checked = dict(loader._checked)
        got = [loader.load_sweep_config(master, job) for job in batch]
        assert all(cfg is checked[tuple(job)] for cfg, job in zip(got, batch, strict=True))
        assert not loader._checked and len(bases) == 2  # handed out once, nothing composed again
        later = [["seed=3", "+method=adam", "task=housing", "lr=0.01"]]  # a second batch (max_batch_size)
        sweeper.validate_batch_is_legal(later)
        loader.load_sweep_config(master, later[0])
        assert len(bases) == 2  # no batch pays again
        monkeypatch.undo()  # Hydra's own composition again
        size = len(pickle.dumps(loader))
        sweeper.validate_batch_is_legal(batch[:1])
        sent = pickle.loads(pickle.dumps(loader))  # what the SLURM launcher sends with each job
        assert loader._checked and not sent._checked and len(pickle.dumps(loader)) == size
        assert OmegaConf.to_container(sent.load_sweep_config(master, batch[0])) == OmegaConf.to_container(
            got[0]
        )
        for cfg, job in zip(got, batch, strict=True):
            assert OmegaConf.to_container(cfg) == OmegaConf.to_container(
                hydra_loader.load_sweep_config(master, job)
            )


@pytest.mark.parametrize("overrides", [[], ["task=housing", "seed=7", "precision=fp64"]])
def test_help_from_one_composition_is_hydras_help(overrides: list[str], tmp_path: Path) -> None:
    """``--help`` printed from one composition is, to the byte, the page Hydra's own help prints (reached
    here through ``--config-name``, a flag the quick path leaves to Hydra)."""
    from overshoot.cli.main import help_text

    def page(*extra: str) -> str:
        cmd = [sys.executable, "-m", "overshoot.cli.entry", *overrides, "--help", *extra]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        return p.stdout

    quick = page()
    assert quick == page("--config-name", "config")
    assert quick == f"{help_text([*overrides, '--help'])}\n"
    assert "now: housing" in quick if overrides else "now: digits" in quick


def test_help_leaves_other_flags_and_bad_overrides_to_hydra() -> None:
    from overshoot.cli.main import help_text

    assert help_text(["--help", "-m"]) is None
    assert help_text(["--cfg", "job"]) is None
    assert help_text(["task=nope", "--help"]) is None  # Hydra words the error (test_commands)
    assert help_text(["task=housing"]) is None  # no help asked


def test_help_into_a_closed_pipe_exits_0_without_a_traceback(tmp_path: Path) -> None:
    """``overshoot-bench --help | head -1``, the reader gone before the page is written."""
    p = subprocess.Popen(
        [sys.executable, "-m", "overshoot.cli.entry", "--help"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    p.stdout.close()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err, err


def test_a_missing_extra_is_one_line_before_torch(tmp_path: Path) -> None:
    """``task=gpt2_text`` without transformers: the extra is named at resolve time, before training imports
    torch (the task's own check, at build time, stays for the Python API)."""
    code = (
        "import sys; sys.modules['transformers'] = None\n"  # as on an install without the [text] extra
        + CHECK
    )
    p = subprocess.run(
        [sys.executable, "-c", code, "overshoot.cli.entry", "task=gpt2_text", f"out={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    *said, last = p.stderr.strip().splitlines()
    assert last.split()[1:4] == ["-", "EXIT", "2"], p.stderr
    assert len(said) == 1 and "task=gpt2_text needs transformers" in said[0], said
    assert "install the [text] extra" in said[0]
    assert not list(tmp_path.rglob("steps.csv"))
