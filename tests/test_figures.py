"""The report's figures are paste-ready: TrueType (Type 42) fonts in every PDF, one-column or text-width
sizes, and the smoothing window, the threshold and the crossings drawn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_store import require_tool
from test_report import METHODS, write_run

from overshoot.analysis import figures as F
from overshoot.analysis import report as R
from overshoot.analysis import results

DPI = 200  # savefig.dpi of overshoot.analysis.figures


@pytest.fixture(scope="module")
def figs(tmp_path_factory: pytest.TempPathFactory) -> tuple[R.Report, Path]:
    store = tmp_path_factory.mktemp("fig-runs")
    for task in ("digits", "housing"):
        for opt, gamma, tau in METHODS:
            for seed in (10, 20):
                write_run(store, task, opt, gamma, tau, seed)
    rep = R.build_report(results.scan([store]), 0.95, 100)
    out = tmp_path_factory.mktemp("figs")
    F.write_all(rep, out)
    return rep, out


def test_every_pdf_embeds_truetype_fonts_not_type3(figs: tuple[R.Report, Path]) -> None:
    _, out = figs
    pdfs = sorted(out.glob("*.pdf"))
    assert {p.stem for p in pdfs} == {
        "loss_grid",
        "saving_vs_gamma",
        "gamma_mu_plane",
        "distance_vs_gamma",
        "two_point_gap",  # the fixture's AdamO runs take gradients away from their base weights
    }
    for pdf in pdfs:
        raw = pdf.read_bytes()
        assert b"/Type3" not in raw and b"/Subtype /Type3" not in raw, pdf.name
        assert b"/FontFile2" in raw, f"{pdf.name}: no embedded TrueType font program"
    if shutil.which("pdffonts") or os.environ.get("OVERSHOOT_REQUIRE_TOOLS") == "1":
        pdffonts = require_tool("pdffonts", "poppler-utils")
        for pdf in pdfs:
            table = subprocess.run([pdffonts, str(pdf)], capture_output=True, text=True, check=True).stdout
            rows = table.splitlines()[2:]
            assert rows and all(re.search(r"TrueType", r) and " yes " in r for r in rows), table


def test_figures_are_one_column_or_text_width(figs: tuple[R.Report, Path]) -> None:
    _, out = figs
    width = {p.stem: Image.open(p).size[0] / DPI for p in out.glob("*.png")}
    assert width["gamma_mu_plane"] <= F.COLUMN_IN + 0.05
    for stem in ("loss_grid", "saving_vs_gamma", "distance_vs_gamma"):  # two task sections: text width
        assert F.TEXT_IN - 0.5 <= width[stem] <= F.TEXT_IN + 0.05, (stem, width[stem])


def test_loss_grid_draws_window_threshold_and_crossings(figs: tuple[R.Report, Path], tmp_path: Path) -> None:
    rep, _ = figs
    import matplotlib.pyplot as plt

    captured = {}
    real_save = F.save

    def keep(fig, stem):  # type: ignore[no-untyped-def]
        captured["fig"] = fig
        return real_save(fig, stem)

    F.save = keep  # type: ignore[assignment]
    try:
        F.loss_grid(rep, tmp_path / "grid")
    finally:
        F.save = real_save  # type: ignore[assignment]
    fig = captured["fig"]
    axes = [a for a in fig.axes if a.get_visible()]
    train = [a for a in axes if a.get_title().endswith("training loss")]
    assert len(train) == 4 and {a.get_title().split(",")[0] for a in train} == {"digits", "MLP-CA"}
    sec = rep.sections[0]
    for ax in train:
        texts = [t.get_text() for t in ax.texts]
        assert any(
            str(sec.windows["sgd"]) in t and "step" in t for t in texts
        )  # the smoothing window is shown
        ys = [line.get_ydata() for line in ax.get_lines()]
        flat = [y for y in ys if len(y) == 2 and y[0] == y[1]]  # axhline: the threshold
        ticks = [line for line in ax.get_lines() if line.get_marker() == "|"]  # first crossings
        assert flat and len(ticks) >= 2
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "seed min–max" in legend and any("threshold" in t for t in legend)
    assert all(leg._ncols <= F.MAX_LEGEND_COLUMNS for leg in fig.legends)
    plt.close(fig)


def test_baseline_markers_never_coincide(figs: tuple[R.Report, Path]) -> None:
    rep, _ = figs
    assert F._dodge("sgd", 7.0) < 0 < F._dodge("adam", 7.0)
    best = F.best_gammas(rep)
    assert set(best["family"]) == {"sgd", "adam"} and best["best_gamma"].notna().all()
