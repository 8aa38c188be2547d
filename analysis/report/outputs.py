"""The report's files: report/index.html (plots drawn here) and summary.json, and TensorBoard events.

Plotting (matplotlib) is imported only when the HTML is drawn.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from analysis.report import html
from analysis.view.model import Report
from analysis.view.reportview import ReportView, build_view
from analysis.view.summary import summary_bytes
from profiler.contract.runjson import write_bytes_atomic

__all__ = ["render_html", "write_outputs", "write_tensorboard"]


def render_html(report: Report, view: ReportView | None = None) -> str:
    from analysis.report import plots   # matplotlib: imported only when figures are drawn
    view = view if view is not None else build_view(report)
    util = [(r.name, plots.utilisation_png(r, m)) for r, m in zip(report.runs, report.metrics)]
    util_html = "".join(html.img(png, f"{name}: utilisation over time") for name, png in util if png is not None)
    missing = [name for name, png in util if png is None]
    if missing:
        util_html += html.note("no samples.csv rows for: " + ", ".join(missing))
    figures = [
        ("Step breakdown", html.img(plots.breakdown_png(report.metrics), "stacked breakdown per run")),
        ("Speedup vs ideal", html.img(plots.speedup_png(report.metrics), "speedup vs ideal")),
        ("Utilisation over time (samples.csv)", util_html),
        ("One step per run", "".join(html.img(plots.timeline_png(r), f"{r.name}: one step's timeline")
                                     for r in report.runs)),
    ]
    return html.report_page(view, figures)


def write_outputs(report: Report, out_dir: Path, view: ReportView | None = None) -> Path:
    """summary.json and index.html, both rendered before either is written, each written atomically
    (temp + rename): a failure leaves the previous report whole, never one new file beside one stale."""
    view = view if view is not None else build_view(report)
    summary, page = summary_bytes(report, view), render_html(report, view).encode("utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    write_bytes_atomic(out_dir / "summary.json", summary)
    write_bytes_atomic(index, page)
    return index


def write_tensorboard(report: Report, view: ReportView | None = None) -> list[str]:
    """Call analysis.tensorboard.write_report_events for every run; returns warning lines."""
    try:
        tb = importlib.import_module("analysis.tensorboard.events")   # tensorboard's protobufs: only when asked
    except ImportError as exc:
        return [f"--tensorboard: analysis.tensorboard is not available ({exc}); no events written"]
    view = view if view is not None else build_view(report)
    warnings = []
    for r in report.runs:
        try:
            tb.write_report_events(r, view.for_run(r.name), r.run_dir)
        except OSError as exc:
            warnings.append(f"--tensorboard: cannot write events into {r.run_dir}: {exc.strerror or exc}")
    return warnings
