"""Files written whole or not at all: atomic replacement, whole-line appends, one-line error messages, and
broken files moved aside (the run store, the data cache and the reports all write through these)."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import json
import math
import numbers
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

UMASK = os.umask(0)
os.umask(UMASK)


class StoreError(OSError):
    """A run-store file could not be written (or read); the message is one line naming the file."""


def warn(message: str) -> None:
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


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
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
            write_all(self.fd, b)
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
        os.chmod(tmp, 0o666 & ~UMASK)
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
