"""The claim: one process at a time writes a run directory.

One process at a time writes a run directory: it holds ``.claim``, created with ``O_CREAT | O_EXCL`` (atomic
on local filesystems and on NFS) and holding host, pid, pid namespace, start time and a token; its
modification time is the heartbeat, refreshed by a thread of the holder with the filesystem's own clock.
A claim is stale when its pid is provably gone (this host and pid namespace), when its heartbeat is older
than ``CLAIM_STALE_S`` measured against a file the contender has just written beside it (one clock, however
skewed the hosts' clocks are), or when a holder that cannot be checked from here does not beat while the
contender watches it for ``CLAIM_WATCH_S``; a stale claim is taken over under an O_EXCL takeover lock (see
``claim_run``). Fencing: before every append to a log, every run.json write and every checkpoint, the
holder re-reads the claim and stops with :class:`ClaimLost` when its token is no longer there, so a
mistaken takeover of a live holder costs at most one block of steps and two writers never interleave."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overshoot.common.files import (
    UMASK,
    StoreError,
    makedirs,
    store_error,
    warn,
    write_all,
)

DEAD = "interrupted (process gone)"  # what live_status says of a "running" run whose process is gone
CLAIM_FILE = ".claim"
HEARTBEAT_S = 15.0  # seconds between the holder's refreshes of its claim
CLAIM_STALE_S = 120.0  # a claim not refreshed for this long belongs to a dead (or cut-off) process
TAKEOVER_STALE_S = 30.0  # a takeover lock older than this belongs to a contender that died mid-takeover
CLAIM_WATCH_S = 2 * HEARTBEAT_S + 5.0  # how long a holder that cannot be checked from here must stay silent
CLAIM_FUTURE_S = 2.0  # a heartbeat this far ahead of the filesystem's clock is suspicious (set by hand)
STALE_AFTER_S = 900.0  # the same for a run.json without a claim file: its heartbeat is refreshed less often


class ClaimLost(RuntimeError):
    """Another process took this run's claim over (it judged this one dead): stop writing at once."""


# -- the claim: one writer per run directory --------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _pid_namespace() -> str | None:
    """This process's pid namespace (``pid:[4026531836]``), None where /proc does not say."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


PID_NAMESPACE = _pid_namespace()


def _checkable(holder: Mapping[str, Any]) -> bool:
    """Whether the pid of the claim ``holder`` can be checked from this process: the same host and pid
    namespace (a claim that records no namespace counts as this one's)."""
    pid = holder.get("pid")
    return (
        holder.get("host") == socket.gethostname()
        and isinstance(pid, int)
        and not isinstance(pid, bool)
        and holder.get("pidns", PID_NAMESPACE) == PID_NAMESPACE
    )


def describe_holder(holder: Mapping[str, Any], now: float | None = None) -> str:
    """'pid 123 on host-a since 2026-01-01T10:00:00+00:00, heartbeat 4 s ago' for a claim's content."""
    now = time.time() if now is None else now
    parts = [f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    if holder.get("started"):
        parts.append(f"since {holder['started']}")
    beat = holder.get("heartbeat")
    if isinstance(beat, int | float):
        parts.append(f"heartbeat {max(now - beat, 0):.0f} s ago")
    return ", ".join(parts)


def read_claim(folder: Path) -> dict[str, Any] | None:
    """The claim of the run directory ``folder`` (its content plus ``heartbeat``: the latest of the recorded
    and the refreshed time), or None when unclaimed. A claim still being written reads as ``{}`` plus its
    heartbeat."""
    f = Path(folder) / CLAIM_FILE
    try:
        with open(f, "rb") as fh:
            text = fh.read()
            mtime = os.fstat(fh.fileno()).st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return {"heartbeat": time.time()}  # unreadable: assume live rather than take it over
    try:
        content = json.loads(text)
        if not isinstance(content, dict):
            content = {}
    except ValueError:
        content = {}
    beat = content.get("heartbeat")
    content["heartbeat"] = max(mtime, float(beat)) if isinstance(beat, int | float) else mtime
    return content


def claim_is_stale(
    holder: Mapping[str, Any], now: float | None = None, stale_after: float = CLAIM_STALE_S
) -> bool:
    """Whether the claim ``holder`` (from read_claim) belongs to a process that is gone, as far as this
    host's clock tells: its pid is dead on this host (and pid namespace), or its heartbeat is more than
    ``stale_after`` seconds old, or as far in the future (a heartbeat ahead of the clock is suspicious, not
    fresh). ``claim_run`` judges with the filesystem's clock instead."""
    now = time.time() if now is None else now
    pid = holder.get("pid")
    if _checkable(holder) and isinstance(pid, int) and not _pid_alive(pid):
        return True
    return abs(now - float(holder.get("heartbeat") or 0.0)) > stale_after


class RunHeld(RuntimeError):
    """The run directory is claimed by a live process; ``holder`` is its claim."""

    def __init__(self, folder: Path, holder: Mapping[str, Any], who: str | None = None) -> None:
        self.folder, self.holder = folder, dict(holder)
        if who is None:
            who = describe_holder(holder) if holder.get("pid") else "a process that is starting up"
        super().__init__(f"held by {who}")


class BadClaim(StoreError):
    """The claim path of a run directory is not a regular file (a directory, a link): refused in one line."""


def _lost_to(holder: Mapping[str, Any] | None) -> str:
    """Who took a claim over, for ClaimLost's message."""
    if holder is None:
        return "nobody (its claim file was removed)"
    return describe_holder(holder) if holder.get("pid") else "a process starting up"


class Claim:
    """This process's claim on a run directory; a daemon thread refreshes its heartbeat. ``lost`` turns
    true when another process took it over; ``check()`` then raises ClaimLost, and ``verify()`` re-reads the
    claim file first (the fencing check before every write)."""

    def __init__(self, folder: Path, content: dict[str, Any], heartbeat_s: float = HEARTBEAT_S) -> None:
        self.folder, self.content, self.file = Path(folder), content, Path(folder) / CLAIM_FILE
        self.token = str(content["token"])
        self._token = self.token.encode()
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_loop, args=(heartbeat_s,), daemon=True)
        self._thread.start()

    def _beat_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.beat()

    def _owned(self) -> bool | None:
        """Whether the claim file holds this process's token (None: it cannot be read just now)."""
        try:
            with open(self.file, "rb") as fh:
                return self._token in fh.read(4096)
        except FileNotFoundError:
            return False
        except OSError:
            return None

    def beat(self) -> bool:
        """Refresh the heartbeat if the claim is still this process's; returns whether it is."""
        if self._owned() is False:
            if self.lost is None:
                self.lost = _lost_to(read_claim(self.folder))
            return False
        with contextlib.suppress(OSError):  # the filesystem's clock stamps it (the server's, on NFS)
            os.utime(self.file)
        return True

    def check(self) -> None:
        """Raise ClaimLost if another process was found holding the run."""
        if self.lost is not None:
            raise ClaimLost(f"{self.folder} was taken over by {self.lost}; this process stopped writing it")

    def verify(self) -> None:
        """Raise ClaimLost unless the claim file still holds this process's token: read now, before a write,
        so that a takeover stops this writer at its next write rather than at its next heartbeat."""
        self.check()
        if self._owned() is False:
            self.lost = self.lost or _lost_to(read_claim(self.folder))
            self.check()

    def release(self) -> None:
        """Stop the heartbeat and delete the claim file (if it is still this process's)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        holder = read_claim(self.folder)
        if holder is not None and holder.get("token") == self.token:
            with contextlib.suppress(OSError):
                self.file.unlink()


def _create_claim(folder: Path) -> dict[str, Any] | None:
    """Create the claim file exclusively; its content, or None when one exists already."""
    now = time.time()
    content = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pidns": PID_NAMESPACE,
        "started": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(),
        "heartbeat": now,
        "token": uuid.uuid4().hex,
    }
    f = folder / CLAIM_FILE
    try:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~UMASK)
    except FileExistsError:
        return None
    except OSError as e:
        raise store_error(e, f) from None
    try:
        write_all(fd, json.dumps(content).encode())
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        with contextlib.suppress(OSError):
            f.unlink()
        raise store_error(e, f) from None
    os.close(fd)
    return content


def _fs_now(folder: Path) -> float:
    """The clock of the filesystem holding ``folder``, now: the modification time of a file created there (on
    NFS the server stamps it, as it stamps the holders' heartbeats), so a claim's age never compares two
    hosts' clocks."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".claim.probe.", suffix=".tmp")
    except OSError as e:
        raise store_error(e, Path(folder) / ".claim.probe") from None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _claim_stat(f: Path) -> os.stat_result | None:
    """The claim file's status (None when there is none). A claim path that is an empty directory is
    removed with a warning; any other non-regular file raises BadClaim."""
    try:
        st = os.lstat(f)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise store_error(e, f) from None
    if stat.S_ISREG(st.st_mode):
        return st
    if stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError):
            f.rmdir()
            warn(f"{f} was an empty directory, not a claim file; removed it")
            return None
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a link" if stat.S_ISLNK(st.st_mode) else "special"
    raise BadClaim(f"{f} is {kind}, not a claim file: remove it (rm -r {f}) and relaunch")


class _ClaimChanged(Exception):
    """The claim was released or replaced while it was being judged: look again."""


@dataclass
class _Gone:
    """Why a claim's holder is taken to be gone."""

    why: str
    proven: bool  # its pid was checked here and is gone
    mtime_ns: int  # the heartbeat last seen


def _judge(
    folder: Path, holder: Mapping[str, Any], st: os.stat_result, stale_after: float, watch_s: float
) -> _Gone | None:
    """None when the claim ``holder`` (file status ``st``) belongs to a live process, else why it is taken to
    be gone. Ages are measured on the filesystem's clock; a holder that cannot be checked from here (another
    host or pid namespace, a claim still empty) or whose heartbeat is in the future counts as live only if it
    beats while watched for ``watch_s`` seconds (0: no watch, it counts as live until its heartbeat is
    ``stale_after`` seconds old). Raises _ClaimChanged when the claim changed meanwhile."""
    f = folder / CLAIM_FILE
    pid = holder.get("pid")
    if _checkable(holder) and isinstance(pid, int) and not _pid_alive(pid):
        return _Gone("its process is gone", True, st.st_mtime_ns)
    age = _fs_now(folder) - st.st_mtime
    if age > stale_after:
        return _Gone(f"no heartbeat for {age:.0f} s", False, st.st_mtime_ns)
    future = age < -CLAIM_FUTURE_S
    if (_checkable(holder) and not future) or watch_s <= 0:
        return None
    who = describe_holder({k: v for k, v in holder.items() if k != "heartbeat"}) if pid else "a claim"
    if watch_s >= 1:
        warn(f"{folder} is held by {who}, which cannot be checked from here: watching its heartbeat for "
              f"up to {watch_s:.0f} s")  # fmt: skip
    same = {k: v for k, v in holder.items() if k != "heartbeat"}
    deadline = time.monotonic() + watch_s
    while True:
        now_st = _claim_stat(f)
        if now_st is None or now_st.st_ino != st.st_ino:
            raise _ClaimChanged
        if now_st.st_mtime_ns != st.st_mtime_ns:
            return None  # it beat: live
        again = read_claim(folder)
        if again is None or {k: v for k, v in again.items() if k != "heartbeat"} != same:
            raise _ClaimChanged
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(0.2, left))
    what = "its heartbeat is in the future" if future else f"its last heartbeat was {max(age, 0):.0f} s ago"
    return _Gone(f"{what} and it did not beat in {watch_s:.0f} s", False, st.st_mtime_ns)


def claim_run(
    folder: Path | str,
    stale_after: float = CLAIM_STALE_S,
    heartbeat_s: float = HEARTBEAT_S,
    announce: bool = True,
    watch_s: float | None = None,
) -> Claim:
    """Claim the run directory ``folder`` (created if needed) for this process, taking over a stale claim.

    Raises RunHeld when a live process holds it (or is taking it over), StoreError when the directory cannot
    be written, BadClaim when its claim path is not a file. A claim is stale when its pid is gone (checked
    on this host and pid namespace), when its heartbeat is ``stale_after`` seconds older than a file written
    now beside it, or when a holder that cannot be checked does not beat while watched for ``watch_s``
    seconds (default CLAIM_WATCH_S; see _judge). A takeover is race-free: it happens under
    ``.claim.takeover``, itself created with O_EXCL (one contender gets it), which re-reads the claim, removes
    it only if it is still the stale one and did not beat since, and creates the new claim with O_EXCL (a
    newcomer's plain claim may win that, never two). A takeover whose holder's pid could not be checked says
    so: that holder, if it still runs, stops at its next write (see Claim.verify).
    """
    folder = Path(folder)
    watch_s = CLAIM_WATCH_S if watch_s is None else watch_s
    makedirs(folder)
    f = folder / CLAIM_FILE
    lock = folder / f"{CLAIM_FILE}.takeover"
    for _ in range(20):
        content = _create_claim(folder)
        if content is not None:
            return Claim(folder, content, heartbeat_s)
        st = _claim_stat(f)
        holder = read_claim(folder) if st is not None else None
        if st is None or holder is None:
            continue  # released between our attempt and the read: try again
        try:
            gone = _judge(folder, holder, st, stale_after, watch_s)
        except _ClaimChanged:
            continue
        if gone is None:
            raise RunHeld(folder, read_claim(folder) or holder)  # as it reads now (watched, it may be whole)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~UMASK)
        except FileExistsError:
            lock_st = _claim_stat(lock)  # an empty directory there is removed, anything else refused
            if lock_st is None:
                continue
            age = _fs_now(folder) - lock_st.st_mtime
            # a contender that died in the middle of a takeover, or a lock stamped by a skewed clock
            if age > TAKEOVER_STALE_S or age < -CLAIM_FUTURE_S:
                with contextlib.suppress(OSError):
                    lock.unlink()
                continue
            raise RunHeld(folder, {}, who="another process taking it over") from None
        except OSError as e:
            raise store_error(e, lock) from None
        os.close(fd)
        try:
            again_st = _claim_stat(f)
            again = read_claim(folder) if again_st is not None else None
            if again is None or again_st is None:
                continue
            if again.get("token") != holder.get("token") or again_st.st_mtime_ns != gone.mtime_ns:
                raise RunHeld(folder, again)  # replaced, or it beat since it was judged
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
            content = _create_claim(folder)
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
        if content is None:
            raise RunHeld(folder, read_claim(folder) or {})  # a newcomer created one first
        if announce:
            who = describe_holder(holder) if holder.get("pid") else "an unfinished claim"
            if gone.proven:
                warn(f"took over {folder} from {who} (process gone); resuming it")
            else:
                warn(
                    f"took over {folder} from {who} ({gone.why}): taken over from a live-looking holder, "
                    "whose process cannot be checked from here; if it still runs it stops at its next "
                    "write; resuming it"
                )
        return Claim(folder, content, heartbeat_s)
    raise RunHeld(folder, read_claim(folder) or {})


def clear_stale_claim(folder: Path | str) -> bool:
    """Remove the claim of a process that died after finishing its run (between writing the final run.json
    and releasing the claim); returns whether one was removed. A live claim, or one whose holder cannot be
    checked and whose heartbeat is recent, is left alone."""
    if read_claim(Path(folder)) is None:
        return False
    try:
        claim_run(folder, heartbeat_s=3600.0, announce=False, watch_s=0.0).release()
    except (RunHeld, StoreError):
        return False
    return True


def live_status(
    info: Mapping[str, Any],
    path: Path | str | None = None,
    now: float | None = None,
    stale_after: float = STALE_AFTER_S,
) -> str:
    """The status a user should see for a run.json ``info``: its stored status, except that a ``running``
    run whose process is gone reads ``interrupted (process gone)``.

    With the run directory ``path``, its claim decides (live when refreshed within CLAIM_STALE_S and its pid
    alive on this host); without one, or for a run without a claim file, run.json's own host, pid and
    heartbeat do (gone when its pid is dead on this host or its heartbeat is older than ``stale_after``).
    """
    status = str(info.get("status", "unknown"))
    if status != "running":
        return status
    now = time.time() if now is None else now
    if path is not None:
        holder = read_claim(Path(path))
        if holder is not None:
            return DEAD if claim_is_stale(holder, now=now) else "running"
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        return DEAD
    beat = info.get("heartbeat")
    if not isinstance(beat, int | float):
        return "running"
    return DEAD if now - float(beat) > stale_after else "running"
