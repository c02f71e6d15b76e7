#!/usr/bin/env python
"""Regenerate every table and figure of the paper from a run store.

    python scripts/make_paper_figures.py RUNS [RUNS ...] --out DIR [--window 400] [--reduction 95]

Writes the protocol and provenance tables, Table 1, the savings tables (paper-style and per seed), savings vs
gamma and the headline beside the paper's numbers as Markdown, CSV and LaTeX, report.md and the
self-contained report.html, and figures 1 (loss grid), 2 (average weighted distance; needs runs made with
log.distance=true), 3 (gamma-mu plane) and the saving-vs-gamma plot as PNG and PDF under DIR/figures. Same
as ``overshoot-bench-report RUNS --out DIR --paper``.
"""

from __future__ import annotations

import argparse
import sys

from overshoot.report import main as report_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run store directories")
    p.add_argument("--out", required=True, help="output directory for tables and figures/")
    p.add_argument("--window", default="400", help="trailing-mean window in steps (paper: 400)")
    p.add_argument("--protocol", default="", help="report only these protocol ids (comma-separated)")
    p.add_argument("--reduction", default="95", help="loss reduction in percent (paper: 95)")
    a = p.parse_args(argv)
    args = [*a.runs, "--out", a.out, "--paper", "--format", "md,csv,tex,html"]
    args += ["--window", a.window, "--reduction", a.reduction]
    return report_main([*args, "--protocol", a.protocol] if a.protocol else args)


if __name__ == "__main__":
    sys.exit(main())
