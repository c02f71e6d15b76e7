"""The report's interactive HTML: plotly loss curves per task section and family (hover, legend toggles, zoom)
and a run browser (a sortable table of the methods run, whose row shows each seed's curve), drawn from the
run records of :func:`overshoot.analysis.results.scan` (the store's one reader). plotly's JavaScript is
copied once beside the report (:data:`JS_REL`), so the page opens offline and every figure holds only its
data."""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

from overshoot.analysis import metrics as M
from overshoot.analysis.figstyle import method_style
from overshoot.analysis.report.model import Section
from overshoot.analysis.report.render import Part, slug
from overshoot.analysis.report.style import family_label, metric_factor, metric_header, num
from overshoot.analysis.report.tables import Report
from overshoot.analysis.results import RunRecord, method_order
from overshoot.common.files import atomic_write_text

JS_REL = "report_files/plotly.min.js"  # plotly's bundle, relative to report.html
MAX_POINTS = 300  # points per drawn curve at most (the seed-mean curves)
MAX_SEED_POINTS = 150  # points per seed curve of the run browser
_DASH = {"-": "solid", "--": "dash", ":": "dot", "-.": "dashdot"}
LOG_AXIS = {"type": "log", "dtick": "D2", "tickformat": "~g"}  # ticks at 1, 2, 5 x 10^k, plain decimals
_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg"}}


def write_plotly_js(path: Path) -> Path:
    """plotly's JavaScript bundle (from the installed plotly package) at ``path``; left as it is when it
    already holds that bundle."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    if not (path.is_file() and path.stat().st_size == len(js.encode()) and path.read_text() == js):
        atomic_write_text(path, js)
    return path


def stride(n: int, max_points: int) -> int:
    """The step between drawn points so that a curve of ``n`` points keeps at most ``max_points``."""
    return max(1, math.ceil(n / max(1, max_points)))


def downsample(y: np.ndarray, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of every ``every``-th point of ``y``, its last point always kept."""
    idx = np.arange(0, y.size, every)
    if y.size and idx[-1] != y.size - 1:
        idx = np.append(idx, y.size - 1)
    return idx, y[idx]


def _round(y: np.ndarray) -> list[float | None]:
    """Values to 5 significant digits (None for NaN): what hover shows, a fraction of the bytes."""
    return [float(f"{v:.5g}") if math.isfinite(v) else None for v in np.asarray(y, dtype=float)]


def _style(r: RunRecord, gammas: Sequence[float]) -> dict[str, Any]:
    s = method_style(r.optimizer, r.gamma, gammas, r.family)
    ls = s["linestyle"]
    return {"color": to_hex(s["color"]), "dash": _DASH.get(ls, "longdash") if isinstance(ls, str) else "dash"}


def base_losses(report: Report) -> dict[str, np.ndarray]:
    """Each used run's base-weight training loss per step, by run path: the array the store reader
    (:func:`overshoot.analysis.results.scan`) loaded, which the savings and Figure 1 use too, so a crossing
    drawn here is the step the tables count (re-reading the logs would cost a second pass over them)."""
    return {str(r.path): r.base_loss for r in report.records}


def _groups(recs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for r in sorted(recs, key=lambda r: (method_order(r.optimizer, r.gamma, r.family), r.seed)):
        out.setdefault(r.method, []).append(r)
    return out


def section_figure(
    sec: Section, family: str, reduction: float, loss: dict[str, np.ndarray]
) -> tuple[Any, str] | None:
    """The plotly figure of one section and family: per method the seed-mean trailing mean of the training
    loss (base weights), the reduction threshold from the baseline and each method's first crossing; and its
    caption. None when the family has no curve."""
    import plotly.graph_objects as go

    recs = [r for r in sec.records if r.family == family and str(r.path) in loss]
    if not recs:
        return None
    w = sec.windows[family]
    groups = _groups(recs)
    gammas = sorted({r.gamma for r in recs})
    means = {
        m: M.trailing_mean(M.seed_mean_curve([loss[str(r.path)] for r in rs]), w) for m, rs in groups.items()
    }
    n_max = max((s.size for s in means.values()), default=0)
    if n_max == 0:
        return None
    every = stride(n_max, MAX_POINTS)
    base = sec.baseline(family)
    thr = M.reduction_threshold(means[base], reduction) if base in means else math.nan
    fig = go.Figure()
    for m, rs in groups.items():
        st = _style(rs[0], gammas)
        idx, y = downsample(means[m], every)
        name = rs[0].label
        fig.add_trace(
            go.Scatter(
                x=(idx + w).tolist(),
                y=_round(y),
                name=name,
                legendgroup=m,
                mode="lines",
                line={"color": st["color"], "dash": st["dash"], "width": 1.6},
                hovertemplate=f"{html.escape(name)} ({len(rs)} seeds)<br>step %{{x:,}}<br>loss %{{y:.4g}}"
                "<extra></extra>",
            )
        )
        k = M.first_crossing(means[m], thr)
        if k is not None:
            fig.add_trace(
                go.Scatter(
                    x=[k + w],
                    y=[float(f"{thr:.5g}")],
                    name=f"{name}: first crossing",
                    legendgroup=m,
                    showlegend=False,
                    mode="markers",
                    marker={"color": st["color"], "symbol": "line-ns-open", "size": 16, "line": {"width": 2}},
                    hovertemplate=f"{html.escape(name)} crosses at step %{{x:,}}<extra></extra>",
                )
            )
    if math.isfinite(thr):  # a trace, not a shape: it has a legend entry and hover on log axes
        fig.add_trace(
            go.Scatter(
                x=[w, w + n_max - 1],
                y=[float(f"{thr:.5g}")] * 2,
                name=f"{reduction * 100:g}% reduction threshold",
                mode="lines",
                line={"color": "#555555", "dash": "dash", "width": 1},
                hovertemplate=f"threshold %{{y:.4g}} (from {html.escape(base or '')})<extra></extra>",
            )
        )
    positive = all(np.nanmin(s) > 0 for s in means.values() if s.size and np.isfinite(s).any())
    fig.update_layout(
        template="plotly_white",
        height=420,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        title={"text": f"{sec.label}, {family_label(family)} family: training loss", "font": {"size": 15}},
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "xanchor": "left", "x": 0},
        hovermode="closest",
        xaxis={"title": {"text": "step (end of the trailing window)"}, "rangemode": "tozero"},
        yaxis={"title": {"text": "training loss (base weights)"}, **(LOG_AXIS if positive else {})},
    )
    caption = (
        f"{sec.label}, {family_label(family)} family (protocol {sec.protocols[family]}): the seed mean of "
        f"the training loss at the base weights, as a trailing mean over {w:,} steps (as in Figure 1), "
        + (
            f"drawn every {every:,} steps and at the last (at most {MAX_POINTS} points per curve)"
            if every > 1
            else "drawn at every step"
        )
        + "; the dashed line is the "
        f"{reduction * 100:g}% reduction threshold of the baseline, the ticks each method's first crossing. "
        "Hover for values, click a legend entry to hide or show a method, drag to zoom, double-click to reset"
    )
    return fig, caption


def _figure_html(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    out: str = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=_CONFIG,
        default_width="100%",
        default_height="420px",
    )
    return out


def curves_part(report: Report, loss: dict[str, np.ndarray]) -> Part | None:
    """The part 'Interactive loss curves': one plotly figure per task section and family."""
    blocks = []
    for sec in report.sections:
        for family in sec.families:
            got = section_figure(sec, family, report.reduction, loss)
            if got is None:
                continue
            fig, caption = got
            div = "curves-" + slug(f"{sec.key}-{family}")
            blocks.append(
                f'<figure class="interactive" id="fig-{div}">{_figure_html(fig, div)}'
                f"<figcaption>{html.escape(caption)}.</figcaption></figure>"
            )
    if not blocks:
        return None
    return Part(
        "Interactive loss curves",
        paragraphs=["The curves of Figure 1, interactive (in report.html)."],
        html=blocks,
    )


def _best(rs: Sequence[RunRecord]) -> tuple[float, str]:
    r0 = rs[0]
    vals = [M.best_over_epochs(r.epochs, r.metric, metric_factor(r.metric, r.metric_scale)) for r in rs]
    vals = [v for v in vals if math.isfinite(v)]
    head = metric_header(r0.metric, r0.metric_scale, r0.task)
    return (float(np.mean(vals)) if vals else math.nan), head


def run_rows(report: Report, loss: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per task section, family and method: the run browser's table, with the seeds' curves (the
    trailing mean of the section's window, at most :data:`MAX_SEED_POINTS` points each) in ``curves``."""
    rows = []
    for sec in report.sections:
        for family in sec.families:
            w = sec.windows[family]
            for rs in _groups([r for r in sec.records if r.family == family]).values():
                best, head = _best(rs)
                seeds = []
                for r in rs:
                    y = loss.get(str(r.path))
                    if y is None:
                        continue
                    s = M.trailing_mean(y, w)
                    idx, v = downsample(s, stride(s.size, MAX_SEED_POINTS))
                    rel = "/".join(r.path.parts[-3:])  # task/method/seed-hash in the store
                    seeds.append({"seed": r.seed, "path": rel, "x": (idx + w).tolist(), "y": _round(v)})
                rows.append(
                    {
                        "Task": sec.label,
                        "Family": family_label(family),
                        "Method": rs[0].label,
                        "Protocol": sec.protocols[family],
                        "Seeds": len(rs),
                        "Steps": max(r.steps for r in rs),
                        "Best (seed mean)": best,
                        "Metric": head,
                        "window": w,
                        "curves": seeds,
                    }
                )
    return pd.DataFrame(rows)


_BROWSER_JS = """
(function(){
  var data=JSON.parse(document.getElementById('run-data').textContent);
  var table=document.getElementById('run-table');
  function show(i){
    var d=data[i];
    table.querySelectorAll('tbody tr').forEach(function(r){
      r.classList.toggle('selected', r.getAttribute('data-run')===String(i));});
    var traces=d.curves.map(function(c){
      return {x:c.x||d.x,y:c.y,mode:'lines',name:'seed '+c.seed,line:{width:1.3},
        hovertemplate:'seed '+c.seed+'<br>step %{x:,}<br>loss %{y:.4g}<br>'+c.path+'<extra></extra>'};});
    Plotly.react('run-plot',traces,{template:'plotly_white',height:380,
      margin:{l:60,r:20,t:40,b:40},hovermode:'closest',
      title:{text:d.title,font:{size:14},x:0,xanchor:'left'},
      xaxis:{title:{text:'step (end of the '+d.window+'-step trailing window)'},rangemode:'tozero'},
      yaxis:d.log?{title:{text:'training loss (base weights)'},type:'log',dtick:'D2',tickformat:'~g'}
        :{title:{text:'training loss (base weights)'}},
      legend:{orientation:'v'}},{displaylogo:false,responsive:true});
  }
  table.querySelectorAll('tbody tr').forEach(function(r){
    r.addEventListener('click',function(){show(+r.getAttribute('data-run'));});
    r.addEventListener('keydown',function(e){if(e.key==='Enter'){show(+r.getAttribute('data-run'));}});
  });
  if(data.length){show(0);}
})();
"""


def _shared_x(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' curves with their step axis stated once when every seed shares it (``x`` beside them)."""
    xs = [c["x"] for c in seeds]
    if xs and all(x == xs[0] for x in xs):
        return {"x": xs[0], "curves": [{k: v for k, v in c.items() if k != "x"} for c in seeds]}
    return {"curves": seeds}


def browser_part(report: Report, loss: dict[str, np.ndarray]) -> Part | None:
    """The part 'Run browser': a sortable table of the methods run per task section, family and protocol;
    clicking a row draws that method's seeds, one curve each."""
    df = run_rows(report, loss)
    if df.empty:
        return None
    cols = ["Task", "Family", "Method", "Protocol", "Seeds", "Steps", "Best (seed mean)"]
    head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in cols)
    body = []
    payload = []
    for i, row in df.iterrows():
        cells = [
            row["Task"],
            row["Family"],
            row["Method"],
            row["Protocol"],
            num(int(row["Seeds"])),
            num(int(row["Steps"])),
            f"{num(float(row['Best (seed mean)']), 3)} ({row['Metric']})",
        ]
        body.append(
            f'<tr data-run="{i}" tabindex="0">'
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
        ys = [v for c in row["curves"] for v in c["y"] if v is not None]
        payload.append(
            {
                "title": f"{row['Task']}, {row['Method']} (protocol {row['Protocol']}): each seed",
                "window": int(row["window"]),
                "log": bool(ys) and min(ys) > 0,
                **_shared_x(row["curves"]),
            }
        )
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    block = (
        '<div class="table-wrap"><table class="sortable runs" id="run-table" data-name="run_browser">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        '<div id="run-plot" class="run-plot"></div>'
        f'<script type="application/json" id="run-data">{data}</script>'
        f"<script>{_BROWSER_JS}</script>"
    )
    return Part(
        "Run browser",
        paragraphs=[
            "Every method run, per task section and protocol; click a row (or focus it and press Enter) "
            "to draw that method's seeds, each the trailing mean of its training loss over the section's "
            f"window, drawn at most {MAX_SEED_POINTS} points per seed (every k-th step of the smoothed curve "
            "and its last); click a header to sort (in report.html)."
        ],
        html=[block],
    )


def script_src(out: Path, js: Path) -> str:
    """The ``<script src>`` of the bundle ``js`` as report.html in ``out`` reaches it (a relative path)."""
    return Path(os.path.relpath(js.resolve(), out.resolve())).as_posix()


def interactive_parts(report: Report, js: Path) -> list[Part]:
    """The interactive parts of ``report``'s HTML (curves, run browser), with plotly's JavaScript written
    to ``js`` (``<out>/JS_REL`` by default; one shared file when several reports sit side by side)."""
    loss = base_losses(report)
    parts = [p for p in (curves_part(report, loss), browser_part(report, loss)) if p is not None]
    if parts:
        write_plotly_js(js)
    return parts
