"""One self-contained HTML page: tables and figures embedded, no server needed."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from clusterprior.report.tables import best_marks

# Lets a headless browser (and a reader) see that every figure decoded.
CHECK_IMAGES = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-broken", broken);
});
</script>"""

STYLE = """<style>
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #bbb; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } b { color: #0a5; } figure { margin: 2em 0; }
img { max-width: 100%; } figcaption { color: #444; }
</style>"""


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
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}</head><body>",
             f"<h1>{html.escape(title)}</h1><p>{intro}</p>"]
    parts += [f"<h2>{html.escape(heading)}</h2>{body}" for heading, body in sections]
    for path, caption in figures:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append(CHECK_IMAGES + "</body></html>")
    return "\n".join(parts)
