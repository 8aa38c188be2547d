"""Findings (claims with their figures) and recommendations ranked by predicted saving: the rules only.

Each rule returns a typed figures record or None; no rule writes a sentence (analysis.phrasing
does). Every threshold lives in `Thresholds`; a finding fires only when its figure crosses one,
and every recommendation carries how its saving was obtained (measured, predicted or assumed).
CPU claims compare the run's whole process tree (samples.csv proc/tree cpu_cores) with the job's
CPU allocation (run.json environment.cpu_allocation), never with the machine's mean CPU %.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from analysis.costmodel import CostModel, ddp_allreduce_ms
from analysis.scaling import PhaseScaling, RunMetrics, phase_scaling
from profiler.contract import vocab


@dataclass(frozen=True)
class Thresholds:
    """When a figure is worth a sentence. Shares are fractions of the step's wall time."""

    poor_efficiency: float = 0.80        # scaling efficiency below this -> finding
    superlinear_efficiency: float = 1.20 # above this the comparison itself is suspect -> finding
    comm_share: float = 0.10             # exposed communication
    data_share: float = 0.10             # data loading (DataLoader wait)
    h2d_share: float = 0.05              # host->device input copies
    host_overhead_share: float = 0.20    # host busy, no device working
    idle_share: float = 0.20             # nothing busy
    unclassified_share: float = 0.02     # events the classifier does not know
    imbalance: float = 0.30              # busiest minus least busy GPU of one process
    similar_busy: float = 0.10           # GPUs within this of each other are reported together
    low_gpu_util_pct: float = 50.0       # NVML mean utilisation
    cpu_saturated: float = 0.90          # process tree's mean cores ÷ the job's CPU allocation
    comm_mismatch: float = 2.0           # measured/predicted comm outside [1/x, x] -> said
    amp_min_compute_share: float = 0.40  # AMP only suggested when compute dominates
    amp_compute_saving: float = 0.40     # ASSUMED share of compute time AMP removes (not measured)
    pinned_h2d_saving: float = 0.50      # ASSUMED share of host->device time pinned memory removes
    batch_factor: int = 2                # per-GPU batch multiplier the recommendation proposes
    min_saving_share: float = 0.02       # recommendations saving less than this are dropped
    phase_over_ideal: float = 1.5        # a phase taking this many times its ideal-scaling time -> named
    phase_excess_share: float = 0.05     # ... when the time above ideal is at least this share of the step
    cpu_shared_cores: float = 1.0        # CPU run with N processes on <= this × the 1-device run's CPUs -> finding
    straggler_wait_share: float = 0.05   # the others wait for one rank this share of their step -> finding
    host_launch_saving: float = 0.50     # ASSUMED share of GPU-idle host time CUDA graphs / torch.compile remove
    low_overlap: float = 0.50            # DDP all-reduce overlapped with backward less than this -> overlap advice
    overlap_saving: float = 0.50         # ASSUMED share of the exposed all-reduce better bucketing hides


THRESHOLDS = Thresholds()


# --- figures ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Where:
    """The run a figure is about, as a sentence names it."""

    run: str
    strategy: str
    device_type: str
    devices: int


def where(m: RunMetrics) -> Where:
    return Where(m.name, m.strategy, m.device_type, m.devices)


@dataclass(frozen=True)
class ScalingFigures:
    at: Where
    speedup: float
    efficiency: float
    images_per_s: float | None
    baseline: str | None


@dataclass(frozen=True)
class PhaseRow:
    phase: str                  # vocab label
    measured_ms: float
    ideal_ms: float
    baseline_ms: float
    ratio: float
    reason: str                 # why it does not shrink: one of PHASE_REASONS, "" when the data does not say


PHASE_REASONS = ("optimizer_not_divided", "loss_on_gpu0", "waits_for_allreduce", "dp_parts")


@dataclass(frozen=True)
class PhaseScalingFigures:
    at: Where
    baseline: str
    per_device_batch: int
    rows: list[PhaseRow]
    above_ideal_ms: float
    step_ms: float
    parameters: int | None
    global_batch: int | None
    comm_ms: float
    dp_parts_ms: dict[str, float]          # replicate / parallel_apply / gather ... per step, inside forward


@dataclass(frozen=True)
class CpuSharingFigures:
    at: Where
    cpus: float
    omp_num_threads: int | None
    baseline: str
    baseline_cpus: float
    compute_ms_per_image: float | None = None
    baseline_compute_ms_per_image: float | None = None
    rank_cores: float | None = None
    baseline_cores: float | None = None
    core_ms_per_image: float | None = None
    baseline_core_ms_per_image: float | None = None


@dataclass(frozen=True)
class CommFigures:
    at: Where
    share: float
    comm_ms: float
    step_ms: float
    bytes_per_step: int | None = None
    bytes_complete: bool = True
    bandwidth_gbps: float | None = None
    bandwidth_source: str = ""
    predicted_ms: float | None = None
    measured_over_predicted: float | None = None
    mismatch: str = ""                     # "slower" | "faster" | "" (within Thresholds.comm_mismatch)
    overlap: float | None = None


@dataclass(frozen=True)
class ImbalanceFigures:
    at: Where
    top_index: int
    top_busy: float
    others: list[tuple[int, float]]        # (CUDA index, busy share), by index
    others_similar: bool                   # within Thresholds.similar_busy: said as one figure


@dataclass(frozen=True)
class ShareFigures:
    """A breakdown category's share of the step (data loading, host→device, host overhead, idle, unclassified)."""

    at: Where
    category: str
    share: float
    part_ms: float
    step_ms: float


@dataclass(frozen=True)
class DataLoadingFigures(ShareFigures):
    workers: int | None = None
    cpus: float | None = None
    cpus_source: str | None = None
    tree_cpu_cores: float | None = None


@dataclass(frozen=True)
class HostToDeviceFigures(ShareFigures):
    pin_memory: bool | None = None
    htod_gbps: float | None = None


@dataclass(frozen=True)
class CpuSaturatedFigures:
    at: Where
    cpus: float
    cpus_source: str | None
    tree_cpu_cores: float
    workers: int | None
    processes: int
    data_share: float


@dataclass(frozen=True)
class GpuUtilFigures:
    at: Where
    mean_pct: float
    per_gpu_pct: dict[str, float]


@dataclass(frozen=True)
class Finding:
    kind: str
    run: str
    figures: Any                           # one of the *Figures records above


# --- findings ---------------------------------------------------------------------------------

def _scaling(m: RunMetrics, t: Thresholds) -> Finding | None:
    if m.devices <= 1 or m.speedup is None or m.efficiency is None:
        return None
    figs = ScalingFigures(where(m), m.speedup, m.efficiency, m.images_per_s, m.baseline)
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
    if (base is None or m.device_type != "cpu" or base.device_type != "cpu" or m.devices <= 1
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


@dataclass(frozen=True)
class StragglerFinding:
    at: Where
    straggler: str
    last_share: float
    matched: int
    others_wait_ms: float             # mean over the other ranks, per step
    others_comm_ms: float
    others_step_ms: float
    transfer_ms: float
    skew_ms: float
    doing: list[tuple[str, float]]    # the straggler's two largest non-communication shares
    traced: int = 2                   # ranks whose traces were matched
    world: int | None = None          # the job's ranks, when more than were traced


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
                 base: RunMetrics | None = None) -> list[Finding]:
    """Every finding one run supports, in reading order (base: its 1-device run, for the phase comparisons)."""
    out = [
        _scaling(m, t),
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


# --- recommendations --------------------------------------------------------------------------

@dataclass(frozen=True)
class DdpFigures:
    """How DDP's step was obtained: `how` is "measured_run" | "per_rank" | "allreduce" | "no_bandwidth"."""

    how: str
    step_ms: float
    ddp_ms: float | None = None
    ddp_run: str | None = None
    global_batch: int | None = None
    baseline: str | None = None
    per_device_batch: int | None = None
    rank_ms: float | None = None
    allreduce_ms: float | None = None
    allreduce_bytes: float | None = None
    bandwidth_gbps: float | None = None
    comm_ms: float | None = None


@dataclass(frozen=True)
class CpusFigures:
    """`how`: "request" (more CPUs: the job's are saturated or outnumbered) | "raise_workers" (CPUs to spare)."""

    how: str
    data_ms: float
    workers: int | None
    processes: int
    cpus: float
    cpus_source: str | None
    tree_cpu_cores: float | None
    saturated: bool
    outnumbered: bool                  # workers + training processes > CPUs
    request_cpus: int | None = None


@dataclass(frozen=True)
class PinnedFigures:
    h2d_ms: float
    assumed_saving: float


@dataclass(frozen=True)
class BatchFigures:
    per_device_batch: int
    new_per_device_batch: int
    devices: int
    fixed_ms: float
    factor: int


@dataclass(frozen=True)
class AmpFigures:
    compute_ms: float
    step_ms: float
    assumed_saving: float


@dataclass(frozen=True)
class CpuCoresFigures:
    processes: int
    cores: float
    per_process: float
    baseline: str
    per_device_batch: int | None = None
    scaled_ms: float | None = None
    optimizer_ms: float | None = None
    allreduce_ms: float | None = None
    predicted_ms: float | None = None
    step_ms: float | None = None


@dataclass(frozen=True)
class HostBoundFigures:
    """GPUs waiting while the host dispatches: launch overhead, from the breakdown alone."""

    host_ms: float
    step_ms: float
    per_device_batch: int | None
    assumed_saving: float
    gpu_waiting_host: float | None = None   # mean share of the step each GPU sat idle with nothing launched
    gpu_in_sync: float | None = None        # ... and idle while the host waited in a synchronize call


@dataclass(frozen=True)
class OverlapFigures:
    """DDP's all-reduce exposed after backward instead of hidden under it."""

    comm_ms: float
    overlap: float
    assumed_saving: float


@dataclass(frozen=True)
class DataBoundFigures:
    """The step waits on the DataLoader and no allocation says whether CPUs or workers are short."""

    data_ms: float
    workers: int | None
    pin_memory: bool | None


@dataclass(frozen=True)
class Recommendation:
    kind: str
    run: str
    saving_ms: float
    step_ms: float
    basis: str                           # "measured" | "predicted" | "assumed" | "none"
    figures: Any = None                  # one of the *Figures records above

    @property
    def saving_share(self) -> float:
        return self.saving_ms / self.step_ms if self.step_ms > 0 else 0.0


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
                                     allreduce_bytes=2 * pbytes * (m.devices - 1) / m.devices, bandwidth_gbps=bw,
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
    if m.step_ms is None or m.pin_memory is not False or m.device_type != "cuda":
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
    if m.step_ms is None or m.device_type != "cuda" or m.amp is not False:
        return None
    comp = m.parts_ms.get(vocab.COMPUTE, 0.0)
    if comp / m.step_ms < t.amp_min_compute_share:
        return None
    return Recommendation("amp", m.name, comp * t.amp_compute_saving, m.step_ms, "assumed",
                          AmpFigures(comp, m.step_ms, t.amp_compute_saving))


def _rec_cpu_cores(m: RunMetrics, base: RunMetrics | None, t: Thresholds) -> Recommendation | None:
    """CPU processes sharing the 1-device run's CPUs: give each its own; predicted only from measured phases."""
    if m.step_ms is None or _cpu_sharing(m, base, t) is None or base is None or base.cpus is None:
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


def _rec_straggler(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    """The others' measured wait for the named rank is what evening it out would save."""
    f = _straggler(m, t)
    if f is None or m.step_ms is None:
        return None
    return Recommendation("straggler", m.name, f.figures.others_wait_ms, m.step_ms, "measured", f.figures)


def _rec_host_bound(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    """Any GPU run whose devices wait on the host: fewer, larger launches (graphs, compile, a larger batch)."""
    if m.step_ms is None or m.device_type != "cuda" or m.shares.get(vocab.HOST_OVERHEAD, 0.0) < t.host_overhead_share:
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


def baseline_of(m: RunMetrics, metrics: list[RunMetrics]) -> RunMetrics | None:
    """The 1-device run attach_speedups compared m with."""
    return next((b for b in metrics if m.baseline is not None and b.name == m.baseline and b is not m), None)


def recommendations(metrics: list[RunMetrics], costs: dict[str, CostModel],
                    t: Thresholds = THRESHOLDS) -> list[Recommendation]:
    """One recommendation per kind (for the run where it saves most), ranked by saved share of the step."""
    best: dict[str, Recommendation] = {}
    for m in metrics:
        cost = costs.get(m.run_dir)
        for rec in (_rec_ddp(m, cost, metrics, t), _rec_cpus(m, t), _rec_pinned(m, t), _rec_batch(m, cost, t),
                    _rec_amp(m, t), _rec_cpu_cores(m, baseline_of(m, metrics), t), _rec_host_bound(m, t),
                    _rec_overlap(m, t), _rec_data_bound(m, t), _rec_straggler(m, t)):
            if rec is None or (rec.basis != "none" and rec.saving_share < t.min_saving_share):
                continue
            if rec.kind not in best or rec.saving_share > best[rec.kind].saving_share:
                best[rec.kind] = rec
    return sorted(best.values(), key=lambda r: -r.saving_share)


def all_findings(metrics: list[RunMetrics], costs: dict[str, CostModel], t: Thresholds = THRESHOLDS) -> list[Finding]:
    out: list[Finding] = []
    for m in metrics:
        out += findings_for(m, costs.get(m.run_dir), t, baseline_of(m, metrics))
    return out


def figures_dict(figures: Any) -> dict[str, Any]:
    """A figures record as JSON-ready data (summary.json keeps every figure beside the text)."""
    return asdict(figures) if figures is not None else {}


def thresholds_dict(t: Thresholds = THRESHOLDS) -> dict[str, Any]:
    return asdict(t)


__all__ = ["THRESHOLDS", "Thresholds", "Finding", "Recommendation", "Where", "all_findings", "findings_for",
           "recommendations", "cpu_notes", "figures_dict", "thresholds_dict"]
