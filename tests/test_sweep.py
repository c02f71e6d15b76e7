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

from overshoot.analysis.report import main as report_main
from overshoot.cli import manifest, slurm
from overshoot.common import extras
from overshoot.config.compose import compose, resolve
from overshoot.config.schema import STEP_COLUMNS
from overshoot.store.writer import run_path

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
METHODS = ["sgd", "nesterov", "sgd_os_g3", "sgd_os_g5", "sgd_os_g7"]
METHODS += ["adam", "nadam", "adam_os_g3", "adam_os_g5", "adam_os_g7"]
LABELS = ["sgd", "nesterov", "sgd_os-g3", "sgd_os-g5", "sgd_os-g7"]
LABELS += ["adam", "nadam", "adam_os-g3", "adam_os-g5", "adam_os-g7"]
SEEDS = list(range(10, 101, 10))
STEPS_HEADER = ",".join(STEP_COLUMNS) + "\n"  # steps.csv as the store writes it
ROW0 = dict(step=0, epoch=0, base_loss=1.5, train_loss=1.5, lr=0.1, grad_norm=1.0, time_s=0.01)
STEP_ROW = ",".join(str(ROW0[c]) for c in STEP_COLUMNS) + "\n"  # its first row
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
        assert run_path(resolved.out, resolved) == e.path, e.name


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
        "completed": _write_info(tmp_path / "c", status="completed", steps=1, task="digits", optimizer="sgd"),
        "diverged": _write_info(tmp_path / "d", status="diverged"),
        "failed": _write_info(tmp_path / "f", status="failed", reason="interrupted: SIGTERM"),
        "running": _write_info(tmp_path / "r", status="running", host=host, pid=alive_pid, heartbeat=now),
        "unknown": _write_info(tmp_path / "u", status="weird"),
    }
    (tmp_path / "c" / "steps.csv").write_text(STEPS_HEADER + STEP_ROW)
    for state, path in cases.items():
        assert manifest.run_state(path) == state, state
    # Killed without a chance to say so: its process is gone, or it has not beaten for too long.
    gone = _write_info(tmp_path / "k1", status="running", host=host, pid=dead.pid, heartbeat=now)
    assert manifest.run_state(gone) == "interrupted"
    elsewhere = _write_info(tmp_path / "k2", status="running", host="node17", pid=1, heartbeat=now - 1000)
    assert manifest.run_state(elsewhere, stale_after=900) == "interrupted"
    assert manifest.run_state(elsewhere, stale_after=2000) == "running"
    # A damaged run is to do, as the CLI trains it again: unparsable, wrong-typed, a completed run's cut log.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    assert manifest.run_state(tmp_path / "bad") == "damaged"
    assert manifest.run_state(_write_info(tmp_path / "t", status="completed", steps="1")) == "damaged"
    short = _write_info(tmp_path / "s", status="completed", steps=2, task="digits", optimizer="sgd")
    (short / "steps.csv").write_text(STEPS_HEADER + STEP_ROW)
    assert manifest.run_state(short) == "damaged"
    assert "damaged" in manifest.TODO_STATES


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


def test_submit_dry_run_packs_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sub"
    args = ["--dry-run", "--pack", "2", "--gpus", "0", "--mem-gb", "0", "--partition", "gpu"]
    args += ["--dir", str(folder), "--requeue", "--sbatch-arg=--exclude=n1"]
    sweep = ["optimizer=sgd_os", "gamma=3,5,7", "seed=10", f"out={tmp_path}"]
    assert slurm.main([*args, *sweep]) == 0
    assert "3 runs in 2 array tasks" in capsys.readouterr().out
    assert len((folder / "manifest.txt").read_text().splitlines()) == 3
    assert not list(folder.glob("logs/*"))  # nothing submitted

    params = slurm.executor_parameters(slurm.parse([*args, *sweep]), 2)
    assert params["array_parallelism"] == 2 and params["partition"] == "gpu" and params["time"] == 240
    assert "gres" not in params and "mem" not in params
    assert params["additional_parameters"] == {"requeue": True, "exclude": "n1"}
    submitit = pytest.importorskip("submitit")
    submitit.SlurmExecutor(folder=tmp_path / "x").update_parameters(**params)  # names submitit knows

    assert slurm.slices(["a", "b", "c"], 2) == ([0, 2], [["a", "b"], ["c"]])
    assert slurm.main(["--sbatch-arg==n1", *sweep]) == 2
    assert "give an sbatch option" in capsys.readouterr().err


def test_submit_without_submitit_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extras, "missing", lambda modules: list(modules))
    assert slurm.main(["--gpus", "0", "optimizer=sgd", "seed=10", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "install the [slurm] extra" in err and "submitit" in err, err
    assert not (tmp_path / ".slurm").exists()  # nothing written


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


def _fake_bench(tmp_path: Path) -> Path:
    fake = tmp_path / "fake-bench"
    fake.write_text(FAKE_BENCH)
    fake.chmod(0o755)
    return fake


def _calls(tmp_path: Path) -> list[str]:
    return sorted(line.split(" ", 1)[1] for line in (tmp_path / "calls").read_text().splitlines())


def test_array_task_runs_its_packed_slice_with_quoting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "7")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    task = slurm.ArrayTask(str(_fake_bench(tmp_path)), tmp_path / "logs", tmp_path, requeue=False)
    firsts, chunks = slurm.slices(["ok a=1", "ok 'b=two words'", "fail c=3", "ok d=4", "ok e=5"], 2)
    with pytest.raises(slurm.RunsFailed, match=r"line 2 exited 1$"):
        task(firsts[1], chunks[1])
    assert _calls(tmp_path) == ["fail c=3", "ok d=4"]
    assert "line 3 exited 0" in capsys.readouterr().out
    assert (tmp_path / "logs" / "7_1-3.log").exists()
    (tmp_path / "calls").unlink()
    assert task(firsts[0], chunks[0]) == [0, 0]
    assert _calls(tmp_path) == ["ok a=1", "ok b=two words"]


# submitit calls ArrayTask.checkpoint from its SIGUSR2 handler and requeues what it returns; this driver does
# the same without SLURM.
DRIVER = """
import signal, sys
from pathlib import Path
from overshoot.cli.slurm import ArrayTask
task = ArrayTask(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[2]), requeue=True)
def on_usr2(signum, frame):
    again = task.checkpoint(0, ["slow x=1", "slow x=2"])
    print("requeue", type(again.function).__name__, again.args, flush=True)
    sys.exit(3)
signal.signal(signal.SIGUSR2, on_usr2)
task(0, ["slow x=1", "slow x=2"])
"""


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM])
def test_array_task_turns_slurm_signals_into_checkpoints(tmp_path: Path, sig: signal.Signals) -> None:
    pytest.importorskip("submitit")
    p = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(_fake_bench(tmp_path)), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 20
    while not (tmp_path / "calls").exists() or len(_calls(tmp_path)) < 2:
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)  # both fake runs have set their TERM traps
    if sig == signal.SIGUSR2:
        os.killpg(p.pid, sig)  # SLURM signals every process of the step: the runs must outlive it
    else:
        p.send_signal(sig)  # scancel, preemption
    log, _ = p.communicate(timeout=20)
    assert _calls(tmp_path).count("TERM") == 2, log
    if sig == signal.SIGUSR2:
        assert p.returncode == 3 and "requeue ArrayTask (0, ['slow x=1', 'slow x=2'])" in log, log
    else:
        assert p.returncode == 1 and "line 0 exited 143, line 1 exited 143" in log, log
