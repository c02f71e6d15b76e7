"""The last ways in (issue 27): foreign checkpoints, a mistaken takeover of a live holder, hostile settings,
a requeue after a node crash, a closed stdout, a second Ctrl-C, sweeps started in the same second, a data
file altered behind a restored modification time."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
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

from overshoot.cli import main as cli
from overshoot.config.compose import ConfigError, compose, resolve
from overshoot.store import claim as claims
from overshoot.store.claim import CLAIM_FILE, ClaimLost, claim_run
from overshoot.store.writer import RunWriter, run_path, without_time
from overshoot.train import lifecycle
from overshoot.train.runtime import Interrupted
from overshoot.train.single import train

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _overrides(out: Path, *extra: str) -> list[str]:
    return [f"out={out}", "optimizer=sgd_os", "gamma=5", "progress=none", "threads=1", *extra]


def _run(out: Path, *extra: str) -> Path:
    run = resolve(compose(_overrides(out, *extra)))
    return run_path(run.out, run)


def _interrupt(out: Path, after_checks: int, *extra: str) -> Path:
    """A run stopped with a checkpoint after ``after_checks`` stop checks (one per step)."""
    run = resolve(compose(_overrides(out, "checkpoint_every=0", *extra)))
    task, writer, device = single_run_parts(run)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > after_checks

    writer.info = {"status": "running"}
    with pytest.raises(Interrupted):
        train(run, task, writer, device, should_stop=stop)
    return writer.path


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """``overshoot-bench <args>`` in this process (imports warm): exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["overshoot-bench", *args]
    os.chdir(cwd)
    code: object = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as e:
                code = e.code
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


# -- 1. checkpoints that know their run ----------------------------------------------------------------


@pytest.mark.parametrize("source", ["seed=2", "optimizer=sgd gamma=null", "no identity"])
def test_a_foreign_checkpoint_is_moved_aside_not_resumed(
    tmp_path: Path, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = "max_steps=120"
    reference = _run(tmp_path / "ref", steps)
    assert lifecycle.run_one(compose(_overrides(tmp_path / "ref", steps))) == 0
    mine = _interrupt(tmp_path / "store", 70, steps)
    if source == "no identity":  # a checkpoint written before checkpoints named their run
        state = torch.load(mine / "checkpoint.pt", weights_only=False)
        del state["identity"]
        torch.save(state, mine / "checkpoint.pt")
    else:
        other = _interrupt(tmp_path / "store", 30, steps, *source.split())
        shutil.copy(other / "checkpoint.pt", mine / "checkpoint.pt")
    capsys.readouterr()
    assert lifecycle.run_one(compose(_overrides(tmp_path / "store", steps))) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "checkpoint.pt" in line]
    assert len(warnings) == 1 and "moved it to checkpoint.pt.corrupt-" in warnings[0], captured.err
    assert ("another run" if source != "no identity" else "names no run") in warnings[0]
    assert "starting in" in captured.out and "resuming" not in captured.out
    assert len(list(mine.glob("checkpoint.pt.corrupt-*"))) == 1
    for name in ("steps.csv", "epochs.csv"):  # trained from step 0: as if never interrupted (but the clock)
        assert without_time((mine / name).read_text()) == without_time((reference / name).read_text()), name
    # ... and the relaunch after that resumes nothing and skips the completed run
    assert lifecycle.run_one(compose(_overrides(tmp_path / "store", steps))) == 0
    assert "skipped, already completed" in capsys.readouterr().out


def test_a_population_checkpoint_of_other_members_is_moved_aside(tmp_path: Path) -> None:
    from overshoot.train.population import population_checkpoint

    runs = [resolve(compose(_overrides(tmp_path, f"seed={s}"))) for s in (1, 2)]
    mine, theirs = population_checkpoint(runs), population_checkpoint(runs[::-1])
    theirs.save({"step": 3})
    assert mine.path == theirs.path and mine.load(("step",)) is None
    assert list(mine.path.parent.glob("checkpoint.pt.corrupt-*"))
    mine.save({"step": 4})
    assert mine.load(("step",))["step"] == 4  # type: ignore[index]


# -- 2. fencing: a holder that lost its claim stops at its next write ---------------------------------


def test_a_taken_over_holder_stops_at_its_next_write_not_its_next_heartbeat(tmp_path: Path) -> None:
    claim = claim_run(tmp_path, heartbeat_s=3600.0)  # its heartbeat thread will not look for an hour
    writer = RunWriter(tmp_path, claim=claim)
    writer.append_steps({c: [0] for c in writer.step_columns})
    # Another process took the run over (it judged this one dead): its own claim replaces this one's.
    new = tmp_path / "new-claim"
    new.write_text(json.dumps({"token": "theirs", "pid": 4242, "host": "node9"}))
    os.replace(new, tmp_path / CLAIM_FILE)
    with pytest.raises(ClaimLost, match="pid 4242 on node9"):
        writer.append_steps({c: [1] for c in writer.step_columns})
    with pytest.raises(ClaimLost):
        writer.write_info(status="completed")
    with pytest.raises(ClaimLost):
        writer.checkpoint.save({"step": 1})
    assert (tmp_path / "steps.csv").read_text().count("\n") == 1  # the first row only
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "checkpoint.pt").exists()
    claim.release()
    assert json.loads((tmp_path / CLAIM_FILE).read_text())["token"] == "theirs"


@pytest.fixture(scope="module")
def reference_800(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of 800 steps (its run directory), trained in this process."""
    out = tmp_path_factory.mktemp("reference")
    assert lifecycle.run_one(compose(_overrides(out, "max_steps=800"))) == 0
    return _run(out, "max_steps=800")


@pytest.mark.parametrize("disguise", ["another host", "a dead pid here"])
def test_a_warm_contender_taking_over_a_live_holder_never_interleaves(
    tmp_path: Path, disguise: str, reference_800: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live holder whose claim looks stale (another host with an old heartbeat, or a pid this process
    cannot see, as from another pid namespace) is taken over by a contender whose imports are done: the
    holder stops at its next block, steps.csv holds every step once and run.json is the contender's."""
    steps = "max_steps=800"
    out = tmp_path / "store"
    path = _run(out, steps)
    # A holder whose heartbeats do not reach the contender (a stalled thread, a mount caching attributes):
    # its claim keeps the old modification time set below.
    silent = "from overshoot.store import claim; claim.Claim._beat_loop = lambda self, every: None; "
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            silent + "from overshoot.cli.main import main; main()",
            *_overrides(out, steps, "checkpoint_every=0"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.time() + 120
    while not ((path / "checkpoint.pt").exists() and (path / CLAIM_FILE).exists()):
        assert holder.poll() is None and time.time() < deadline, holder.communicate()
        time.sleep(0.01)
    claim = json.loads((path / CLAIM_FILE).read_text())
    if disguise == "another host":
        claim["host"] = "node-elsewhere"
    else:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        claim["pid"] = gone.pid
    (path / ".claim.new").write_text(json.dumps(claim))  # the same token: the holder still thinks it holds it
    os.replace(path / ".claim.new", path / CLAIM_FILE)
    old = time.time() - 3600
    os.utime(path / CLAIM_FILE, (old, old))
    capsys.readouterr()
    assert lifecycle.run_one(compose(_overrides(out, steps, "checkpoint_every=0"))) == 0
    err = capsys.readouterr().err
    assert "took over" in err
    if disguise == "another host":
        assert "taken over from a live-looking holder" in err
    _, holder_err = holder.communicate(timeout=300)
    stopped = holder.returncode == 1 and "stopped writing it" in holder_err
    assert stopped or (holder.returncode == 0 and "completed" not in holder_err), holder_err
    assert "Traceback" not in holder_err
    assert len([line for line in holder_err.splitlines() if line.strip()]) <= 2, holder_err
    rows = pd.read_csv(path / "steps.csv")
    assert rows["step"].tolist() == list(range(800))  # no step twice, none missing
    info = json.loads((path / "run.json").read_text())
    assert info["status"] == "completed" and info["pid"] == os.getpid() and info["steps"] == 800
    ref = reference_800
    assert without_time((path / "steps.csv").read_text()) == without_time((ref / "steps.csv").read_text())
    assert info["steps_to_95"] == json.loads((ref / "run.json").read_text())["steps_to_95"]


# -- 6. exit codes a scheduler can trust ----------------------------------------------------------------


def test_a_requeue_after_a_node_crash_trains_instead_of_exiting_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The crashed node's claim is 10 s old (within CLAIM_STALE_S): the requeued job watches it, sees no
    heartbeat, takes over and trains, instead of exiting 0 as 'running elsewhere' with nothing trained."""
    monkeypatch.setattr(claims, "CLAIM_WATCH_S", 0.5)
    path = _run(tmp_path, "max_steps=30")
    path.mkdir(parents=True)
    (path / CLAIM_FILE).write_text(json.dumps({"host": "node17", "pid": 4242, "token": "crashed"}))
    then = time.time() - 10
    os.utime(path / CLAIM_FILE, (then, then))
    assert lifecycle.run_one(compose(_overrides(tmp_path, "max_steps=30"))) == 0
    assert "taken over from a live-looking holder" in capsys.readouterr().err
    assert json.loads((path / "run.json").read_text())["status"] == "completed"


def test_a_closed_stdout_does_not_change_the_exit_status(tmp_path: Path) -> None:
    """``overshoot-bench ... | head -1``: the run completes and exits 0."""
    p = subprocess.Popen(
        [*BENCH, *_overrides(tmp_path, "max_steps=60", "progress=lines")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert p.stdout is not None and p.stdout.readline()
    p.stdout.close()
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err
    assert json.loads((_run(tmp_path, "max_steps=60") / "run.json").read_text())["status"] == "completed"


def test_a_second_ctrl_c_while_exiting_prints_no_traceback(tmp_path: Path) -> None:
    """The first Ctrl-C stops the sweep; a second one, while the process says how it ended, is ignored."""
    code = (
        "import os, signal\n"
        "from overshoot.cli import main as cli\n"
        "from overshoot.train import sweep\n"
        "def job(self, cfg):\n"
        "    raise KeyboardInterrupt\n"
        "def summary(self):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return ['closing line']\n"
        "sweep.Session.job, sweep.Session.summary = job, summary\n"
        "cli.main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, f"out={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "overshoot-bench: interrupted; relaunch the same command to resume"
    ]


def test_a_double_ctrl_c_during_training_prints_no_traceback(tmp_path: Path) -> None:
    p = subprocess.Popen(
        [*BENCH, *_overrides(tmp_path, "max_steps=100000", "progress=lines")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert p.stdout is not None and "starting" in p.stdout.readline()
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err


# -- 4, 5. every value checked before anything is built; no traceback from any command line ------------


HOSTILE = [
    "lr=nan",
    "lr=inf",
    "gamma=nan",
    "gamma=inf",
    "weight_decay=-1",
    "weight_decay=nan",
    "eps=nan",
    "momentum=inf",
    "delay=-1",
    "delay=inf",
    "seed=1e30",
    f"seed={2**70}",
    "seed=-1",
    "seed=inf",
    "device=tpu",
    "device=gpu",
    "out=",
    "max_steps=inf",
    "max_steps=1e400",
    "epochs=inf",
    "batch_size=inf",
    "threads=inf",
    "log.window=0",
    "log.window=-5",
    "log.window=inf",
    "checkpoint_every=nan",
    "progress=loud",
    "population=maybe",
    "optimizer=custom optimizer.target=os.path.join optimizer.family=sgd",
]


@pytest.mark.parametrize("setting", HOSTILE)
def test_a_hostile_value_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "store"
    overrides = [f"out={out}", "progress=none", *setting.split()]
    if setting == "out=":
        overrides = overrides[1:]
    with pytest.raises(ConfigError) as e:
        resolve(compose(overrides))
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    assert lifecycle.run_one(compose(overrides)) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "digits").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["max_steps=inf"],
        ["max_steps=1e400"],
        ["seed=1" + "0" * 5000],
        ["--foo"],
        ["lr=["],
        ["-m", "seed=1,inf", "max_steps=3"],
        ["-m", "seed=inf,nan"],
        ["log.window=inf"],
        ["nosuchkey=1"],
    ],
)
def test_no_command_line_gives_a_traceback(tmp_path: Path, args: list[str]) -> None:
    code, out, err = run_cli([f"out={tmp_path / 'store'}", "progress=none", "threads=1", *args], tmp_path)
    assert code == 2, (out, err)
    errors = [line for line in err.splitlines() if line.strip()]
    assert errors and len(errors) <= 2 and "Traceback" not in err and "usage:" not in err, err
    assert all(len(line) < 400 for line in errors)


# -- 3, 12. sweep bookkeeping per sweep; Hydra's job headers ----------------------------------------------


def test_two_sweeps_started_in_one_second_get_their_own_folders(tmp_path: Path) -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    dirs = set()
    for _ in range(2):
        with initialize_config_module(config_module="overshoot_configs", version_base=None):
            cfg = hydra_compose(config_name="config", overrides=[f"out={tmp_path}"], return_hydra_config=True)
        dirs.add(OmegaConf.select(cfg, "hydra.sweep.dir"))
    assert len(dirs) == 2


def test_a_sweep_shares_one_folder_and_prints_no_hydra_job_headers(tmp_path: Path) -> None:
    r = subprocess.run(
        [*BENCH, "-m", *_overrides(tmp_path, "max_steps=5"), "seed=1,2,3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "#1 :" not in r.stdout and "#2 :" not in r.stdout, r.stdout
    sweeps = list((tmp_path / ".multirun").iterdir())
    assert len(sweeps) == 1 and len(list((sweeps[0] / ".claims").iterdir())) == 3


# -- 6 (data). the checksum cache cannot be fooled by a restored modification time -----------------------


def test_an_altered_data_file_with_its_mtime_restored_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from overshoot_tasks import integrity

    f = tmp_path / "cal_housing.csv"
    f.write_bytes(b"1,2,3\n4,5,6\n")
    good = "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    monkeypatch.setattr(integrity, "CHECKSUMS", {("housing", f.name): (good,)})
    monkeypatch.setenv("OVERSHOOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(integrity.VERIFY_ENV, "1")
    integrity.verify_checksum("housing", f)  # hashed once, and cached
    st = f.stat()
    time.sleep(0.05)
    f.write_bytes(b"1,2,3\n4,5,7\n")  # one digit changed, same size ...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the modification time put back
    assert f.stat().st_mtime_ns == st.st_mtime_ns and f.stat().st_size == st.st_size
    with pytest.raises(ValueError, match="does not match the published checksum"):
        integrity.verify_checksum("housing", f)


def test_the_claim_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / CLAIM_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    with pytest.raises(claims.RunHeld):
        claim_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CLAIM_FILE]


def test_a_takeover_lock_stamped_in_the_future_does_not_block_the_run(tmp_path: Path) -> None:
    """A dead contender's .claim.takeover an hour in the future (a skewed clock) is not taken for fresh."""
    (tmp_path / CLAIM_FILE).write_text(json.dumps({"host": "node17", "pid": 1, "token": "dead"}))
    old, future = time.time() - 10_000, time.time() + 3600
    os.utime(tmp_path / CLAIM_FILE, (old, old))
    (tmp_path / f"{CLAIM_FILE}.takeover").write_text("")
    os.utime(tmp_path / f"{CLAIM_FILE}.takeover", (future, future))
    t0 = time.monotonic()
    claim_run(tmp_path).release()
    assert time.monotonic() - t0 < 5
