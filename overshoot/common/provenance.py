"""What produced a number: the code's revision, the library versions and the device, as run.json records
them (and the benchmarks in scripts/bench/ write beside their results)."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=1)
def git_rev() -> str | None:
    """The checkout's revision when this process first asks (the CLI asks at start), ``-dirty`` if modified;
    None outside a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("-dirty" if dirty else "")) or None


def versions() -> dict[str, str]:
    """Python's, overshoot's and torch's versions, and those of numpy, hydra, transformers and peft when this
    process has imported them."""
    import torch

    out = {
        "python": platform.python_version(),
        "overshoot": _own_version(),
        "torch": torch.__version__,
    }
    for mod in ("numpy", "hydra", "transformers", "peft"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def _own_version() -> str:
    """The installed distribution's version (pyproject.toml's); ``?`` for a checkout that is not installed."""
    try:
        return importlib.metadata.version("overshoot-bench")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def device_name(device: torch.device) -> str:
    """``NVIDIA H100 80GB HBM3 (cuda:0)`` or ``cpu (x86_64)``."""
    if device.type == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"cpu ({platform.processor() or platform.machine()})"
