"""The gap between the two losses of a tuning study's held-out runs, per arm: for every method that takes
gradients away from the weights it is evaluated at (overshoot at gamma > 0, Schedule-Free's y vs x), the
loss at the gradient point minus the loss at the base weights over training (``figures.two_point_gap``).

    python -m scripts.research.two_point_gap /work/runs-D/optimizers_digits results/optimizers_digits

Writes ``two_point_gap_<arm>.png/.pdf`` into the output folder, one per arm of ``heldout.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from overshoot.analysis import figures
from overshoot.analysis.report.tables import build_report
from overshoot.analysis.results import scan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="the tuning study (its heldout.json and heldout/ runs)")
    ap.add_argument("out", type=Path, help="folder for the figures")
    a = ap.parse_args()
    held = json.loads((a.study / "heldout.json").read_text())
    arms: dict[str, list[Path]] = {}
    for r in held["runs"]:
        arms.setdefault(r["arm"], []).append(a.study / "heldout" / r["path"])
    for arm, paths in arms.items():
        report = build_report(scan(sorted(set(paths))))
        for p in figures.two_point_gap(report, a.out / f"two_point_gap_{arm}"):
            print(p)


if __name__ == "__main__":
    main()
