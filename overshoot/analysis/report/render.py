"""The report's document model and its renderers: a :class:`Table` (numbers for CSV, strings for the rest),
a :class:`Document` of :class:`Part` s (headings, paragraphs, warnings, tables, figures, code), and one
renderer each for Markdown, CSV, LaTeX and HTML. Every report (a run store's, a tuning study's) is a
Document written by :func:`write_document`."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from overshoot.analysis.choices import FORMATS as FORMATS  # the report's formats, named by its command line
from overshoot.analysis.report.style import BETTER, MINUS, WORSE
from overshoot.common.files import atomic_write_text


@dataclass
class Table:
    """A table in two forms: ``data`` (numbers, for CSV) and ``display`` (strings, for md/tex/html).

    ``marks`` holds cell marks ('bold', 'better', 'worse') by (row, column); ``groups`` the row groups of
    a table whose rows fall into families (label, first row, last row); ``subheader`` an optional second
    header line; ``section`` the section key of a per-section table (tables of one name are written to one
    file); ``heading`` a heading of its own in the document; ``tex_spec`` the tabular column spec."""

    name: str
    caption: str
    data: pd.DataFrame
    display: pd.DataFrame
    marks: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    groups: list[tuple[str, int, int]] = field(default_factory=list)
    subheader: list[str] | None = None
    section: str = ""
    heading: str = ""
    tex_spec: str = ""

    def mark(self, row: int, col: str, what: str) -> None:
        self.marks.setdefault((row, col), set()).add(what)


@dataclass
class Figure:
    """A figure written as ``png`` with a PDF beside it; ``rel`` is the PNG's path relative to the report."""

    png: Path
    rel: str
    caption: str


@dataclass
class Part:
    """One headed part of a document; ``collapsed`` parts fold away in HTML (``<details>``); ``html`` holds
    blocks of HTML that only report.html shows (interactive figures)."""

    title: str
    level: int = 2
    paragraphs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    code: str = ""
    collapsed: bool = False
    html: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return slug(self.title)


@dataclass
class Document:
    """A whole report: title, opening paragraphs and warnings, then the parts in order; ``key`` makes the
    LaTeX labels of its whole-report tables unique; ``scripts`` the JavaScript files (paths relative to the
    report) that report.html loads before its body (plotly's, written beside the report)."""

    title: str
    intro: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    key: str = "report"
    scripts: list[str] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [t for p in self.parts for t in p.tables]


def slug(s: str) -> str:
    return re.sub(r"-+", "-", "".join(ch if ch.isalnum() else "-" for ch in s.lower())).strip("-")


def _head(table: Table) -> list[str]:
    cols = [str(c) for c in table.display.columns]
    if table.subheader:
        return [f"{c} ({s})" if s else c for c, s in zip(cols, table.subheader, strict=True)]
    return cols


# ------------------------------------------------------------------------------------------------- Markdown


def _cell_md(t: Table, i: int, c: str, v: Any) -> str:
    s = str(v).replace("|", "\\|")
    marks = t.marks.get((i, c), set())
    if "bold" in marks:
        s = f"**{s}**"
    if "better" in marks:
        s += " " + BETTER
    if "worse" in marks:
        s += " " + WORSE
    return s


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table of ``table.display`` (bold as **x**, significance as ↑ / ↓)."""
    cols = [str(c) for c in table.display.columns]
    lines = ["| " + " | ".join(_head(table)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    starts = {g[1]: g[0] for g in table.groups}
    for i, row in enumerate(table.display.itertuples(index=False)):
        if i in starts and len(table.groups) > 1:
            lines.append("| " + " | ".join([f"*{starts[i]}*", *([""] * (len(cols) - 1))]) + " |")
        lines.append(
            "| " + " | ".join(_cell_md(table, i, c, v) for c, v in zip(cols, row, strict=True)) + " |"
        )
    return "\n".join(lines) + "\n"


def _links_md(links: Sequence[str]) -> str:
    return "Files: " + " · ".join(f"[{Path(f).name}]({f})" for f in links) + "\n" if links else ""


def render_markdown(doc: Document, links: dict[str, list[str]] | None = None) -> str:
    """The document as GitHub Markdown: headings, warnings as quoted blocks, tables with their captions and
    links to their CSV/TeX files (``links`` by table name), figures with their PDFs."""
    links = links or {}
    out = [f"# {doc.title}\n"]
    out += [p + "\n" for p in doc.intro]
    out += [f"> **Warning:** {w}\n" for w in doc.warnings]
    for part in doc.parts:
        out.append("#" * part.level + f" {part.title}\n")
        out += [f"> **Warning:** {w}\n" for w in part.warnings]
        out += [p + "\n" for p in part.paragraphs]
        if part.code:
            out.append("```bash\n" + part.code.strip() + "\n```\n")
        for t in part.tables:
            if t.heading and t.heading != part.title:
                out.append("#" * (part.level + 1) + f" {t.heading}\n")
            out.append(f"{t.caption}.\n\n" + to_markdown(t) + "\n" + _links_md(links.get(t.name, [])))
        for f in part.figures:
            pdf = str(Path(f.rel).with_suffix(".pdf").as_posix())
            out.append(f"![{Path(f.rel).stem}]({f.rel})\n\n{f.caption} (PDF: [{pdf}]({pdf}))\n")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- LaTeX

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "γ": r"$\gamma$",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "μ": r"$\mu$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "–": "--",
    "·": r"$\cdot$",
    MINUS: r"$-$",
    BETTER: r"$\uparrow$",
    WORSE: r"$\downarrow$",
    "…": r"\ldots{}",
}


def tex_escape(s: str) -> str:
    """``s`` with LaTeX special characters escaped and ±, γ, ×, −, ↑, ↓ as math (ASCII out)."""
    parts = re.split(r"\b(k_[BO])\b", s)  # the paper's step counts k_B, k_O as math
    out = "".join(f"${p}$" if i % 2 else "".join(_TEX.get(ch, ch) for ch in p) for i, p in enumerate(parts))
    out = re.sub(r"(?<!\\)\$\$", "", out)
    return out.encode("ascii", "replace").decode("ascii")


def _tex_width(cols: Sequence[str], display: pd.DataFrame) -> float:
    """Rough width in inches of the table at \\small with 4pt column separation."""
    widths = []
    for j, c in enumerate(cols):
        cells = [str(c), *(str(v) for v in display.iloc[:, j])]
        widths.append(max(len(x) for x in cells) * 0.075 + 0.11)
    return sum(widths)


def to_latex(table: Table, label: str) -> str:
    """A booktabs table of ``table.display`` with caption and ``\\label{label}``: ``table`` when it fits
    a column of a two-column paper, else ``table*``; family row groups as \\multicolumn headers with a
    \\cmidrule; bold as \\textbf, significance as $\\uparrow$ / $\\downarrow$; a table too wide for the text
    width even at \\footnotesize is shrunk to it with graphicx's \\resizebox (never enlarged)."""
    cols = [str(c) for c in table.display.columns]
    n = len(cols)
    width = _tex_width(cols, table.display)
    env = "table" if width <= 3.3 else "table*"
    size = r"\small" if width <= 6.9 else r"\footnotesize"
    wide = width > 6.9  # at \footnotesize, and shrunk to the text width if it still overflows
    spec = "l" * min(n, 2 if table.name not in ("table1", "protocol") else 1)
    spec = table.tex_spec or spec + "r" * (n - len(spec))
    lines = [
        rf"\begin{{{env}}}[t]",
        r"\centering",
        size,
        r"\setlength{\tabcolsep}{" + ("3pt" if table.name == "table1" else "4pt") + "}",
        r"\caption{" + tex_escape(table.caption) + "}",
        r"\label{" + label + "}",
        # wider than the text at \footnotesize: shrunk to the text width (graphicx), never enlarged
        *([r"\resizebox{\ifdim\width>\textwidth\textwidth\else\width\fi}{!}{%"] if wide else []),
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(tex_escape(c) for c in cols) + r" \\",
    ]
    if table.subheader:
        lines.append(" & ".join(r"{\scriptsize " + tex_escape(s) + "}" for s in table.subheader) + r" \\")
    lines.append(r"\midrule")
    starts = {g[1]: g for g in table.groups}
    for i, row in enumerate(table.display.itertuples(index=False)):
        if i in starts:
            if i > 0:
                lines.append(r"\addlinespace")
            lines.append(rf"\multicolumn{{{n}}}{{l}}{{\textit{{{tex_escape(starts[i][0])}}}}} \\")
            lines.append(rf"\cmidrule(lr){{1-{n}}}")
        cells = []
        for c, v in zip(cols, row, strict=True):
            s = tex_escape(str(v))
            if table.name == "table1":  # the interval in a smaller size: seven tasks fit the text width
                s = s.replace(r" $\pm$ ", r"{\scriptsize${}\pm{}$", 1) + ("}" if " ± " in str(v) else "")
            marks = table.marks.get((i, c), set())
            if "bold" in marks:
                s = r"\textbf{" + s + "}"
            if "better" in marks:
                s += r"$^{\uparrow}$"
            if "worse" in marks:
                s += r"$^{\downarrow}$"
            cells.append(s)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}" + ("}" if wide else ""), rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def tex_label(table: Table, report_key: str) -> str:
    """A label unique within a report: the table's name, then its section or, for a table over the whole
    report, the report's key."""
    return "tab:" + slug(table.name) + "-" + (table.section or report_key)


# ------------------------------------------------------------------------------------------------- files


def write_tables(doc: Document, out: Path, formats: Sequence[str]) -> dict[str, list[Path]]:
    """Write each table of ``doc`` once per format (md, csv, tex) as ``<out>/<name>.<fmt>``, atomically;
    tables of one name (one per section) share a file. Empty tables are not written. The paths by name."""
    by_name: dict[str, list[Table]] = {}
    for t in doc.tables():
        if not t.display.empty:
            by_name.setdefault(t.name, []).append(t)
    written: dict[str, list[Path]] = {}
    for name, ts in by_name.items():
        for fmt in formats:
            if fmt == "md":
                text = "\n".join(f"## {t.caption}\n\n" + to_markdown(t) for t in ts)
            elif fmt == "tex":
                text = "\n".join(to_latex(t, tex_label(t, doc.key)) for t in ts)
            elif fmt == "csv":
                text = pd.concat([t.data for t in ts], ignore_index=True).to_csv(index=False)
            else:
                continue
            path = out / f"{name}.{fmt}"
            atomic_write_text(path, text)
            written.setdefault(name, []).append(path)
    return written


def write_document(
    doc: Document, out: Path, formats: Sequence[str], extra: Sequence[Path] = ()
) -> list[Path]:
    """Every file of ``doc`` under ``out``: its tables per format, ``report.md`` and the self-contained
    ``report.html`` (each when its format is asked for); ``extra`` (figures written before) are counted in."""
    out.mkdir(parents=True, exist_ok=True)
    tables = write_tables(doc, out, formats)
    links = {
        n: [p.relative_to(out).as_posix() for p in ps if p.suffix in (".csv", ".tex")]
        for n, ps in tables.items()
    }
    written = [p for ps in tables.values() for p in ps] + list(extra)
    if "md" in formats:
        atomic_write_text(out / "report.md", render_markdown(doc, links))
        written.append(out / "report.md")
    if "html" in formats:
        atomic_write_text(out / "report.html", render_html(doc, links))
        written.append(out / "report.html")
    return written


# ------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:15px/1.5 Georgia,'Times New Roman',serif;margin:2em auto;max-width:62em;padding:0 1em;color:#1b1b1b}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;margin-top:2.2em;border-bottom:1px solid #ccc}
h3{font-size:1.08em;margin-top:1.6em}h1,h2,h3,summary,nav,table,.files{font-family:system-ui,-apple-system,
'Segoe UI',sans-serif}
nav.toc{background:#f7f7f7;border:1px solid #e2e2e2;padding:.4em 1.2em;margin:1em 0 2em;font-size:.92em}
nav.toc ol{margin:.3em 0;padding-left:1.4em}nav.toc ol ol{font-size:.95em}
details{margin:1.4em 0;border:1px solid #e2e2e2;border-radius:4px;padding:0 1em}
details>summary{cursor:pointer;padding:.5em 0;font-weight:600;font-size:1.15em}
details[open]>summary{border-bottom:1px solid #e2e2e2;margin-bottom:.6em}
.warning{border-left:4px solid #d97706;background:#fff7e6;padding:.5em .9em;margin:.8em 0}
.warning strong{color:#92400e}
.table-wrap{overflow-x:auto;max-width:100%;margin:.4em 0 .3em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.88em}
th,td{padding:.25em .55em;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
td{white-space:nowrap}td.long{white-space:normal;min-width:14em;max-width:34em}
th{background:#f2f2f2;cursor:pointer;user-select:none;white-space:normal}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.group td{font-style:italic;background:#fafafa}
.caption{color:#444;font-size:.95em}.files{font-size:.85em;color:#555;margin:0 0 1.6em}
.better{color:#1a7f37}.worse{color:#b42318}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto;font-size:.85em}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#444;font-size:.95em}
figure.interactive{border:1px solid #eee;padding:.3em}table.runs tbody tr{cursor:pointer}
table.runs tbody tr:hover{background:#f4f8ff}table.runs tbody tr.selected{background:#e3edff}
.run-plot{min-height:380px;border:1px solid #eee;margin:.4em 0 2em}
"""

_JS = """
(function(){
  function key(text){
    var t=text.replace(/\\u2212/g,'-').replace(/,/g,'').trim();
    var m=t.match(/^[-+]?\\d*\\.?\\d+(e[-+]?\\d+)?/i);
    return m?parseFloat(m[0]):null;
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.querySelectorAll('thead th');
    heads.forEach(function(th,col){
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        heads.forEach(function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0];
        var rows=Array.prototype.slice.call(body.rows)
          .filter(function(r){return !r.classList.contains('group');});
        rows.sort(function(a,b){
          var x=a.cells[col].textContent,y=b.cells[col].textContent,kx=key(x),ky=key(y),c;
          if(kx!==null&&ky!==null){c=kx-ky;}else if(kx!==null){c=-1;}
          else if(ky!==null){c=1;}else{c=x.localeCompare(y);}
          return asc?c:-c;
        });
        body.querySelectorAll('tr.group').forEach(function(g){g.remove();});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var bundle=document.querySelector('script[src$="plotly.min.js"]');
  if(bundle&&typeof Plotly==='undefined'){  // the bundle is not beside the page (a committed report)
    var src=bundle.getAttribute('src'),dir=src.slice(0,Math.max(src.lastIndexOf('/'),0))||'.';
    document.querySelectorAll('figure.interactive, #run-table').forEach(function(el){
      var p=document.createElement('p');
      p.className='warning missing-js';
      p.textContent="This interactive part needs plotly's JavaScript at "+src+", which is not beside "+
        "this page: write it with overshoot-bench-report --js-only --js-dir DIR, DIR being "+dir+
        " from this page's folder.";
      el.parentNode.insertBefore(p,el);
    });
  }
})();
"""
LONG_CELL = (
    40  # characters from which a cell wraps (a list of methods, a reason) instead of widening the table
)


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def to_html(table: Table) -> str:
    """A sortable HTML table of ``table.display`` in a box that scrolls sideways when it is too wide."""
    cols = [str(c) for c in table.display.columns]
    out = [f'<div class="table-wrap"><table class="sortable" data-name="{_esc(table.name)}">', "<thead><tr>"]
    out += [f'<th scope="col">{_esc(c)}</th>' for c in _head(table)]
    out.append("</tr></thead><tbody>")
    starts = {g[1]: g[0] for g in table.groups}
    for i, row in enumerate(table.display.itertuples(index=False)):
        if i in starts:
            out.append(f'<tr class="group"><td colspan="{len(cols)}">{_esc(starts[i])}</td></tr>')
        cells = []
        for c, v in zip(cols, row, strict=True):
            s = _esc(v)
            marks = table.marks.get((i, c), set())
            if "bold" in marks:
                s = f"<strong>{s}</strong>"
            if "better" in marks:
                s += f' <span class="better" title="significantly better">{BETTER}</span>'
            if "worse" in marks:
                s += f' <span class="worse" title="significantly worse">{WORSE}</span>'
            cells.append(f'<td class="long">{s}</td>' if len(str(v)) > LONG_CELL else f"<td>{s}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _toc(doc: Document) -> str:
    items: list[str] = []
    open_sub = False
    for p in doc.parts:
        link = f'<a href="#{_esc(p.anchor)}">{_esc(p.title)}</a>'
        if p.level <= 2:
            if open_sub:
                items.append("</ol></li>")
                open_sub = False
            elif items:
                items.append("</li>")
            items.append(f"<li>{link}")
        else:
            if not open_sub:
                items.append("<ol>")
                open_sub = True
            items.append(f"<li>{link}</li>")
    if items:
        items.append("</ol></li>" if open_sub else "</li>")
    return (
        '<nav class="toc" aria-label="Contents"><strong>Contents</strong><ol>'
        + "".join(items)
        + "</ol></nav>"
    )


def _warn_html(w: str) -> str:
    return f'<div class="warning" role="note"><strong>Warning:</strong> {_esc(w)}</div>'


def render_html(doc: Document, links: dict[str, list[str]] | None = None) -> str:
    """The document as one self-contained HTML page: a table of contents, the Markdown's headings, warnings
    styled as warnings, collapsible parts, sortable tables with links to their CSV/TeX files, the figures
    embedded as PNG data with links to their PDFs; no network access needed to open it."""
    links = links or {}
    body = [f"<h1>{_esc(doc.title)}</h1>"]
    body += [f"<p>{_esc(p)}</p>" for p in doc.intro]
    body += [_warn_html(w) for w in doc.warnings]
    body.append(_toc(doc))
    open_details = False
    for part in doc.parts:
        if open_details and part.level <= 2:
            body.append("</details>")
            open_details = False
        if part.collapsed:
            body.append(f'<details id="{_esc(part.anchor)}"><summary>{_esc(part.title)}</summary>')
            open_details = True
        else:
            lvl = min(part.level, 6)
            body.append(f'<h{lvl} id="{_esc(part.anchor)}">{_esc(part.title)}</h{lvl}>')
        body += [_warn_html(w) for w in part.warnings]
        body += [f"<p>{_esc(p)}</p>" for p in part.paragraphs]
        if part.code:
            body.append(f"<pre><code>{_esc(part.code.strip())}</code></pre>")
        for t in part.tables:
            if t.display.empty:
                continue
            if t.heading and t.heading != part.title:
                lvl = min(part.level + 1, 6)
                body.append(f'<h{lvl} id="{_esc(slug(t.heading))}">{_esc(t.heading)}</h{lvl}>')
            body.append(f'<p class="caption">{_esc(t.caption)}.</p>' + to_html(t))
            files = links.get(t.name, [])
            if files:
                body.append(
                    '<p class="files">'
                    + " · ".join(f'<a href="{_esc(f)}">{_esc(Path(f).name)}</a>' for f in files)
                    + "</p>"
                )
        for f in part.figures:
            data = base64.b64encode(f.png.read_bytes()).decode("ascii")
            pdf = Path(f.rel).with_suffix(".pdf").as_posix()
            body.append(
                f'<figure id="fig-{_esc(f.png.stem)}"><img alt="{_esc(f.png.stem)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{_esc(f.caption)} '
                f'<a href="{_esc(pdf)}">PDF</a></figcaption></figure>'
            )
        body += part.html
    if open_details:
        body.append("</details>")
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{_esc(doc.title)}</title>",
                *(f'<script src="{_esc(s)}"></script>' for s in doc.scripts),
                f"<style>{_CSS}</style></head><body>",
                *body,
                f"<script>{_JS}</script></body></html>",
            ]
        )
        + "\n"
    )
