"""The data cache: where decoded datasets and checksums are kept, and a task's prepared arrays.

A task whose data is parsed, split and normalised from a source file (digits, housing) keeps the result as
one ``.npz`` under ``cache_dir()/arrays``, named by a checksum of the source file's bytes, the options that
shape the arrays and the versions of the code that made them; the next build with the same key reads that
file instead of parsing the source. The file is written atomically; a damaged or unreadable one is rebuilt,
an unwritable cache only costs the parse next time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Collection, Mapping
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np

from overshoot.common.files import atomic_write

# Bumped when what a task stores under its key changes (a new array, another normalisation).
FORMAT = 1

Arrays = dict[str, np.ndarray]


def cache_dir() -> Path:
    """Where decoded datasets are cached: $OVERSHOOT_CACHE, else ~/.cache/overshoot-bench."""
    env = os.environ.get("OVERSHOOT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "overshoot-bench"


def file_digest(path: Path) -> str:
    """The sha256 of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_file(package: str, *parts: str) -> Path | None:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def version(distribution: str) -> str:
    """The installed version of ``distribution`` ('' when it is not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def array_path(name: str, key: Mapping[str, Any]) -> Path:
    """The cache file of task ``name``'s arrays for ``key`` (JSON-able: source digest, options, versions)."""
    text = json.dumps({"format": FORMAT, **key}, sort_keys=True, default=str)
    return cache_dir() / "arrays" / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz"


def read_arrays(path: Path) -> Arrays | None:
    """The arrays stored in ``path``; None when it is absent or damaged (a bad zip, a bad CRC, a cut file)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def cached_arrays(
    name: str, key: Mapping[str, Any] | None, needs: Collection[str], build: Callable[[], Arrays]
) -> Arrays:
    """``build()``'s arrays, read from the cache when an earlier build with the same ``key`` stored them.

    ``key`` None (its source cannot be checksummed) builds without the cache. A cache file that lacks one
    of the arrays in ``needs``, or cannot be read, is rebuilt.
    """
    if key is None:
        return build()
    path = array_path(name, key)
    got = read_arrays(path)
    if got is not None and set(needs) <= set(got):
        return got
    arrays = build()
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy types the keywords as its own options
    with contextlib.suppress(OSError):  # StoreError is an OSError: a read-only or full cache
        atomic_write(path, lambda f: f.write(buf.getvalue()), "wb")
    return arrays
