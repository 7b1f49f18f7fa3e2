"""One self-contained HTML page: tables and figures embedded, no server needed."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from clusterprior.report.tables import best_marks

# Lets a headless browser (and a reader) see that every figure decoded, and how wide each renders.
CHECK_IMAGES = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var figures = imgs.concat(Array.prototype.slice.call(document.querySelectorAll("svg.figure")));
  var widths = figures.map(function (f) { return Math.round(f.getBoundingClientRect().width); });
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-broken", broken);
  document.body.setAttribute("data-figures", figures.length);
  document.body.setAttribute("data-min-width", widths.length ? Math.min.apply(null, widths) : 0);
});
</script>"""

STYLE = """<style>
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } b { color: #0a5; } figure { margin: 2em 0; }
img { max-width: 100%; min-width: 600px; } figcaption { color: #444; }
svg.figure { width: 640px; height: 400px; display: block; } svg.figure text { font-size: 12px; }
.scatter-grid { display: flex; flex-wrap: wrap; gap: 1em; }
</style>"""

# Fig. 2.4 drawn in the page from the embedded models: one SVG per measure, points coloured by
# the hyperparameter chosen in the select (no library, works offline).
SCATTER_JS = """<script>
(function () {
  var D = JSON.parse(document.getElementById("scatter-data").textContent);
  var palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function draw(svg, measure, hue) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = 640, H = 400, L = 70, R = 170, T = 30, B = 50;
    var pts = D.models.filter(function (m) { return m[measure] !== null; });
    var xs = pts.map(function (m) { return m[measure]; }), ys = pts.map(function (m) { return m.target; });
    function span(v) { var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v);
      var pad = (hi - lo) * 0.05 || 1e-3; return [lo - pad, hi + pad]; }
    var sx = span(xs), sy = span(ys);
    function X(v) { return L + (v - sx[0]) / (sx[1] - sx[0]) * (W - L - R); }
    function Y(v) { return H - B - (v - sy[0]) / (sy[1] - sy[0]) * (H - T - B); }
    svg.appendChild(el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#888"}));
    [0, 0.5, 1].forEach(function (f) {
      var vx = sx[0] + f * (sx[1] - sx[0]), vy = sy[0] + f * (sy[1] - sy[0]);
      svg.appendChild(el("text", {x: X(vx), y: H - B + 16, "text-anchor": "middle"}, vx.toPrecision(3)));
      svg.appendChild(el("text", {x: L - 6, y: Y(vy) + 4, "text-anchor": "end"}, vy.toPrecision(3)));
    });
    svg.appendChild(el("text", {x: (W - R + L) / 2, y: H - 10, "text-anchor": "middle"}, measure));
    svg.appendChild(el("text", {x: 14, y: (H - B + T) / 2, "text-anchor": "middle",
      transform: "rotate(-90 14 " + (H - B + T) / 2 + ")"}, D.target));
    svg.appendChild(el("text", {x: L, y: 18, "font-weight": "bold"}, measure + ", coloured by " + hue));
    var values = D.axes[hue];
    pts.forEach(function (m) {
      var c = palette[values.indexOf(m[hue]) % palette.length];
      svg.appendChild(el("circle", {cx: X(m[measure]), cy: Y(m.target), r: 3.5, fill: c, "fill-opacity": 0.75}));
    });
    values.forEach(function (v, i) {
      svg.appendChild(el("circle", {cx: W - R + 20, cy: T + 10 + 18 * i, r: 5, fill: palette[i % palette.length]}));
      svg.appendChild(el("text", {x: W - R + 32, y: T + 14 + 18 * i}, hue + " = " + v));
    });
  }
  var select = document.getElementById("scatter-hue");
  function all() {
    document.querySelectorAll("svg.figure[data-measure]").forEach(function (svg) {
      draw(svg, svg.getAttribute("data-measure"), select.value);
    });
  }
  select.addEventListener("change", all);
  all();
})();
</script>"""


def scatter_section(models: pd.DataFrame, measures: list[str], axes: list[str], target_label: str) -> str:
    """Fig. 2.4 in the page: a select of the hyperparameter to colour by, one SVG per measure,
    and the models' values embedded as JSON."""

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    data = {
        "target": target_label,
        "axes": {a: sorted(models[a].astype(str).unique().tolist()) for a in axes},
        "models": [
            {"target": float(r["target"]), **{m: clean(float(r[m])) for m in measures}, **{a: str(r[a]) for a in axes}}
            for _, r in models.iterrows()
            if math.isfinite(r["target"])
        ],
    }
    options = "".join(f"<option value='{html.escape(a)}'>{html.escape(a)}</option>" for a in axes)
    figures = "".join(
        f"<svg class='figure' data-measure='{html.escape(m)}' viewBox='0 0 640 400' "
        f"role='img' aria-label='{html.escape(m)} against {html.escape(target_label)}'></svg>"
        for m in measures
    )
    payload = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    return (
        f"<p><label>colour by <select id='scatter-hue'>{options}</select></label></p>"
        f"<div class='scatter-grid'>{figures}</div>"
        f"<script type='application/json' id='scatter-data'>{payload}</script>{SCATTER_JS}"
    )


def table_html(table: pd.DataFrame, intervals: pd.DataFrame | None = None, digits: int = 2) -> str:
    best = best_marks(table)
    head = "<tr><th>measure</th>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns) + "</tr>"
    rows = []
    for name, row in table.iterrows():
        cells = []
        for col, value in row.items():
            text = "" if pd.isna(value) else f"{value:.{digits}f}"
            if text and best.loc[name, col]:
                text = f"<b>{text}</b>"
            if intervals is not None and intervals.loc[name, col]:
                text += f"<br><small>{intervals.loc[name, col]}</small>"
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr><td>{html.escape(str(name))}</td>{''.join(cells)}</tr>")
    return f"<table class='kendall'>{head}{''.join(rows)}</table>"


def page(title: str, intro: str, sections: list[tuple[str, str]], figures: list[tuple[Path, str]]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}</head><body>",
        f"<h1>{html.escape(title)}</h1><p>{intro}</p>",
    ]
    parts += [f"<h2>{html.escape(heading)}</h2>{body}" for heading, body in sections]
    for path, caption in figures:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append(CHECK_IMAGES + "</body></html>")
    return "\n".join(parts)
