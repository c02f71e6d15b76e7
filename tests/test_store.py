"""The run store's guarantees in isolation: one claimed writer, whole lines, strict JSON, one-line errors."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from overshoot.analysis import results
from overshoot.common.files import StoreError, store_error
from overshoot.store import claim as claims
from overshoot.store.claim import CLAIM_FILE, DEAD, BadClaim, ClaimLost, RunHeld, claim_run, live_status
from overshoot.store.writer import LogMismatch, RunWriter


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _plant_claim(folder: Path, age_s: float = 0.0, **content: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / CLAIM_FILE
    f.write_text(json.dumps({"token": "planted", "started": "earlier", **content}))
    then = time.time() - age_s
    os.utime(f, (then, then))


def _strict(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(token)

    return json.loads(path.read_text(), parse_constant=refuse)


# -- the claim ----------------------------------------------------------------------------------------


def test_a_live_claim_refuses_a_second_writer_and_names_it(tmp_path: Path) -> None:
    first = claim_run(tmp_path / "run")
    try:
        with pytest.raises(RunHeld, match=f"held by pid {os.getpid()} on {socket.gethostname()}"):
            claim_run(tmp_path / "run")
    finally:
        first.release()
    assert not (tmp_path / "run" / CLAIM_FILE).exists()
    claim_run(tmp_path / "run").release()  # free again once released


@pytest.fixture(autouse=True)
def _short_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder that cannot be checked from here is watched for half a second, not CLAIM_WATCH_S."""
    monkeypatch.setattr(claims, "CLAIM_WATCH_S", 0.5)


def _beating(f: Path, stop: threading.Event) -> threading.Thread:
    """A thread that refreshes ``f``'s mtime every 0.05 s, as a live holder's heartbeat on another host."""

    def beat() -> None:
        while not stop.wait(0.05):
            os.utime(f)

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize(
    ("host", "pid", "age_s", "beats", "taken"),
    [
        ("same", "dead", 0.0, False, True),  # killed on this host: its pid is gone
        ("node17", 1, 10_000.0, False, True),  # another host, no heartbeat for hours
        ("node17", 1, 5.0, True, False),  # another host, beating while watched: live
        ("node17", 1, 5.0, False, True),  # another host, silent while watched: a crashed node, requeued
        ("node17", 1, -3600.0, False, True),  # a heartbeat an hour in the future (a skewed clock): not fresh
        ("same", "self", 5.0, False, False),  # this very process
    ],
)
def test_stale_claims_are_taken_over(
    tmp_path: Path,
    host: str,
    pid: object,
    age_s: float,
    beats: bool,
    taken: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid = {"dead": _dead_pid(), "self": os.getpid()}.get(pid, pid)  # type: ignore[arg-type]
    _plant_claim(tmp_path, age_s, host=socket.gethostname() if host == "same" else host, pid=pid)
    stop = threading.Event()
    if beats:
        _beating(tmp_path / CLAIM_FILE, stop)
    try:
        if taken:
            t0 = time.monotonic()
            claim = claim_run(tmp_path)
            assert time.monotonic() - t0 < 5  # never the skew plus CLAIM_STALE_S
            assert json.loads((tmp_path / CLAIM_FILE).read_text())["pid"] == os.getpid()
            claim.release()
            assert not list(tmp_path.glob(".claim*"))  # the stale one moved aside is gone too
            err = capsys.readouterr().err
            # a pid that cannot be checked from here is never said to be gone
            assert ("taken over from a live-looking holder" in err) == (host != "same")
        else:
            with pytest.raises(RunHeld):
                claim_run(tmp_path)
    finally:
        stop.set()


def test_a_claim_age_never_compares_this_hosts_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's clock an hour fast or slow changes nothing: ages come from the filesystem's clock."""
    _plant_claim(tmp_path, 60.0, host="node17", pid=1)
    stop = threading.Event()
    _beating(tmp_path / CLAIM_FILE, stop)
    real = time.time
    try:
        for skew in (3600.0, -3600.0):
            monkeypatch.setattr(time, "time", lambda skew=skew: real() + skew)
            with pytest.raises(RunHeld):
                claim_run(tmp_path)
    finally:
        stop.set()


@pytest.mark.parametrize("which", [CLAIM_FILE, CLAIM_FILE + ".takeover"])
def test_a_claim_path_that_is_a_directory_is_repaired_or_refused(tmp_path: Path, which: str) -> None:
    _plant_claim(tmp_path, 10_000.0, host="node17", pid=1)
    (tmp_path / which).unlink(missing_ok=True)
    (tmp_path / which).mkdir()
    claim_run(tmp_path).release()  # an empty directory: removed with a warning
    (tmp_path / CLAIM_FILE).unlink(missing_ok=True)
    _plant_claim(tmp_path, 10_000.0, host="node17", pid=1)
    (tmp_path / which).unlink(missing_ok=True)
    (tmp_path / which).mkdir()
    (tmp_path / which / "x").write_text("")
    with pytest.raises(BadClaim, match="is a directory, not a claim file: remove it") as e:
        claim_run(tmp_path)
    assert "\n" not in str(e.value)


def test_a_half_written_claim_counts_as_live_until_it_is_stale(tmp_path: Path) -> None:
    (tmp_path / CLAIM_FILE).write_text("")  # a holder between its O_EXCL create and its write
    with pytest.raises(RunHeld, match="starting up"):
        claim_run(tmp_path, watch_s=0)
    # watched, it gets written: a live holder on this host
    threading.Timer(0.1, lambda: (tmp_path / CLAIM_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "token": "t"}))).start()  # fmt: skip
    with pytest.raises(RunHeld, match=f"pid {os.getpid()}"):
        claim_run(tmp_path)
    (tmp_path / CLAIM_FILE).write_text("")
    old = time.time() - 10_000
    os.utime(tmp_path / CLAIM_FILE, (old, old))
    claim_run(tmp_path).release()


def test_takeover_of_a_stale_claim_has_exactly_one_winner(tmp_path: Path) -> None:
    _plant_claim(tmp_path, 0.0, host=socket.gethostname(), pid=_dead_pid())
    n = 8
    barrier = threading.Barrier(n)
    won, held = [], []

    def contend() -> None:
        barrier.wait()
        try:
            won.append(claim_run(tmp_path))
        except RunHeld:
            held.append(1)

    threads = [threading.Thread(target=contend) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(held) == n - 1
    assert json.loads((tmp_path / CLAIM_FILE).read_text())["token"] == won[0].token
    won[0].release()


def test_heartbeat_refreshes_and_a_lost_claim_stops_the_writer(tmp_path: Path) -> None:
    claim = claim_run(tmp_path, heartbeat_s=0.05)
    try:
        old = time.time() - 1000
        os.utime(tmp_path / CLAIM_FILE, (old, old))
        time.sleep(0.3)
        assert time.time() - (tmp_path / CLAIM_FILE).stat().st_mtime < 5  # refreshed by the thread
        writer = RunWriter(tmp_path, claim=claim)
        writer.write_info(status="running")
        # Another process judged it dead and took it over (its claim appears whole: written, then renamed).
        (tmp_path / "new").write_text(json.dumps({"token": "other", "pid": 4242, "host": "node9"}))
        os.replace(tmp_path / "new", tmp_path / CLAIM_FILE)
        time.sleep(0.3)
        with pytest.raises(ClaimLost, match="pid 4242 on node9"):
            writer.append_steps({c: [0] for c in writer.step_columns})
        assert not writer.steps_file.exists()
    finally:
        claim.release()
    assert (tmp_path / CLAIM_FILE).exists()  # the new holder's claim is not ours to delete


def test_live_status_tells_live_from_dead(tmp_path: Path) -> None:
    host, now = socket.gethostname(), time.time()
    running = {"status": "running", "host": host, "pid": os.getpid(), "heartbeat": now}
    assert live_status(running) == "running"
    assert live_status({**running, "pid": _dead_pid()}) == DEAD
    assert live_status({**running, "host": "node3", "heartbeat": now - 5000}) == DEAD
    assert live_status({**running, "host": "node3", "heartbeat": now - 5000}, stale_after=10_000) == "running"
    assert live_status({"status": "completed", "pid": _dead_pid(), "host": host}) == "completed"
    # With the directory, its claim decides: run.json's own heartbeat may be old while the claim beats.
    _plant_claim(tmp_path, 1.0, host="node3", pid=7)
    assert live_status({**running, "host": "node3", "heartbeat": now - 5000}, tmp_path) == "running"
    _plant_claim(tmp_path, 10_000.0, host="node3", pid=7)
    assert live_status(running, tmp_path) == DEAD


# -- writes that fail ---------------------------------------------------------------------------------


def _fail_writes_to(monkeypatch: pytest.MonkeyPatch, fragment: str, after_bytes: int = 0) -> None:
    """os.write to files whose path contains ``fragment`` writes ``after_bytes`` bytes, then ENOSPC."""
    real = os.write
    written: dict[int, int] = {}

    def write(fd: int, data: bytes) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if fragment not in target:
            return real(fd, data)
        room = after_bytes - written.get(fd, 0)
        if room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(memoryview(data)[:room]))
        written[fd] = written.get(fd, 0) + n
        return n

    monkeypatch.setattr(os, "write", write)


def test_enospc_in_an_append_leaves_whole_lines_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = RunWriter(tmp_path)
    w.start({"a": 1}, {}, resume_rows=(0, 0))
    rows = {c: [1.5, 2.5] for c in w.step_columns}
    w.append_steps({**rows, "step": [0, 1]})
    before = w.steps_file.read_bytes()
    _fail_writes_to(monkeypatch, "steps.csv", after_bytes=7)  # part of a line fits, then the disk is full
    with pytest.raises(
        StoreError, match=f"^no space left on device writing {re.escape(str(w.steps_file))}$"
    ) as e:
        w.append_steps({**rows, "step": [2, 3]})
    assert e.value.errno == errno.ENOSPC
    assert w.steps_file.read_bytes() == before  # the partial line was cut back


def test_enospc_in_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = RunWriter(tmp_path)
    w.checkpoint.save({"step": 1, "w": torch.arange(10.0)})
    _fail_writes_to(monkeypatch, ".checkpoint.pt.", after_bytes=100)
    with pytest.raises(
        StoreError, match=f"^no space left on device writing {re.escape(str(w.checkpoint_file))}$"
    ):
        w.checkpoint.save({"step": 2, "w": torch.zeros(100_000)})
    monkeypatch.undo()
    assert w.checkpoint.load()["step"] == 1  # type: ignore[index]
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_only_filesystem_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root ignores permission bits, so the read-only mount is simulated where the kernel would refuse.
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

    monkeypatch.setattr(os, "mkdir", refuse)
    with pytest.raises(StoreError, match=r"^read-only file system: cannot write .*run$"):
        claim_run(tmp_path / "ro" / "run")


def test_a_regular_file_in_the_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")  # fails for root too: the kernel returns ENOTDIR
    with pytest.raises(StoreError, match=re.escape(f"{tmp_path / 'file'} is a file, not a directory")):
        claim_run(tmp_path / "file" / "runs" / "x")


def test_run_json_is_strict_json(tmp_path: Path) -> None:
    w = RunWriter(tmp_path)
    w.write_info(final={"train_loss": float("nan"), "best": float("inf")}, steps_to_95=None, x=float("-inf"))
    info = _strict(tmp_path / "run.json")
    assert info["final"] == {"train_loss": None, "best": None} and info["x"] is None


# -- repair -------------------------------------------------------------------------------------------


def test_truncate_drops_a_partial_line_and_refuses_short_logs(tmp_path: Path) -> None:
    w = RunWriter(tmp_path)
    header = ",".join(w.step_columns) + "\n"
    r0, r1 = (",".join([str(i), "0"] + ["1"] * (len(w.step_columns) - 2)) + "\n" for i in (0, 1))
    w.steps_file.write_text(header + r0 + r1 + "2,0,1,1")
    w._truncate(w.steps_file, w.step_columns, 2, indexed=True)
    assert w.steps_file.read_text() == header + r0 + r1
    w.steps_file.write_text(header + r0 + "1,0,1,1")  # cut inside the checkpoint's rows
    with pytest.raises(LogMismatch, match="holds 1 whole rows but the checkpoint expects 2"):
        w._truncate(w.steps_file, w.step_columns, 2, indexed=True)
    w.steps_file.write_text(header + r0 + r0)  # a duplicated step
    with pytest.raises(LogMismatch):
        w._truncate(w.steps_file, w.step_columns, 2, indexed=True)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", "half"])
def test_broken_checkpoint_is_moved_aside(
    tmp_path: Path, content: object, capsys: pytest.CaptureFixture[str]
) -> None:
    w = RunWriter(tmp_path)
    if content == "half":
        w.checkpoint.save({"step": 1, "w": torch.zeros(10_000)})
        data = w.checkpoint_file.read_bytes()
        w.checkpoint_file.write_bytes(data[: len(data) // 2])
    else:
        w.checkpoint_file.write_bytes(content)  # type: ignore[arg-type]
    assert w.checkpoint.load() is None
    err = capsys.readouterr().err
    assert str(w.checkpoint_file) in err and "restarting from step 0" in err and len(err.splitlines()) == 1
    assert not w.checkpoint_file.exists() and len(list(tmp_path.glob("checkpoint.pt.corrupt-*"))) == 1


def test_unreadable_run_json_does_not_block_the_store(tmp_path: Path) -> None:
    good = RunWriter(tmp_path / "good")
    good.write_info(status="completed")
    for name, text in (("empty", ""), ("garbage", "{not json"), ("list", "[1, 2]")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(text)
    runs = {r.path.name: r for r in results.scan([tmp_path]).runs}
    assert runs["good"].info["status"] == "completed"
    for name, why in (("empty", "is empty"), ("garbage", "does not parse"), ("list", "not an object")):
        assert runs[name].status == "unreadable" and runs[name].damaged
        assert runs[name].file == "run.json" and why in runs[name].reason
    w = RunWriter(tmp_path / "garbage")
    assert w.read_info() == {}
    w.prepare()  # a claimed writer moves it aside before writing its own
    assert not (tmp_path / "garbage" / "run.json").exists()
    assert list((tmp_path / "garbage").glob("run.json.corrupt-*"))


def test_prepare_removes_temporary_files_left_by_a_killed_writer(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"partial")
    (tmp_path / ".run.json.x.tmp").write_text("{")
    (tmp_path / "keep.tmp").write_text("not ours")
    RunWriter(tmp_path).prepare()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp"]


def test_store_error_is_an_os_error() -> None:
    e = store_error(OSError(errno.ENOSPC, "No space left on device"), "/x/y")
    assert isinstance(e, OSError) and str(e) == "no space left on device writing /x/y"
