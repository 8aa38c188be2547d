"""Per-run figures and speedup/efficiency against the 1-device run.

One RunMetrics per run folder: its configuration (run.json through the contract Structs,
else the folder name through the contract's parser, else the traces), the profiled step
and its breakdown, what samples.csv says about the GPUs and the process tree's CPU, and the
CPU allocation the job had. The cost model lives in analysis.run.costmodel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from analysis.records import RunAnalysis, TraceAnalysis
from analysis.step.straggler import StragglerFigures, straggler
from analysis.step.strategy import recognise
from profiler.contract import vocab
from profiler.contract.runjson import RunInfo
from profiler.contract.runname import parse_run_name

Source = Literal["trace", "run.json", ""]


@dataclass
class DeviceBusy:
    device: str
    index: int             # CUDA index (-1: CPU)
    worker: str
    busy: float            # (compute + communication + h2d) / wall
    compute: float
    communication: float
    idle: float
    idle_waiting_host: float = 0.0   # of idle: no work launched yet (the host is behind)
    idle_in_sync: float = 0.0        # of idle: the host sat in a synchronize call (waiting on other work)


@dataclass
class RunMetrics:
    """The numbers of one run's table row (and what the findings quote)."""

    name: str
    run_dir: str
    status: str | None
    strategy: str
    device_type: str                 # "cuda" | "cpu"
    devices: int
    global_batch: int | None
    per_device_batch: int | None
    workers: int | None
    pin_memory: bool | None
    amp: bool | None
    cpus: float | None               # the job's CPU allocation (run.json environment.cpu_allocation.cpus)
    cpus_source: str | None          # what set it: "affinity" | "cgroup cpu.max" | "HTCondor Cpus"
    tree_cpu_cores: float | None     # mean cores busy in the whole process tree (samples.csv proc/tree)
    traces: int
    steps_profiled: int
    step_ms: float | None            # mean wall of the profiled steps less the traces' edges (step/edges.py), mean over ranks
    step_ms_source: Source           # where the step time came from ("": nowhere)
    images_per_s: float | None
    images_per_s_source: Source
    parts_ms: dict[str, float]       # mean ms per step in each breakdown category
    shares: dict[str, float]         # the same as fractions of the step
    phase_ms: dict[str, float]       # inclusive ms per step under each phase label
    device_busy: list[DeviceBusy]
    mean_gpu_util_pct: float | None
    gpu_util_pct: dict[str, float]   # NVML mean per CUDA index
    comm_overlap: float | None
    omp_num_threads: int | None = None   # run.json environment (None: unset, torch's default)
    parameters: int | None = None        # run.json model.parameters
    speedup: float | None = None
    efficiency: float | None = None
    baseline: str | None = None
    notes: list[str] = field(default_factory=list)
    straggler: StragglerFigures | None = None   # ranks' matched collectives: who waits for whom

    @property
    def processes(self) -> int:
        """Training processes: one per device under DDP, else one."""
        return self.devices if self.strategy == vocab.DDP else 1


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _trace_devices(traces: list[TraceAnalysis]) -> int:
    gpus = {(d.pid, d.index) for t in traces for d in t.devices if d.index >= 0}
    return len(gpus) if gpus else len({t.worker for t in traces})


def _step_figures(traces: list[TraceAnalysis], info: RunInfo | None, notes: list[str]
                  ) -> tuple[float | None, str, dict[str, float], dict[str, float]]:
    """(step ms, its source, ms per category, inclusive ms per phase label): traces first, else run.json."""
    parts_ms = {c: 0.0 for c in vocab.CATEGORIES}
    phase_ms: dict[str, float] = {}
    with_steps = [t for t in traces if t.steps]
    if with_steps:
        for t in with_steps:
            for c, v in t.steady_parts_us().items():
                parts_ms[c] = parts_ms.get(c, 0.0) + float(v) / 1e3 / len(with_steps)
            for label, v in t.phase_totals_us.items():
                phase_ms[label] = phase_ms.get(label, 0.0) + float(v) / len(t.steps) / 1e3 / len(with_steps)
        if len(with_steps) > 1:
            what = "ranks" if len({t.worker for t in with_steps}) == len(with_steps) else "trace files"
            notes.append(f"step and breakdown are the mean over {len(with_steps)} {what}")
        step_ms = float(sum(t.steady_step_us() for t in with_steps) / len(with_steps) / 1e3)
        every = float(sum(t.mean_step_us() for t in with_steps) / len(with_steps) / 1e3)
        if every - step_ms > 0.0005:
            notes.append(f"the step leaves out {every - step_ms:.1f} ms per step at the traces' edges "
                         f"(their notes say where): {every:.1f} ms with it")
        return step_ms, "trace", parts_ms, phase_ms
    times = info.results.step_times_ms if info is not None and info.results is not None else []
    if times:
        return sum(times) / len(times), "run.json", parts_ms, phase_ms
    return None, "", parts_ms, phase_ms


def _device_busy(traces: list[TraceAnalysis]) -> list[DeviceBusy]:
    busy: list[DeviceBusy] = []
    for t in traces:
        for d in t.devices:
            if d.wall_us <= 0:
                continue
            label = d.device if len(traces) == 1 else f"{t.worker} {d.device}"
            busy.append(DeviceBusy(
                device=label, index=d.index, worker=t.worker,
                busy=float(min(1.0, (d.compute_us + d.communication_us + d.h2d_us) / d.wall_us)),
                compute=float(d.compute_us / d.wall_us), communication=float(d.communication_us / d.wall_us),
                idle=float(d.idle_us / d.wall_us), idle_waiting_host=float(d.idle_host_us / d.wall_us),
                idle_in_sync=float(d.idle_sync_us / d.wall_us)))
    return busy


def rank_skew(traces: list[TraceAnalysis]) -> StragglerFigures | None:
    """Straggler figures over the run's ranks (a rank's several trace files are one rank)."""
    per_rank: dict[str, list] = {}
    walls: dict[str, dict[int, float]] = {}
    parts: dict[str, dict[str, float]] = {}
    for t in traces:
        per_rank.setdefault(t.worker, []).extend(t.collectives)
        walls.setdefault(t.worker, {}).update({s.step: s.wall_us / 1e3 for s in t.steps})
        acc = parts.setdefault(t.worker, {c: 0.0 for c in vocab.CATEGORIES})
        for s in t.steps:
            for c, v in s.parts_us.items():
                acc[c] += v
    shares = {r: {c: v / total for c, v in p.items()} for r, p in parts.items() if (total := sum(p.values())) > 0}
    return straggler(per_rank, walls, shares)


def _workers_from_traces(traces: list[TraceAnalysis], notes: list[str]) -> int | None:
    """DataLoader workers without run.json: 0 when torch's span names the single-process iterator."""
    kinds = {t.loader_iterator for t in traces if t.loader_iterator}
    if kinds == {"single-process"}:
        notes.append("DataLoader workers: 0 (torch's span names _SingleProcessDataLoaderIter; no run.json)")
        return 0
    return None


def run_metrics(run: RunAnalysis) -> RunMetrics:
    """The row for one run: run.json where present, else what the folder name and the traces say."""
    info: RunInfo | None = run.run
    cfg = info.config if info is not None else None
    env = info.environment if info is not None else None
    named = parse_run_name(run.name) or parse_run_name(run.run_dir.name)
    has_gpu = any(t.has_gpu for t in run.traces)
    notes: list[str] = []
    seen = recognise([t.strategy_evidence for t in run.traces if t.strategy_evidence is not None]) \
        if not (cfg and cfg.strategy) and not named else None
    strategy = (cfg.strategy if cfg else None) or (named.strategy if named else None) or (
        seen.strategy if seen else vocab.UNKNOWN_STRATEGY)
    if seen is not None:
        notes.append(f"strategy {seen.strategy} recognised from the traces: {seen.basis}")
    device_type = (cfg.device_type if cfg else None) or (
        named.device_type if named else (vocab.CUDA if has_gpu else vocab.CPU))
    devices = (cfg.devices if cfg else None) or (named.devices if named else None) or (
        seen.devices if seen and seen.devices else _trace_devices(run.traces))
    global_batch = (cfg.global_batch if cfg else None) or (named.global_batch if named else None)
    per_device = (cfg.per_device_batch if cfg else None) or (
        global_batch // devices if global_batch and devices else None)
    step_ms, step_src, parts_ms, phase_ms = _step_figures(run.traces, info, notes)
    total = sum(parts_ms.values())
    shares = {c: (v / total if total > 0 else 0.0) for c, v in parts_ms.items()}
    ips = info.results.images_per_s if info is not None and info.results is not None else None
    ips_src = "run.json" if ips is not None and ips > 0 else ""
    if not ips_src:
        ips = global_batch / (step_ms / 1e3) if step_ms and global_batch else None
        ips_src = "trace" if ips is not None else ""
    samples = run.samples
    alloc = env.cpu_allocation if env is not None else None
    skew = rank_skew(run.traces)
    if skew is not None:
        traced = f"{len(skew.ranks)} traced rank(s)" + (f" of {devices}" if devices and devices > len(skew.ranks) else "")
        rows = "; ".join(f"{r.rank} step {r.step_ms:.1f} ms, {r.comm_ms:.1f} ms in collectives ({r.wait_ms:.1f} waiting), "
                         f"last at {r.last_share:.0%}" for r in skew.ranks)
        notes.append(f"per rank over {skew.steps} step(s), {skew.matched} matched collectives, {traced}: {rows}; "
                     f"skew {skew.skew_ms:.1f} ms per step"
                     + ("" if skew.straggler else "; no rank is consistently the last to arrive"))
    overlaps = [float(t.comm_overlap) for t in run.traces if t.comm_overlap is not None]
    return RunMetrics(
        name=run.name, run_dir=str(run.run_dir), status=info.status if info else None, strategy=strategy,
        device_type=device_type, devices=devices, global_batch=global_batch, per_device_batch=per_device,
        workers=cfg.workers if cfg else _workers_from_traces(run.traces, notes),
        pin_memory=cfg.pin_memory if cfg else None,
        amp=cfg.amp if cfg else None, cpus=alloc.cpus if alloc else None, cpus_source=alloc.source if alloc else None,
        tree_cpu_cores=samples.tree_cpu_cores, traces=len(run.traces),
        steps_profiled=sum(len(t.steps) for t in run.traces) // max(len(run.traces), 1),
        step_ms=step_ms, step_ms_source=step_src, images_per_s=ips, images_per_s_source=ips_src,
        parts_ms=parts_ms, shares=shares, phase_ms=phase_ms, device_busy=_device_busy(run.traces),
        mean_gpu_util_pct=samples.mean_gpu_util_pct, gpu_util_pct=dict(samples.gpu_util_pct),
        comm_overlap=_mean(overlaps), omp_num_threads=env.omp_threads if env else None,
        parameters=info.model.parameters if info else None, notes=notes, straggler=skew)


def _baseline_for(m: RunMetrics, ones: list[RunMetrics]) -> RunMetrics | None:
    """The 1-device run of the same device type: same folder first, then strategy single."""
    same = [b for b in ones if b.device_type == m.device_type and b.images_per_s]
    if not same:
        return None
    parent = m.run_dir.rsplit("/", 1)[0]
    return sorted(same, key=lambda b: (b.run_dir.rsplit("/", 1)[0] != parent,
                                       b.strategy != vocab.SINGLE, b.name))[0]


def attach_speedups(metrics: list[RunMetrics]) -> None:
    """speedup = images/s ÷ the 1-device run's; efficiency = speedup ÷ devices (in place)."""
    ones = [m for m in metrics if m.devices == 1 and m.strategy != vocab.UNKNOWN_STRATEGY]
    for m in metrics:
        if m.strategy == vocab.UNKNOWN_STRATEGY or not m.images_per_s:
            continue
        base = _baseline_for(m, ones)
        if base is None or not base.images_per_s:
            continue
        m.baseline = base.name
        m.speedup = m.images_per_s / base.images_per_s
        m.efficiency = m.speedup / m.devices if m.devices else None


TOP_PHASES = (vocab.FORWARD, vocab.LOSS, vocab.BACKWARD, vocab.OPTIMIZER)


@dataclass
class PhaseScaling:
    """One phase of a multi-device run against the 1-device run scaled to this run's images per device."""

    phase: str                  # a vocab label, e.g. "ss:optimizer"
    measured_ms: float          # per step, mean over ranks
    baseline_ms: float          # per step in the 1-device run, unscaled
    ideal_ms: float             # baseline_ms × images per device here ÷ images per device there

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.ideal_ms if self.ideal_ms > 0 else math.inf

    @property
    def excess_ms(self) -> float:
        return self.measured_ms - self.ideal_ms


def phase_scaling(m: RunMetrics, base: RunMetrics) -> list[PhaseScaling]:
    """forward / loss / backward / optimizer of m vs ideal scaling of `base` (empty when either lacks them).

    Ideal scaling means every phase shrinks with the images each device handles, so the
    step (and each phase) takes base × per-device batch ÷ base's per-device batch.
    """
    if not m.per_device_batch or not base.per_device_batch or not m.phase_ms or not base.phase_ms:
        return []
    scale = m.per_device_batch / base.per_device_batch
    out = []
    for label in TOP_PHASES:
        got, ref = m.phase_ms.get(label), base.phase_ms.get(label)
        if got is None or ref is None or ref <= 0:
            continue
        out.append(PhaseScaling(label, float(got), float(ref), float(ref) * scale))
    return out
