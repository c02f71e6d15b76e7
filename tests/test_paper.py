"""scripts/paper/make_all.sh: every paper table and figure from a run store, on a tiny one (digits)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from report_store import cli_store

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "paper" / "make_all.sh"
BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]


@pytest.mark.slow
def test_make_all_writes_every_table_and_figure(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    store = cli_store(tmp_path_factory)
    distance = tmp_path / "distance"
    sweep = ["-m", "optimizer=adam_os", "gamma=0,3", "momentum=0.9,0.95", "log.distance=true", "max_steps=60"]
    sweep += ["seed=10", "progress=none", "device=cpu", f"out={distance}"]
    sweep += [f"hydra.sweep.dir={tmp_path / 'hydra'}"]
    proc = subprocess.run([*BENCH, *sweep], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "paper"
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    # Without the distance store: everything but Figure 2, which is named with the reason; exit 1.
    r = subprocess.run(["bash", str(SCRIPT), str(store), str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "figures/distance_vs_gamma.pdf: not made: pass DISTANCE_STORE" in r.stdout
    r = subprocess.run(
        ["bash", str(SCRIPT), str(store), str(out), str(distance)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stdout + r.stderr
    listed = [ln.strip() for ln in r.stdout.split("paper tables and figures in")[1].splitlines()[1:]]
    assert len(listed) == 10 and all((out / f).stat().st_size > 0 for f in listed), listed
    readme = (SCRIPT.parent / "README.md").read_text()
    assert all(f"`OUT/{f}`" in readme for f in listed), "scripts/paper/README.md's table lists every file"
    assert subprocess.run(["bash", str(SCRIPT)], capture_output=True, env=env).returncode == 2
