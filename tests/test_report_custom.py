"""A user's optimizer (``optimizer=custom``) in the report: compared with its family baseline in the
savings tables and Table 1, drawn in a style of its own, and in the LaTeX and HTML output, on a synthetic
store whose custom runs carry the class path as ``optimizer=custom`` stores them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_report import write_run

from overshoot.analysis import figures as F
from overshoot.analysis import metrics as M
from overshoot.analysis import report as R
from overshoot.analysis import results

SEEDS = (10, 20, 30)
WINDOW = 100
# (optimizer, gamma, time constant of the synthetic loss, family, class) on the housing task (a loss).
RUNS = [
    ("sgd", 0.0, 200.0, None, None),
    ("nesterov", 0.0, 180.0, None, None),
    ("sgd_os", 3.0, 160.0, None, None),
    ("asgd", 0.0, 170.0, "sgd", "torch.optim.ASGD"),
    ("adam", 0.0, 150.0, None, None),
    ("nadam", 0.0, 140.0, None, None),
    ("adam_os", 3.0, 125.0, None, None),
    ("adamax", 0.0, 110.0, "adam", "torch.optim.Adamax"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("custom-runs")
    for opt, gamma, tau, family, target in RUNS:
        for seed in SEEDS:
            write_run(out, "housing", opt, gamma, tau, seed, family=family, target=target)
    return out


@pytest.fixture(scope="module")
def rep(store: Path) -> R.Report:
    return R.build_report(results.scan([store]), 0.95, WINDOW)


def test_a_custom_run_shares_its_family_protocol_and_is_saved_against_the_baseline(
    store: Path, rep: R.Report
) -> None:
    assert len(rep.records) == len(RUNS) * len(SEEDS) and rep.left_out.empty
    assert len(rep.sections) == 1  # the class path is the method's, not the protocol's
    row = rep.savings.set_index("method").loc["adamax"]
    assert (row["family"], row["baseline"], row["x_gamma"]) == ("adam", "adam", 0.0)
    recs = {(r.method, r.seed): r for r in rep.records}
    base = {s: recs[("adam", s)].base_loss for s in SEEDS}
    mine = {s: recs[("adamax", s)].base_loss for s in SEEDS}
    ps = M.paper_saving(base.values(), mine.values(), 0.95, WINDOW)
    ss = M.per_seed_saving(base, mine, 0.95, WINDOW)
    assert ps.saving is not None and ps.saving > 10  # the fast synthetic curve saves steps
    assert row["paper_saving"] == pytest.approx(ps.saving)
    assert row["mean"] == pytest.approx(ss.summary.mean) and row["n"] == len(SEEDS)
    assert rep.savings.set_index("method").loc["asgd", "baseline"] == "sgd"
    methods_row = rep.protocol.display.set_index("Setting").loc["Methods"]
    assert list(methods_row) == [
        "CM, NAG, SGDO γ=3, asgd (torch.optim.ASGD)",
        "Adam, NAdam, AdamO γ=3, adamax (torch.optim.Adamax)",
    ]
    # The headline lists every method against its baseline, the user's too.
    assert {"adamax", "asgd", "sgd_os-g3"} <= set(R.headline_frame(rep.savings)["method"])
    tables = {(t.name, t.section): t for t in rep.tables}
    seed = tables["savings_per_seed", rep.sections[0].key].display.set_index("Method")
    assert seed.loc["adamax", "Baseline"] == "Adam" and seed.loc["asgd", "Baseline"] == "CM"
    lo, hi = ss.summary.low, ss.summary.high
    assert seed.loc["adamax", "Saving % [95% CI]"] == R.interval_cell(ss.summary.mean, lo, hi)
    # savings vs gamma: a column of its own, not the NAG / NAdam column
    vg = tables["savings_vs_gamma_per_seed", ""].display
    assert list(vg.columns) == ["Family", "Task", "NAG / NAdam", "γ=3", "asgd", "adamax"]
    adam_row = vg[vg["Family"] == "Adam family"].iloc[0]
    nadam = rep.savings.set_index("method").loc["nadam"]
    assert adam_row["NAG / NAdam"] == R.interval_cell(nadam["mean"], nadam["low"], nadam["high"])
    assert adam_row["asgd"] == "–"


def test_table1_compares_a_custom_method_with_the_better_baseline(rep: R.Report) -> None:
    t1 = R.table1_frame(rep.sections).set_index("method")
    ref = t1.loc["adamax", "reference"]
    assert ref in ("adam", "nadam") and t1.loc["adamax", "n_pairs"] == len(SEEDS)
    value = {(r.method, r.seed): M.best_over_epochs(r.epochs, r.metric, r.metric_scale) for r in rep.records}
    a = [value["adamax", s] for s in SEEDS]
    b = [value[ref, s] for s in SEEDS]
    assert ref == min(("adam", "nadam"), key=lambda m: np.mean([value[m, s] for s in SEEDS]))  # lower loss
    assert t1.loc["adamax", "p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t1.loc["asgd", "reference"] in ("sgd", "nesterov")
    table = next(t for t in rep.tables if t.name == "table1")
    assert list(table.display["Method"]) == [
        "CM",
        "NAG",
        "SGDO γ=3",
        "asgd",
        "Adam",
        "NAdam",
        "AdamO γ=3",
        "adamax",
    ]
    assert table.groups == [("SGD family", 0, 3), ("Adam family", 4, 7)]


def test_custom_methods_get_distinct_deterministic_styles() -> None:
    customs = ["adamax", "asgd", "sophia"]
    styles = [F.method_style(c, 0.0, family="adam", customs=customs) for c in customs]
    assert styles == [F.method_style(c, 0.0, family="adam", customs=customs) for c in customs]
    for key in ("color", "marker", "linestyle"):
        assert len({str(s[key]) for s in styles}) == len(customs), key  # greyscale: marker and dash differ
    builtin = [F.method_style(o, g, [3.0, 5.0]) for o, g in [("sgd", 0), ("nesterov", 0), ("sgd_os", 3)]]
    builtin += [F.method_style(o, g, [3.0, 5.0]) for o, g in [("adam", 0), ("nadam", 0), ("adam_os", 5)]]
    for s in styles:
        assert all(s["marker"] != b["marker"] and str(s["linestyle"]) != str(b["linestyle"]) for b in builtin)
    # the family's fill convention holds: the Adam family's markers are open
    assert styles[0]["markerfacecolor"] == "white"
    assert F.method_style("asgd", 0.0, family="sgd")["markerfacecolor"] != "white"
    # without the list a name still maps to one style
    assert F.method_style("adamax", 0.0, family="adam") == F.method_style("adamax", 0.0, family="adam")


def test_the_report_with_custom_methods_writes_figures_tex_and_html(store: Path, tmp_path: Path) -> None:
    from test_report_latex import compile_tex

    out = tmp_path / "rep"
    assert R.main([str(store), "--out", str(out), "--window", str(WINDOW), "--format", "md,tex,html"]) == 0
    for stem in ("loss_grid", "saving_vs_gamma"):
        assert (out / "figures" / f"{stem}.pdf").stat().st_size > 1000
    tex = (out / "table1.tex").read_text()
    assert "adamax" in tex and "asgd" in tex
    assert "adamax" in (out / "savings_per_seed.tex").read_text()
    compile_tex(sorted(out.glob("*.tex")), out)
    html = (out / "report.html").read_text()
    assert "<td>adamax</td>" in html


def test_saving_vs_gamma_draws_the_custom_method_as_a_level(rep: R.Report, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    drawn: list[tuple[str, float]] = []
    real = plt.Axes.axhline

    def spy(self: plt.Axes, y: float = 0, *args: object, **kwargs: object) -> object:
        drawn.append((str(kwargs.get("color")), float(y)))
        return real(self, y, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(plt.Axes, "axhline", spy)
    try:
        F.saving_vs_gamma(rep, tmp_path / "s")
    finally:
        mp.undo()
    want = rep.savings.set_index("method").loc["adamax", "mean"]
    color = F.method_style("adamax", 0.0, family="adam", customs=["asgd", "adamax"])["color"]
    assert any(c == color and y == pytest.approx(want) for c, y in drawn), drawn


def test_loss_grid_draws_each_custom_method_in_its_own_style(rep: R.Report, tmp_path: Path) -> None:
    """The two families' user's methods sit in different panels but share one legend: distinct styles."""
    seen: dict[str, dict[str, object]] = {}
    real = F.method_style

    def spy(optimizer: str, *args: object, **kwargs: object) -> dict[str, object]:
        style = real(optimizer, *args, **kwargs)  # type: ignore[arg-type]
        seen[optimizer] = style
        return style

    mp = pytest.MonkeyPatch()
    mp.setattr(F, "method_style", spy)
    try:
        F.loss_grid(rep, tmp_path / "g")
    finally:
        mp.undo()
    assert seen["asgd"]["color"] != seen["adamax"]["color"]
    assert seen["asgd"]["marker"] != seen["adamax"]["marker"]
