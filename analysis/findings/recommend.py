"""Recommendations ranked by predicted saving: each carries how its saving was obtained
(measured, predicted or assumed) and the figures it rests on; the rules only, no sentences."""
from __future__ import annotations

from collections.abc import Sequence

from analysis.findings.figures import (AmpFigures, BatchFigures, CpuCoresFigures, CpusFigures,
                                      DataBoundFigures, DdpFigures, Finding, HostBoundFigures,
                                      OverlapFigures, PinnedFigures, Recommendation)
from analysis.findings.rules import all_findings, baseline_of, cpu_saturated
from analysis.findings.thresholds import THRESHOLDS, Thresholds
from analysis.run.costmodel import CostModel, ddp_allreduce_ms
from analysis.run.scaling import RunMetrics
from profiler.contract import vocab
from profiler.contract.allreduce import ring_allreduce_bytes

__all__ = ["recommendations"]


def _rec_ddp(m: RunMetrics, cost: CostModel | None, all_runs: list[RunMetrics], t: Thresholds
             ) -> Recommendation | None:
    if m.strategy not in vocab.DP_STRATEGIES or m.devices <= 1 or m.step_ms is None:
        return None
    comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
    poor = m.efficiency is not None and m.efficiency < t.poor_efficiency
    if comm / m.step_ms < t.comm_share and not poor:
        return None
    twin = [r for r in all_runs if r.strategy == vocab.DDP and r.devices == m.devices
            and r.device_type == m.device_type and r.step_ms and r.global_batch]
    if twin and m.global_batch:
        d = twin[0]
        ddp_ms = d.step_ms * m.global_batch / d.global_batch      # per-image time at this run's batch
        return Recommendation("ddp", m.name, m.step_ms - ddp_ms, m.step_ms, "measured",
                              DdpFigures("measured_run", m.step_ms, ddp_ms=ddp_ms, ddp_run=d.name,
                                         global_batch=m.global_batch))
    bw = cost.bandwidth_gbps if cost is not None else None
    pbytes = cost.parameter_bytes if cost is not None else None
    ar = ddp_allreduce_ms(pbytes, m.devices, bw) if pbytes and bw else None
    base = next((r for r in all_runs if r.name == m.baseline and r.step_ms and r.per_device_batch), None)
    if base is not None and base.step_ms and base.per_device_batch and m.per_device_batch:
        # a DDP rank does what the 1-device run did, on its own share of the batch, plus the all-reduce
        rank_ms = base.step_ms * m.per_device_batch / base.per_device_batch
        ddp_ms = rank_ms + (ar or 0.0)
        return Recommendation("ddp", m.name, m.step_ms - ddp_ms, m.step_ms, "predicted",
                              DdpFigures("per_rank", m.step_ms, ddp_ms=ddp_ms, baseline=base.name,
                                         per_device_batch=m.per_device_batch, rank_ms=rank_ms, allreduce_ms=ar,
                                         bandwidth_gbps=bw))
    if ar is None or pbytes is None:
        return Recommendation("ddp", m.name, comm, m.step_ms, "predicted",
                              DdpFigures("no_bandwidth", m.step_ms, comm_ms=comm))
    return Recommendation("ddp", m.name, max(0.0, comm - ar), m.step_ms, "predicted",
                          DdpFigures("allreduce", m.step_ms, allreduce_ms=ar,
                                     allreduce_bytes=ring_allreduce_bytes(pbytes, m.devices), bandwidth_gbps=bw,
                                     comm_ms=comm))


def _rec_cpus(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    """Data loading waits: more CPUs when the job's are saturated or outnumbered, else more workers."""
    if m.step_ms is None or m.step_ms_source != "trace" or m.shares.get(vocab.DATA_LOADING, 0.0) < t.data_share:
        return None
    if m.cpus is None:
        return None                    # without the allocation there is nothing to compare with
    data = m.parts_ms[vocab.DATA_LOADING]
    saturated = cpu_saturated(m, t)
    busy = (m.workers or 0) * m.processes + m.processes          # DataLoader workers + training processes
    outnumbered = m.workers is not None and busy > m.cpus
    if saturated or outnumbered:
        how, want = "request", busy
    elif m.workers is not None and m.tree_cpu_cores is not None:
        how, want = "raise_workers", None
    else:
        return None
    return Recommendation("cpus_per_worker", m.name, data, m.step_ms, "predicted", CpusFigures(
        how, data, m.workers, m.processes, m.cpus, m.cpus_source, m.tree_cpu_cores, saturated, outnumbered, want))


def _rec_pinned(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    if m.step_ms is None or m.pin_memory is not False or m.device_type != vocab.CUDA:
        return None
    h2d = m.parts_ms.get(vocab.H2D_COPY, 0.0)
    if h2d / m.step_ms < t.h2d_share:
        return None
    return Recommendation("pinned_memory", m.name, h2d * t.pinned_h2d_saving, m.step_ms, "assumed",
                          PinnedFigures(h2d, t.pinned_h2d_saving))


def _rec_batch(m: RunMetrics, cost: CostModel | None, t: Thresholds) -> Recommendation | None:
    if m.step_ms is None or m.devices <= 1 or m.per_device_batch is None:
        return None
    comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
    host = m.parts_ms.get(vocab.HOST_OVERHEAD, 0.0)
    if (comm + host) / m.step_ms < t.comm_share:
        return None
    fixed = 1.0
    if cost is not None and cost.items and cost.bytes_per_step:
        fixed = sum(i.bytes for i in cost.items if not i.per_image) / cost.bytes_per_step
    per_step_fixed = comm * fixed + host
    return Recommendation("per_gpu_batch", m.name, per_step_fixed * (1 - 1 / t.batch_factor), m.step_ms, "predicted",
                          BatchFigures(m.per_device_batch, m.per_device_batch * t.batch_factor, m.devices,
                                       per_step_fixed, t.batch_factor))


def _rec_amp(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    if m.step_ms is None or m.device_type != vocab.CUDA or m.amp is not False:
        return None
    comp = m.parts_ms.get(vocab.COMPUTE, 0.0)
    if comp / m.step_ms < t.amp_min_compute_share:
        return None
    return Recommendation("amp", m.name, comp * t.amp_compute_saving, m.step_ms, "assumed",
                          AmpFigures(comp, m.step_ms, t.amp_compute_saving))


def _rec_cpu_cores(m: RunMetrics, base: RunMetrics | None, found: dict[str, Finding]) -> Recommendation | None:
    """CPU processes sharing the 1-device run's CPUs (the cpu_sharing finding): give each its own; predicted
    only from measured phases."""
    if m.step_ms is None or "cpu_sharing" not in found or base is None or base.cpus is None:
        return None
    want = m.devices * base.cpus
    opt0 = base.phase_ms.get(vocab.OPTIMIZER)
    if (base.step_ms and base.step_ms_source == "trace" and m.step_ms_source == "trace" and opt0 is not None
            and m.per_device_batch and base.per_device_batch):
        scaled = (base.step_ms - opt0) * m.per_device_batch / base.per_device_batch
        comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
        pred = scaled + opt0 + comm
        if pred < m.step_ms:
            return Recommendation("cpu_cores", m.name, m.step_ms - pred, m.step_ms, "predicted", CpuCoresFigures(
                m.devices, want, base.cpus, base.name, m.per_device_batch, scaled, opt0, comm, pred, m.step_ms))
    return Recommendation("cpu_cores", m.name, 0.0, m.step_ms, "none",
                          CpuCoresFigures(m.devices, want, base.cpus, base.name))


def _rec_straggler(m: RunMetrics, found: dict[str, Finding]) -> Recommendation | None:
    """The others' measured wait for the named rank (the straggler finding) is what evening it out would save."""
    f = found.get("straggler")
    if f is None or m.step_ms is None:
        return None
    return Recommendation("straggler", m.name, f.figures.others_wait_ms, m.step_ms, "measured", f.figures)


def _rec_host_bound(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    """Any GPU run whose devices wait on the host: fewer, larger launches (graphs, compile, a larger batch)."""
    if m.step_ms is None or m.device_type != vocab.CUDA or m.shares.get(vocab.HOST_OVERHEAD, 0.0) < t.host_overhead_share:
        return None
    host = m.parts_ms[vocab.HOST_OVERHEAD]
    gpus = [d for d in m.device_busy if d.index >= 0]
    waiting = sum(d.idle_waiting_host for d in gpus) / len(gpus) if gpus else None
    in_sync = sum(d.idle_in_sync for d in gpus) / len(gpus) if gpus else None
    return Recommendation("host_bound", m.name, host * t.host_launch_saving, m.step_ms, "assumed",
                          HostBoundFigures(host, m.step_ms, m.per_device_batch, t.host_launch_saving, waiting, in_sync))


def _rec_overlap(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    """DDP with exposed communication and little overlap: bucketing and accumulation without all-reduce."""
    if (m.step_ms is None or m.strategy != vocab.DDP or m.comm_overlap is None or m.comm_overlap >= t.low_overlap
            or m.shares.get(vocab.COMMUNICATION, 0.0) < t.comm_share):
        return None
    comm = m.parts_ms[vocab.COMMUNICATION]
    return Recommendation("ddp_overlap", m.name, comm * t.overlap_saving, m.step_ms, "assumed",
                          OverlapFigures(comm, m.comm_overlap, t.overlap_saving))


def _rec_data_bound(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    """Data waits with no CPU allocation to compare (another tool's run): the loader's knobs, up to the wait."""
    if m.step_ms is None or m.cpus is not None or m.shares.get(vocab.DATA_LOADING, 0.0) < t.data_share:
        return None
    data = m.parts_ms[vocab.DATA_LOADING]
    return Recommendation("data_bound", m.name, data, m.step_ms, "predicted",
                          DataBoundFigures(data, m.workers, m.pin_memory))


def recommendations(metrics: list[RunMetrics], costs: dict[str, CostModel], t: Thresholds = THRESHOLDS,
                    findings: Sequence[Finding] | None = None) -> list[Recommendation]:
    """One recommendation per kind (for the run where it saves most), ranked by saved share of the step.
    findings: the runs' findings (all_findings) when the caller has them; the rules never recompute one."""
    found_all = all_findings(metrics, costs, t) if findings is None else findings
    best: dict[str, Recommendation] = {}
    for m in metrics:
        cost = costs.get(m.run_dir)
        found = {f.kind: f for f in found_all if f.run == m.name}
        for rec in (_rec_ddp(m, cost, metrics, t), _rec_cpus(m, t), _rec_pinned(m, t), _rec_batch(m, cost, t),
                    _rec_amp(m, t), _rec_cpu_cores(m, baseline_of(m, metrics), found), _rec_host_bound(m, t),
                    _rec_overlap(m, t), _rec_data_bound(m, t), _rec_straggler(m, found)):
            if rec is None or (rec.basis != "none" and rec.saving_share < t.min_saving_share):
                continue
            if rec.kind not in best or rec.saving_share > best[rec.kind].saving_share:
                best[rec.kind] = rec
    return sorted(best.values(), key=lambda r: -r.saving_share)
