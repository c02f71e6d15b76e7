"""Sweeps without SLURM: the paper grid preset, the run manifest and its states, multirun kill and resume."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from overshoot.config import compose, resolve
from overshoot.report import main as report_main
from overshoot.store import run_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "slurm"))
import manifest
import submit_array

BENCH = [sys.executable, "-c", "from overshoot.cli import main; main()"]
METHODS = ["sgd", "nesterov", "sgd_os_g3", "sgd_os_g5", "sgd_os_g7"]
METHODS += ["adam", "nadam", "adam_os_g3", "adam_os_g5", "adam_os_g7"]
LABELS = ["sgd", "nesterov", "sgd_os-g3", "sgd_os-g5", "sgd_os-g7"]
LABELS += ["adam", "nadam", "adam_os-g3", "adam_os-g5", "adam_os-g7"]
SEEDS = list(range(10, 101, 10))
PAPER_TASKS = ["housing", "vae_fmnist", "vae_mnist", "fmnist", "cifar", "cifar100", "gpt2_qqp"]


def test_paper_preset_for_one_task_lists_its_100_runs(tmp_path: Path) -> None:
    entries = manifest.plan(["+sweep=paper", "task=cifar", f"out={tmp_path}"])
    names = [e.name for e in entries]
    assert len(names) == 100
    assert set(names) == {f"cifar/{m}/seed{s}" for m in LABELS for s in SEEDS}
    assert all(e.state == "missing" and e.todo for e in entries)
    assert len({e.path for e in entries}) == 100
    assert all(e.path.parent.parent.parent == tmp_path for e in entries)
    # Every manifest line reproduces its run by itself, without the sweep preset's expansion.
    assert all(e.line.startswith("+method=") and "task=cifar" in e.line for e in entries)
    assert manifest.write_manifest(entries, tmp_path / "todo.txt") == 100


def test_paper_preset_all_tasks_is_700_runs_and_axes_can_be_narrowed(tmp_path: Path) -> None:
    jobs = manifest.expand(["+sweep=paper_all"])
    assert len(jobs) == 700
    keys = {
        (o["task"], o["+method"], int(o["seed"]))
        for o in ({k: v for k, v in (x.split("=", 1) for x in job)} for job in jobs)
    }
    assert keys == set(itertools.product(PAPER_TASKS, METHODS, SEEDS))
    # A command-line axis replaces the preset's.
    assert len(manifest.expand(["+sweep=paper_all", "task=housing,fmnist", "seed=10,20"])) == 40
    narrowed = manifest.plan(["+sweep=paper", "task=housing", "seed=10", f"out={tmp_path}"])
    assert sorted(e.name for e in narrowed) == sorted(f"housing/{m}/seed10" for m in LABELS)


def test_gamma_axis_multirun_expansion(tmp_path: Path) -> None:
    entries = manifest.plan(["optimizer=sgd_os", "gamma=3,5,7", "seed=10,20,30", f"out={tmp_path}"])
    assert [e.name for e in entries] == [
        f"digits/sgd_os-g{g}/seed{s}" for g in (3, 5, 7) for s in (10, 20, 30)
    ]


def test_fast_composition_gives_the_cli_run_directories(tmp_path: Path) -> None:
    overrides = ["+sweep=paper", "task=housing", "+method=sgd,nesterov,adam_os_g7", "seed=10,100"]
    overrides += ["max_steps=7", f"out={tmp_path}"]
    for e in manifest.plan(overrides):
        cfg = compose(list(e.overrides))
        resolved = resolve(cfg)
        assert run_path(resolved["out"], resolved) == e.path, e.name


def test_duplicate_runs_are_listed_once(tmp_path: Path) -> None:
    entries = manifest.plan(["optimizer=adam", "seed=10,10", f"out={tmp_path}"])
    assert [e.name for e in entries] == ["digits/adam/seed10"]


def _write_info(path: Path, **info: object) -> Path:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(info))
    return path


def test_run_states_from_run_json(tmp_path: Path) -> None:
    now = time.time()
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive_pid = os.getpid()
    cases = {
        "missing": tmp_path / "never",
        "completed": _write_info(tmp_path / "c", status="completed"),
        "diverged": _write_info(tmp_path / "d", status="diverged"),
        "failed": _write_info(tmp_path / "f", status="failed", reason="interrupted: SIGTERM"),
        "running": _write_info(tmp_path / "r", status="running", host=host, pid=alive_pid, heartbeat=now),
        "unknown": _write_info(tmp_path / "u", status="weird"),
    }
    for state, path in cases.items():
        assert manifest.run_state(path) == state, state
    # Killed without a chance to say so: its process is gone, or it has not beaten for too long.
    gone = _write_info(tmp_path / "k1", status="running", host=host, pid=dead.pid, heartbeat=now)
    assert manifest.run_state(gone) == "interrupted"
    elsewhere = _write_info(tmp_path / "k2", status="running", host="node17", pid=1, heartbeat=now - 1000)
    assert manifest.run_state(elsewhere, stale_after=900) == "interrupted"
    assert manifest.run_state(elsewhere, stale_after=2000) == "running"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    assert manifest.run_state(tmp_path / "bad") == "unknown"


def test_manifest_cli_prints_names_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert manifest.main(["optimizer=nadam", "seed=10,20", f"out={tmp_path}", "-o", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "digits/nadam/seed10" in out and "digits/nadam/seed20" in out
    assert "2 runs: 2 to do (missing 2), 0 skipped (none)" in out
    assert (tmp_path / "m").read_text().splitlines() == [
        f"optimizer=nadam seed={s} out={tmp_path}" for s in (10, 20)
    ]
    assert manifest.main(["optimizer=sgd", "gamma=3", f"out={tmp_path}"]) == 2
    assert "gamma" in capsys.readouterr().err


def test_submit_array_dry_run_packs_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sub"
    args = [
        "--dry-run",
        "--pack",
        "2",
        "--gpus",
        "0",
        "--mem-gb",
        "0",
        "--partition",
        "gpu",
        "--dir",
        str(folder),
        "--requeue",
    ]
    assert submit_array.main([*args, "optimizer=sgd_os", "gamma=3,5,7", "seed=10", f"out={tmp_path}"]) == 0
    assert "3 runs in 2 array tasks" in capsys.readouterr().out
    script = (folder / "array.sbatch").read_text()
    assert "#SBATCH --array=0-1%64" in script and "#SBATCH --partition=gpu" in script
    assert "--gres" not in script and "--mem" not in script
    assert "#SBATCH --requeue" in script and "export OVERSHOOT_REQUEUE=1" in script
    assert len((folder / "manifest.txt").read_text().splitlines()) == 3


def _bench(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BENCH, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _status(path: Path) -> str | None:
    try:
        return json.loads((path / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def test_multirun_killed_midway_resumes_only_the_rest(tmp_path: Path) -> None:
    """Kill a local multirun during its third run; the relaunch skips what is done and finishes the rest.

    The grid has a run whose loss blows up (lr 1e30): it ends diverged, the sweep exits non-zero, and the
    report still works on the partial and on the finished sweep.
    """
    out = tmp_path / "runs"
    sweep = ["-m", "optimizer=sgd_os", "gamma=3,5", "lr=0.03,1e30", "seed=10"]
    sweep += ["max_steps=60", "checkpoint_every=0", "progress=lines", f"out={out}"]
    entries = manifest.plan(sweep[1:])
    assert [(e.name, "lr=1e" in e.line) for e in entries] == [
        ("digits/sgd_os-g3/seed10", False),
        ("digits/sgd_os-g3/seed10", True),
        ("digits/sgd_os-g5/seed10", False),
        ("digits/sgd_os-g5/seed10", True),
    ]
    third = entries[2].path

    proc = _bench(*sweep, cwd=tmp_path)
    deadline = time.time() + 240
    while _status(third) != "running":
        assert proc.poll() is None, f"sweep ended before it could be killed:\n{proc.stdout.read()}"  # type: ignore[union-attr]
        assert time.time() < deadline, "the third run never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    states = [manifest.run_state(e.path) for e in manifest.plan(sweep[1:])]
    assert states == ["completed", "diverged", "interrupted", "missing"]
    assert report_main([str(out), "--no-figures", "--out", str(tmp_path / "report1")]) == 0

    again = _bench(*sweep, cwd=tmp_path)
    log, _ = again.communicate(timeout=300)
    assert again.returncode == 1, log  # one run diverged
    assert log.count("skipped, already completed") == 1, log
    final = manifest.plan(sweep[1:])
    assert [manifest.run_state(e.path) for e in final] == ["completed", "diverged", "completed", "diverged"]
    for e in final[::2]:
        assert json.loads((e.path / "run.json").read_text())["steps"] == 60
    assert manifest.summary(final) == "4 runs: 0 to do (none), 4 skipped (completed 2, diverged 2)"
    assert report_main([str(out), "--no-figures", "--out", str(tmp_path / "report2")]) == 0
    assert re.search(r"\b2 completed runs\b", (tmp_path / "report2" / "report.md").read_text())


FAKE_BENCH = """#!/usr/bin/env bash
echo "$$ $*" >> "$(dirname "$0")/calls"
trap 'echo "$$ TERM" >> "$(dirname "$0")/calls"; exit 143' TERM
[[ $1 == fail ]] && exit 1
[[ $1 == slow ]] && { sleep 30 & wait; }
exit 0
"""


def _array_task(tmp_path: Path, lines: list[str], task: int, pack: int) -> subprocess.Popen[str]:
    (tmp_path / "manifest.txt").write_text("".join(line + "\n" for line in lines))
    fake = tmp_path / "fake-bench"
    fake.write_text(FAKE_BENCH)
    fake.chmod(0o755)
    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm" / "array_task.sh"
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_JOB_ID": "7"}
    return subprocess.Popen(
        [str(script), str(tmp_path / "manifest.txt"), str(pack), str(fake)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _calls(tmp_path: Path) -> list[str]:
    return sorted(line.split(" ", 1)[1] for line in (tmp_path / "calls").read_text().splitlines())


def test_array_task_runs_its_packed_slice_with_quoting(tmp_path: Path) -> None:
    lines = ["ok a=1", "ok 'b=two words'", "fail c=3", "ok d=4", "ok e=5"]
    p = _array_task(tmp_path, lines, task=1, pack=2)
    log, _ = p.communicate(timeout=30)
    assert p.returncode == 1, log  # line 2 failed
    assert _calls(tmp_path) == ["fail c=3", "ok d=4"]
    assert "line 2 exited 1" in log and "line 3 exited 0" in log
    assert (tmp_path / "logs" / "7_1-3.log").exists()
    (tmp_path / "calls").unlink()
    p = _array_task(tmp_path, lines, task=0, pack=2)
    assert p.wait(timeout=30) == 0
    assert _calls(tmp_path) == ["ok a=1", "ok b=two words"]
    p = _array_task(tmp_path, lines, task=3, pack=2)
    assert p.wait(timeout=30) == 1  # past the end of the manifest: an error, not a silent success


def test_array_task_forwards_the_time_limit_signal(tmp_path: Path) -> None:
    p = _array_task(tmp_path, ["slow x=1", "slow x=2"], task=0, pack=2)
    deadline = time.time() + 20
    while not (tmp_path / "calls").exists() or len(_calls(tmp_path)) < 2:
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.2)  # both fake runs have set their TERM traps
    p.send_signal(signal.SIGUSR2)
    log, _ = p.communicate(timeout=20)
    assert p.returncode == 1
    assert "caught USR2" in log and log.count("exited 143") == 2, log
    assert _calls(tmp_path).count("TERM") == 2
