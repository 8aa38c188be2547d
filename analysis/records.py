"""Plain data the analysers hand each other: what a trace and a run break down into.

Times are microseconds (Kineto's unit) unless the field name says otherwise.
Kept free of numpy so summaries serialise straight to JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from profiler.contract.runjson import RunInfo
from profiler.contract.vocab import CATEGORIES

Series = dict[str, tuple[list[float], list[float]]]   # device -> (seconds since the first sample, values)


@dataclass
class SampleSummary:
    """Means and peaks of samples.csv (None / {} where the file has no such rows)."""

    rows: int = 0
    duration_s: float = 0.0
    gpu_util_pct: dict[str, float] = field(default_factory=dict)        # mean per CUDA index
    mean_gpu_util_pct: float | None = None                              # mean of the per-GPU means
    gpu_mem_used_mib_max: dict[str, float] = field(default_factory=dict)
    pcie_tx_kbps_max: dict[str, float] = field(default_factory=dict)
    pcie_rx_kbps_max: dict[str, float] = field(default_factory=dict)
    host_cpu_pct: float | None = None          # the whole machine's mean: context only, never a finding
    tree_cpu_cores: float | None = None        # mean cores busy in the run's whole process tree
    tree_cpu_cores_max: float | None = None
    main_cpu_pct: float | None = None          # the run process, % of one core
    children_cpu_pct: float | None = None      # its descendants summed, % of one core
    peak_rss_mib: float | None = None          # main + children at the same instant
    start_ns: int | None = None                # the first row's time: the series' seconds count from it
    series: dict[tuple[str, str], Series] = field(default_factory=dict, repr=False)   # (source, metric) -> Series

    def series_of(self, source: str, metric: str) -> Series:
        return self.series.get((source, metric), {})


@dataclass(frozen=True)
class Collective:
    step: int            # ProfilerStep number it falls in
    name: str
    dur_us: float


@dataclass(frozen=True)
class StrategyEvidence:
    """What one trace shows about how its process trained."""

    worker: str                    # the process (a run's several trace files of one rank share it)
    steps: int                     # ProfilerStep windows (at least 1: a trace without them is one window)
    ddp_forwards: int
    dp_forwards: int
    fsdp_events: int
    allreduces: int                # host all-reduce ops or NCCL all-reduce kernels
    gpu_devices: int               # distinct CUDA indices that ran kernels
    world_size: int | None         # distributedInfo
    backend: str | None


@dataclass
class StepBreakdown:
    """One profiled step: every instant of [start_us, end_us) in exactly one category."""

    step: int                      # N of ProfilerStep#N; -1 when the trace had none (whole trace)
    start_us: float                # ProfilerStep start (absolute, trace clock)
    end_us: float                  # stretched to the end of the GPU work the step launched
    parts_us: dict[str, float]     # keys: vocab.CATEGORIES; values sum to end_us - start_us
    # the part of the wall at the trace's edges that is no recorded step's training (step/edges.py),
    # by category: an earlier, unrecorded step's GPU work; the profiler stopping
    edge_us: dict[str, float] = field(default_factory=dict)

    @property
    def wall_us(self) -> float:
        return self.end_us - self.start_us

    @property
    def steady_wall_us(self) -> float:
        return self.wall_us - sum(self.edge_us.values())

    def share(self, category: str) -> float:
        return self.parts_us.get(category, 0.0) / self.wall_us if self.wall_us > 0 else 0.0


@dataclass
class DeviceView:
    """One GPU's own time over the profiled steps; GPUs are never merged."""

    device: str                    # "pid <pid> gpu <index>", or "cpu" for a CPU-only trace
    pid: int | str
    index: int                     # CUDA device index as the trace saw it (-1 for CPU)
    wall_us: float                 # sum of the step walls this device was measured over
    compute_us: float
    communication_us: float
    h2d_us: float
    idle_us: float                 # wall_us minus the union of this device's activity
    kernel_count: int = 0
    idle_sync_us: float = 0.0      # of idle_us: while the host sat in a synchronize call (waiting on other work)
    # the rest of idle_us is the device waiting on the host to launch it work (the evidence for "host-bound")

    @property
    def idle_host_us(self) -> float:
        return max(0.0, self.idle_us - self.idle_sync_us)


@dataclass
class MemcpyStats:
    kind: str                      # "HtoD", "DtoH", "DtoD", "PtoP", "HtoH", ...
    count: int
    bytes: int
    dur_us: float

    @property
    def gbps(self) -> float:       # achieved GB/s (1e9 bytes / s)
        return self.bytes / (self.dur_us * 1e3) if self.dur_us > 0 else 0.0


@dataclass(frozen=True)
class OpStat:
    """One operator, summed over a trace's profiled steps: GPU kernels / copies on a GPU, the leaf host
    ops on a CPU-only run; `phase` is the label the op ran under (or launched from), short form."""

    name: str
    category: str                  # the breakdown category its kind counts toward
    phase: str                     # "forward", "backward", "optimizer", "data", "scatter", ... or "other"
    device: str                    # "gpu<index>" or "cpu"
    total_us: float
    calls: int


@dataclass
class TimelineSpan:
    """One bar of the one-step phase timeline plot (added for analysis.report.plots)."""

    lane: str                      # "gpu 0", "gpu 1", ..., "host" (phase labels), "cpu"
    start_us: float                # relative to the step's start_us
    end_us: float
    label: str                     # a vocab.CATEGORIES category or a phase label ("ss:forward", ...)


@dataclass
class TraceAnalysis:
    """Everything one Kineto trace file (one process / rank) tells."""

    path: Path
    worker: str                    # worker name from the file name (e.g. "rank0", "worker0")
    has_gpu: bool
    steps: list[StepBreakdown]
    devices: list[DeviceView]
    phase_totals_us: dict[str, float]   # inclusive time under each vocab phase label, summed over steps
    memcpy: list[MemcpyStats]
    comm_overlap: float | None = None   # DDP: share of all-reduce time overlapped with backward compute
    unclassified: dict[str, int] = field(default_factory=dict)  # event name -> count (shown, never dropped)
    notes: list[str] = field(default_factory=list)               # e.g. "no ProfilerStep: whole trace as one step"
    timeline: list[TimelineSpan] = field(default_factory=list)   # one representative step's spans, for plots (optional)
    timeline_step: int | None = None                             # which step `timeline` shows
    strategy_evidence: "StrategyEvidence | None" = None          # what the trace shows of DDP / DP / FSDP
    collectives: "list[Collective]" = field(default_factory=list)  # NCCL kernels / gloo spans in the steps, in order
    base_time_ns: int | None = None    # Kineto's baseTimeNanoseconds: unix ns = base + trace µs × 1000 (samples.csv's clock)
    ops: list[OpStat] = field(default_factory=list)               # every op in the steps, by name, phase, device
    gpu_names: list[str] = field(default_factory=list)            # Kineto's deviceProperties, by CUDA index
    loader_iterator: str | None = None     # "single-process" (0 workers) | "multi-process": torch's DataLoader span

    def mean_parts_us(self) -> dict[str, float]:
        n = max(len(self.steps), 1)
        return {c: sum(s.parts_us.get(c, 0.0) for s in self.steps) / n for c in CATEGORIES}

    def mean_step_us(self) -> float:
        return sum(s.wall_us for s in self.steps) / max(len(self.steps), 1)

    def steady_parts_us(self) -> dict[str, float]:
        """mean_parts_us without the edges' time: what the run's step is made of."""
        n = max(len(self.steps), 1)
        return {c: sum(s.parts_us.get(c, 0.0) - s.edge_us.get(c, 0.0) for s in self.steps) / n for c in CATEGORIES}

    def steady_step_us(self) -> float:
        return sum(s.steady_wall_us for s in self.steps) / max(len(self.steps), 1)


@dataclass
class RunAnalysis:
    """One traces/<run>/ folder: run.json + every rank's trace + samples.csv."""

    run_dir: Path
    name: str
    run: RunInfo | None                 # run.json through the contract (None: absent or unreadable)
    traces: list[TraceAnalysis]
    samples: SampleSummary = field(default_factory=SampleSummary)  # samples.csv, read once
    errors: list[str] = field(default_factory=list)        # one line each: a trace that could not be read, etc.
    notes: list[str] = field(default_factory=list)         # reader notes (e.g. run.json schema 1 upgraded)
