"""report.html's interactive part (plotly curves, run browser) on a synthetic store: plotly's JavaScript is
written once beside the report and referenced, never inlined; in headless chromium (offline, one launch) the
page loads without console errors, every figure holds its traces, a legend click hides a method, and a
click on a run browser row draws that method's seeds."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from report_store import require_tool
from test_report import write_run
from test_report_html import FLAGS

from overshoot.analysis import report as R
from overshoot.analysis.report import interactive as I

SEEDS = (10, 20, 30)
METHODS = [("sgd", 0.0, 200.0), ("sgd_os", 3.0, 160.0), ("adam", 0.0, 150.0), ("adam_os", 3.0, 120.0)]

# Appended to a copy of report.html beside the original (so report_files/ resolves): after load, it reads
# the figures' traces, clicks the first legend entry of the first figure (plotly's mousedown/mouseup; the
# click lands after plotly's double-click delay), sorts the run browser by method and clicks its top row,
# then writes what it saw
# into an attribute of <body> for --dump-dom.
CHECK = """<script>
window.addEventListener('load', function () {
  var out = {};
  var plots = Array.prototype.slice.call(document.querySelectorAll('figure.interactive .js-plotly-plot'));
  out.figures = plots.length;
  out.traces = plots.map(function (p) { return p.data.length; });
  out.lines = plots.map(function (p) { return p.querySelectorAll('.scatterlayer .trace').length; });
  var gd = plots[0];
  out.name = gd.data[0].name;
  out.visibleBefore = gd.data[0].visible === undefined ? true : gd.data[0].visible;
  var toggle = gd.querySelector('.legend .traces .legendtoggle');
  ['mousedown', 'mouseup'].forEach(function (t) {
    toggle.dispatchEvent(new MouseEvent(t, {bubbles: true, clientX: 1, clientY: 1, buttons: 1}));
  });
  var rows = document.querySelectorAll('#run-table tbody tr');
  out.rows = rows.length;
  out.titleBefore = document.getElementById('run-plot').layout.title.text;
  var th = document.querySelectorAll('#run-table thead th')[2];  // Method: sort descending, click the top row
  th.click(); th.click();
  var top = document.querySelector('#run-table tbody tr');
  out.sortedFirst = top.cells[2].textContent;
  top.click();
  setTimeout(function () {
    out.visibleAfter = gd.data[0].visible;
    out.linesAfter = gd.querySelectorAll('.scatterlayer .trace').length;
    out.hiddenLegend = gd.querySelectorAll('.legend .traces[style*="opacity: 0.5"]').length;
    var rp = document.getElementById('run-plot');
    out.titleAfter = rp.layout.title.text;
    out.seedTraces = rp.data.map(function (d) { return d.name; });
    out.selected = document.querySelectorAll('#run-table tr.selected').length;
    document.body.setAttribute('data-check', JSON.stringify(out));
  }, 1500);
});
</script>"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("interactive-runs")
    for opt, gamma, tau in METHODS:
        for seed in SEEDS:
            write_run(store, "digits", opt, gamma, tau, seed)
    out = tmp_path_factory.mktemp("interactive-report")
    assert (
        R.main([str(store), "--out", str(out), "--window", "100", "--no-figures", "--format", "md,html"]) == 0
    )
    return out


def test_plotly_written_once_and_referenced(report_dir: Path) -> None:
    text = (report_dir / "report.html").read_text()
    js = report_dir / I.JS_REL
    assert js.is_file() and js.stat().st_size > 1_000_000  # the whole bundle, once, beside the report
    assert text.count(f'<script src="{I.JS_REL}"></script>') == 1
    assert len(text) < 200_000  # the bundle is not inlined: the page holds the data only
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    assert text.count("Plotly.newPlot(") == 2  # one figure per section and family
    assert 'id="run-table"' in text and 'class="sortable runs"' in text
    # report.md says where the interactive parts are and carries none of their HTML
    md = (report_dir / "report.md").read_text()
    assert "## Interactive loss curves" in md and "Plotly" not in md and "<div" not in md


def test_reports_side_by_side_share_one_bundle(tmp_path: Path) -> None:
    """--js-dir: two reports load one copy of plotly's bundle by a relative path (as results/digits and
    results/housing share results/report_files)."""
    store = tmp_path / "runs"
    for opt, gamma, tau in METHODS[:2]:
        for seed in SEEDS[:2]:
            write_run(store, "digits", opt, gamma, tau, seed)
    shared = tmp_path / "report_files"
    for name in ("a", "b"):
        argv = [str(store), "--out", str(tmp_path / name), "--js-dir", str(shared), "--no-figures"]
        assert R.main([*argv, "--window", "100", "--format", "html"]) == 0
        text = (tmp_path / name / "report.html").read_text()
        assert text.count('<script src="../report_files/plotly.min.js"></script>') == 1
        assert not (tmp_path / name / I.JS_REL).exists()
    assert [p.name for p in shared.iterdir()] == ["plotly.min.js"]


def test_no_interactive_writes_no_bundle_and_no_plots(tmp_path: Path) -> None:
    """--no-interactive: report.html without the plotly parts and no JavaScript written."""
    store = tmp_path / "runs"
    for opt, gamma, tau in METHODS[:2]:
        for seed in SEEDS[:2]:
            write_run(store, "digits", opt, gamma, tau, seed)
    out = tmp_path / "rep"
    argv = [str(store), "--out", str(out), "--no-interactive", "--no-figures", "--window", "100"]
    assert R.main([*argv, "--format", "html"]) == 0
    text = (out / "report.html").read_text()
    assert "Plotly.newPlot(" not in text and "<script src=" not in text
    assert not (out / I.JS_REL).exists()


def test_downsample_keeps_the_last_point_and_bounds_the_points() -> None:
    y = np.arange(1001.0)
    idx, v = I.downsample(y, I.stride(y.size, 300))
    assert len(idx) <= 301 and idx[0] == 0 and idx[-1] == 1000 and (v == y[idx]).all()
    assert I.stride(200, 300) == 1 and I.stride(301, 300) == 2


def test_interactive_html_in_chromium(report_dir: Path, tmp_path: Path) -> None:
    chromium = require_tool("chromium", "chromium")
    page = report_dir / "check-interactive.html"
    page.write_text((report_dir / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    proc = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    m = re.search(r'data-check="([^"]*)"', proc.stdout)
    assert m, "the page's check never ran: " + proc.stdout[-1500:]
    got = json.loads(html.unescape(m.group(1)))
    # two figures (SGD and Adam family): per method a curve and its crossing tick, and the threshold line
    assert got["figures"] == 2
    assert got["traces"][0] >= 3 and got["lines"] == got["traces"]
    # the legend click hid the first method: plotly marks it legendonly and drops its drawn trace
    assert got["name"] == "CM" and got["visibleBefore"] is True
    assert got["visibleAfter"] == "legendonly", got
    assert got["linesAfter"] < got["lines"][0] and got["hiddenLegend"] >= 1
    # the run browser: one row per method; after sorting, the top row's click draws that method's three seeds
    assert got["rows"] == len(METHODS) and got["selected"] == 1
    assert "CM" in got["titleBefore"] and got["sortedFirst"] == "SGDO γ=3"
    assert got["titleAfter"].startswith("digits, SGDO γ=3 (protocol")
    assert got["seedTraces"] == [f"seed {s}" for s in SEEDS]


def test_js_only_writes_the_bundle_alone(tmp_path: Path) -> None:
    """--js-only --js-dir DIR: plotly's bundle for reports whose bundle is not beside them (the committed
    ones), and nothing else; without --js-dir, one line and exit 2."""
    from plotly.offline import get_plotlyjs

    d = tmp_path / "report_files"
    assert R.main(["--js-only", "--js-dir", str(d)]) == 0
    assert [p.name for p in d.iterdir()] == ["plotly.min.js"]
    assert (d / "plotly.min.js").read_text() == get_plotlyjs()
    assert R.main(["--js-only"]) == 2


def test_a_page_without_its_bundle_says_how_to_write_it(report_dir: Path, tmp_path: Path) -> None:
    """report.html away from its report_files/: each interactive part is preceded by one line naming the
    missing file and the command that writes it."""
    chromium = require_tool("chromium", "chromium")
    page = tmp_path / "alone" / "report.html"
    page.parent.mkdir()
    page.write_text((report_dir / "report.html").read_text())
    proc = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = re.findall(r'<p class="warning missing-js">([^<]*)</p>', proc.stdout)
    assert len(notes) == 3, proc.stdout[-1500:]  # two figures and the run browser
    assert f"at {I.JS_REL}," in notes[0] and "--js-only --js-dir DIR, DIR being report_files" in notes[0]
