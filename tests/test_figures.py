"""The report's figures are paste-ready: TrueType (Type 42) fonts in every PDF, one-column or text-width
sizes, the smoothing window, the threshold and the crossings drawn (from the savings path), log axes in
plain decimals, legends off the data, axes limited to the data."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from report_store import require_tool
from test_report import METHODS, write_run

from overshoot.analysis import figstyle, results, threshold_panels, tuning
from overshoot.analysis import figures as F
from overshoot.analysis import report as R
from overshoot.config import methods

DPI = 200  # savefig.dpi of overshoot.analysis.figures


DRAWN: dict[str, Figure] = {}  # every figure the fixture wrote, by stem, kept open for inspection


@pytest.fixture(scope="module")
def figs(tmp_path_factory: pytest.TempPathFactory) -> tuple[R.Report, Path]:
    store = tmp_path_factory.mktemp("fig-runs")
    for task in ("digits", "housing"):
        for opt, gamma, tau in METHODS:
            for seed in (10, 20):
                write_run(store, task, opt, gamma, tau, seed)
    rep = R.build_report(results.scan([store]), 0.95, 100)
    out = tmp_path_factory.mktemp("figs")
    real_save = F.save

    def keep(fig: Figure, stem: Path) -> list[Path]:
        DRAWN[stem.name] = fig
        paths = real_save(fig, stem)
        FigureCanvasAgg(fig)  # closing detached the canvas; a new one draws the figure as saved
        return paths

    mp = pytest.MonkeyPatch()
    for module in (F, figstyle, threshold_panels):  # each module's own name of the writer
        mp.setattr(module, "save", keep)
    try:
        F.write_all(rep, out)
        tuning.sensitivity_figure(*_study(), out / "sensitivity")
    finally:
        mp.undo()
    return rep, out


def _study() -> tuple[pd.DataFrame, dict[str, object]]:
    """A tuning study's trials (mean best validation accuracy per setting) and selection, two families."""
    rows = []
    lrs = [0.001, 0.004, 0.016, 0.064, 0.256]
    for opt, gamma, family, best in [
        ("sgd", 0.0, "sgd", 2),
        ("nesterov", 0.0, "sgd", 2),
        ("sgd_os", 3.0, "sgd", 1),
        ("sgd_os", 5.0, "sgd", 1),
        ("sgd_os", 7.0, "sgd", 0),
        ("adam", 0.0, "adam", 1),
        ("adam_os", 3.0, "adam", 0),
    ]:
        for i, lr in enumerate(lrs):
            score = 0.97 - 0.01 * abs(i - best) - 0.001 * gamma if i < 4 else math.nan
            rows.append({"optimizer": opt, "gamma": gamma, "family": family, "lr": lr, "score": score})
    table = pd.DataFrame(rows)
    sel = {
        "task": "housing",
        "metric": "accuracy",
        "axes": {"lr": lrs},
        "untuned_lr": {"sgd": [0.016], "adam": [0.001]},
        "methods": {
            methods.label(o, g): {"selected": {"lr": lrs[b]}}
            for o, g, b in [
                ("sgd", 0, 2),
                ("nesterov", 0, 2),
                ("sgd_os", 3, 1),
                ("sgd_os", 5, 1),
                ("sgd_os", 7, 0),
                ("adam", 0, 1),
                ("adam_os", 3, 0),
            ]
        },
    }
    return table, sel


def test_every_pdf_embeds_truetype_fonts_not_type3(figs: tuple[R.Report, Path]) -> None:
    _, out = figs
    pdfs = sorted(out.glob("*.pdf"))
    assert {p.stem for p in pdfs} == {
        "threshold_panels",
        "sensitivity",
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
    for stem in ("threshold_panels", "loss_grid", "saving_vs_gamma", "distance_vs_gamma", "sensitivity"):
        assert F.TEXT_IN - 0.5 <= width[stem] <= F.TEXT_IN + 0.05, (stem, width[stem])


def _crossing_steps(ax: object) -> dict[str, float]:
    """The crossings an axes marks: method -> step, from the markers' ids."""
    return {
        str(line.get_gid()).split(":", 1)[1]: float(line.get_xdata()[0])
        for line in ax.get_lines()  # type: ignore[attr-defined]
        if str(line.get_gid()).startswith("crossing:")
    }


def _savings_path_crossings(rep: R.Report, title: str) -> tuple[float, dict[str, float]]:
    """The threshold and the first crossings (real steps) of the section and family a panel's title names,
    straight from the report's savings rows (savings.saving_summary)."""
    label, fam = title.split(",")[0], title.split(", ")[1].split(" family")[0]
    s = rep.savings[(rep.savings["label"] == label) & (rep.savings["family"].map(lambda f: fam.lower() == f))]
    out = {str(s["baseline"].iloc[0]): float(s["paper_k_baseline"].iloc[0] + s["window"].iloc[0])}
    for _, row in s.iterrows():
        if not pd.isna(row["paper_k_method"]):
            out[str(row["method"])] = float(row["paper_k_method"] + row["window"])
    return float(s["paper_threshold"].iloc[0]), out


def test_loss_grid_starts_at_the_first_window_and_marks_the_savings_crossings(
    figs: tuple[R.Report, Path],
) -> None:
    rep, _ = figs
    fig = DRAWN["loss_grid"]
    train = [a for a in fig.axes if a.get_title().endswith("training loss")]
    assert len(train) == 4 and {a.get_title().split(",")[0] for a in train} == {"digits", "MLP-CA"}
    w = rep.sections[0].windows["sgd"]
    for ax in train:
        assert f"{w:,}-step" in ax.get_ylabel() and ax.yaxis.label.get_fontsize() >= 7  # the window, legible
        assert ax.get_xlim()[0] == w  # no empty first window: the first smoothed value ends it
        assert not ax.patches  # nor a shaded span
        thr, expected = _savings_path_crossings(rep, ax.get_title())
        assert _crossing_steps(ax) == expected and len(expected) >= 2
        for line in ax.get_lines():
            if str(line.get_gid()).startswith("crossing:"):
                assert line.get_ydata()[0] == thr
                assert line.get_markerfacecolor() == "none"  # a ring: the crossing shows through it
        ys = [line.get_ydata() for line in ax.get_lines()]
        assert any(len(y) == 2 and y[0] == y[1] == thr for y in ys)  # axhline: the threshold
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "seed min–max" in legend and any("threshold" in t for t in legend)
    assert all(leg._ncols <= F.MAX_LEGEND_COLUMNS for leg in fig.legends)
    for ax in DRAWN["two_point_gap"].axes:  # the same curves of another quantity: no empty window either
        assert ax.get_xlim()[0] == w and f"{w:,}-step" in ax.get_ylabel()


def test_threshold_panel_zooms_on_the_savings_paths_crossings_and_strips_its_seeds(
    figs: tuple[R.Report, Path],
) -> None:
    rep, _ = figs
    fig = DRAWN["threshold_panels"]
    zooms = [a for a in fig.axes if a.get_title().endswith("seed mean")]
    strips = [a for a in fig.axes if a.get_title().startswith("per seed")]
    assert len(zooms) == len(strips) == 4  # two sections x two families
    for zoom, strip in zip(zooms, strips, strict=True):
        thr, expected = _savings_path_crossings(rep, zoom.get_title())
        marked = _crossing_steps(zoom)
        assert marked == expected and len(marked) >= 3
        # zoomed: the crossings inside, the x range well under the run, the threshold inside the y range
        x0, x1 = zoom.get_xlim()
        assert x0 < min(marked.values()) and max(marked.values()) < x1
        assert x1 - x0 < 0.5 * (max(r.steps for r in rep.records))
        y0, y1 = zoom.get_ylim()
        assert y0 < thr < y1
        # each crossing labelled with its step, with thousands separators, above the axes
        labels = [t.get_text() for t in zoom.texts]
        for k in marked.values():
            assert any(t.endswith(f" {int(k):,}") for t in labels), (k, labels)
        assert any(t.startswith("k_B ") for t in labels) and any(t.startswith("k_O ") for t in labels)
        # the strip: one dot per seed, the savings path's per-seed steps
        label, fam = zoom.get_title().split(",")[0], zoom.get_title().split(", ")[1].split(" family")[0]
        per = rep.seed_savings
        per = per[(per["label"] == label) & (per["family"] == fam.lower())]
        dots = {
            str(line.get_gid()).split(":", 1)[1]: sorted(line.get_xdata())
            for line in strip.get_lines()
            if str(line.get_gid()).startswith("seeds:")
        }
        for method, g in per.groupby("method"):
            assert dots[str(method)] == sorted(float(k) for k in g["k_method"].dropna())
        base = per.drop_duplicates("seed")
        assert dots[str(per["baseline"].iloc[0])] == sorted(float(k) for k in base["k_baseline"].dropna())


PLAIN = re.compile(r"^([-−]?[0-9]{1,3}(,[0-9]{3})*(\.[0-9]+)?)?$")  # 0.3, 1,200, -1, or no label


def test_every_tick_label_is_a_plain_decimal(figs: tuple[R.Report, Path]) -> None:
    for stem, fig in DRAWN.items():
        fig.canvas.draw()
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                names = [t.get_text() for t in axis.get_ticklabels(which="both")]
                if axis.get_scale() != "log" and any(re.search("[A-Za-z]", n) for n in names):
                    continue  # a categorical axis (the strip's methods)
                bad = [n for n in names if not PLAIN.match(n)]
                assert not bad, (stem, ax.get_title(), bad)


def test_plain_ticks_label_a_short_log_axis_between_the_decades() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [0.25, 0.7])
    ax.set_yscale("log")
    ax.set_ylim(0.25, 0.7)
    F.plain_ticks(ax, "y")
    fig.canvas.draw()
    shown = {t.get_text() for t in ax.yaxis.get_ticklabels(which="both")} - {""}
    assert {"0.3", "0.4", "0.6"} <= shown and not any("10" in t or "×" in t for t in shown)
    assert F.plain_number(1200.0) == "1,200" and F.plain_number(0.0005) == "0.0005"
    assert F.plain_number(-0.025) == "−0.025"
    plt.close(fig)


def test_legends_never_cover_data(figs: tuple[R.Report, Path]) -> None:
    for stem, fig in DRAWN.items():
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        boxes = [a.get_window_extent(r) for a in fig.axes if a.get_visible()]
        legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend() is not None)]
        assert legends, stem
        for leg in legends:
            lb = leg.get_window_extent(r)
            assert not any(lb.overlaps(b) for b in boxes), stem


def test_gamma_mu_plane_keeps_to_the_data_and_gives_adamo_its_own_beta1_panel(
    figs: tuple[R.Report, Path],
) -> None:
    rep, _ = figs
    fig = DRAWN["gamma_mu_plane"]
    best = F.best_gammas(rep)
    sgd_ax, adam_ax = fig.axes
    assert "μ" in sgd_ax.get_xlabel() and "β1" in adam_ax.get_xlabel() and "AdamO" in adam_ax.get_title()
    for ax, fam in ((sgd_ax, "sgd"), (adam_ax, "adam")):
        rows = best[best["family"] == fam]
        gs = [g for t in rows["tried"] for g in t] + list(rows["best_gamma"])
        top = ax.get_ylim()[1]
        assert max(gs) < top <= 1.3 * max(gs)  # not up to 20 when every point sits under 7
        x0, x1 = ax.get_xlim()
        assert x0 < rows["momentum"].min() and rows["momentum"].max() < x1 and x1 - x0 <= 0.2
        # the gammas tried are rings drawn over the stars, larger than them: never hidden
        rings = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() == "none"]
        stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
        assert rings and stars
        assert all(
            r.get_zorder() > s.get_zorder() and r.get_markersize() > s.get_markersize()
            for r in rings
            for s in stars
        )
    # the SGD plane's analytic curves are not drawn on AdamO's panel
    assert len(adam_ax.collections) == 0 and len(sgd_ax.collections) == 1


def _distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(np.linalg.norm(np.subtract(a[:3], b[:3])))


def test_sensitivity_figure_is_text_width_with_distinct_colours_and_selected_lrs(
    figs: tuple[R.Report, Path],
) -> None:
    from matplotlib.colors import to_rgba

    fig = DRAWN["sensitivity"]
    assert abs(fig.get_figwidth() - F.TEXT_IN) < 0.01
    for ax in fig.axes:
        curves = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
        colours = [to_rgba(ln.get_color()) for ln in curves]
        assert min(_distance(a, b) for i, a in enumerate(colours) for b in colours[i + 1 :]) > 0.2
        picks = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("selected:")]
        assert len(picks) == len(curves)
        assert len({(ln.get_marker(), ln.get_markerfacecolor()) for ln in picks}) == len(picks)
        assert all(ln.get_markeredgecolor() == "k" and ln.get_markersize() >= 8 for ln in picks)
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "SGDO γ=3: selected lr 0.004" in legend and "CM: selected lr 0.016" in legend


def test_baseline_markers_never_coincide(figs: tuple[R.Report, Path]) -> None:
    rep, _ = figs
    assert F.dodge("sgd", 7.0) < 0 < F.dodge("adam", 7.0)
    best = F.best_gammas(rep)
    assert set(best["family"]) == {"sgd", "adam"} and best["best_gamma"].notna().all()


def test_threshold_panel_names_what_never_crossed_off_the_data(tmp_path: Path) -> None:
    store = tmp_path / "runs"
    for opt, gamma, tau in [*METHODS[:3], ("sgd_os", 7.0, 5000.0)]:  # SGDO γ=7 decays too slowly to cross
        for seed in (10, 20):
            write_run(store, "digits", opt, gamma, 9000.0 if (opt, seed) == ("nesterov", 20) else tau, seed)
    rep = R.build_report(results.scan([store]), 0.95, 100)
    drawn: list[Figure] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(threshold_panels, "save", lambda fig, stem: drawn.append(fig) or [])
    try:
        F.threshold_panels(rep, tmp_path / "panels")
    finally:
        mp.undo()
    zoom, strip = drawn[0].axes
    assert "not reached: NAG, SGDO γ=7" in zoom.get_xlabel()
    assert not any("not reached" in t.get_text() for t in zoom.texts)  # nothing written over the curves
    assert "sgd_os-g7" not in _crossing_steps(zoom)
    nr = {t.get_text().strip() for t in strip.texts}
    assert nr == {"1 NR", "2 NR"}  # NAG's slow seed; both of SGDO γ=7's
