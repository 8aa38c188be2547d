"""The typed figures each finding and recommendation rests on: records, never sentences.

A rule returns one of these; analysis.view.phrasing words it by its kind; summary.json keeps it
whole beside the sentence, so no reader ever parses a number back out of text.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from analysis.run.scaling import RunMetrics

FindingKind = Literal["scaling", "superlinear", "phase_scaling", "cpu_sharing", "communication", "straggler", "imbalance",
                      "cpu_saturated", "data_loading", "host_to_device", "host_overhead", "idle", "unclassified",
                      "gpu_util"]
RecommendationKind = Literal["ddp", "cpus_per_worker", "pinned_memory", "per_gpu_batch", "amp", "cpu_cores",
                             "host_bound", "ddp_overlap", "data_bound", "straggler"]
Basis = Literal["measured", "predicted", "assumed", "none"]


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
    mfu: float | None = None         # achieved ÷ datasheet peak FLOP/s per device (analysis.run.efficiency)
    base_mfu: float | None = None    # the same for the 1-device run


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
    kind: FindingKind
    run: str
    figures: Any                           # one of the *Figures records above


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


@dataclass(frozen=True)
class DdpFigures:
    """How DDP's step was obtained."""

    how: Literal["measured_run", "per_rank", "allreduce", "no_bandwidth"]
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
    """`how`: request more CPUs (the job's are saturated or outnumbered), or raise the workers (CPUs to spare)."""

    how: Literal["request", "raise_workers"]
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
    kind: RecommendationKind
    run: str
    saving_ms: float
    step_ms: float
    basis: Basis
    figures: Any = None                  # one of the *Figures records above

    @property
    def saving_share(self) -> float:
        return self.saving_ms / self.step_ms if self.step_ms > 0 else 0.0


def figures_dict(figures: Any) -> dict[str, Any]:
    """A figures record as JSON-ready data (summary.json keeps every figure beside the text)."""
    return asdict(figures) if figures is not None else {}
