"""Failures end to end on digits: duplicate launches, full disks, read-only stores, broken files, signals."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from fixtures import single_run_parts

from overshoot.analysis import results
from overshoot.config.compose import compose, resolve
from overshoot.store.claim import CLAIM_FILE, claim_run
from overshoot.store.writer import RunWriter, run_path, without_time
from overshoot.train import engine, lifecycle
from overshoot.train.runtime import Interrupted
from overshoot.train.single import train

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
ARGS = ["optimizer=sgd_os", "gamma=5", "progress=none", "threads=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ROOT = Path(__file__).resolve().parents[1]


def _strict(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _overrides(out: Path, steps: int, *extra: str) -> list[str]:
    return [f"out={out}", *ARGS, f"max_steps={steps}", *extra]


def _path(out: Path, steps: int, *extra: str) -> Path:
    run = resolve(compose(_overrides(out, steps, *extra)))
    return run_path(run.out, run)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Uninterrupted runs of 300 and 400 steps (run directories), trained in this process."""
    out = tmp_path_factory.mktemp("reference")
    paths = {}
    for steps in (300, 400):
        assert lifecycle.run_one(compose(_overrides(out, steps))) == 0
        paths[steps] = _path(out, steps)
    return paths


def _same_logs(run: Path, ref: Path) -> None:
    """Both logs byte for byte, but for steps.csv's time_s (the clock's readings)."""
    for name in ("steps.csv", "epochs.csv"):
        assert without_time((run / name).read_text()) == without_time((ref / name).read_text()), name


def _interrupted(out: Path, steps: int, after_checks: int) -> RunWriter:
    """A run of ``steps`` stopped (with a checkpoint) after ``after_checks`` stop checks."""

    run = resolve(compose(_overrides(out, steps, "checkpoint_every=0")))
    task, writer, device = single_run_parts(run)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > after_checks

    writer.info = {"status": "running"}
    with pytest.raises(Interrupted):
        train(run, task, writer, device, should_stop=stop)
    return writer


# -- one writer per run -------------------------------------------------------------------------------


def test_two_processes_launching_one_run_train_it_once(tmp_path: Path, reference: dict[int, Path]) -> None:
    out = tmp_path / "runs"
    cmd = [*BENCH, *_overrides(out, 400, "checkpoint_every=0")]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.time() + 120
    while not list(out.rglob(CLAIM_FILE)):
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.01)
    # The holder is paused while the second launch starts (a warm run of 400 steps can finish before a
    # second interpreter has imported torch): alive, holding its claim, as a slower run would be.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # The second launch did not train: one line naming the holder, exit 0 (nothing failed).
    assert second.returncode == 0, second.stderr
    assert (
        "running elsewhere" in second.stdout
        and f"held by pid {first.pid} on {socket.gethostname()}" in second.stdout
    )
    assert "starting" not in second.stdout and "resuming" not in second.stdout
    path = _path(out, 400, "checkpoint_every=0")
    _same_logs(path, reference[400])
    info = _strict(path / "run.json")
    assert info["status"] == "completed" and info["pid"] == first.pid
    assert not (path / CLAIM_FILE).exists()


def test_a_run_held_in_a_sweep_counts_as_running_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _path(tmp_path, 50)
    holder = claim_run(path)
    try:
        outcomes = lifecycle.Outcomes()
        assert lifecycle.run_one(compose(_overrides(tmp_path, 50)), outcomes) == 0
        assert outcomes.counts == {"running elsewhere": 1}
    finally:
        holder.release()
    assert "running elsewhere, not started" in capsys.readouterr().out
    assert not (path / "steps.csv").exists()


def test_a_stale_claim_is_taken_over_and_the_run_resumes(
    tmp_path: Path, reference: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    writer = _interrupted(tmp_path, 300, 3)
    (writer.path / CLAIM_FILE).write_text(json.dumps({"host": "node17", "pid": 99, "token": "t"}))
    old = time.time() - 3600  # its holder stopped beating an hour ago (a SLURM node that died)
    os.utime(writer.path / CLAIM_FILE, (old, old))
    assert lifecycle.run_one(compose(_overrides(tmp_path, 300, "checkpoint_every=0"))) == 0
    captured = capsys.readouterr()
    assert "took over" in captured.err and "pid 99 on node17" in captured.err and "resuming" in captured.out
    _same_logs(writer.path, reference[300])


# -- full disks and unwritable stores -----------------------------------------------------------------


def _full_disk(monkeypatch: pytest.MonkeyPatch, run_dir: Path, which: str, after: int) -> dict[str, int]:
    """Make os.write to files in ``run_dir`` whose name contains ``which`` fail with ENOSPC once ``after``
    such writes went through (the first failing one writes half its bytes first)."""
    real = os.write
    seen = {"n": 0}

    def write(fd: int, data: bytes) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(run_dir)) and which in Path(target).name:
            seen["n"] += 1
            if seen["n"] > after:
                if seen["n"] == after + 1 and len(data) > 1:
                    real(fd, bytes(memoryview(data)[: len(data) // 2]))
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    return seen


@pytest.mark.parametrize("which", ["checkpoint.pt", ""])  # the checkpoint only; every file of the run
def test_enospc_mid_run_is_one_line_and_a_rerun_is_bit_identical(
    tmp_path: Path,
    reference: dict[int, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    which: str,
) -> None:
    overrides = _overrides(tmp_path, 300, "checkpoint_every=0")
    path = _path(tmp_path, 300, "checkpoint_every=0")
    after = 5 if which else 25
    seen = _full_disk(monkeypatch, path, which, after=after)
    assert lifecycle.run_one(compose(overrides)) == 1
    assert seen["n"] > after  # the disk did fill up during the run
    monkeypatch.undo()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "no space left on device writing " + str(path) in captured.out + captured.err
    assert not list(path.glob(".*.tmp"))
    steps = (path / "steps.csv").read_text()
    assert steps.endswith("\n")  # whole lines only
    if which:  # small files could still be written: run.json says why it failed
        info = _strict(path / "run.json")
        assert info["status"] == "failed" and "no space left on device writing" in info["reason"]
    assert lifecycle.run_one(compose(overrides)) == 0  # space freed
    _same_logs(path, reference[300])


def test_out_under_a_regular_file_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")  # fails for root too (ENOTDIR), unlike a chmod-ed folder
    for sweep in ([], ["-m", "seed=1,2"]):
        r = subprocess.run(
            [*BENCH, *sweep, f"out={tmp_path / 'file' / 'runs'}", "max_steps=5", "progress=none"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
        )
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{tmp_path / 'file'} is a file, not a directory" in lines[0], r.stderr


def test_read_only_out_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As root, a chmod-ed directory stays writable; the refusal a read-only mount gives is simulated.
    real = os.mkdir

    def mkdir(path: object, *args: object, **kwargs: object) -> None:
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir)
    assert lifecycle.run_one(compose(_overrides(tmp_path / "ro", 5))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only file system: cannot write" in err and "writable out=" in err


# -- broken files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["inside the checkpoint's rows", "after them"])
def test_a_cut_steps_csv_is_repaired(tmp_path: Path, reference: dict[int, Path], where: str) -> None:
    writer = _interrupted(tmp_path, 300, 5)
    ckpt_rows = torch.load(writer.checkpoint_file, weights_only=False)["step"]
    text = writer.steps_file.read_bytes()
    lines = text.split(b"\n")
    keep = ckpt_rows - 3 if where.startswith("inside") else ckpt_rows + 1
    cut = len(b"\n".join(lines[: keep + 1])) + 1 + 5  # 5 bytes into the next row
    writer.steps_file.write_bytes(text[:cut])
    assert lifecycle.run_one(compose(_overrides(tmp_path, 300, "checkpoint_every=0"))) == 0
    _same_logs(writer.path, reference[300])
    assert results.read_run(writer.path).status == "completed"


@pytest.mark.parametrize("damage", ["empty", "half"])
def test_a_broken_checkpoint_restarts_the_run_with_a_warning(
    tmp_path: Path, reference: dict[int, Path], damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = _interrupted(tmp_path, 300, 3)
    data = writer.checkpoint_file.read_bytes()
    writer.checkpoint_file.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    (writer.path / ".checkpoint.pt.k1ll3d.tmp").write_bytes(data[:100])  # what a kill mid-write leaves
    assert lifecycle.run_one(compose(_overrides(tmp_path, 300, "checkpoint_every=0"))) == 0
    err = capsys.readouterr().err
    assert str(writer.checkpoint_file) in err and "restarting from step 0" in err
    _same_logs(writer.path, reference[300])
    assert not list(writer.path.glob(".*.tmp"))
    assert len(list(writer.path.glob("checkpoint.pt.corrupt-*"))) == 1


@pytest.mark.parametrize("text", ["", "garbage{"])
def test_a_broken_run_json_does_not_stop_the_run(
    tmp_path: Path, reference: dict[int, Path], text: str
) -> None:
    path = _path(tmp_path, 300)
    path.mkdir(parents=True)
    (path / "run.json").write_text(text)
    assert lifecycle.run_one(compose(_overrides(tmp_path, 300))) == 0
    assert _strict(path / "run.json")["status"] == "completed"
    _same_logs(path, reference[300])


# -- failures keep their message ------------------------------------------------------------------------


def test_a_setup_failure_keeps_its_message_even_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import overshoot_tasks

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the data server hung up")

    monkeypatch.setattr(overshoot_tasks, "build_task", broken)
    path = _path(tmp_path, 50)
    _full_disk(monkeypatch, path, "error.log", after=0)
    assert lifecycle.run_one(compose(_overrides(tmp_path, 50))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: the data server hung up" in err
    assert "error.log not written: no space left on device" in err
    info = _strict(path / "run.json")
    assert info["status"] == "failed" and info["reason"] == "RuntimeError: the data server hung up"


def test_diverged_run_json_is_strict_and_quotes_the_training_loss(tmp_path: Path) -> None:
    assert (
        lifecycle.run_one(
            compose([f"out={tmp_path}", "optimizer=sgd", "lr=1e6", "max_steps=300", "progress=none"])
        )
        == 1
    )
    (path,) = (p.parent for p in tmp_path.rglob("run.json"))
    info = _strict(path / "run.json")
    assert info["status"] == "diverged"
    last = pd.read_csv(path / "steps.csv").iloc[-1]
    assert info["reason"] == f"training loss became {last['train_loss']:g} at step {int(last['step'])}"


# -- checkpoint cadence -------------------------------------------------------------------------------


def test_epoch_ends_write_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed after a few epochs resumes from there although the timer never fired."""
    monkeypatch.setattr(engine, "EPOCH_CHECKPOINT_MIN_S", 0.0)
    monkeypatch.setattr(engine, "EPOCH_CHECKPOINT_FACTOR", 0.0)
    from overshoot_tasks.base import TensorTask

    real, calls = TensorTask.train_batch, {"n": 0}

    def dying(self: TensorTask, plan: object, k: int) -> object:
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("power cut")
        return real(self, plan, k)  # type: ignore[arg-type]

    monkeypatch.setattr(TensorTask, "train_batch", dying)
    assert lifecycle.run_one(compose(_overrides(tmp_path, 300, "checkpoint_every=3600"))) == 1
    ckpt = torch.load(_path(tmp_path, 300, "checkpoint_every=3600") / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 44  # two 22-step epochs (1,437 examples, batch 64)


def test_epoch_end_checkpoints_are_rate_limited(tmp_path: Path) -> None:
    assert lifecycle.run_one(compose(_overrides(tmp_path, 660, "checkpoint_every=3600"))) == 0
    info = _strict(_path(tmp_path, 660, "checkpoint_every=3600") / "run.json")
    # 30 epoch ends; at most one checkpoint per EPOCH_CHECKPOINT_MIN_S second of training.
    assert info["checkpoints"] <= 1 + info["wall_time_s"] / engine.EPOCH_CHECKPOINT_MIN_S
    assert info["checkpoint_time_s"] <= 0.02 * info["wall_time_s"] + 0.05


# -- signals ------------------------------------------------------------------------------------------


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 120
    while not list(path.rglob(pattern)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)


def test_sigterm_stops_a_population_sweep_with_143(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cmd = [*BENCH, "-m", "population=true", "+method=sgd,sgd_os_g3", "seed=1", "max_steps=20000"]
    cmd += [f"out={out}", "progress=none", "checkpoint_every=0"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    _wait_for(out, "steps.csv", proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err


def test_ctrl_c_while_starting_is_one_line_exit_130(tmp_path: Path) -> None:
    """A Ctrl-C once the console script has begun importing its CLI (Hydra, then torch), wherever it lands
    after that, ends in one line and exit status 130. The child reports its imports (``-X importtime``), so
    the signal follows a point of its start-up, not a guess of how long start-up takes."""
    cmd = ["-X", "importtime", "-m", "overshoot.cli.entry", f"out={tmp_path}", "max_steps=2000"]
    proc = subprocess.Popen(
        [sys.executable, *cmd],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        # a terminal's child: pytest run in the background of a non-interactive shell ignores SIGINT, which
        # the child would inherit (Python then keeps ignoring it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("import time:") and line.rstrip().endswith("hydra"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    said = [x for x in err.splitlines() if x.strip() and not x.startswith("import time:")]
    assert proc.returncode == 130, said
    assert "Traceback" not in err and len(said) == 1, said
    assert said[0].startswith("overshoot-bench: interrupted"), said


def test_console_script_goes_through_the_guarded_entry() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["overshoot-bench"] == "overshoot.cli.entry:main"


def test_a_broken_run_json_leaves_the_report_working(tmp_path: Path, reference: dict[int, Path]) -> None:
    import shutil

    from overshoot.analysis.report import main as report_main

    store_dir = tmp_path / "runs"
    shutil.copytree(reference[300], store_dir / "digits" / "sgd_os-g5" / "seed0-good")
    broken = store_dir / "digits" / "sgd_os-g5" / "seed1-broken"
    broken.mkdir()
    (broken / "run.json").write_text("")
    assert report_main([str(store_dir), "--no-figures", "--out", str(tmp_path / "report")]) == 0
    excluded = pd.read_csv(tmp_path / "report" / "excluded_runs.csv")
    assert any("unreadable" in str(v) for v in excluded.to_numpy().ravel())


def test_fault_injection_script_small(tmp_path: Path) -> None:
    """CI's small version of scripts/bench/fault_injection.py (N = 50 in results/fault_injection/)."""
    out = tmp_path / "fi"
    args = ["--n", "2", "--steps", "200", "--after", "training", "--out", str(out)]
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "fault_injection.py"), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == summary["identical"] == 2


def test_a_population_leaves_a_held_member_to_its_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from overshoot.train.lifecycle import run_population

    runs = [
        resolve(compose([f"out={tmp_path}", f"optimizer={o}", "seed=1", "max_steps=30", "progress=none"]))
        for o in ("sgd", "nesterov")
    ]
    held = claim_run(run_path(tmp_path, runs[0]))
    try:
        assert run_population(runs) == [0, 0]
    finally:
        held.release()
    out = capsys.readouterr().out
    assert "digits/sgd/seed1: running elsewhere, not started" in out
    assert not (run_path(tmp_path, runs[0]) / "steps.csv").exists()
    assert results.read_run(run_path(tmp_path, runs[1])).status == "completed"
    assert not list(tmp_path.rglob(CLAIM_FILE))


def test_a_claim_left_by_a_run_killed_after_finishing_is_cleared(tmp_path: Path) -> None:
    """Killed after its final run.json: the relaunch skips it and clears the claim and checkpoint left."""
    path = _path(tmp_path, 50)
    assert lifecycle.run_one(compose(_overrides(tmp_path, 50))) == 0  # a completed run, files intact
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (path / CLAIM_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "token": "t"}))
    (path / "checkpoint.pt").write_bytes(b"the checkpoint it was about to delete")
    assert lifecycle.run_one(compose(_overrides(tmp_path, 50))) == 0
    assert not (path / CLAIM_FILE).exists() and not (path / "checkpoint.pt").exists()
    assert not list(path.glob(".damaged-*"))  # skipped as a result, not set aside
    live = claim_run(path)  # a live holder's claim is never cleared
    try:
        assert lifecycle.run_one(compose(_overrides(tmp_path, 50))) == 0
        assert (path / CLAIM_FILE).exists()
    finally:
        live.release()


def test_ctrl_c_wrapped_by_python_while_importing_is_still_one_line_exit_130(tmp_path: Path) -> None:
    """A SIGINT inside e.g. a dataclass's __set_name__ reaches the entry point as a RuntimeError caused by
    the KeyboardInterrupt; it still ends in one line and 130."""
    code = (
        "import sys\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'overshoot.cli.main':\n"
        "            try:\n"
        "                raise KeyboardInterrupt\n"
        "            except KeyboardInterrupt as e:\n"
        "                raise RuntimeError('Error calling __set_name__') from e\n"
        "sys.meta_path.insert(0, Finder())\n"
        "from overshoot.cli.entry import main\n"
        "main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "overshoot-bench: interrupted while starting; nothing was written"
