"""`python -m analysis.report [PATHS...]`: the table, findings and recommendations for every run found.

Reads run folders (run.json and/or Kineto traces) under PATHS, builds one Report (metrics, cost
models, findings, recommendations), turns it into one ReportView, and renders that view to the
terminal (text, markdown or JSON), report/index.html (with plots) and report/summary.json.
Plotting (matplotlib) is imported only when the HTML is drawn.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis import html, render, tbplugin
from analysis.costmodel import CostModel, cost_model
from analysis.findings import (THRESHOLDS, Finding, Recommendation, Thresholds, all_findings, cpu_notes,
                               recommendations, thresholds_dict)
from analysis.records import RunAnalysis
from analysis.runs import InputError, TraceAnalyser, analyse_runs, discover_runs
from analysis.samplestats import SampleSummary
from analysis.scaling import RunMetrics, attach_speedups, run_metrics
from analysis.terminal import shown
from analysis.view import ReportView, build_view, items_json
from analysis.whatif.check import CheckRow, check_runs, error_summary
from profiler.contract import vocab
from profiler.contract.runjson import encode_json, write_bytes_atomic

PROG = "python -m analysis.report"
SUMMARY_SCHEMA = 2      # 2: findings/recommendations carry typed figures; cost items by kind; samples summary


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


# --- building ---------------------------------------------------------------------------------

def _dedupe_names(runs: list[RunAnalysis]) -> None:
    """Two folders with the same run name (two sweeps) get their parent folder prefixed."""
    counts = Counter(r.name for r in runs)
    for r in runs:
        if counts[r.name] > 1:
            r.name = f"{r.run_dir.parent.name}/{r.name}"


def tb_profiler_note() -> str | None:
    """The warning about torch-tb-profiler ≤ 0.4.3's Overview, when that plugin is installed."""
    version = tbplugin.installed_version()
    return tbplugin.note_for_version(version) if version is not None else None


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


def build_report(runs: list[RunAnalysis], t: Thresholds = THRESHOLDS) -> Report:
    """Metrics, cost models, findings and recommendations for already analysed runs."""
    _dedupe_names(runs)
    metrics, costs = measure(runs)
    notes = [n for r, m in zip(runs, metrics) for n in _run_notes(r, m, costs[m.run_dir])]
    bare = [r.name for r in runs if r.run is None]
    if bare:
        notes.insert(0, "no run.json in " + ", ".join(bare) + ": strategy, devices and batch come from the folder "
                     "name (<strategy>-<N><gpu|cpu>-b<batch>) when it follows that pattern, else from the traces; "
                     "no images/s, speedup, cost model or CPU allocation without them")
    tb = tb_profiler_note()
    if tb:
        notes.append(tb)
    whatif, _, whatif_notes = check_runs(runs, metrics)
    notes += whatif_notes
    return Report(runs=runs, metrics=metrics, costs=costs, findings=all_findings(metrics, costs, t),
                  recommendations=recommendations(metrics, costs, t),
                  errors=[e for r in runs for e in r.errors], notes=notes, thresholds=t, whatif=whatif)


# --- rendering --------------------------------------------------------------------------------

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


def render_html(report: Report, view: ReportView | None = None) -> str:
    from analysis import plots   # matplotlib: imported only when figures are drawn
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
        tb = importlib.import_module("analysis.tensorboard")
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


# --- CLI --------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Explain why training is slower on more devices: reads run folders (run.json and/or "
                    "*.pt.trace.json[.gz]) found recursively under PATHS, prints one row per run (step time, "
                    "images/s, speedup and scaling efficiency vs the 1-device run, where each step's time goes), "
                    "numbered findings with their figures and recommendations ranked by estimated saving; writes "
                    "a self-contained index.html and summary.json.",
        epilog="Exit status: 0 ok; 2 bad input (a path that does not exist, no run found, or a trace/run.json that "
               "could not be read — the other runs are still reported and the files still written).")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("traces")], metavar="PATHS",
                   help="run folders or folders holding them (default: traces/)")
    p.add_argument("--out", type=Path, default=Path("report"), metavar="DIR",
                   help="where index.html and summary.json go (default: report/)")
    p.add_argument("--no-html", action="store_true", help="print only; write nothing under --out")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                   help="what goes to stdout (default: text)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write the breakdown and findings as TensorBoard events into each run folder "
                        "(needs analysis.tensorboard; a failure is a warning, not an error)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="tqdm bar while analysing traces (auto: when there are 6 or more)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes analysing traces at once, or decoding one large trace between them "
                        "(default: the job's CPUs -- affinity, cgroup quota, HTCondor Cpus -- fewer if memory is short; "
                        "1: one by one in this process)")
    return p


def run_report(paths: list[Path], analyser: TraceAnalyser | None = None,
               progress: bool | None = None, jobs: int | None = None) -> Report:
    """Discover, analyse and build; raises InputError (one line) for a bad path or no runs."""
    run_dirs = discover_runs(paths)
    if not run_dirs:
        where = ", ".join(str(p) for p in paths)
        raise InputError(f"no run folders (run.json or *.pt.trace.json[.gz]) found under {where}")
    return build_report(analyse_runs(run_dirs, analyser, progress=progress, jobs=jobs))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    try:
        if args.jobs is not None and args.jobs < 1:
            raise InputError(f"--jobs must be at least 1, got {args.jobs}")
        report = run_report(args.paths, progress=progress, jobs=args.jobs)
    except InputError as exc:
        print(f"{PROG}: error: {shown(exc)}", file=sys.stderr)
        return 2
    view = build_view(report)
    if args.format == "json":
        sys.stdout.write(summary_bytes(report, view).decode() + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render.render_markdown(view, escape=True))
    else:
        print(render.render_text(view))
    for e in report.errors:
        print(f"{PROG}: error: {shown(e)}", file=sys.stderr)
    if not args.no_html:
        try:
            index = write_outputs(report, args.out, view)
        except OSError as exc:
            print(f"{PROG}: error: cannot write the report into {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"report: {index} and {args.out / 'summary.json'}", file=sys.stderr)
    if args.tensorboard:
        for w in write_tensorboard(report, view):
            print(f"{PROG}: warning: {w}", file=sys.stderr)
    return 2 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
