"""Small run stores for the report tests, built once per test session by the real CLI on digits.

``cli_store`` holds three protocols of digits: the SGD and the Adam family of the paper preset (CM,
SGDO gamma 3, AdamW, AdamO gamma 3; 300 steps) and a gamma sweep ``optimizer=adam_os gamma=0,5`` at lr 0.002
(its gamma 0 trains as the AdamW run) (150 steps, short for a 50-step window). Seeds 0 and 1 each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
COMMON = ["log.window=50", "population=true", "progress=none", "device=cpu", "seed=0,1"]
SWEEPS = (
    ["+method=sgd,sgd_os_g3,adam,adam_os_g3", "max_steps=300"],
    ["optimizer=adam_os", "gamma=0,5", "lr=0.002", "max_steps=150"],
)
WINDOW = 50
_cache: dict[str, Path] = {}


def cli_store(factory: pytest.TempPathFactory) -> Path:
    """The session's CLI-built store (read-only: copy it with :func:`copy_store` before changing it)."""
    if "cli" not in _cache:
        out = factory.mktemp("cli-store") / "runs"
        for sweep in SWEEPS:
            proc = subprocess.run(
                [*BENCH, "-m", *sweep, *COMMON, f"out={out}"], capture_output=True, text=True, timeout=600
            )
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        _cache["cli"] = out
    return _cache["cli"]


def copy_store(src: Path, dst: Path) -> Path:
    """A copy of the run directories of ``src`` (without Hydra's sweep folders) at ``dst``."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".multirun"))
    return dst


def require_tool(name: str, package: str) -> str:
    """The path of the executable ``name``; skips the test when it is missing, or fails it when
    OVERSHOOT_REQUIRE_TOOLS=1 (set by .ci/run, which installs the tools)."""
    path = shutil.which(name)
    if path is None:
        problem = f"{name} not found: apt-get install {package} (as .ci/run does)"
        if os.environ.get("OVERSHOOT_REQUIRE_TOOLS") == "1":
            pytest.fail(f"OVERSHOOT_REQUIRE_TOOLS=1 but {problem}")
        pytest.skip(problem)
    return path
