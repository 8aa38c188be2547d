"""The one report view: every table row, numbered finding and recommendation as text, notes and errors.

Text, markdown, HTML, summary.json and the TensorBoard Text tab all render from this, so the
cost model or the per-device table can never say one thing in the terminal and another in the
browser, and no renderer ever parses a number back out of a sentence.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from analysis.text.units import gb
from analysis.view import phrasing
from analysis.findings import figures_dict
from profiler.contract import vocab

if TYPE_CHECKING:
    from analysis.view.model import Report

TITLE = "scalescope report"
SHORT = {vocab.COMPUTE: "comp", vocab.COMMUNICATION: "comm", vocab.H2D_COPY: "h2d", vocab.DATA_LOADING: "data",
         vocab.HOST_OVERHEAD: "host", vocab.UNCLASSIFIED: "uncl", vocab.IDLE: "idle"}


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]            # rows[i][0] is the run name
    footnote: str = ""
    left: int = 1                    # leading columns that are names (left-aligned)


@dataclass(frozen=True)
class Item:
    """A numbered finding or recommendation: its sentence and the figures it rests on."""

    number: int
    kind: str
    run: str
    text: str
    figures: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)   # recommendations: saving_ms, step_ms, basis, share


@dataclass(frozen=True)
class ReportView:
    title: str
    tables: list[Table]              # runs, cost model, per device (the last two only when they have rows)
    findings: list[Item]
    recommendations: list[Item]
    notes: list[str]
    errors: list[str]

    def table(self, title: str) -> Table | None:
        return next((t for t in self.tables if t.title == title), None)

    @property
    def run_names(self) -> list[str]:
        return [r[0] for r in self.tables[0].rows] if self.tables else []

    def for_run(self, name: str) -> ReportView:
        """This view cut to one run (the TensorBoard Text tab of that run), numbers kept as in the whole report."""
        tables = [replace(t, rows=[r for r in t.rows if r[0] == name]) for t in self.tables]
        return ReportView(self.title, [t for t in tables if t.rows], [f for f in self.findings if f.run == name],
                          [r for r in self.recommendations if r.run == name],
                          [n for n in self.notes if _about(n, name) or not any(_about(n, r) for r in self.run_names)],
                          [e for e in self.errors if name in e])


def _about(note: str, run: str) -> bool:
    return note.startswith((f"{run}:", f"{run} ("))


RUNS, COSTS, DEVICES = "Runs", "Communication cost model", "Per device (each GPU on its own, never merged)"
WHATIF = "What if vs measured"
OPS = "What changed, op by op"
OPS_SHOWN = 5            # rows per multi-device run in the table (summary.json keeps more)


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def runs_table(report: Report) -> Table:
    header = (["run", "strategy", "devices", "batch", "step ms", "img/s", "speedup", "eff"]
              + [f"{SHORT[c]} %" for c in vocab.CATEGORIES] + ["GPU util %", "CPU cores"])
    rows = []
    for m in report.metrics:
        traced = m.step_ms_source == "trace"
        unit = "gpu" if m.device_type == vocab.CUDA else vocab.CPU
        cores = ("–" if m.tree_cpu_cores is None else f"{m.tree_cpu_cores:.2f}") + (
            f" / {m.cpus:g}" if m.cpus is not None else "")
        rows.append([
            m.name, m.strategy, f"{m.devices} {unit}", _f(m.global_batch, "d"),
            _f(m.step_ms, ".1f") + ("" if traced or m.step_ms is None else "*"),
            _f(m.images_per_s, ".0f") + ("†" if m.images_per_s_source == "trace" else ""),
            _f(m.speedup, ".2f") + ("×" if m.speedup is not None else ""),
            _f(None if m.efficiency is None else m.efficiency * 100, ".0f") + (" %" if m.efficiency is not None else ""),
            *[_f(m.shares.get(c, 0.0) * 100 if traced else None, ".1f") for c in vocab.CATEGORIES],
            _f(m.mean_gpu_util_pct, ".0f"), cores,
        ])
    foot = ("step ms: mean wall of the profiled steps (trace), * = from run.json step times; img/s: run.json "
            "results, † = global batch ÷ step time; speedup/eff: images/s vs the 1-device run of the same "
            "device type; breakdown % of the step: " + ", ".join(f"{SHORT[c]}={c}" for c in vocab.CATEGORIES)
            + "; GPU util: NVML mean over the run; CPU cores: the process tree's mean cores busy / the job's CPU "
            "allocation")
    return Table(RUNS, header, rows, foot)


def cost_table(report: Report) -> Table:
    rows = []
    for m in report.metrics:
        c = report.costs[m.run_dir]
        if not c.items:
            continue
        of_which = " + ".join(f"{phrasing.COST_ITEM_SHORT[i.kind]} {gb(i.bytes)}" for i in c.items)
        link = f"{c.bandwidth_gbps:.1f} ({c.bandwidth_source})" if c.bandwidth_gbps else "–"
        in_flight = c.allreduce_in_flight_ms
        rows.append([m.name, m.strategy, ("≥ " if not c.complete else "") + gb(c.bytes_per_step), of_which,
                     link, _f(c.predicted_comm_ms, ".1f"), _f(c.measured_comm_ms, ".1f"),
                     _f(c.measured_device_comm_ms, ".1f"), _f(in_flight, ".1f")])
    foot = ("Bytes each strategy must move per step (DP: replicate + gradient reduce = params × (N−1) each, and the "
            "input batch × (N−1)/N; per-layer DP adds every layer's activations from the layer table, forward and "
            "backward; DDP: ring all-reduce 2 × params × (N−1)/N per rank) ÷ the bandwidth this run achieved = "
            "predicted ms, beside the exposed communication the breakdown measured; ≥: run.json lacks a part; "
            "in flight: the all-reduce overlapped or not (exposed ÷ (1 − overlap with backward))")
    return Table(COSTS, ["run", "strategy", "per step", "of which", "link GB/s", "predicted ms", "exposed ms",
                         "device comm ms", "all-reduce in flight ms"], rows, foot, left=2)


def device_table(report: Report) -> Table:
    rows = [[m.name, d.device, f"{d.busy * 100:.0f}", f"{d.compute * 100:.0f}", f"{d.communication * 100:.0f}",
             f"{d.idle * 100:.0f}"] for m in report.metrics for d in m.device_busy]
    return Table(DEVICES, ["run", "device", "busy %", "compute %", "communication %", "idle %"], rows,
                 "busy = compute + communication + host→device copies on that device, over the profiled steps", left=2)


def whatif_table(report: Report) -> Table:
    """Each measured multi-device run beside its prediction from the 1-device run (analysis.whatif)."""
    from analysis.whatif import wording   # the what-if's own phrasing; imports nothing heavy

    rows = [wording.check_row(r) for r in report.whatif]
    foot = wording.CHECK_FOOT + ("; " + wording.check_summary(report.whatif) if report.whatif else "")
    return Table(WHATIF, list(wording.CHECK_HEADER), rows, foot, left=2)


def ops_table(report: Report) -> Table:
    """Per multi-device run, the ops that added the most device-time per image over its 1-device run."""
    rows = []
    for m in report.metrics:
        d = report.op_diffs.get(m.run_dir)
        for c in (d.rows[:OPS_SHOWN] if d else []):
            rows.append([m.name, d.base, c.name, c.phase, c.category, f"{c.base_ms_per_image:.3f}",
                         f"{c.ms_per_image:.3f}", "–" if c.ratio is None else f"{c.ratio:.1f}×", c.change])
    foot = ("ms/img: an op's time per step summed over the run's devices (every rank, every GPU) ÷ the images "
            "per step, so runs of any size compare; GPU runs: kernels and copies, CPU runs: host ops by self time; "
            "phase: the label the op ran (or was launched) under; change: grew/shrank past 1.2×, new, gone")
    return Table(OPS, ["run", "vs", "op", "phase", "category", "1-device ms/img", "ms/img", "ratio", "change"],
                 rows, foot, left=5)


def build_view(report: Report) -> ReportView:
    findings = [Item(i, f.kind, f.run, phrasing.finding_text(f), figures_dict(f.figures))
                for i, f in enumerate(report.findings, 1)]
    recs = [Item(i, r.kind, r.run, phrasing.recommendation_text(r), figures_dict(r.figures),
                 {"saving_ms": r.saving_ms, "step_ms": r.step_ms, "basis": r.basis, "saving_share": r.saving_share})
            for i, r in enumerate(report.recommendations, 1)]
    tables = [runs_table(report)] + [t for t in (cost_table(report), device_table(report), ops_table(report),
                                                 whatif_table(report))
                                     if t.rows]
    return ReportView(TITLE, tables, findings, recs, list(report.notes), list(report.errors))


def items_json(items: Sequence[Item]) -> list[dict[str, Any]]:
    return [{"number": i.number, "kind": i.kind, "run": i.run, "text": i.text, "figures": i.figures, **i.extra}
            for i in items]
