"""The run store: one directory per run, written atomically, read back by reports and sweeps.

A run directory holds ``config.yaml`` (the resolved config), ``steps.csv`` (one row per optimizer step),
``epochs.csv`` (validation/test metrics per epoch), ``run.json`` (status and summary) and, while the run is
unfinished, ``checkpoint.pt``. Every file except the two CSV logs is replaced atomically; the logs are
appended in whole lines (a failed append is cut back) and cut back to the last checkpoint when a run
resumes, so a reader never sees a row that a resumed run will not reproduce.

One process at a time writes a run directory: it holds ``.claim``, created with ``O_CREAT | O_EXCL`` (atomic
on local filesystems and on NFS) and holding host, pid, pid namespace, start time and a token; its
modification time is the heartbeat, refreshed by a thread of the holder with the filesystem's own clock.
A claim is stale when its pid is provably gone (this host and pid namespace), when its heartbeat is older
than ``CLAIM_STALE_S`` measured against a file the contender has just written beside it (one clock, however
skewed the hosts' clocks are), or when a holder that cannot be checked from here does not beat while the
contender watches it for ``CLAIM_WATCH_S``; a stale claim is taken over under an O_EXCL takeover lock (see
``claim_run``). Fencing: before every append to a log, every run.json write and every checkpoint, the
holder re-reads the claim and stops with :class:`ClaimLost` when its token is no longer there, so a
mistaken takeover of a live holder costs at most one block of steps and two writers never interleave.
A write that fails (no space left, read-only filesystem) raises :class:`StoreError`, an ``OSError`` whose
message is one line naming the file; the file it was replacing is left as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import json
import math
import numbers
import os
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from overshoot import methods, schema
from overshoot.runconfig import RunConfig
from overshoot.schema import EPOCH_COLUMNS, STEP_COLUMNS, config_hash

DEAD = "interrupted (process gone)"  # what live_status says of a "running" run whose process is gone
CLAIM_FILE = ".claim"
HEARTBEAT_S = 15.0  # seconds between the holder's refreshes of its claim
CLAIM_STALE_S = 120.0  # a claim not refreshed for this long belongs to a dead (or cut-off) process
TAKEOVER_STALE_S = 30.0  # a takeover lock older than this belongs to a contender that died mid-takeover
CLAIM_WATCH_S = 2 * HEARTBEAT_S + 5.0  # how long a holder that cannot be checked from here must stay silent
CLAIM_FUTURE_S = 2.0  # a heartbeat this far ahead of the filesystem's clock is suspicious (set by hand)
STALE_AFTER_S = 900.0  # the same for a run.json without a claim file: its heartbeat is refreshed less often
_UMASK = os.umask(0)
os.umask(_UMASK)


class StoreError(OSError):
    """A run-store file could not be written (or read); the message is one line naming the file."""


class ClaimLost(RuntimeError):
    """Another process took this run's claim over (it judged this one dead): stop writing at once."""


class LogMismatch(RuntimeError):
    """A log holds fewer whole rows than the checkpoint it is resumed with expects."""


def _warn(message: str) -> None:
    print(f"overshoot-bench: warning: {message}", file=sys.stderr, flush=True)


def os_error_line(e: OSError, path: Path | str) -> str:
    """One line saying why writing ``path`` failed."""
    code = e.errno
    if code == errno.ENOSPC:
        return f"no space left on device writing {path}"
    if code == errno.EDQUOT:
        return f"disk quota exceeded writing {path}"
    if code == errno.EROFS:
        return f"read-only file system: cannot write {path}"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied writing {path}"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"cannot create {path}: {blocker} is a file, not a directory"
    return f"cannot write {path}: {e.strerror or e}"


def store_error(e: OSError, path: Path | str) -> StoreError:
    """``e`` as a StoreError with its one-line message (the errno kept)."""
    if isinstance(e, StoreError):
        return e
    out = StoreError(os_error_line(e, path))
    out.errno = e.errno
    return out


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (os.write may write fewer)."""
    view = memoryview(data).cast("B")
    while len(view):
        n = os.write(fd, view)
        view = view[n:]


class _FdFile(io.RawIOBase):
    """A write-only file object over a descriptor that keeps the first OSError of a write (torch.save turns
    it into a RuntimeError without the errno)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        try:
            _write_all(self.fd, b)
        except OSError as e:
            self.error = self.error or e
            raise
        return memoryview(b).nbytes


def makedirs(path: Path) -> None:
    """``mkdir -p path``; StoreError with one line when impossible (read-only, a file in the way)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise store_error(e, path) from None


def atomic_write(path: Path, write: Callable[[IO[Any]], object], mode: str = "w") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place: readers see the old
    file or the new one, never a part. The file gets the usual permissions (0666 less the umask). A failed
    write (disk full, read-only filesystem) removes the temporary file and raises StoreError."""
    path = Path(path)
    makedirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise store_error(e, path) from None
    raw = _FdFile(fd)
    try:
        if "b" in mode:
            buffered: IO[Any] = io.BufferedWriter(raw, buffer_size=1 << 20)  # type: ignore[arg-type]
        else:
            buffered = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", newline="")  # type: ignore[arg-type]
        with buffered as f:
            write(f)
            f.flush()
            os.fsync(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if raw.error is not None:
            raise store_error(raw.error, path) from None
        if isinstance(e, OSError):
            raise store_error(e, path) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part."""
    atomic_write(path, lambda f: f.write(text), "w")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch  # only checkpoints need it: reading and skipping runs does not

    atomic_write(path, lambda f: torch.save(obj, f), "wb")


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite number replaced by None (strict JSON has neither)."""
    if isinstance(obj, Mapping):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


def dumps_json(obj: Any) -> str:
    """Strict JSON (no NaN, no Infinity) of ``obj``, indented; non-JSON values as strings."""
    return json.dumps(finite_json(obj), indent=2, default=str, allow_nan=False) + "\n"


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (``.<name>.*.tmp``); returns them.
    Only the claim holder of the folder may call this (a live writer's temporary file would go too)."""
    gone = []
    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()
                    gone.append(p)
    return gone


def quarantine(path: Path, why: str) -> Path:
    """Move the broken file ``path`` aside (``<name>.corrupt-<UTC time>``), keeping it for inspection."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return aside
    except OSError as e:
        raise store_error(e, aside) from None
    return aside


def load_checkpoint_file(path: Path, required: Sequence[str] = ()) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None when there is none). An unreadable or incomplete one (empty, cut,
    not a checkpoint, missing ``required`` keys) is moved aside with a one-line warning and None returned."""
    path = Path(path)
    if not path.exists():
        return None
    import torch

    try:
        if zipfile.is_zipfile(path):  # torch's format: every record carries a CRC, checked here
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"its record {bad} fails its CRC check (damaged bytes)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a checkpoint")
        absent = [k for k in required if k not in state]
        if absent:
            raise ValueError(f"lacks {', '.join(absent)}")
    except Exception as e:  # torch.load raises EOFError, RuntimeError, UnpicklingError, zip errors...
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'empty or cut file'}"
        aside = quarantine(path, why)
        _warn(f"{path} is unreadable ({why}); moved it to {aside.name}; restarting from step 0")
        return None
    return state


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
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK)
    except FileExistsError:
        return None
    except OSError as e:
        raise store_error(e, f) from None
    try:
        _write_all(fd, json.dumps(content).encode())
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
            _warn(f"{f} was an empty directory, not a claim file; removed it")
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
        _warn(f"{folder} is held by {who}, which cannot be checked from here: watching its heartbeat for "
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
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK)
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
                _warn(f"took over {folder} from {who} (process gone); resuming it")
            else:
                _warn(
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


# -- naming ------------------------------------------------------------------------------------------


def run_path(out: Path | str, config: Mapping[str, Any] | RunConfig) -> Path:
    """Where the run of ``config`` lives: ``<out>/<task>/<method>/seed<seed>-<hash8>``."""
    d = config.to_dict() if isinstance(config, RunConfig) else config
    method = methods.label(str(d["optimizer"]), float(d.get("gamma") or 0.0))
    return Path(out) / str(d["task"]) / method / f"seed{d['seed']}-{config_hash(d)[:8]}"


def _format_rows(columns: Sequence[str], rows: Mapping[str, Sequence[Any]]) -> str:
    """CSV lines for a block of rows; floats keep every digit (``repr`` round-trips exactly)."""
    cols = [list(rows[c]) for c in columns]
    return "".join(",".join(map(str, cells)) + "\n" for cells in zip(*cols, strict=True))


def run_identity(run: RunConfig) -> dict[str, Any]:
    """Whose state a single run's checkpoint is: its config hash, seed and method (saved in it, checked when
    it is loaded)."""
    return {
        "config_hash": config_hash(run),
        "seed": run.seed,
        "method": methods.label(run.optimizer, run.gamma),
    }


def _describe_identity(identity: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in identity.items())


@dataclass
class Checkpoint:
    """A checkpoint file: a run's own, or a population's (``holders``: its members' writers). It is written
    atomically and only while every holder still holds its run's claim. With ``identity`` (whose state it
    is, e.g. ``run_identity``), the identity is saved in it and a checkpoint of another run, or one that
    names none, is moved aside with one line instead of being resumed."""

    path: Path
    holders: Sequence[RunWriter] = ()
    identity: Mapping[str, Any] | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def foreign(self, state: Mapping[str, Any]) -> str | None:
        """Why the checkpoint content ``state`` is not this one's to resume (None when it is)."""
        if self.identity is None:
            return None
        theirs = state.get("identity")
        if not isinstance(theirs, Mapping):
            return "it names no run (written before checkpoints recorded their run), so it may be another's"
        if dict(theirs) == dict(self.identity):
            return None
        return (
            f"it belongs to another run ({_describe_identity(theirs)}), "
            f"not this one ({_describe_identity(self.identity)})"
        )

    def usable(self) -> bool:
        """Whether a checkpoint exists and is this one's; a foreign one is moved aside with one line. Reads
        the file lazily (memory-mapped tensors); an unreadable one is left to ``load`` to report."""
        if not self.path.exists():
            return False
        if self.identity is None:
            return True
        import torch

        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # not a zip checkpoint, cut, ...: load() moves it aside with its reason
            return True
        why = self.foreign(state) if isinstance(state, Mapping) else None
        if why is not None:
            self.quarantine(why)
            return False
        return True

    def logs_differ(self, state: Mapping[str, Any]) -> str | None:
        """Why the holders' logs are not the ones the checkpoint ``state`` was saved with (None when they
        are): the last row each log had then must be the row it has now at that position (a log swapped in
        from another run, or cut and rewritten, is not)."""
        tails = state.get("log_tails")
        if self.identity is None or not self.holders or tails is None:
            return None
        diverged = list(state.get("diverged") or [None] * len(self.holders))
        rows = state.get("epoch_rows") or []
        if not isinstance(tails, list) or len(tails) != len(self.holders) or len(rows) != len(self.holders):
            return "its record of the logs does not fit these runs"
        for j, h in enumerate(self.holders):
            if j < len(diverged) and diverged[j] is not None:
                continue  # a diverged member keeps its partial logs as they are
            for f, n, tail in (
                (h.steps_file, int(state["step"]), tails[j][0]),
                (h.epochs_file, rows[j], tails[j][1]),
            ):
                if n and tail is not None and _line_at(f, n) != tail:
                    return f"{f} is not the log it was saved with (row {n} differs)"
        return None

    def load(self, required: Sequence[str] = ()) -> dict[str, Any] | None:
        """The checkpoint, or None (also when unreadable or foreign, or when the logs are not the ones it
        was saved with: it is then moved aside with a warning)."""
        state = load_checkpoint_file(self.path, required)
        why = None if state is None else self.foreign(state) or self.logs_differ(state)
        if why is not None:
            self.quarantine(why)
            return None
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the checkpoint atomically (a failed write keeps the previous one)."""
        for h in self.holders:
            h._check()  # a member taken over by another process: stop before writing anything
        makedirs(self.path.parent)
        content = dict(state)
        if self.identity is not None:
            content["identity"] = dict(self.identity)
            content["log_tails"] = [
                [_last_line(h.steps_file), _last_line(h.epochs_file)] for h in self.holders
            ]
        atomic_torch_save(content, self.path)

    def quarantine(self, why: str) -> None:
        """Move a checkpoint that cannot be used aside, with a one-line warning naming it."""
        if self.path.exists():
            aside = quarantine(self.path, why)
            _warn(f"{self.path}: {why}; moved it to {aside.name}; restarting from step 0")

    def drop(self, folder: bool = False) -> None:
        """Delete the checkpoint, and with ``folder`` its folder once empty (a population's)."""
        self.path.unlink(missing_ok=True)
        if folder:
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


def _last_line(path: Path) -> str | None:
    """The last whole line of a log (None when it has no row after its header, or does not exist)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 65536))
            lines = f.read().decode(errors="replace").split("\n")[:-1]
    except OSError:
        return None
    return lines[-1] if len(lines) >= 2 or (lines and size > 65536) else None


def _line_at(path: Path, n: int) -> str | None:
    """Row ``n`` (1 = the first after the header) of a log, None when it has fewer."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f):
                if i == n:
                    return line[:-1] if line.endswith("\n") else None
    except OSError:
        return None
    return None


def _cells_ok(cells: Sequence[str]) -> bool:
    """Whether a log row's cells read back as written: numbers ('nan' and 'inf' included), or a split name
    (epochs.csv's second column)."""
    for j, cell in enumerate(cells):
        if j == 1 and cell in ("val", "test"):
            continue
        try:
            float(cell)
        except ValueError:
            return False
        if cell != cell.strip() or "_" in cell:
            return False
    return True


@dataclass
class RunWriter:
    """Writes one run directory; the training loop's only way to touch the disk. With ``claim`` set, every
    write first checks that this process still holds the run."""

    path: Path
    step_columns: tuple[str, ...] = STEP_COLUMNS
    _info: dict[str, Any] = field(default_factory=dict)
    claim: Claim | None = None

    # the run's files: steps.csv, epochs.csv, checkpoint.pt, run.json
    steps_file: Path = field(init=False)
    epochs_file: Path = field(init=False)
    checkpoint_file: Path = field(init=False)
    info_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.steps_file = self.path / "steps.csv"
        self.epochs_file = self.path / "epochs.csv"
        self.checkpoint_file = self.path / "checkpoint.pt"
        self.info_file = self.path / "run.json"

    def _check(self) -> None:
        """The fencing check before every write: ClaimLost unless the claim file is still this writer's."""
        if self.claim is not None:
            self.claim.verify()

    def read_info(self) -> dict[str, Any]:
        """The current ``run.json`` (empty when the run has never started, or when the file is unreadable:
        a warning says so, and ``start`` moves it aside)."""
        try:
            return schema.read_info(self.info_file)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except schema.SchemaError as e:
            _warn(f"{self.info_file} {e.reason}; treating the run as never started")
            return {}
        except OSError as e:
            raise StoreError(f"cannot read {self.info_file}: {e.strerror or e}") from None

    def prepare(self) -> None:
        """Create the directory, delete temporary files a killed writer left, move a broken run.json aside
        (call with the claim held)."""
        makedirs(self.path)
        remove_stale_temps(self.path)
        if self.info_file.exists():
            try:
                schema.read_info(self.info_file)
            except schema.SchemaError as e:
                why = f"{self.info_file} {e.reason}"
                _warn(f"{why}; moved it to {quarantine(self.info_file, why).name}")
            except OSError:
                pass

    def write_config(self, config: Mapping[str, Any] | RunConfig) -> None:
        """Write ``config.yaml`` (the resolved config)."""
        self._check()
        d = config.to_dict() if isinstance(config, RunConfig) else dict(config)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(d, sort_keys=False))

    def start(
        self, config: Mapping[str, Any] | RunConfig, info: Mapping[str, Any], *, resume_rows: tuple[int, int]
    ) -> None:
        """Write the config and a ``running`` run.json; cut the logs to ``resume_rows`` (steps, epochs),
        dropping a partial last line. Raises LogMismatch when a log holds fewer whole rows than that."""
        self.prepare()
        self.write_config(config)
        self._truncate(self.steps_file, self.step_columns, resume_rows[0], indexed=True)
        self._truncate(self.epochs_file, EPOCH_COLUMNS, resume_rows[1])
        self._info = {**self.read_info(), **info, "status": "running"}
        self.write_info()

    def write_info(self, **updates: Any) -> None:
        """Merge ``updates`` into run.json and replace it atomically (strict JSON: NaN and inf as null)."""
        self._check()
        self._info.update(updates)
        atomic_write_text(self.info_file, dumps_json(self._info))

    @property
    def info(self) -> dict[str, Any]:
        """The run.json fields held in memory (what the next ``write_info`` or ``start`` writes)."""
        return self._info

    @info.setter
    def info(self, value: Mapping[str, Any]) -> None:
        self._info = dict(value)

    def append_steps(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Append a block of step rows (column name -> equal-length sequence)."""
        self._append(self.steps_file, self.step_columns, rows)

    def append_epochs(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Append a block of epoch rows."""
        self._append(self.epochs_file, EPOCH_COLUMNS, rows)

    @property
    def checkpoint(self) -> Checkpoint:
        """The run's own checkpoint (``checkpoint.pt`` in its directory)."""
        return Checkpoint(self.checkpoint_file, (self,))

    def drop_checkpoint(self) -> None:
        self.checkpoint_file.unlink(missing_ok=True)

    def _append(self, path: Path, columns: Sequence[str], rows: Mapping[str, Sequence[Any]]) -> None:
        """Append whole lines: a write that fails part-way is cut back, so the file never ends mid-line.
        The claim is checked after the file is opened: a process that takes the run over later replaces the
        log (``_truncate``) before writing it, so this append then lands in the replaced file."""
        data = _format_rows(columns, rows).encode()
        try:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                self._check()  # create nothing in a directory that is no longer this process's
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as e:
            raise store_error(e, path) from None
        try:
            self._check()
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise store_error(e, path) from None
        finally:
            os.close(fd)

    def _truncate(self, path: Path, columns: Sequence[str], keep: int, indexed: bool = False) -> None:
        """Rewrite ``path`` as its header and first ``keep`` whole rows (rows of ``indexed`` logs must count
        0, 1, ... in their first field; every cell must read as a number, or as a split name in epochs.csv: a
        damaged row is never carried into a resumed run)."""
        header = ",".join(columns) + "\n"
        lines: list[str] = []
        if keep and path.exists():
            try:
                text = path.read_text(errors="replace")
            except OSError as e:
                raise StoreError(f"cannot read {path}: {e.strerror or e}") from None
            whole = text.split("\n")[:-1]  # the part after the last newline is a partial line
            if not whole or whole[0] + "\n" != header:
                whole = []
            for i, line in enumerate(whole[1 : keep + 1]):
                cells = line.split(",")
                if len(cells) != len(columns) or (indexed and cells[0] != str(i)) or not _cells_ok(cells):
                    break
                lines.append(line + "\n")
        if len(lines) < keep:
            raise LogMismatch(f"{path} holds {len(lines)} whole rows but the checkpoint expects {keep}")
        self._check()
        atomic_write_text(path, header + "".join(lines))
