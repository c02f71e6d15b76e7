"""Every LaTeX table the report writes compiles with pdflatex in a two-column paper and fits its width:
a report of the CLI-built store, and Table 1 of seven tasks (the paper's) from a synthetic store."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from report_store import cli_store, require_tool
from test_report import METHODS, write_run

from overshoot.analysis import report as R
from overshoot.analysis import results

# A two-column page with a 6.9 in text width (columns of about 3.35 in), as IEEE/ACM templates have.
PREAMBLE = r"""\documentclass[twocolumn,10pt]{article}
\usepackage[paperwidth=8.5in,paperheight=11in,hmargin=0.8in,vmargin=0.8in,columnsep=0.2in]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
\begin{document}
"""
PAPER_TASKS = ("housing", "vae_fmnist", "vae_mnist", "fmnist", "cifar", "cifar100", "gpt2_qqp")


def compile_tex(files: list[Path], work: Path) -> str:
    """pdflatex on a document that inputs ``files``; the log (asserts success)."""
    pdflatex = require_tool("pdflatex", "texlive-latex-base texlive-latex-recommended")
    body = "".join(rf"\input{{{f.resolve()}}}" + "\n\\clearpage\n" for f in files)
    (work / "doc.tex").write_text(PREAMBLE + body + "\\end{document}\n")
    proc = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (work / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (work / "doc.pdf").stat().st_size > 1000
    return log


def _check_fits(log: str) -> None:
    overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)
    assert not [w for w in overfull if float(w) > 1.0], overfull
    assert "Float too large" not in log


def test_every_generated_table_compiles_and_fits(tmp_path_factory: pytest.TempPathFactory) -> None:
    store = cli_store(tmp_path_factory)
    out = tmp_path_factory.mktemp("tex-report")
    assert R.main([str(store), "--out", str(out), "--window", "50", "--format", "tex", "--no-figures"]) == 0
    files = sorted(out.glob("*.tex"))
    assert {f.stem for f in files} >= {
        "table1",
        "protocol",
        "provenance",
        "savings_paper",
        "savings_per_seed",
    }
    for f in files:
        text = f.read_text()
        assert text.isascii(), f"{f.name} holds non-ASCII characters"
        assert "Table 1:" not in text and r"\caption{" in text
    log = compile_tex(files, out)
    _check_fits(log)


def test_table1_of_the_paper_seven_tasks_fits_the_text_width(tmp_path: Path) -> None:
    store = tmp_path / "runs"
    for task in PAPER_TASKS:
        for opt, gamma, tau in METHODS:
            for seed in (10, 20, 30):
                kind = "housing" if task.startswith(("housing", "vae")) else "digits"  # loss or accuracy
                write_run(store, kind, opt, gamma, tau, seed, task_name=task)
    rep = R.build_report(results.scan([store]), 0.95, 100)
    t1 = next(t for t in rep.tables if t.name == "table1")
    assert list(t1.display.columns) == ["Method", *(results.task_label(t) for t in PAPER_TASKS)]
    f = tmp_path / "table1.tex"
    f.write_text(R.to_latex(t1, R.tex_label(t1, rep.key)))
    assert r"\begin{table*}" in f.read_text()
    _check_fits(compile_tex([f], tmp_path))
