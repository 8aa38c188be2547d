"""Findings: claims about one run, each a typed figures record or nothing -- the rules only.

No rule writes a sentence (analysis.view.phrasing does). Every threshold lives in `Thresholds`;
a finding fires only when its figure crosses one. CPU claims compare the run's whole process tree
(samples.csv proc/tree cpu_cores) with the job's CPU allocation (run.json environment.cpu_allocation),
never with the machine's mean CPU %.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.findings.figures import (CommFigures, CpuSaturatedFigures, CpuSharingFigures,
                                      DataLoadingFigures, Finding, GpuUtilFigures, HostToDeviceFigures,
                                      ImbalanceFigures, PhaseRow, PhaseScalingFigures, ScalingFigures,
                                      ShareFigures, StragglerFinding, where)
from analysis.findings.thresholds import THRESHOLDS, Thresholds
from analysis.run.costmodel import CostModel
from analysis.run.scaling import PhaseScaling, RunMetrics, phase_scaling
from profiler.contract import vocab

__all__ = ["findings_for", "all_findings", "cpu_notes", "cpu_saturated", "baseline_of"]


def _scaling(m: RunMetrics, t: Thresholds, mfu: Mapping[str, float] | None = None,
             base: RunMetrics | None = None) -> Finding | None:
    """mfu: run_dir -> MFU (the report model's, from analysis.run.efficiency) where known; base: the 1-device run."""
    if m.devices <= 1 or m.speedup is None or m.efficiency is None:
        return None
    known = mfu or {}
    figs = ScalingFigures(where(m), m.speedup, m.efficiency, m.images_per_s, m.baseline, known.get(m.run_dir),
                          known.get(base.run_dir) if base is not None else None)
    if m.efficiency > t.superlinear_efficiency:
        return Finding("superlinear", m.name, figs)
    if m.efficiency >= t.poor_efficiency:
        return None
    return Finding("scaling", m.name, figs)


def _phase_reason(m: RunMetrics, p: PhaseScaling) -> str:
    """The mechanism behind a phase that does not shrink, where the strategy says what it is."""
    if p.phase == vocab.OPTIMIZER:
        return "optimizer_not_divided"
    if p.phase == vocab.LOSS and m.strategy in vocab.DP_STRATEGIES and m.global_batch:
        return "loss_on_gpu0"
    if p.phase == vocab.BACKWARD and m.strategy == vocab.DDP and m.parts_ms.get(vocab.COMMUNICATION, 0.0) > 0:
        return "waits_for_allreduce"
    if p.phase == vocab.FORWARD and m.strategy in vocab.DP_STRATEGIES and _dp_parts(m):
        return "dp_parts"
    return ""


def _dp_parts(m: RunMetrics) -> dict[str, float]:
    return {lbl: m.phase_ms[lbl] for lbl in vocab.DP_PHASES if m.phase_ms.get(lbl, 0.0) > 0}


def _phase_scaling(m: RunMetrics, base: RunMetrics | None, t: Thresholds) -> Finding | None:
    """Which phases did not shrink as ideal scaling predicts (per-device batch vs the 1-device run's)."""
    if base is None or m.devices <= 1 or m.step_ms is None or m.step_ms_source != "trace" or not m.per_device_batch:
        return None
    phases = phase_scaling(m, base)
    rows = [p for p in phases if p.ratio >= t.phase_over_ideal and p.excess_ms >= t.phase_excess_share * m.step_ms]
    if not rows:
        return None
    rows.sort(key=lambda p: -p.excess_ms)
    return Finding("phase_scaling", m.name, PhaseScalingFigures(
        at=where(m), baseline=base.name, per_device_batch=m.per_device_batch,
        rows=[PhaseRow(p.phase, p.measured_ms, p.ideal_ms, p.baseline_ms, p.ratio, _phase_reason(m, p)) for p in rows],
        above_ideal_ms=sum(p.excess_ms for p in phases if p.excess_ms > 0), step_ms=m.step_ms,
        parameters=m.parameters, global_batch=m.global_batch,
        comm_ms=m.parts_ms.get(vocab.COMMUNICATION, 0.0), dp_parts_ms=_dp_parts(m)))


def _cores_used(threads: int | None, cores: float) -> float:
    return min(float(threads), cores) if threads else cores


def _cpu_sharing(m: RunMetrics, base: RunMetrics | None, t: Thresholds) -> Finding | None:
    """N CPU processes on no more CPUs than the 1-device run had alone: compute cannot speed up."""
    if (base is None or m.device_type != vocab.CPU or base.device_type != vocab.CPU or m.devices <= 1
            or not m.cpus or not base.cpus or m.cpus > t.cpu_shared_cores * base.cpus):
        return None
    figs = CpuSharingFigures(where(m), m.cpus, m.omp_num_threads, base.name, base.cpus)
    comp, comp0 = m.parts_ms.get(vocab.COMPUTE, 0.0), base.parts_ms.get(vocab.COMPUTE, 0.0)
    if (m.step_ms_source == base.step_ms_source == "trace" and comp > 0 and comp0 > 0
            and m.per_device_batch and base.per_device_batch):
        c_rank = _cores_used(m.omp_num_threads, m.cpus / m.devices)
        c_base = _cores_used(base.omp_num_threads, base.cpus)
        x, y = comp / m.per_device_batch, comp0 / base.per_device_batch
        figs = CpuSharingFigures(where(m), m.cpus, m.omp_num_threads, base.name, base.cpus, x, y, c_rank, c_base,
                                 x * c_rank, y * c_base)
    return Finding("cpu_sharing", m.name, figs)


def _share(m: RunMetrics, category: str, limit: float) -> tuple[float, float] | None:
    """(share, ms per step) of a breakdown category when it reaches limit."""
    share = m.shares.get(category, 0.0)
    if m.step_ms is None or m.step_ms_source != "trace" or share < limit:
        return None
    return share, m.parts_ms[category]


def _comm(m: RunMetrics, cost: CostModel | None, t: Thresholds) -> Finding | None:
    got = _share(m, vocab.COMMUNICATION, t.comm_share)
    if got is None or m.step_ms is None:
        return None
    share, comm_ms = got
    extra: dict[str, Any] = {}
    if cost is not None and cost.items:
        extra.update(bytes_per_step=cost.bytes_per_step, bytes_complete=cost.complete)
        if cost.bandwidth_gbps:
            extra.update(bandwidth_gbps=cost.bandwidth_gbps, bandwidth_source=cost.bandwidth_source)
        if cost.predicted_comm_ms:
            ratio = comm_ms / cost.predicted_comm_ms
            extra.update(predicted_ms=cost.predicted_comm_ms, measured_over_predicted=ratio,
                         mismatch="slower" if ratio > t.comm_mismatch else
                         "faster" if ratio < 1 / t.comm_mismatch else "")
    return Finding("communication", m.name, CommFigures(where(m), share, comm_ms, m.step_ms, overlap=m.comm_overlap,
                                                        **extra))


def _data(m: RunMetrics, t: Thresholds) -> Finding | None:
    got = _share(m, vocab.DATA_LOADING, t.data_share)
    if got is None or m.step_ms is None:
        return None
    return Finding("data_loading", m.name, DataLoadingFigures(
        where(m), vocab.DATA_LOADING, got[0], got[1], m.step_ms, workers=m.workers, cpus=m.cpus,
        cpus_source=m.cpus_source, tree_cpu_cores=m.tree_cpu_cores))


def cpu_saturated(m: RunMetrics, t: Thresholds) -> bool:
    return m.cpus is not None and m.tree_cpu_cores is not None and m.tree_cpu_cores >= t.cpu_saturated * m.cpus


def _cpu_saturated(m: RunMetrics, t: Thresholds) -> Finding | None:
    """The job's CPUs are all busy: the process tree's mean cores reach its allocation."""
    if not cpu_saturated(m, t) or m.cpus is None or m.tree_cpu_cores is None:
        return None
    return Finding("cpu_saturated", m.name, CpuSaturatedFigures(
        where(m), m.cpus, m.cpus_source, m.tree_cpu_cores, m.workers, m.processes,
        m.shares.get(vocab.DATA_LOADING, 0.0) if m.step_ms_source == "trace" else 0.0))


def _imbalance(m: RunMetrics, t: Thresholds) -> Finding | None:
    by_worker: dict[str, list] = {}
    for d in m.device_busy:
        if d.index >= 0:
            by_worker.setdefault(d.worker, []).append(d)
    for devs in by_worker.values():
        if len(devs) < 2:
            continue
        devs = sorted(devs, key=lambda d: -d.busy)
        top, rest = devs[0], devs[1:]
        if top.busy - min(d.busy for d in rest) < t.imbalance:
            continue
        similar = max(d.busy for d in rest) - min(d.busy for d in rest) <= t.similar_busy
        return Finding("imbalance", m.name, ImbalanceFigures(
            where(m), top.index, top.busy, [(d.index, d.busy) for d in sorted(rest, key=lambda d: d.index)], similar))
    return None


def _h2d(m: RunMetrics, cost: CostModel | None, t: Thresholds) -> Finding | None:
    got = _share(m, vocab.H2D_COPY, t.h2d_share)
    if got is None or m.step_ms is None:
        return None
    htod = cost.bandwidths.get("memcpy HtoD") if cost is not None else None
    return Finding("host_to_device", m.name, HostToDeviceFigures(
        where(m), vocab.H2D_COPY, got[0], got[1], m.step_ms, pin_memory=m.pin_memory, htod_gbps=htod))


def _plain_share(m: RunMetrics, kind: str, category: str, limit: float) -> Finding | None:
    got = _share(m, category, limit)
    if got is None or m.step_ms is None:
        return None
    return Finding(kind, m.name, ShareFigures(where(m), category, got[0], got[1], m.step_ms))


def _gpu_util(m: RunMetrics, t: Thresholds) -> Finding | None:
    if m.mean_gpu_util_pct is None or m.mean_gpu_util_pct >= t.low_gpu_util_pct:
        return None
    return Finding("gpu_util", m.name, GpuUtilFigures(where(m), m.mean_gpu_util_pct, dict(m.gpu_util_pct)))


def _straggler(m: RunMetrics, t: Thresholds) -> Finding | None:
    s = m.straggler
    if s is None or s.straggler is None:
        return None
    others = [r for r in s.ranks if r.rank != s.straggler]
    wait = sum(r.wait_ms for r in others) / len(others)
    step = sum(r.step_ms for r in others) / len(others)
    if step <= 0 or wait / step < t.straggler_wait_share:
        return None
    last = next(r for r in s.ranks if r.rank == s.straggler)
    return Finding("straggler", m.name, StragglerFinding(
        where(m), s.straggler, last.last_share, s.matched, wait, sum(r.comm_ms for r in others) / len(others), step,
        s.transfer_ms, s.skew_ms, list(s.doing.items())[:2], len(s.ranks),
        m.devices if m.devices and m.devices > len(s.ranks) else None))


def findings_for(m: RunMetrics, cost: CostModel | None, t: Thresholds = THRESHOLDS,
                 base: RunMetrics | None = None, mfu: Mapping[str, float] | None = None) -> list[Finding]:
    """Every finding one run supports, in reading order (base: its 1-device run, for the phase comparisons;
    mfu: run_dir -> MFU where known, quoted by the scaling finding)."""
    out = [
        _scaling(m, t, mfu, base),
        _phase_scaling(m, base, t),
        _cpu_sharing(m, base, t),
        _comm(m, cost, t),
        _straggler(m, t),
        _imbalance(m, t),
        _cpu_saturated(m, t),
        _data(m, t),
        _h2d(m, cost, t),
        _plain_share(m, "host_overhead", vocab.HOST_OVERHEAD, t.host_overhead_share),
        _plain_share(m, "idle", vocab.IDLE, t.idle_share),
        _plain_share(m, "unclassified", vocab.UNCLASSIFIED, t.unclassified_share),
        _gpu_util(m, t),
    ]
    return [f for f in out if f is not None]


def cpu_notes(m: RunMetrics, has_run_json: bool, sample_rows: int) -> list[str]:
    """What is missing for the CPU claims (only for runs with run.json: a bare trace folder has no job)."""
    if not has_run_json:
        return []
    out = []
    if m.cpus is None:
        out.append("no CPU allocation in run.json (environment.cpu_allocation): the process tree's CPU is not "
                   "compared with the job's CPUs")
    if m.tree_cpu_cores is None:
        where_ = "samples.csv has no" if sample_rows else "no samples.csv, so no"
        out.append(f"{where_} process-tree CPU rows (proc,tree,cpu_cores): no CPU saturation claim")
    return out


def baseline_of(m: RunMetrics, metrics: list[RunMetrics]) -> RunMetrics | None:
    """The 1-device run attach_speedups compared m with."""
    return next((b for b in metrics if m.baseline is not None and b.name == m.baseline and b is not m), None)


def all_findings(metrics: list[RunMetrics], costs: dict[str, CostModel], t: Thresholds = THRESHOLDS,
                 mfu: Mapping[str, float] | None = None) -> list[Finding]:
    """mfu: run_dir -> MFU (the report model's, from analysis.run.efficiency), for the scaling finding; None: not quoted."""
    out: list[Finding] = []
    for m in metrics:
        out += findings_for(m, costs.get(m.run_dir), t, baseline_of(m, metrics), mfu)
    return out
