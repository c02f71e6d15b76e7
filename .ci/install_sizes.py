"""How much each part of an install weighs: the core dependencies, torch, each extra (distributions, MB).

    python .ci/install_sizes.py          # in a venv with every extra installed (pip install -e ".[dev]")

Sizes are the installed files of each distribution and of everything it requires, as found in the running
environment; an extra counts only what the core does not already bring.
"""

from __future__ import annotations

import contextlib
import os
import sys
from importlib import metadata as md

from packaging.requirements import Requirement
from wheel_roundtrip import closure  # beside this file: python puts a script's own folder on the path


def megabytes(dists: dict[str, md.Distribution]) -> float:
    total = 0
    for d in dists.values():
        for f in d.files or []:
            with contextlib.suppress(OSError):
                total += os.path.getsize(str(d.locate_file(f)))
    return total / 1e6


def main() -> None:
    declared = [Requirement(r) for r in md.requires("overshoot-bench") or []]
    core = closure([str(r) for r in declared if r.marker is None])
    torch = closure(["torch", "torchvision"])
    rows = [("torch + torchvision (as installed here)", torch)]
    rows.append(("core besides torch", {k: v for k, v in core.items() if k not in torch}))
    for extra in ("text", "slurm", "loggers"):
        reqs = [
            f"{r.name}{r.specifier}" for r in declared if r.marker and r.marker.evaluate({"extra": extra})
        ]
        rows.append((f"[{extra}] beyond the core", {k: v for k, v in closure(reqs).items() if k not in core}))
    print(f"python {sys.version.split()[0]}, torch {md.version('torch')}")
    print("| part | distributions | MB installed |\n|---|---:|---:|")
    for name, dists in rows:
        print(f"| {name} | {len(dists)} | {megabytes(dists):,.0f} |")


if __name__ == "__main__":
    main()
