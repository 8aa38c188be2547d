"""report/index.html: one self-contained page (inline CSS, PNGs as data: URIs, no scripts, no fetches).

It must open from a cluster's scratch disk or an e-mail attachment with no network, so
nothing in it may reference another file or host. Every piece of text is HTML-escaped.
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analysis.view.reportview import ReportView

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#212121;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:right;white-space:nowrap}
th{background:#f5f5f5}td.l,th.l{text-align:left}
ol li{margin:.35em 0}.err{color:#b71c1c}.note{color:#616161;font-size:.9em}
img{max-width:100%;height:auto;display:block;margin:.5em 0 1.5em}
code{background:#f5f5f5;padding:0 .2em}
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<p class="note">{escape(alt)}: no data for this figure.</p>'
    return f'<img src="{data_uri(png)}" alt="{escape(alt)}">'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An HTML table; the first `left` columns are left-aligned (names), the rest numeric."""
    def cell(tag: str, i: int, text: str) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{escape(str(text))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def numbered(items: Sequence[tuple[int, str]]) -> str:
    """An ordered list that keeps the view's own numbers (value=), so HTML never renumbers them."""
    if not items:
        return '<p class="note">None: no figure crossed a threshold.</p>'
    return "<ol>" + "".join(f'<li value="{n}">{escape(text)}</li>' for n, text in items) + "</ol>"


def page(title: str, sections: Sequence[tuple[str, str]], errors: Sequence[str] = (),
         notes: Sequence[str] = ()) -> str:
    """The whole document. `sections` are (heading, already-escaped HTML body) pairs."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if errors:
        parts.append('<h2>Errors</h2><ul class="err">' + "".join(f"<li>{escape(e)}</li>" for e in errors) + "</ul>")
    for heading, body in sections:
        parts.append(f"<h2>{escape(heading)}</h2>{body}")
    if notes:
        parts.append('<h2>Notes</h2><ul class="note">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def report_page(view: ReportView, figures: Sequence[tuple[str, str]] = ()) -> str:
    """The report view as a page: its tables, numbered findings and recommendations, then the figures."""
    sections: list[tuple[str, str]] = []
    for t in view.tables:
        sections.append((t.title, table(t.header, t.rows, left=max(t.left, 1)) + (note(t.footnote) if t.footnote else "")))
        if t.title == view.tables[0].title:
            sections.append(("Findings", numbered([(i.number, i.text) for i in view.findings])))
            sections.append(("Recommendations (ranked by estimated saving)",
                             numbered([(i.number, i.text) for i in view.recommendations])))
    return page(view.title, [*sections, *figures], view.errors, view.notes)
