"""Markup of the self-contained HTML report: a page of sections, tables that sort, images embedded.

Nothing in the page refers to another file or host: images are base64 PNG ``data:`` URLs, the style
and the few lines of sorting script are inline, so the file opens offline, mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Section", "image_tag", "page", "preformatted", "table"]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#23395d;color:#fff;padding:.8em 1.5em}
header h1{margin:0;font-size:1.4em} header p{margin:.3em 0 0;opacity:.85}
nav{position:sticky;top:0;background:#eef1f6;padding:.4em 1.5em;border-bottom:1px solid #d5dae3;z-index:1}
nav a{margin-right:1em;color:#23395d;text-decoration:none;font-size:.92em}
main{max-width:1200px;margin:0 auto;padding:0 1.5em 2em}
section{margin-top:1.6em} h2{border-bottom:2px solid #23395d;padding-bottom:.2em;font-size:1.2em}
h3{font-size:1.02em;margin:1.1em 0 .4em}
table{border-collapse:collapse;font-size:.88em;margin:.4em 0;background:#fff}
th,td{border:1px solid #d5dae3;padding:.25em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#eef1f6;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" ▲"} table.sortable th[aria-sort=descending]::after{content:" ▼"}
.scroll{max-height:28em;overflow:auto;display:inline-block;max-width:100%}
.figures{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid #d5dae3;padding:.4em}
figure img{max-width:100%;height:auto;display:block}
.charts figure{flex:0 1 360px} .snaps figure{max-width:760px} .overlays img{width:256px;image-rendering:pixelated}
figcaption{font-size:.82em;color:#555;margin-top:.2em}
pre{background:#fff;border:1px solid #d5dae3;padding:.8em;overflow:auto;max-height:32em;font-size:.82em}
.note{color:#555;font-size:.9em}
"""

# sorts a table by the clicked column: numbers by value (cells carry data-v), text alphabetically
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){th.addEventListener("click",function(){
    var up=th.getAttribute("aria-sort")!=="ascending",body=t.tBodies[0];
    t.querySelectorAll("th").forEach(function(h){h.removeAttribute("aria-sort")});
    th.setAttribute("aria-sort",up?"ascending":"descending");
    var key=function(r){var c=r.cells[i];
      return c.hasAttribute("data-v")?parseFloat(c.getAttribute("data-v")):c.textContent};
    Array.from(body.rows).sort(function(a,b){var x=key(a),y=key(b);
      var o=(typeof x==="number")?((isNaN(x)?-Infinity:x)-(isNaN(y)?-Infinity:y)):String(x).localeCompare(String(y));
      return up?o:-o}).forEach(function(r){body.appendChild(r)});
  })});
});
"""


class Section:
    """One ``<section id=…>`` of the page, listed in its navigation bar."""

    def __init__(self, key: str, title: str, body: str) -> None:
        self.key, self.title, self.body = key, title, body

    def render(self) -> str:
        return f'<section id="{self.key}"><h2>{html.escape(self.title)}</h2>\n{self.body}\n</section>'


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: header, a navigation bar to each section, the sections, the sorting script."""
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(s.render() for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav>\n<main>\n{body}\n</main>\n<script>{SORT_JS}</script>\n</body></html>\n"
    )


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{'' if value is None else value}</td>"
    if isinstance(value, int | float):
        number = float(value)
        shown = "n/a" if math.isnan(number) else (str(value) if isinstance(value, int) else f"{number:.4f}")
        return f'<td class="num" data-v="{number!r}">{shown}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, sortable: bool = True,
          key: str = "") -> str:  # fmt: skip
    """An HTML table of ``rows`` (dicts); ``columns`` default to the keys of all rows, first seen first.
    Sortable tables sort by a click on a column's header."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    attrs = (' class="sortable"' if sortable else "") + (f' id="{key}"' if key else "")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>\n" for r in rows)
    return f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>'


def image_tag(source: str | Path | bytes, caption: str = "") -> str:
    """A figure holding the PNG ``source`` (a file or its bytes) as a ``data:`` URL."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    alt = html.escape(caption or "figure", quote=True)
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{url}" alt="{alt}">{text}</figure>'


def preformatted(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
