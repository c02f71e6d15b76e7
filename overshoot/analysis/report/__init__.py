"""``overshoot-bench-report``: savings tables, Table 1 and the paper's figures from a run store.

Usage: ``overshoot-bench-report [RUNS...] [--out DIR] [--format md,csv,tex,html] [--paper] [--reduction 95]
[--window 400] [--alpha 0.05] [--protocol ID[,ID]] [--no-figures]``.

Runs are read with :func:`overshoot.analysis.results.scan`; runs that are not completed, whose logs are cut or
do not parse, and older true duplicates (same config hash) are listed with the reason and left out. Every
saving comes from :func:`overshoot.analysis.savings.saving_summary` and
:func:`overshoot.analysis.savings.savings`, compared only within one protocol
(:func:`overshoot.analysis.results.protocol_id`) against the family baseline (CM or AdamW, else SGDO/AdamO at
gamma 0). Each task setting gets one section (the families' protocols side by side).

The package, one layer each: :mod:`~overshoot.analysis.report.style` (number and name formats),
:mod:`~overshoot.analysis.report.render` (the Table/Document model and the md, csv, tex and html renderers),
:mod:`~overshoot.analysis.report.model` (sections and the frames over the run table),
:mod:`~overshoot.analysis.report.tables` (the tables and :func:`build_report`) and
:mod:`~overshoot.analysis.report.cli` (the document and the command). The names below are imported on first
use, so the command parses its arguments (and answers ``--help``) before pandas is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from overshoot.analysis.report.cli import document, main, write_report
    from overshoot.analysis.report.model import (
        ReportError,
        Section,
        headline_frame,
        sections_of,
        table1_frame,
    )
    from overshoot.analysis.report.render import (
        Document,
        Figure,
        Part,
        Table,
        tex_label,
        to_html,
        to_latex,
        to_markdown,
    )
    from overshoot.analysis.report.style import format_mean_ci, interval_cell, signed
    from overshoot.analysis.report.tables import Report, build_report

# name -> the module of this package that defines it
_HOME = {
    "document": "cli",
    "main": "cli",
    "write_report": "cli",
    "ReportError": "model",
    "Section": "model",
    "headline_frame": "model",
    "sections_of": "model",
    "table1_frame": "model",
    "Document": "render",
    "Figure": "render",
    "Part": "render",
    "Table": "render",
    "tex_label": "render",
    "to_html": "render",
    "to_latex": "render",
    "to_markdown": "render",
    "format_mean_ci": "style",
    "interval_cell": "style",
    "signed": "style",
    "Report": "tables",
    "build_report": "tables",
}

__all__ = [
    "Document",
    "Figure",
    "Part",
    "Report",
    "ReportError",
    "Section",
    "Table",
    "build_report",
    "document",
    "format_mean_ci",
    "headline_frame",
    "interval_cell",
    "main",
    "sections_of",
    "signed",
    "table1_frame",
    "tex_label",
    "to_html",
    "to_latex",
    "to_markdown",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module on first use."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
