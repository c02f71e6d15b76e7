"""Installing like any package: the wheel ships the config tree, the core install stays light, each extra's
absence is one line naming it, and --help is a real help page."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from overshoot.cli import main as cli
from overshoot.common import extras
from overshoot.config.compose import CONFIG_DIR, ConfigError, compose, resolve
from overshoot.train import lifecycle

ROOT = Path(__file__).resolve().parents[1]
BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_wheel_ships_every_config_file(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("overshoot_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yaml"))
    assert configs, "no config files found"
    missing = [str(p) for p in configs if f"overshoot_configs/{p.as_posix()}" not in names]
    assert not missing, f"not in the wheel (list the folder in pyproject.toml's packages): {missing}"
    assert "overshoot_configs/hydra/help/overshoot.yaml" in names
    assert any(n.startswith("overshoot_tasks/") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    core = [ln for ln in metadata.splitlines() if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    heavy = ("transformers", "datasets", "peft", "submitit", "tensorboard", "wandb")
    assert not [ln for ln in core if any(h in ln for h in heavy)], core


def test_config_tree_is_found_as_a_package() -> None:
    assert CONFIG_DIR == ROOT / "configs"  # the editable install maps the package onto the folder
    assert compose(["task=housing"]).task.name == "housing"


@pytest.mark.slow
def test_wheel_round_trip_in_a_fresh_venv(tmp_path: Path) -> None:
    """The CI step's script, offline: nothing but the wheel is installed, the core dependencies are reused."""
    script = [sys.executable, str(ROOT / ".ci" / "wheel_roundtrip.py"), "--offline"]
    r = subprocess.run(
        [*script, "--workdir", str(tmp_path), "max_steps=40"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "wheel round trip passed" in r.stdout


def test_core_imports_none_of_the_extras() -> None:
    code = (
        "import sys, overshoot, overshoot.cli.main, overshoot.bench, overshoot_tasks; "
        # the modules the console scripts import only once past their command line
        "import overshoot.train.sweep, overshoot.train.lifecycle, overshoot.analysis.report.tables, "
        "overshoot.analysis.report.interactive, overshoot.analysis.tuning; "
        "from overshoot_tasks import build_task; "
        "heavy = [m for m in ('transformers', 'datasets', 'peft', 'submitit', 'tensorboard', 'wandb') "
        "if m in sys.modules]; print(heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "[]", r.stdout


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` unimportable, as on an install without their extra."""
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


@pytest.mark.parametrize(
    ("task", "hidden"),
    [("gpt2_text", ["transformers"]), ("gpt2_qqp", ["peft"]), ("gpt2_qqp", ["datasets", "transformers"])],
)
def test_gpt2_tasks_name_the_text_extra(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    task: str,
    hidden: list[str],
) -> None:
    _hide(monkeypatch, *hidden)
    code = lifecycle.run_one(
        compose([f"task={task}", f"out={tmp_path}", f"data.root={tmp_path}", "progress=none"])
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert f"task={task} needs" in err[0] and "install the [text] extra" in err[0], err[0]
    assert "pip install 'overshoot-bench[text]'" in err[0]
    assert not list(tmp_path.rglob("steps.csv"))


def test_slurm_launcher_names_the_slurm_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli._require_launcher_extra(["hydra/launcher=slurm"])  # installed here: nothing to say
    _hide(monkeypatch, "hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setattr(sys, "argv", ["overshoot-bench", "-m", "hydra/launcher=slurm_local", "seed=1,2"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hydra/launcher=slurm_local needs hydra-submitit-launcher" in err[0], err
    assert "install the [slurm] extra" in err[0]
    cli._require_launcher_extra(["hydra/launcher=basic", "task=digits"])  # other launchers need nothing


@pytest.mark.parametrize(("key", "module"), [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_loggers_name_the_loggers_extra(monkeypatch: pytest.MonkeyPatch, key: str, module: str) -> None:
    resolve(compose([f"log.{key}=true"]))  # installed here
    _hide(monkeypatch, module)
    with pytest.raises(ConfigError, match=rf"log\.{key}=true needs {module}.*install the \[loggers\] extra"):
        resolve(compose([f"log.{key}=true"]))
    resolve(compose([f"log.{key}=false"]))  # off: not needed


def test_require_lists_every_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    extras.require("text", "x")
    _hide(monkeypatch, "datasets", "peft")
    with pytest.raises(extras.MissingExtra, match=r"x needs datasets, peft, which are not installed"):
        extras.require("text", "x")


def test_help_page(tmp_path: Path) -> None:
    r = _bench("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    page = r.stdout
    assert "powered by Hydra" not in page
    assert page.startswith("overshoot-bench:")
    lines = page.splitlines()

    def described(name: str) -> bool:  # "  name   one-line description"
        return any(ln.split()[:1] == [name] and len(ln.split()) > 2 for ln in lines if ln.startswith("  "))

    for group in ("task", "optimizer"):
        names = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        assert names
        undescribed = [n for n in names if not described(n)]
        assert not undescribed, f"--help lacks a line for {group}s {undescribed}"
    for needle in (
        "Usage:",
        "Examples:",
        "Exit codes:",
        "+method=",
        "+sweep=",
        "progress=auto",
        "threads=auto",
        "checkpoint_every=60",
        "seed=0",
        "out=runs",
        "optimizer=sgd,sgd_os gamma=3,5,7",  # a gamma sweep with its baseline
        "+sweep=paper task=",  # the paper grid
        "hydra/launcher=slurm",
        "overshoot-bench-report runs/",
        "[text] extra",
        "130",
        "143",
    ):
        assert needle in page, f"--help lacks {needle!r}"
    # The values shown are the current config's.
    r = _bench("task=housing", "seed=7", "--help", cwd=tmp_path)
    assert "now: housing" in r.stdout and "seed=7" in r.stdout


def test_cfg_job_still_prints_the_config(tmp_path: Path) -> None:
    r = _bench("task=housing", "--cfg", "job", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "name: housing" in r.stdout and "checkpoint_every:" in r.stdout
    assert "Usage:" not in r.stdout


def test_readme_first_screen_installs_for_cpu_and_cuda_as_ci_does() -> None:
    """README's first screen gives the install-and-run and the test command, and the CPU-only and the CUDA
    install of torch; .ci/run installs what it says: torch
    first, then the package (the wheel round trip) and, for the tests, the editable dev install."""
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert re.search(r'^pip install -e "\.\[dev\]" && overshoot-bench ', first_screen, re.M), first_screen
    assert re.search(r"^pytest -q ", first_screen, re.M)
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in first_screen
    assert re.search(r"^pip install torch torchvision +# torch with CUDA", first_screen, re.M), first_screen
    assert "`pip install .`" in first_screen  # the user install without the test tools
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"pip install (-q )?torch==\S+ torchvision==", ci)
    assert re.search(r'pip install (-q )?-e "\.\[dev\]"', ci)
    assert "python .ci/wheel_roundtrip.py" in ci
    assert 'pip install -e ".[dev]"' in (ROOT / "README.md").read_text()
