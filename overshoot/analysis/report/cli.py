"""``overshoot-bench-report``: the report of a run store as a document (headline first, then protocol and
provenance, Table 1, the savings per section, the savings vs gamma, the figures and the runs left out),
written as Markdown, CSV, LaTeX and HTML, and its summary on the terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from overshoot.analysis.choices import FORMATS, WINDOW_FRACTION

if TYPE_CHECKING:
    from overshoot.analysis.report.render import Document, Figure, Part
    from overshoot.analysis.report.tables import Report

# The command line is parsed before pandas, numpy and the report's modules are imported (help and bad
# arguments answer at once): the formats and the window's bound come from the light choices module.


def notes(report: Report) -> list[str]:
    """What a reader must know before trusting the numbers: shrunk windows, missing baselines, several
    protocols of one task, runs of unequal length."""
    import pandas as pd

    from overshoot.analysis.report.style import family_label, method_label
    from overshoot.analysis.results import task_label
    from overshoot.config import methods

    out = []
    for sec in report.sections:
        for family in sec.families:
            note = sec.window_note(family, report.window)
            if note:
                out.append(f"{sec.label}, {family_label(family)} family: {note}.")
        lengths = sorted({r.steps for r in sec.records})
        if len(lengths) > 1:
            out.append(
                f"{sec.label}: runs differ in length ({', '.join(f'{n:,}' for n in lengths)} steps): the "
                "paper-style seed-mean curves are cut to the shortest run of each method."
            )
        for family in sec.families:
            base = sec.baseline(family)
            fam = family_label(family)
            f = methods.FAMILIES.get(family)
            if f is None:
                out.append(f"{sec.label}: family {family} has no known baseline.")
            elif base is None:
                out.append(
                    f"{sec.label}: the {fam} family has no baseline run "
                    f"({methods.display_label(f.baseline, 0)} or {methods.display_label(f.overshoot, 0)}) in "
                    f"protocol {sec.protocols[family]}: no savings for it (add optimizer={f.baseline} runs)."
                )
            elif base != f.baseline:
                out.append(
                    f"{sec.label}: {method_label(base, base)} is the {fam} family's baseline "
                    f"(no {methods.display_label(f.baseline, 0)} run)."
                )
    tasks = pd.Series([s.task for s in report.sections], dtype=object).value_counts()
    for task, n in tasks.items():
        if n > 1:
            out.append(
                f"{task_label(str(task))} has {n} sections (task settings or protocols), compared only "
                "within each (pick one with --protocol ID)."
            )
    if report.cross_task is not None:
        out += report.cross_task.notes
    if len(report.left_out):
        n = len(report.left_out)
        out.append(f"{n:,} run{'s' * (n != 1)} left out: listed with the reason under 'Runs left out'.")
    return out


def document(
    report: Report,
    figures: Sequence[Figure] = (),
    interactive: Sequence[Part] = (),
    scripts: Sequence[str] = (),
) -> Document:
    """The report as a document: the honest headline first, protocol and provenance (collapsible in HTML)
    next, then Table 1, the savings of each section, the savings vs gamma, the figures, the ``interactive``
    parts (HTML only; ``scripts`` the JavaScript files they load), the runs left out."""
    from overshoot.analysis.report.render import Document, Part
    from overshoot.analysis.report.style import family_label

    tasks = ", ".join(s.label for s in report.sections)
    n_sec = len(report.sections)
    doc = Document(
        f"overshoot-bench report: {tasks}",
        intro=[
            f"{len(report.records):,} completed runs used, {len(report.left_out):,} left out; {n_sec} task "
            f"section{'s' if n_sec != 1 else ''}. {report.provenance}."
        ],
        warnings=notes(report),
        key=report.key,
        scripts=list(scripts),
    )
    head = Part("Headline")
    if report.headline is not None:
        head.tables.append(report.headline)
    else:
        head.paragraphs.append("No saving: no family has both its baseline and another method here.")
    if report.paper_mean is not None:
        head.tables.append(report.paper_mean)
    doc.parts.append(head)
    doc.parts.append(
        Part(
            "Protocol and provenance",
            paragraphs=[
                "Runs are compared only within one protocol: the same config apart from seed and method."
            ],
            tables=[report.protocol, report.provenance_table],
            collapsed=True,
        )
    )
    if report.table1 is not None:
        doc.parts.append(Part("Table 1: best test metric", tables=[report.table1]))
    for sec in report.sections:
        ts = report.section_tables.get(sec.key, [])
        if ts:
            protos = ", ".join(f"{family_label(f)} {sec.protocols[f]}" for f in sec.families)
            doc.parts.append(Part(f"{sec.label}: step savings (protocol {protos})", tables=ts))
    if report.vs_gamma:
        doc.parts.append(Part("Step savings vs γ", tables=report.vs_gamma))
    profiles = [f for f in figures if f.png.stem == PROFILES]
    figures = [f for f in figures if f.png.stem != PROFILES]
    if report.cross_task is not None:
        doc.parts.append(Part("Across tasks", tables=report.cross_tables, figures=profiles))
    if figures:
        doc.parts.append(Part("Figures", figures=list(figures)))
    doc.parts += interactive
    left = Part("Runs left out")
    if report.excluded is not None:
        left.tables.append(report.excluded)
    else:
        left.paragraphs.append("None.")
    doc.parts.append(left)
    return doc


PROFILES = "profiles"  # the cross-task figure's file name


def write_report(
    report: Report,
    out: Path,
    formats: Sequence[str],
    figures: bool = True,
    js_dir: Path | None = None,
    interactive: bool = True,
) -> list[Path]:
    """Every output file of ``report`` under ``out``: the tables, the figures, report.md and report.html,
    and the run table as runs.csv and runs.parquet; plotly's JavaScript in ``js_dir`` (default
    ``out/report_files``)."""
    from overshoot.analysis import exports
    from overshoot.analysis import figures as F
    from overshoot.analysis.report.crosstask import figure_caption, profile_figure
    from overshoot.analysis.report.interactive import JS_REL, interactive_parts, script_src
    from overshoot.analysis.report.render import Figure, write_document

    written: list[Path] = exports.write_run_table(report.scan.table, out)
    figs: list[Figure] = []
    if figures:
        written += F.write_all(report, out / "figures")
        caps = F.captions(report)
        if report.cross_task is not None:
            written += profile_figure(report.cross_task, out / "figures" / PROFILES)
            caps[PROFILES] = figure_caption(report.cross_task)
        figs = [
            Figure(p, p.relative_to(out).as_posix(), caps.get(p.stem, p.stem))
            for p in written
            if p.suffix == ".png"
        ]
    parts: list[Part] = []
    js = (js_dir / Path(JS_REL).name) if js_dir is not None else out / JS_REL
    if "html" in formats and interactive:
        parts = interactive_parts(report, js)
        if parts:
            written.append(js)
    scripts = [script_src(out, js)] if parts else []
    return write_document(document(report, figs, parts, scripts), out, formats, written)


def terminal_summary(report: Report, out: Path, n_files: int) -> str:
    """What the terminal shows: the headline first, the protocols in brief, the notes, where files went."""
    from overshoot.analysis.report.render import to_markdown

    lines = []
    if report.headline is not None:
        lines += [report.headline.caption + ":", "", to_markdown(report.headline)]
    if report.paper_mean is not None:
        lines += [report.paper_mean.caption + ":", "", to_markdown(report.paper_mean)]
    lines += [
        f"{len(report.records):,} completed runs used, {len(report.left_out):,} left out; "
        f"{report.provenance}.",
        "",
        "Protocols:",
    ]
    for _, row in report.protocol.data.iterrows():
        lines.append(
            f"  {row['Task']}, {row['Family']} family, protocol {row['Protocol']}: "
            f"steps trained {row['Steps trained']}, "
            f"epochs {row['Epochs completed']}, seeds {row['Seeds']}, window {row['Window']}"
        )
    n = notes(report)
    if n:
        lines += ["", *n]
    opened = [f for f in ("report.html", "report.md") if (out / f).exists()]
    lines += ["", f"Wrote {n_files} files to {out}/" + (f" (open {' or '.join(opened)})" if opened else "")]
    return "\n".join(lines)


class _UsageError(ValueError):
    """A command line the report cannot run: an argument argparse rejects or a value out of range."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = _Parser(
        prog="overshoot-bench-report",
        description="Savings tables, Table 1 and figures of the paper from an overshoot-bench run store.",
    )
    p.add_argument("runs", nargs="*", default=["runs"], help="run store directories (default: runs)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: <first RUNS>/report)")
    p.add_argument("--format", default="md,csv,tex,html", help="comma-separated subset of md,csv,tex,html")
    p.add_argument("--paper", action="store_true", help="add the paper's 7-task mean beside this report's")
    p.add_argument("--reduction", type=float, default=95.0, help="loss reduction in percent (default 95)")
    p.add_argument(
        "--window",
        type=int,
        default=400,
        help="trailing-mean window in steps (default 400, the paper's; "
        f"at most 1/{WINDOW_FRACTION} of a comparison's runs)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the t-tests")
    p.add_argument("--protocol", default="", help="report only these protocol ids (comma-separated prefixes)")
    p.add_argument("--no-figures", action="store_true", help="write only the tables")
    p.add_argument(
        "--parquet",
        action="store_true",
        help="also export the usable runs' logs as steps.parquet and epochs.parquet beside runs.parquet",
    )
    p.add_argument(
        "--js-dir",
        type=Path,
        default=None,
        help="write plotly's JavaScript here, once, for report.html to load by a relative path (default: "
        "OUT/report_files; reports side by side can share one copy, e.g. --js-dir results/report_files)",
    )
    p.add_argument(
        "--js-only",
        action="store_true",
        help="only write plotly's JavaScript into --js-dir and exit (for reports whose bundle is not beside "
        "them, e.g. the committed ones: --js-only --js-dir results/report_files)",
    )
    p.add_argument(
        "--no-interactive",
        action="store_true",
        help="report.html without the plotly curves and run browser (no JavaScript bundle; a smaller page)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="compare two stores A B: savings, steps and best metrics per task, protocol and method in both, "
        "their difference B - A with a Welch interval (default --out: <A>/compare)",
    )
    a = p.parse_args(argv)
    a.formats = [f.strip() for f in a.format.split(",") if f.strip()]
    bad = [f for f in a.formats if f not in FORMATS]
    if bad or not a.formats:
        raise _UsageError(
            f"unknown format {','.join(bad) or a.format!r}: "
            f"use a comma-separated subset of {','.join(FORMATS)}"
        )
    if not 0 < a.reduction <= 100:
        raise _UsageError(
            f"--reduction {a.reduction} is not a percentage in (0, 100]: pass e.g. --reduction 95"
        )
    if a.window < 1:
        raise _UsageError(f"--window {a.window} must be a positive number of steps")
    if not 0 < a.alpha < 1:
        raise _UsageError(f"--alpha {a.alpha} must lie in (0, 1)")
    if a.js_only and a.js_dir is None:
        raise _UsageError("--js-only writes plotly's JavaScript into --js-dir: pass --js-dir DIR")
    a.protocols = [x.strip() for x in a.protocol.split(",") if x.strip()]
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 on bad input, with one line on stderr)."""
    try:
        a = _parse(argv)
    except _UsageError as e:
        return _bad_input(e)
    if a.js_only:
        from overshoot.analysis.report.interactive import JS_REL, write_plotly_js

        a.js_dir.mkdir(parents=True, exist_ok=True)
        print(write_plotly_js(a.js_dir / Path(JS_REL).name))
        return 0
    from overshoot.analysis import exports
    from overshoot.analysis.report.compare import compare_command
    from overshoot.analysis.report.model import ReportError
    from overshoot.analysis.report.tables import build_report
    from overshoot.analysis.results import scan

    try:
        if a.compare:
            text, _ = compare_command(
                a.runs, a.out, a.formats, a.reduction / 100, a.window, a.alpha, a.protocols
            )
            print(text)
            return 0
        sc = scan(a.runs)
        if sc.table.empty:
            raise ReportError(f"no runs found under {' '.join(map(str, a.runs))}: pass a run store directory")
        report = build_report(
            sc, a.reduction / 100, a.window, a.alpha, a.paper, a.protocols, [Path(r) for r in a.runs]
        )
        out = a.out if a.out is not None else Path(a.runs[0]) / "report"
        written = write_report(report, out, a.formats, not a.no_figures, a.js_dir, not a.no_interactive)
        if a.parquet:
            written += [p for p in exports.export_parquet(sc, out) if p not in written]
    except (ReportError, OSError, ValueError) as e:
        return _bad_input(e)
    print(terminal_summary(report, out, len(written)))
    return 0


def _bad_input(e: Exception) -> int:
    """Unusable input (paths, arguments): one line on stderr, no traceback; the exit status 2."""
    print("overshoot-bench-report: " + " ".join(str(e).split()), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
