"""summary.json: the report's numbers, cost models, and every finding and recommendation (figures + text).

Rendered from the same view as the terminal and the HTML, so no output can say something another does not.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from analysis.findings import thresholds_dict
from analysis.run.costmodel import CostModel
from analysis.run.samples import SampleSummary
from analysis.view.model import Report
from analysis.view.reportview import ReportView, build_view, items_json
from analysis.whatif.check import error_summary
from profiler.contract.runjson import encode_json

__all__ = ["SUMMARY_SCHEMA", "to_summary", "summary_bytes"]

SUMMARY_SCHEMA = 2      # 2: findings/recommendations carry typed figures; cost items by kind; samples summary


def _samples_dict(s: SampleSummary) -> dict[str, Any]:
    d = asdict(s)
    d.pop("series")
    return d


def _cost_dict(c: CostModel) -> dict[str, Any]:
    return {**asdict(c), "bytes_per_step": c.bytes_per_step, "allreduce_in_flight_ms": c.allreduce_in_flight_ms}


def to_summary(report: Report, view: ReportView | None = None) -> dict[str, Any]:
    """summary.json: the table's numbers, cost models, and every finding and recommendation (figures + text)."""
    view = view if view is not None else build_view(report)
    runs = []
    for r, m in zip(report.runs, report.metrics):
        d = asdict(m)
        d["errors"] = list(r.errors)
        d["samples"] = _samples_dict(r.samples)
        d["cost_model"] = _cost_dict(report.costs[m.run_dir])
        d["trace_files"] = [{"path": str(t.path), "worker": t.worker, "has_gpu": t.has_gpu, "steps": len(t.steps),
                             "mean_step_ms": t.mean_step_us() / 1e3, "notes": list(t.notes),
                             "unclassified": dict(t.unclassified)} for t in r.traces]
        d["top_ops"] = [asdict(o) for o in report.top_ops.get(m.run_dir, [])]
        diff = report.op_diffs.get(m.run_dir)
        d["op_diff_base"] = diff.base if diff else None
        d["op_diff"] = [asdict(c) for c in diff.rows] if diff else []
        eff, mfu_why = report.mfu.get(m.run_dir, (None, None))
        d["mfu"] = asdict(eff) if eff is not None else None
        energy, energy_why = report.energy.get(m.run_dir, (None, None))
        d["energy"] = asdict(energy) if energy is not None else None
        d["efficiency_notes"] = [n for n in (mfu_why, energy_why) if n]
        runs.append(d)
    return {
        "schema": SUMMARY_SCHEMA,
        "runs": runs,
        "findings": items_json(view.findings),
        "recommendations": items_json(view.recommendations),
        "errors": list(view.errors),
        "notes": list(view.notes),
        "thresholds": thresholds_dict(report.thresholds),
        "whatif": {"checks": [{**asdict(c), "error": c.error} for c in report.whatif],
                   "summary": error_summary(report.whatif)},
    }


def summary_bytes(report: Report, view: ReportView | None = None) -> bytes:
    return encode_json(to_summary(report, view))
