"""report.html in a real headless browser (Debian's chromium, one launch): it loads offline without console
errors, shows every table and figure, and its tables sort when a header is clicked."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest
from report_store import require_tool
from test_report import METHODS, write_run

from overshoot.analysis import report as R

FLAGS = [
    "--headless",
    "--no-sandbox",  # the CI container runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
    "--dump-dom",
]
# Appended to a copy of the report: after load, what the page shows goes into an attribute of <body>, which
# --dump-dom returns. The sort check clicks the k_O header of the savings table twice (ascending, descending).
CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {tables: document.querySelectorAll('table').length,
             rows: document.querySelectorAll('tbody tr').length,
             images: imgs.length,
             loaded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 300; }).length,
             headings: document.querySelectorAll('h2, summary').length};
  var t = document.querySelector('table[data-name="savings_paper"]');
  var heads = Array.prototype.map.call(t.tHead.rows[0].cells, function (c) { return c.textContent; });
  var col = heads.indexOf('k_O');
  function column() {
    return Array.prototype.map.call(t.tBodies[0].rows,
                                    function (r) { return parseFloat(r.cells[col].textContent); });
  }
  out.before = column();
  t.tHead.rows[0].cells[col].click();
  out.ascending = column();
  t.tHead.rows[0].cells[col].click();
  out.descending = column();
  document.body.setAttribute('data-check', JSON.stringify(out));
});
</script>"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("html-runs")
    for task in ("digits", "housing"):
        for opt, gamma, tau in METHODS:
            for seed in (10, 20, 30):
                write_run(store, task, opt, gamma, tau, seed)
    write_run(store, "digits", "adam_os", 7.0, 200.0, 10, status="failed")
    out = tmp_path_factory.mktemp("html-report")
    assert R.main([str(store), "--out", str(out), "--window", "100", "--paper"]) == 0
    return out


def test_html_is_self_contained(report_dir: Path) -> None:
    text = (report_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    assert text.count('src="data:image/png;base64,') == len(list((report_dir / "figures").glob("*.png")))
    # a table of contents, the headline first, protocol and provenance folded next, then the tables
    toc, head = text.index('<nav class="toc"'), text.index('<h2 id="headline">')
    details = text.index('<details id="protocol-and-provenance"><summary>')
    assert toc < head < details < text.index('id="table-1-best-test-metric"')
    assert '<div class="warning" role="note"><strong>Warning:</strong> 1 run left out' in text
    assert 'class="sortable"' in text and '<div class="table-wrap">' in text
    # each table links its CSV and TeX, each figure its PDF, relative to the report
    assert '<a href="table1.csv">table1.csv</a> · <a href="table1.tex">table1.tex</a>' in text
    assert '<a href="figures/loss_grid.pdf">PDF</a>' in text


def test_html_loads_in_chromium_without_errors_and_shows_everything(report_dir: Path, tmp_path: Path) -> None:
    chromium = require_tool("chromium", "chromium")
    page = report_dir / "check.html"  # beside report.html: its report_files/ (plotly) resolve
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
    assert m, "the page's load handler never ran: " + proc.stdout[:500]
    got = json.loads(html.unescape(m.group(1)))
    n_figures = len(list((report_dir / "figures").glob("*.png")))
    assert got["images"] == got["loaded"] == n_figures >= 4
    assert got["tables"] == (report_dir / "report.html").read_text().count("<table ")
    assert got["tables"] >= 9 and got["rows"] > 40 and got["headings"] >= 8
    asc, desc = got["ascending"], got["descending"]
    assert len(asc) == 6 and asc == sorted(asc) and desc == sorted(asc, reverse=True)
    assert got["before"] != asc and sorted(got["before"]) == asc
