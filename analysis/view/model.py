"""The report model: every run's metrics, cost model, findings, recommendations and what-if checks.

Built once from analysed runs; the view (reportview) words it and every output renders that view.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from analysis.findings import (THRESHOLDS, Finding, Recommendation, Thresholds, all_findings, cpu_notes,
                               recommendations)
from analysis.records import RunAnalysis
from analysis.run.costmodel import CostModel, cost_model
from analysis.run.efficiency import Energy, Mfu, run_energy, run_mfu
from analysis.run.ops import OpDiff, TopOp, op_diff, top_ops
from analysis.run.scaling import RunMetrics, attach_speedups, run_metrics
from analysis.whatif.check import CheckRow, check_runs
from profiler.contract import vocab

__all__ = ["Report", "build_report", "measure"]


@dataclass
class Report:
    runs: list[RunAnalysis]
    metrics: list[RunMetrics]
    costs: dict[str, CostModel]          # keyed by run_dir
    findings: list[Finding]
    recommendations: list[Recommendation]
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thresholds: Thresholds = THRESHOLDS
    whatif: list[CheckRow] = field(default_factory=list)   # each multi-device run predicted from its 1-device run
    top_ops: dict[str, list[TopOp]] = field(default_factory=dict)   # keyed by run_dir
    op_diffs: dict[str, OpDiff] = field(default_factory=dict)       # multi-device runs vs their 1-device run
    mfu: dict[str, tuple[Mfu | None, str | None]] = field(default_factory=dict)        # run_dir -> (MFU, why not)
    energy: dict[str, tuple[Energy | None, str | None]] = field(default_factory=dict)  # run_dir -> (energy, why not)


def _dedupe_names(runs: list[RunAnalysis]) -> None:
    """Two folders with the same run name (two sweeps) get their parent folder prefixed."""
    counts = Counter(r.name for r in runs)
    for r in runs:
        if counts[r.name] > 1:
            r.name = f"{r.run_dir.parent.name}/{r.name}"


def measure(runs: list[RunAnalysis]) -> tuple[list[RunMetrics], dict[str, CostModel]]:
    """Each run's metrics (speedups attached) and cost model, the latter keyed by run_dir."""
    metrics = [run_metrics(r) for r in runs]
    attach_speedups(metrics)
    return metrics, {m.run_dir: cost_model(r, m) for r, m in zip(runs, metrics)}


def _run_notes(r: RunAnalysis, m: RunMetrics, cost: CostModel) -> list[str]:
    notes: list[str] = []
    if r.run is not None and r.run.status and r.run.status != vocab.STATUS_COMPLETE:
        notes.append(f"{r.name}: run status {r.run.status}" + (f" ({r.run.message})" if r.run.message else ""))
    if not r.traces and not r.errors:
        notes.append(f"{r.name}: no trace files — step time from run.json only, no breakdown")
    for tr in r.traces:
        notes += [f"{r.name} ({tr.worker}): {n}" for n in tr.notes]
        if tr.unclassified:
            top = sorted(tr.unclassified.items(), key=lambda kv: -kv[1])[:3]
            notes.append(f"{r.name} ({tr.worker}): unclassified events: " + ", ".join(f"{k} ×{v}" for k, v in top))
    notes += [f"{r.name}: {n}" for n in r.notes]
    notes += [f"{r.name}: {n}" for n in m.notes]
    notes += [f"{r.name}: cost model: {n}" for n in cost.notes]
    notes += [f"{r.name}: {n}" for n in cpu_notes(m, r.run is not None, r.samples.rows)]
    return notes


def build_report(runs: list[RunAnalysis], t: Thresholds = THRESHOLDS, environment_notes: Sequence[str] = ()) -> Report:
    """Metrics, cost models, findings and recommendations for already analysed runs; environment_notes
    (e.g. about an installed TensorBoard plugin) go after the runs' own notes."""
    _dedupe_names(runs)
    metrics, costs = measure(runs)
    notes = [n for r, m in zip(runs, metrics) for n in _run_notes(r, m, costs[m.run_dir])]
    bare = [r.name for r in runs if r.run is None]
    if bare:
        notes.insert(0, "no run.json in " + ", ".join(bare) + ": strategy, devices and batch come from the folder "
                     "name (<strategy>-<N><gpu|cpu>-b<batch>) when it follows that pattern, else from the traces; "
                     "no images/s, speedup, cost model or CPU allocation without them")
    notes += environment_notes
    whatif, _, whatif_notes = check_runs(runs, metrics)
    notes += whatif_notes
    mfu = {m.run_dir: run_mfu(r, m) for r, m in zip(runs, metrics)}
    known = {d: x.mfu for d, (x, _) in mfu.items() if x is not None and x.mfu is not None}
    found = all_findings(metrics, costs, t, mfu=known)
    return Report(runs=runs, metrics=metrics, costs=costs, findings=found, mfu=mfu,
                  energy={m.run_dir: run_energy(r, m) for r, m in zip(runs, metrics)},
                  recommendations=recommendations(metrics, costs, t, found),
                  errors=[e for r in runs for e in r.errors], notes=notes, thresholds=t, whatif=whatif,
                  top_ops={m.run_dir: top_ops(r, m) for r, m in zip(runs, metrics)}, op_diffs=_op_diffs(runs, metrics))


def _op_diffs(runs: list[RunAnalysis], metrics: list[RunMetrics]) -> dict[str, OpDiff]:
    """Each multi-device run against the 1-device run its speedup is measured from."""
    by_name = {m.name: (r, m) for r, m in zip(runs, metrics)}
    out: dict[str, OpDiff] = {}
    for r, m in zip(runs, metrics):
        if m.devices > 1 and m.baseline in by_name:
            d = op_diff(r, m, *by_name[m.baseline])
            if d is not None and d.rows:
                out[m.run_dir] = d
    return out
