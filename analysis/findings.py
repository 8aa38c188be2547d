"""Numbered findings (claims with their figures) and recommendations ranked by predicted saving.

Every threshold lives in `Thresholds` below; a finding fires only when its figure crosses one,
and every recommendation states how its saving was obtained (measured or assumed).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from analysis.scaling import DP_STRATEGIES, CostModel, PhaseScaling, RunMetrics, ddp_prediction_ms, phase_scaling
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
    host_cpu_saturated_pct: float = 90.0 # host CPU mean counts as saturated
    comm_mismatch: float = 2.0           # measured/predicted comm outside [1/x, x] -> said
    amp_min_compute_share: float = 0.40  # AMP only suggested when compute dominates
    amp_compute_saving: float = 0.40     # ASSUMED share of compute time AMP removes (not measured)
    pinned_h2d_saving: float = 0.50      # ASSUMED share of host->device time pinned memory removes
    batch_factor: int = 2                # per-GPU batch multiplier the recommendation proposes
    min_saving_share: float = 0.02       # recommendations saving less than this are dropped
    phase_over_ideal: float = 1.5        # a phase taking this many times its ideal-scaling time -> named
    phase_excess_share: float = 0.05     # ... when the time above ideal is at least this share of the step
    cpu_shared_cores: float = 1.0        # CPU run with N processes on <= this × the 1-device run's cores -> finding


THRESHOLDS = Thresholds()


@dataclass
class Finding:
    kind: str
    run: str
    text: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recommendation:
    kind: str
    run: str
    text: str
    saving_ms: float
    step_ms: float
    basis: str                           # "measured" | "predicted" | "assumed"
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def saving_share(self) -> float:
        return self.saving_ms / self.step_ms if self.step_ms > 0 else 0.0


def pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def ms(x: float) -> str:
    """Milliseconds to the precision that matters: 6707, 86.4, 2.15."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.2f}"


def _where(m: RunMetrics) -> str:
    if m.device_type == "cuda":
        unit = "GPU" if m.devices == 1 else "GPUs"
    else:
        unit = "CPU" if m.devices == 1 else "CPU processes"
    return f"{m.strategy} at {m.devices} {unit} ({m.name})"


def _span(indices: list[int]) -> str:
    idx = sorted(indices)
    if len(idx) == 1:
        return f"GPU {idx[0]}"
    if idx == list(range(idx[0], idx[-1] + 1)):
        return f"GPUs {idx[0]}–{idx[-1]}"
    return "GPUs " + ", ".join(str(i) for i in idx)


# --- findings ---------------------------------------------------------------------------------

def _scaling(m: RunMetrics, t: Thresholds) -> Finding | None:
    if m.devices <= 1 or m.speedup is None or m.efficiency is None:
        return None
    if m.efficiency > t.superlinear_efficiency:
        return Finding("superlinear", m.name,
                       f"{_where(m)}: {m.speedup:.2f}× the 1-device run ({m.baseline}) on {m.devices} devices — "
                       f"efficiency {pct(m.efficiency)} is more than linear, so the two runs did not run under the "
                       "same conditions (threads per process, other load, caches, batch); compare them with care",
                       {"speedup": m.speedup, "efficiency": m.efficiency})
    if m.efficiency >= t.poor_efficiency:
        return None
    ips = f"{m.images_per_s:.1f}" if m.images_per_s is not None and m.images_per_s < 10 else f"{m.images_per_s:.0f}"
    return Finding("scaling", m.name,
                   f"{_where(m)}: {ips} images/s, only {m.speedup:.2f}× the 1-device run's images/s "
                   f"({m.baseline}; scaling efficiency {pct(m.efficiency)}, ideal {m.devices:.0f}×)",
                   {"speedup": m.speedup, "efficiency": m.efficiency, "images_per_s": m.images_per_s})


def _params(m: RunMetrics) -> str:
    if not m.parameters:
        return "all"
    return f"all {m.parameters / 1e6:.0f} M" if m.parameters >= 1e6 else f"all {m.parameters:,}"


def _phase_why(m: RunMetrics, p: PhaseScaling) -> str:
    """The mechanism behind a phase that does not shrink, where the strategy says what it is."""
    if p.phase == vocab.OPTIMIZER:
        who = (f"every rank updates {_params(m)} parameters" if m.strategy == "ddp" else
               f"GPU 0 alone updates {_params(m)} parameters" if m.strategy in DP_STRATEGIES else
               f"the step updates {_params(m)} parameters")
        return (f"{ms(p.baseline_ms)} ms in the 1-device run: {who}, so it does not shrink with N; "
                f"{pct(p.measured_ms / m.step_ms) if m.step_ms else '?'} of the step")
    if p.phase == vocab.LOSS and m.strategy in DP_STRATEGIES and m.global_batch:
        return f"GPU 0 alone computes it over the gathered batch of {m.global_batch}"
    if p.phase == vocab.BACKWARD and m.strategy == "ddp" and m.parts_ms.get(vocab.COMMUNICATION, 0.0) > 0:
        return (f"it also waits for the all-reduce: {ms(m.parts_ms[vocab.COMMUNICATION])} ms of exposed "
                "communication per step in all")
    if p.phase == vocab.FORWARD and m.strategy in DP_STRATEGIES:
        dp = [(lbl.removeprefix(vocab.PREFIX + "dp."), m.phase_ms[lbl]) for lbl in vocab.DP_PHASES
              if m.phase_ms.get(lbl, 0.0) > 0]
        if dp:
            return "of which " + ", ".join(f"{n} {ms(v)}" for n, v in dp) + " ms"
    return ""


def _phase_scaling(m: RunMetrics, base: RunMetrics | None, t: Thresholds) -> Finding | None:
    """Which phases did not shrink as ideal scaling predicts (per-device batch vs the 1-device run's)."""
    if base is None or m.devices <= 1 or m.step_ms is None or m.step_ms_source != "trace":
        return None
    phases = phase_scaling(m, base)
    rows = [p for p in phases if p.ratio >= t.phase_over_ideal and p.excess_ms >= t.phase_excess_share * m.step_ms]
    if not rows:
        return None
    rows.sort(key=lambda p: -p.excess_ms)
    items = []
    for p in rows:
        why = _phase_why(m, p)
        items.append(f"{p.phase.removeprefix(vocab.PREFIX)} {ms(p.measured_ms)} vs ideal {ms(p.ideal_ms)} ms "
                     f"({p.ratio:.1f}×{'; ' + why if why else ''})")
    above = sum(p.excess_ms for p in phases if p.excess_ms > 0)
    text = (f"{m.name}: per-step phases vs {base.name} scaled to {m.per_device_batch} images per device "
            f"(ideal scaling): " + "; ".join(items)
            + f" — {ms(above)} ms of the {ms(m.step_ms)} ms step is above ideal")
    figs: dict[str, Any] = {"baseline": base.name, "above_ideal_ms": above,
                            **{p.phase: {"measured_ms": p.measured_ms, "ideal_ms": p.ideal_ms,
                                         "baseline_ms": p.baseline_ms, "ratio": p.ratio} for p in rows}}
    return Finding("phase_scaling", m.name, text, figs)


def _cores_used(threads: int | None, cores: float) -> float:
    return min(float(threads), cores) if threads else cores


def _cpu_sharing(m: RunMetrics, base: RunMetrics | None, t: Thresholds) -> Finding | None:
    """N CPU processes on no more cores than the 1-device run had alone: compute cannot speed up."""
    if (base is None or m.device_type != "cpu" or base.device_type != "cpu" or m.devices <= 1
            or not m.cpus_allowed or not base.cpus_allowed or m.cpus_allowed > t.cpu_shared_cores * base.cpus_allowed):
        return None
    n, cores = m.devices, m.cpus_allowed
    per_rank = cores / n
    who = "DDP processes" if m.strategy == "ddp" else "processes"
    if m.omp_num_threads:
        threads = f"{m.omp_num_threads} thread{'s' if m.omp_num_threads != 1 else ''} each"
        if n * m.omp_num_threads > cores:
            threads += f": {n * m.omp_num_threads} threads on {cores} cores, oversubscribed"
    else:
        threads = "OMP_NUM_THREADS unset: each may start a thread per core, oversubscribing them"
    same = "the same" if cores == base.cpus_allowed else "fewer than the"
    text = (f"{m.name}: {n} {who} share {cores} cores ({threads}), {same} {base.cpus_allowed} cores "
            f"{base.name} had alone")
    figs: dict[str, Any] = {"processes": n, "cpus_allowed": cores, "omp_num_threads": m.omp_num_threads,
                            "baseline_cpus_allowed": base.cpus_allowed}
    comp, comp0 = m.parts_ms.get(vocab.COMPUTE, 0.0), base.parts_ms.get(vocab.COMPUTE, 0.0)
    if (m.step_ms_source == base.step_ms_source == "trace" and comp > 0 and comp0 > 0
            and m.per_device_batch and base.per_device_batch):
        c_rank = _cores_used(m.omp_num_threads, per_rank)
        c_base = _cores_used(base.omp_num_threads, float(base.cpus_allowed))
        x, y = comp / m.per_device_batch, comp0 / base.per_device_batch
        text += (f": compute per image {ms(x)} ms on each rank's {c_rank:g} core{'s' if c_rank != 1 else ''} vs "
                 f"{ms(y)} ms on {c_base:g} in the 1-device run = {ms(x * c_rank)} vs {ms(y * c_base)} core-ms per "
                 "image")
        figs.update(compute_ms_per_image=x, baseline_compute_ms_per_image=y, core_ms_per_image=x * c_rank,
                    baseline_core_ms_per_image=y * c_base)
    text += f"; processes on the same cores add no compute, so on these cores the ideal is 1×, not {n}×"
    return Finding("cpu_sharing", m.name, text, figs)


def _comm(m: RunMetrics, cost: CostModel | None, t: Thresholds) -> Finding | None:
    if m.device_type == "cpu":
        what = f"{m.devices} gloo processes: all-reduce"
    elif m.strategy in DP_STRATEGIES:
        what = f"at {m.devices} GPUs scatter/replicate/gather/reduce"
    elif m.strategy == "ddp":
        what = f"at {m.devices} GPUs the exposed NCCL all-reduce"
    else:
        what = "communication"
    f = _share_finding(m, vocab.COMMUNICATION, t.comm_share, "communication", what, ms_key="comm_ms")
    if f is None:
        return None
    comm_ms, figs = f.figures["comm_ms"], f.figures
    figs["step_ms"] = m.step_ms
    if cost is not None and cost.items:
        moved = cost.bytes_per_step
        f.text += f": {gb(moved)}{' (estimate)' if cost.estimated else ''} moved per step"
        figs["bytes_per_step"] = moved
        if cost.bandwidth_gbps:
            f.text += f" at {cost.bandwidth_gbps:.1f} GB/s ({cost.bandwidth_source})"
            figs["bandwidth_gbps"] = cost.bandwidth_gbps
        if cost.predicted_comm_ms:
            ratio = comm_ms / cost.predicted_comm_ms
            f.text += f" = {cost.predicted_comm_ms:.1f} ms predicted"
            if ratio > t.comm_mismatch:
                f.text += f"; measured is {ratio:.1f}× that (time beyond raw transfer: launches, syncs, contention)"
            elif ratio < 1 / t.comm_mismatch:
                f.text += f"; measured is {ratio:.2f}× that (copies run in parallel or hide under other work)"
            figs["predicted_ms"] = cost.predicted_comm_ms
    if m.comm_overlap is not None:
        f.text += f"; {pct(m.comm_overlap)} of the all-reduce overlaps backward"
        figs["overlap"] = m.comm_overlap
    return f


def _data(m: RunMetrics, samples: dict[str, Any], t: Thresholds) -> Finding | None:
    f = _share_finding(m, vocab.DATA_LOADING, t.data_share, "data_loading", "DataLoader wait", ms_key="data_ms")
    if f is None:
        return None
    figs = f.figures
    if m.workers is not None and m.cpus_allowed is not None and m.workers >= m.cpus_allowed:
        f.text += (f"; {m.workers} workers share {m.cpus_allowed} CPU{'s' if m.cpus_allowed != 1 else ''} "
                   f"(cpus_allowed={m.cpus_allowed})")
        figs.update(workers=m.workers, cpus_allowed=m.cpus_allowed)
    elif m.workers == 0:
        f.text += "; workers=0: the training process decodes and augments every batch itself"
        figs["workers"] = 0
    host = samples.get("host_cpu_pct")
    if host is not None:
        f.text += f", host CPU at {host:.0f} %"
        figs["host_cpu_pct"] = host
    kids = samples.get("children_cpu_pct")
    if kids is not None:
        f.text += f", child processes (DataLoader workers) use {kids:.0f} % of a core"
        figs["children_cpu_pct"] = kids
    return f


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
        if max(d.busy for d in rest) - min(d.busy for d in rest) <= t.similar_busy:
            others = f"{_span([d.index for d in rest])} busy {pct(sum(d.busy for d in rest) / len(rest))}"
        else:
            others = ", ".join(f"GPU {d.index} busy {pct(d.busy)}" for d in sorted(rest, key=lambda d: d.index))
        return Finding("imbalance", m.name,
                       f"GPU {top.index} busy {pct(top.busy)}, {others} ({m.name}: one process drives "
                       f"all GPUs and GPU {top.index} also gathers, computes the loss and steps the optimizer)",
                       {d.device: d.busy for d in devs})
    return None


def _share_finding(m: RunMetrics, category: str, limit: float, kind: str, what: str,
                   ms_key: str = "ms") -> Finding | None:
    """'<what> is N % of the step (a of b ms, run)' when the category's share reaches limit."""
    share = m.shares.get(category, 0.0)
    if m.step_ms is None or share < limit:
        return None
    part_ms = m.parts_ms[category]
    return Finding(kind, m.name,
                   f"{what} is {pct(share)} of the step ({part_ms:.1f} of {m.step_ms:.1f} ms, {m.name})",
                   {"share": share, ms_key: part_ms})


def _h2d(m: RunMetrics, cost: CostModel | None, t: Thresholds) -> Finding | None:
    f = _share_finding(m, vocab.H2D_COPY, t.h2d_share, "host_to_device", "host→device input copying")
    if f is None:
        return None
    if m.pin_memory is False:
        f.text += "; pin_memory is off"
    if cost is not None and "memcpy HtoD" in cost.bandwidths:
        f.text += f"; HtoD copies ran at {cost.bandwidths['memcpy HtoD']:.1f} GB/s"
    return f


def _gpu_util(m: RunMetrics, samples: dict[str, Any], t: Thresholds) -> Finding | None:
    mean = samples.get("mean_gpu_util_pct")
    if mean is None or mean >= t.low_gpu_util_pct:
        return None
    per = samples.get("gpu_util_pct") or {}
    detail = ", ".join(f"GPU {d} {v:.0f} %" for d, v in per.items())
    return Finding("gpu_util", m.name, f"NVML: mean GPU utilisation {mean:.0f} % over the run ({detail}; {m.name})",
                   {"mean_gpu_util_pct": mean, **{f"gpu{d}": v for d, v in per.items()}})


def findings_for(m: RunMetrics, cost: CostModel | None, samples: dict[str, Any],
                 t: Thresholds = THRESHOLDS, base: RunMetrics | None = None) -> list[Finding]:
    """Every finding one run supports, in reading order (base: its 1-device run, for the phase comparisons)."""
    out = [
        _scaling(m, t),
        _phase_scaling(m, base, t),
        _cpu_sharing(m, base, t),
        _comm(m, cost, t),
        _imbalance(m, t),
        _data(m, samples, t),
        _h2d(m, cost, t),
        _share_finding(m, vocab.HOST_OVERHEAD, t.host_overhead_share, "host_overhead",
                       "host overhead (Python, dispatch, launches, DP replica threads) while no device works"),
        _share_finding(m, vocab.IDLE, t.idle_share, "idle", "nothing busy (idle)"),
        _share_finding(m, vocab.UNCLASSIFIED, t.unclassified_share, "unclassified",
                       "time in events the classifier does not know (unclassified)"),
        _gpu_util(m, samples, t),
    ]
    return [f for f in out if f is not None]


# --- recommendations --------------------------------------------------------------------------

def _rec_ddp(m: RunMetrics, cost: CostModel | None, all_runs: list[RunMetrics], t: Thresholds
             ) -> Recommendation | None:
    if m.strategy not in DP_STRATEGIES or m.devices <= 1 or m.step_ms is None:
        return None
    comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
    poor = m.efficiency is not None and m.efficiency < t.poor_efficiency
    if comm / m.step_ms < t.comm_share and not poor:
        return None
    twin = [r for r in all_runs if r.strategy == "ddp" and r.devices == m.devices
            and r.device_type == m.device_type and r.step_ms and r.global_batch]
    if twin and m.global_batch:
        d = twin[0]
        ddp_ms = d.step_ms * m.global_batch / d.global_batch      # per-image time at this run's batch
        saving = m.step_ms - ddp_ms
        return Recommendation("ddp", m.name,
                              f"Use DDP (--strategy ddp): measured {d.name} does {m.global_batch} images in "
                              f"{ddp_ms:.1f} ms vs {m.step_ms:.1f} ms here", saving, m.step_ms, "measured",
                              {"ddp_run": d.name, "ddp_ms": ddp_ms})
    ar = (ddp_prediction_ms(cost.parameter_bytes, m.devices, cost.bandwidth_gbps)
          if cost is not None and cost.parameter_bytes and cost.bandwidth_gbps else None)
    base = next((r for r in all_runs if r.name == m.baseline and r.step_ms and r.per_device_batch), None)
    if base is not None and m.per_device_batch:
        # a DDP rank does what the 1-device run did, on its own share of the batch, plus the all-reduce
        rank_ms = base.step_ms * m.per_device_batch / base.per_device_batch
        ddp_ms = rank_ms + (ar or 0.0)
        tail = (f" + its all-reduce {ar:.1f} ms at {cost.bandwidth_gbps:.1f} GB/s, assumed not overlapped"
                if ar is not None and cost is not None else " (all-reduce time not predicted: no link bandwidth)")
        return Recommendation("ddp", m.name,
                              f"Use DDP (--strategy ddp): each rank would do what {base.name} does on "
                              f"{m.per_device_batch} images ({rank_ms:.1f} ms){tail} = {ddp_ms:.1f} ms per step vs "
                              f"{m.step_ms:.1f} ms now", m.step_ms - ddp_ms, m.step_ms, "predicted",
                              {"ddp_ms": ddp_ms, "rank_ms": rank_ms, "allreduce_ms": ar, "baseline": base.name})
    if ar is None or cost is None or not cost.bandwidth_gbps or not cost.parameter_bytes:
        return Recommendation("ddp", m.name,
                              f"Use DDP (--strategy ddp): removes per-step replicate/scatter/gather; up to the "
                              f"{comm:.1f} ms of exposed communication (no bandwidth to predict DDP's all-reduce)",
                              comm, m.step_ms, "predicted", {"comm_ms": comm})
    saving = max(0.0, comm - ar)
    return Recommendation("ddp", m.name,
                          f"Use DDP (--strategy ddp): one process per GPU, no replicate/scatter/gather; its "
                          f"all-reduce of {gb(2 * cost.parameter_bytes * (m.devices - 1) / m.devices)} per rank "
                          f"takes {ar:.1f} ms at {cost.bandwidth_gbps:.1f} GB/s (even without overlap) vs "
                          f"{comm:.1f} ms of communication now", saving, m.step_ms, "predicted",
                          {"allreduce_ms": ar, "comm_ms": comm})


def _rec_cpus(m: RunMetrics, samples: dict[str, Any], t: Thresholds) -> Recommendation | None:
    if m.step_ms is None or m.shares.get(vocab.DATA_LOADING, 0.0) < t.data_share:
        return None
    data = m.parts_ms[vocab.DATA_LOADING]
    host = samples.get("host_cpu_pct")
    starved = (m.workers is not None and m.cpus_allowed is not None and m.workers >= m.cpus_allowed)
    saturated = host is not None and host >= t.host_cpu_saturated_pct
    if starved or saturated:
        want = (m.workers or 0) + 1
        why = []
        if starved:
            why.append(f"{m.workers} workers on {m.cpus_allowed} CPU{'s' if m.cpus_allowed != 1 else ''}")
        if saturated:
            why.append(f"host CPU at {host:.0f} %")
        text = (f"Give each DataLoader worker its own CPU: request ≥ {want} CPUs (request_cpus = {want} in "
                f"HTCondor) — {', '.join(why)}; up to the {data:.1f} ms data wait per step")
    elif m.workers is not None:
        text = (f"Raise --workers above {m.workers} (CPUs are not saturated): up to the {data:.1f} ms "
                f"data wait per step")
    else:
        return None
    return Recommendation("cpus_per_worker", m.name, text, data, m.step_ms, "predicted",
                          {"data_ms": data, "workers": m.workers, "cpus_allowed": m.cpus_allowed})


def _rec_pinned(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    if m.step_ms is None or m.pin_memory is not False or m.device_type != "cuda":
        return None
    h2d = m.parts_ms.get(vocab.H2D_COPY, 0.0)
    if h2d / m.step_ms < t.h2d_share:
        return None
    saving = h2d * t.pinned_h2d_saving
    return Recommendation("pinned_memory", m.name,
                          f"Use --pin-memory: host→device copying is {h2d:.1f} ms per step; pinned buffers copy "
                          f"faster and asynchronously (assumed {pct(t.pinned_h2d_saving)} of it saved)",
                          saving, m.step_ms, "assumed", {"h2d_ms": h2d})


def _rec_batch(m: RunMetrics, cost: CostModel | None, t: Thresholds) -> Recommendation | None:
    if m.step_ms is None or m.devices <= 1 or m.per_device_batch is None:
        return None
    comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
    host = m.parts_ms.get(vocab.HOST_OVERHEAD, 0.0)
    if (comm + host) / m.step_ms < t.comm_share:
        return None
    fixed = 1.0
    if cost is not None and cost.items:
        fixed_bytes = sum(i.bytes for i in cost.items if not i.per_image)
        fixed = fixed_bytes / cost.bytes_per_step if cost.bytes_per_step else 1.0
    per_step_fixed = comm * fixed + host
    saving = per_step_fixed * (1 - 1 / t.batch_factor)
    new = m.per_device_batch * t.batch_factor
    return Recommendation("per_gpu_batch", m.name,
                          f"Raise the per-device batch from {m.per_device_batch} to {new} (--batch-size "
                          f"{new * m.devices}): the per-step parameter traffic and host overhead "
                          f"({per_step_fixed:.1f} ms) are paid once per {t.batch_factor}× the images "
                          "(re-tune the learning rate)", saving, m.step_ms, "predicted",
                          {"fixed_ms": per_step_fixed, "new_per_device_batch": new})


def _rec_amp(m: RunMetrics, t: Thresholds) -> Recommendation | None:
    if m.step_ms is None or m.device_type != "cuda" or m.amp is not False:
        return None
    comp = m.parts_ms.get(vocab.COMPUTE, 0.0)
    if comp / m.step_ms < t.amp_min_compute_share:
        return None
    saving = comp * t.amp_compute_saving
    return Recommendation("amp", m.name,
                          f"Try --amp: compute is {comp:.1f} ms of the {m.step_ms:.1f} ms step; assuming mixed "
                          f"precision removes {pct(t.amp_compute_saving)} of it (not measured here)",
                          saving, m.step_ms, "assumed", {"compute_ms": comp})


def _rec_cpu_cores(m: RunMetrics, base: RunMetrics | None, t: Thresholds) -> Recommendation | None:
    """CPU processes sharing the 1-device run's cores: give each its own; predicted only from measured phases."""
    if m.step_ms is None or _cpu_sharing(m, base, t) is None or base is None or base.cpus_allowed is None:
        return None
    want = m.devices * base.cpus_allowed
    text = (f"Give each of the {m.devices} processes its own cores (on a CPU, more processes on the same cores "
            f"cannot speed up compute-bound training): {want} cores, {base.cpus_allowed} per process as {base.name} "
            f"had (request_cpus = {want} in HTCondor), or one process per node")
    opt0 = base.phase_ms.get(vocab.OPTIMIZER)
    if (base.step_ms and base.step_ms_source == "trace" and m.step_ms_source == "trace" and opt0 is not None
            and m.per_device_batch and base.per_device_batch):
        scaled = (base.step_ms - opt0) * m.per_device_batch / base.per_device_batch
        comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
        pred = scaled + opt0 + comm
        if pred < m.step_ms:
            text += (f"; predicted: each rank then runs {base.name}'s step minus its optimizer on "
                     f"{m.per_device_batch} images ({ms(scaled)} ms) + the optimizer over all parameters "
                     f"({ms(opt0)} ms, does not shrink) + the measured exposed all-reduce ({ms(comm)} ms) = "
                     f"{ms(pred)} ms per step vs {ms(m.step_ms)} ms now")
            return Recommendation("cpu_cores", m.name, text, m.step_ms - pred, m.step_ms, "predicted",
                                  {"predicted_ms": pred, "scaled_ms": scaled, "optimizer_ms": opt0,
                                   "allreduce_ms": comm, "cores": want})
    return Recommendation("cpu_cores", m.name, text + "; no saving predicted here", 0.0, m.step_ms, "none",
                          {"cores": want})


def recommendations(metrics: list[RunMetrics], costs: dict[str, CostModel], samples: dict[str, dict[str, Any]],
                    t: Thresholds = THRESHOLDS) -> list[Recommendation]:
    """One recommendation per kind (for the run where it saves most), ranked by saved share of the step."""
    best: dict[str, Recommendation] = {}
    for m in metrics:
        cost = costs.get(m.run_dir)
        for rec in (_rec_ddp(m, cost, metrics, t), _rec_cpus(m, samples.get(m.run_dir, {}), t),
                    _rec_pinned(m, t), _rec_batch(m, cost, t), _rec_amp(m, t),
                    _rec_cpu_cores(m, baseline_of(m, metrics), t)):
            if rec is None or (rec.basis != "none" and rec.saving_share < t.min_saving_share):
                continue
            if rec.kind not in best or rec.saving_share > best[rec.kind].saving_share:
                best[rec.kind] = rec
    return sorted(best.values(), key=lambda r: -r.saving_share)


def all_findings(metrics: list[RunMetrics], costs: dict[str, CostModel], samples: dict[str, dict[str, Any]],
                 t: Thresholds = THRESHOLDS) -> list[Finding]:
    out: list[Finding] = []
    for m in metrics:
        out += findings_for(m, costs.get(m.run_dir), samples.get(m.run_dir, {}), t, baseline_of(m, metrics))
    return out


def baseline_of(m: RunMetrics, metrics: list[RunMetrics]) -> RunMetrics | None:
    """The 1-device run attach_speedups compared m with."""
    return next((b for b in metrics if m.baseline is not None and b.name == m.baseline and b is not m), None)


def finding_line(i: int, f: Finding) -> str:
    return f"{i}. {f.text}"


def recommendation_line(i: int, r: Recommendation) -> str:
    if r.basis == "none":                # advice the data cannot put a number on
        return f"{i}. {r.text} ({r.run})"
    return (f"{i}. {r.text} → saves ~{r.saving_ms:.1f} ms of {r.step_ms:.1f} ms per step "
            f"({pct(r.saving_share)}, {r.basis}; {r.run})")


def thresholds_dict(t: Thresholds = THRESHOLDS) -> dict[str, Any]:
    return asdict(t)
