"""Layer 5, the one report view: the report model (runs, metrics, findings, what-if checks), its words
(phrasing), the view every output renders, the text/markdown renderings and summary.json."""
from analysis.view.model import Report, build_report
from analysis.view.reportview import ReportView, build_view
from analysis.view.summary import SUMMARY_SCHEMA, summary_bytes, to_summary

__all__ = ["Report", "build_report", "ReportView", "build_view", "SUMMARY_SCHEMA", "summary_bytes", "to_summary"]
