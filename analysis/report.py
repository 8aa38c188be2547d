"""`python -m analysis.report [PATHS...]`: the table, findings and recommendations for every run found.

Reads run folders (run.json and/or Kineto traces) under PATHS, prints one row per run, the
numbered findings and the ranked recommendations, and writes report/index.html (plots
embedded) and report/summary.json (the same numbers for machines).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis import html, tbplugin
from analysis.findings import (THRESHOLDS, Finding, Recommendation, Thresholds, all_findings, finding_line, gb,
                               recommendation_line, recommendations, thresholds_dict)
from analysis.records import RunAnalysis
from analysis.runs import InputError, TraceAnalyser, analyse_runs, discover_runs
from analysis.scaling import CostModel, RunMetrics, allreduce_total_ms, attach_speedups, cost_model, run_metrics
from profiler.contract import vocab
from profiler.contract.runjson import encode_json

PROG = "python -m analysis.report"
SUMMARY_SCHEMA = 1
SHORT = {vocab.COMPUTE: "comp", vocab.COMMUNICATION: "comm", vocab.H2D_COPY: "h2d", vocab.DATA_LOADING: "data",
         vocab.HOST_OVERHEAD: "host", vocab.UNCLASSIFIED: "uncl", vocab.IDLE: "idle"}


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


def measure(runs: list[RunAnalysis]) -> tuple[list[RunMetrics], dict[str, CostModel], dict[str, dict[str, Any]]]:
    """Each run's metrics (speedups attached), cost model and samples summary; the last two keyed by run_dir."""
    metrics = [run_metrics(r) for r in runs]
    attach_speedups(metrics)
    costs = {m.run_dir: cost_model(r, m) for r, m in zip(runs, metrics)}
    samples = {m.run_dir: r.samples for r, m in zip(runs, metrics)}
    return metrics, costs, samples


def build_report(runs: list[RunAnalysis], t: Thresholds = THRESHOLDS) -> Report:
    """Metrics, cost models, findings and recommendations for already analysed runs."""
    _dedupe_names(runs)
    metrics, costs, samples = measure(runs)
    errors = [e for r in runs for e in r.errors]
    notes: list[str] = []
    for r, m in zip(runs, metrics):
        status = (r.run or {}).get("status")
        if status and status != vocab.STATUS_COMPLETE:
            msg = (r.run or {}).get("message")
            notes.append(f"{r.name}: run status {status}" + (f" ({msg})" if msg else ""))
        if not r.traces and not r.errors:
            notes.append(f"{r.name}: no trace files — step time from run.json only, no breakdown")
        for tr in r.traces:
            notes += [f"{r.name} ({tr.worker}): {n}" for n in tr.notes]
            if tr.unclassified:
                top = sorted(tr.unclassified.items(), key=lambda kv: -kv[1])[:3]
                notes.append(f"{r.name} ({tr.worker}): unclassified events: "
                             + ", ".join(f"{k} ×{v}" for k, v in top))
        notes += [f"{r.name}: {n}" for n in m.notes]
        notes += [f"{r.name}: cost model: {n}" for n in costs[m.run_dir].notes]
    bare = [r.name for r in runs if not r.run]
    if bare:
        notes.insert(0, "no run.json in " + ", ".join(bare) + ": strategy, devices and batch come from the folder "
                     "name (<strategy>-<N><gpu|cpu>-b<batch>) when it follows that pattern, else from the traces; "
                     "no images/s, speedup or cost model without them")
    tb = tb_profiler_note()
    if tb:
        notes.append(tb)
    return Report(runs=runs, metrics=metrics, costs=costs, findings=all_findings(metrics, costs, samples, t),
                  recommendations=recommendations(metrics, costs, samples, t), errors=errors, notes=notes,
                  thresholds=t)


# --- rendering --------------------------------------------------------------------------------

TABLE_HEADER = ["run", "strategy", "devices", "batch", "step ms", "img/s", "speedup", "eff"] + \
    [f"{SHORT[c]} %" for c in vocab.CATEGORIES] + ["GPU util %"]


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def table_rows(report: Report) -> list[list[str]]:
    rows = []
    for m in report.metrics:
        traced = m.step_ms_source == "trace"
        unit = "gpu" if m.device_type == "cuda" else "cpu"
        rows.append([
            m.name, m.strategy, f"{m.devices} {unit}", _f(m.global_batch, "d"),
            _f(m.step_ms, ".1f") + ("" if traced or m.step_ms is None else "*"),
            _f(m.images_per_s, ".0f") + ("†" if m.images_per_s_source == "trace" else ""),
            _f(m.speedup, ".2f") + ("×" if m.speedup is not None else ""),
            _f(None if m.efficiency is None else m.efficiency * 100, ".0f") + (" %" if m.efficiency is not None else ""),
            *[_f(m.shares.get(c, 0.0) * 100 if traced else None, ".1f") for c in vocab.CATEGORIES],
            _f(m.mean_gpu_util_pct, ".0f"),
        ])
    return rows


TABLE_FOOTNOTE = ("step ms: mean wall of the profiled steps (trace), * = from run.json step times; img/s: run.json "
                  "results, † = global batch ÷ step time; speedup/eff: images/s vs the 1-device run of the same "
                  "device type; breakdown % of the step: "
                  + ", ".join(f"{SHORT[c]}={c}" for c in vocab.CATEGORIES) + "; GPU util: NVML mean over the run")


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def cost_lines(report: Report) -> list[str]:
    """One line per run with traffic: bytes per step, the link figure used, predicted vs measured."""
    lines = []
    for m in report.metrics:
        c = report.costs[m.run_dir]
        if not c.items:
            continue
        line = f"{m.name}: {gb(c.bytes_per_step)} per step"
        if len(c.items) > 1:
            line += " (" + " + ".join(gb(i.bytes) for i in c.items) + ")"
        line += " (estimate)" if c.estimated else ""
        exposed = c.measured_comm_ms
        if c.bandwidth_gbps:
            line += f" at {c.bandwidth_gbps:.1f} GB/s ({c.bandwidth_source}) → predicted {c.predicted_comm_ms:.1f} ms"
        elif m.device_type == "cpu" and exposed is not None:
            line += ", no link bandwidth measured (gloo on CPU: the all-reduce time is measured directly: " \
                    f"{exposed:.1f} ms exposed"
            total = allreduce_total_ms(exposed, m.comm_overlap)
            if total is not None:
                line += f" of ≈{total:.1f} ms in flight per step, {m.comm_overlap * 100:.0f} % under backward"
            line += ")"
            exposed = None
        else:
            line += ", no link bandwidth measured"
        if exposed is not None:
            line += f"; measured exposed communication {exposed:.1f} ms"
        lines.append(line)
    return lines


def render_text(report: Report) -> str:
    out = [text_table(TABLE_HEADER, table_rows(report)), TABLE_FOOTNOTE]
    costs = cost_lines(report)
    if costs:
        out += ["", "Communication cost model (bytes each strategy must move per step ÷ the bandwidth achieved):"]
        out += [f"- {line}" for line in costs]
    out += ["", "Findings:"]
    out += [finding_line(i, f) for i, f in enumerate(report.findings, 1)] or ["(none: no figure crossed a threshold)"]
    out += ["", "Recommendations (ranked by estimated saving):"]
    out += [recommendation_line(i, r) for i, r in enumerate(report.recommendations, 1)] or ["(none)"]
    if report.notes:
        out += ["", "Notes:"] + [f"- {n}" for n in report.notes]
    if report.errors:
        out += ["", "Errors:"] + [f"- {e}" for e in report.errors]
    return "\n".join(out)


def render_markdown(report: Report) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = ["# scalescope report", "", "| " + " | ".join(TABLE_HEADER) + " |",
           "|" + "---|" * len(TABLE_HEADER)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in table_rows(report)]
    out += ["", TABLE_FOOTNOTE]
    costs = cost_lines(report)
    if costs:
        out += ["", "## Communication cost model", ""] + [f"- {line}" for line in costs]
    out += ["", "## Findings", ""]
    out += [finding_line(i, f) for i, f in enumerate(report.findings, 1)] or ["None."]
    out += ["", "## Recommendations", ""]
    out += [recommendation_line(i, r) for i, r in enumerate(report.recommendations, 1)] or ["None."]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    if report.errors:
        out += ["", "## Errors", ""] + [f"- {e}" for e in report.errors]
    return "\n".join(out) + "\n"


def _cost_dict(c: CostModel) -> dict[str, Any]:
    d = asdict(c)
    d["bytes_per_step"] = c.bytes_per_step
    d["estimated"] = c.estimated
    return d


def to_summary(report: Report) -> dict[str, Any]:
    """summary.json: the table's numbers, cost models, findings and recommendations, JSON-clean."""
    runs = []
    for r, m in zip(report.runs, report.metrics):
        d = asdict(m)
        d["errors"] = list(r.errors)
        d["samples"] = r.samples
        d["cost_model"] = _cost_dict(report.costs[m.run_dir])
        d["trace_files"] = [{"path": str(t.path), "worker": t.worker, "has_gpu": t.has_gpu, "steps": len(t.steps),
                        "mean_step_ms": t.mean_step_us() / 1e3, "notes": list(t.notes),
                        "unclassified": dict(t.unclassified)} for t in r.traces]
        runs.append(d)
    return {
        "schema": SUMMARY_SCHEMA,
        "runs": runs,
        "findings": [{"number": i, **asdict(f)} for i, f in enumerate(report.findings, 1)],
        "recommendations": [{"number": i, **asdict(rec), "saving_share": rec.saving_share}
                            for i, rec in enumerate(report.recommendations, 1)],
        "errors": list(report.errors),
        "notes": list(report.notes),
        "thresholds": thresholds_dict(report.thresholds),
    }


def summary_bytes(report: Report) -> bytes:
    return encode_json(to_summary(report))


def render_html(report: Report) -> str:
    from analysis import plots   # matplotlib: imported only when figures are drawn
    fmt_rows = table_rows(report)
    sections: list[tuple[str, str]] = [
        ("Runs", html.table(TABLE_HEADER, fmt_rows, left=3) + f'<p class="note">{html.escape(TABLE_FOOTNOTE)}</p>'),
        ("Findings", html.ordered([f.text for f in report.findings])),
        ("Recommendations (ranked by estimated saving)",
         html.ordered([recommendation_line(i, r).split(". ", 1)[1] for i, r in enumerate(report.recommendations, 1)])),
    ]
    cost_rows = []
    for m in report.metrics:
        c = report.costs[m.run_dir]
        if not c.items:
            continue
        cost_rows.append([m.name, f"{c.bytes_per_step / 1e6:.1f}" + (" (est.)" if c.estimated else ""),
                          _f(c.bandwidth_gbps, ".1f") + (f" ({c.bandwidth_source})" if c.bandwidth_source else ""),
                          _f(c.predicted_comm_ms, ".1f"), _f(c.measured_comm_ms, ".1f"),
                          _f(c.measured_device_comm_ms, ".1f")])
    if cost_rows:
        sections.append(("Communication cost model", html.table(
            ["run", "MB per step", "link GB/s", "predicted ms", "measured exposed ms", "device comm ms"],
            cost_rows) + '<p class="note">Bytes each strategy must move per step (DP: replicate + gradient '
            "reduce = params×(N−1) each; per-layer DP adds every layer's activations; DDP: 2×params×(N−1)/N "
            "per rank) divided by the bandwidth this run achieved.</p>"))
    busy_rows = [[m.name, d.device, f"{d.busy * 100:.0f}", f"{d.compute * 100:.0f}", f"{d.communication * 100:.0f}",
                  f"{d.idle * 100:.0f}"] for m in report.metrics for d in m.device_busy]
    if busy_rows:
        sections.append(("Per device (each GPU on its own, never merged)", html.table(
            ["run", "device", "busy %", "compute %", "communication %", "idle %"], busy_rows, left=2)))
    sections.append(("Step breakdown", html.img(plots.breakdown_png(report.metrics), "stacked breakdown per run")))
    sections.append(("Speedup vs ideal", html.img(plots.speedup_png(report.metrics), "speedup vs ideal")))
    util = [(r.name, plots.utilisation_png(r)) for r in report.runs]
    util_html = "".join(html.img(png, f"{name}: utilisation over time") for name, png in util if png is not None)
    missing = [name for name, png in util if png is None]
    if missing:
        util_html += html.note("no samples.csv rows for: " + ", ".join(missing))
    sections.append(("Utilisation over time (samples.csv)", util_html))
    sections.append(("One step per run", "".join(
        html.img(plots.timeline_png(r), f"{r.name}: one step's timeline") for r in report.runs)))
    return html.page("scalescope report", sections, report.errors, report.notes)


def write_outputs(report: Report, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_bytes(summary_bytes(report))
    index = out_dir / "index.html"
    index.write_text(render_html(report), encoding="utf-8")
    return index


def write_tensorboard(report: Report) -> list[str]:
    """Call analysis.tensorboard.write_report_events for every run; returns warning lines."""
    try:
        tb = importlib.import_module("analysis.tensorboard")
    except ImportError as exc:
        return [f"--tensorboard: analysis.tensorboard is not available ({exc}); no events written"]
    warnings = []
    for r in report.runs:
        texts = [finding_line(i, f) for i, f in enumerate(report.findings, 1) if f.run == r.name]
        try:
            tb.write_report_events(r, texts, r.run_dir)
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
    return p


def run_report(paths: list[Path], analyser: TraceAnalyser | None = None,
               progress: bool | None = None) -> Report:
    """Discover, analyse and build; raises InputError (one line) for a bad path or no runs."""
    run_dirs = discover_runs(paths)
    if not run_dirs:
        where = ", ".join(str(p) for p in paths)
        raise InputError(f"no run folders (run.json or *.pt.trace.json[.gz]) found under {where}")
    return build_report(analyse_runs(run_dirs, analyser, progress=progress))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    try:
        report = run_report(args.paths, progress=progress)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(summary_bytes(report).decode() + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render_markdown(report))
    else:
        print(render_text(report))
    for e in report.errors:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    if not args.no_html:
        try:
            index = write_outputs(report, args.out)
        except OSError as exc:
            print(f"{PROG}: error: cannot write the report into {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"report: {index} and {args.out / 'summary.json'}", file=sys.stderr)
    if args.tensorboard:
        for w in write_tensorboard(report):
            print(f"{PROG}: warning: {w}", file=sys.stderr)
    return 2 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
