"""overshoot-bench-manifest lists what ``overshoot-bench -m`` with the same overrides trains."""

from __future__ import annotations

from pathlib import Path

from overshoot.cli import manifest


def test_a_baseline_given_a_gamma_is_its_own_run_once(tmp_path: Path) -> None:
    # overshoot-bench -m drops the gamma of sgd (and trains it once); the manifest did refuse the sweep
    entries = manifest.plan(["optimizer=sgd,sgd_os", "gamma=3,5", "max_steps=2", f"out={tmp_path}"])
    assert [e.name for e in entries] == [
        "digits/sgd/seed0",
        "digits/sgd_os-g3/seed0",
        "digits/sgd_os-g5/seed0",
    ]
    assert entries[0].line == f"optimizer=sgd max_steps=2 out={tmp_path}"  # runs alone without an error
    assert entries[1].line == f"optimizer=sgd_os gamma=3 max_steps=2 out={tmp_path}"
