"""Text and markdown renderings of the report view (terminal, --format markdown, the TensorBoard Text tab)."""
from __future__ import annotations

from collections.abc import Sequence

from analysis.text.tables import text_table
from analysis.text.terminal import shown_lines
from analysis.view.reportview import Item, ReportView, Table

NO_FINDINGS = "none: no figure crossed a threshold"


def _numbered(items: Sequence[Item]) -> list[str]:
    return [f"{i.number}. {i.text}" for i in items]


def render_text(view: ReportView) -> str:
    out: list[str] = []
    for t in view.tables:
        if out:
            out += ["", f"{t.title}:"]
        out += [text_table(t.header, t.rows, t.left), t.footnote]
    out += ["", "Findings:"] + (_numbered(view.findings) or [f"({NO_FINDINGS})"])
    out += ["", "Recommendations (ranked by estimated saving):"] + (_numbered(view.recommendations) or ["(none)"])
    if view.notes:
        out += ["", "Notes:"] + [f"- {n}" for n in view.notes]
    if view.errors:
        out += ["", "Errors:"] + [f"- {e}" for e in view.errors]
    return shown_lines("\n".join(out))          # run names come from other people's folders


def _esc(s: str) -> str:
    return s.replace("|", "\\|")


def markdown_table(t: Table) -> list[str]:
    return (["| " + " | ".join(_esc(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
            + ["| " + " | ".join(_esc(c) for c in r) + " |" for r in t.rows])


def markdown_items(items: Sequence[Item]) -> list[str]:
    """One paragraph per item, the dot escaped so Markdown keeps the report's own numbers (3, 5 stay 3, 5)."""
    return [f"{i.number}\\. {i.text}" for i in items]


def render_markdown(view: ReportView, level: int = 1, escape: bool = False) -> str:
    """The view as markdown; escape: control characters shown escaped (for a terminal)."""
    text = _markdown(view, level)
    return shown_lines(text) if escape else text


def _markdown(view: ReportView, level: int) -> str:
    h = "#" * level
    out = [f"{h} {view.title}"]
    for t in view.tables:
        out += ["", f"{h}# {t.title}", ""] + markdown_table(t) + (["", t.footnote] if t.footnote else [])
    for heading, items in (("Findings", view.findings), ("Recommendations", view.recommendations)):
        out += ["", f"{h}# {heading}", "", "\n\n".join(markdown_items(items)) if items else "None."]
    if view.notes:
        out += ["", f"{h}# Notes", ""] + [f"- {_esc(n)}" for n in view.notes]
    if view.errors:
        out += ["", f"{h}# Errors", ""] + [f"- {_esc(e)}" for e in view.errors]
    return "\n".join(out) + "\n"


def findings_markdown(view: ReportView) -> str:
    """The TensorBoard Text tab's findings of one run's view."""
    if not view.findings:
        return "_No findings: the report found nothing to flag for this run._"
    return "\n\n".join(markdown_items(view.findings))
