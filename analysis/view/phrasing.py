"""Words for the rules' figures: one sentence per finding and recommendation, and the cost items' names.

The rules (analysis.findings.rules, analysis.run.costmodel) decide what is true and with which numbers;
this module only says it. Change the wording here and every output (text, markdown, HTML,
summary.json, the TensorBoard Text tab) changes with it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analysis.run import costmodel as cm
from analysis.findings import figures as fd
from analysis.text.units import cpus, gb, ms, pct
from profiler.contract import vocab


def _s(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def where(w: fd.Where) -> str:
    if w.device_type == vocab.CUDA:
        unit = "GPU" if w.devices == 1 else "GPUs"
    else:
        unit = "CPU" if w.devices == 1 else "CPU processes"
    return f"{w.strategy} at {w.devices} {unit} ({w.run})"


def span(indices: list[int]) -> str:
    idx = sorted(indices)
    if len(idx) == 1:
        return f"GPU {idx[0]}"
    if idx == list(range(idx[0], idx[-1] + 1)):
        return f"GPUs {idx[0]}–{idx[-1]}"
    return "GPUs " + ", ".join(str(i) for i in idx)


def _part(what: str, share: float, part_ms: float, step_ms: float, run: str) -> str:
    return f"{what} is {pct(share)} of the step ({part_ms:.1f} of {step_ms:.1f} ms, {run})"


# --- findings ---------------------------------------------------------------------------------

def _scaling(f: fd.ScalingFigures) -> str:
    ips = "?" if f.images_per_s is None else f"{f.images_per_s:.1f}" if f.images_per_s < 10 else f"{f.images_per_s:.0f}"
    mfu = (f"; MFU {f.mfu * 100:.1f} % vs {f.base_mfu * 100:.1f} % on 1"
           if f.mfu is not None and f.base_mfu is not None else "")
    return (f"{where(f.at)}: {ips} images/s, only {f.speedup:.2f}× the 1-device run's images/s "
            f"({f.baseline}; scaling efficiency {pct(f.efficiency)}, ideal {f.at.devices:.0f}×){mfu}")


def _superlinear(f: fd.ScalingFigures) -> str:
    return (f"{where(f.at)}: {f.speedup:.2f}× the 1-device run ({f.baseline}) on {f.at.devices} devices — "
            f"efficiency {pct(f.efficiency)} is more than linear, so the two runs did not run under the "
            "same conditions (threads per process, other load, caches, batch); compare them with care")


def _params(n: int | None) -> str:
    if not n:
        return "all"
    return f"all {n / 1e6:.0f} M" if n >= 1e6 else f"all {n:,}"


def _phase_why(f: fd.PhaseScalingFigures, row: fd.PhaseRow) -> str:
    strategy = f.at.strategy
    if row.reason == "optimizer_not_divided":
        who = (f"every rank updates {_params(f.parameters)} parameters" if strategy == vocab.DDP else
               f"GPU 0 alone updates {_params(f.parameters)} parameters" if strategy in vocab.DP_STRATEGIES else
               f"the step updates {_params(f.parameters)} parameters")
        return (f"{ms(row.baseline_ms)} ms in the 1-device run: {who}, so it does not shrink with N; "
                f"{pct(row.measured_ms / f.step_ms)} of the step")
    if row.reason == "loss_on_gpu0":
        return f"GPU 0 alone computes it over the gathered batch of {f.global_batch}"
    if row.reason == "waits_for_allreduce":
        return f"it also waits for the all-reduce: {ms(f.comm_ms)} ms of exposed communication per step in all"
    if row.reason == "dp_parts":
        return "of which " + ", ".join(f"{lbl.removeprefix(vocab.PREFIX + 'dp.')} {ms(v)}"
                                       for lbl, v in f.dp_parts_ms.items()) + " ms"
    return ""


def _phase_scaling(f: fd.PhaseScalingFigures) -> str:
    items = []
    for row in f.rows:
        why = _phase_why(f, row)
        items.append(f"{row.phase.removeprefix(vocab.PREFIX)} {ms(row.measured_ms)} vs ideal {ms(row.ideal_ms)} ms "
                     f"({row.ratio:.1f}×{'; ' + why if why else ''})")
    return (f"{f.at.run}: per-step phases vs {f.baseline} scaled to {f.per_device_batch} images per device "
            f"(ideal scaling): " + "; ".join(items)
            + f" — {ms(f.above_ideal_ms)} ms of the {ms(f.step_ms)} ms step is above ideal")


def _cpu_sharing(f: fd.CpuSharingFigures) -> str:
    n, cores = f.at.devices, f.cpus
    who = "DDP processes" if f.at.strategy == vocab.DDP else "processes"
    if f.omp_num_threads:
        threads = f"{_s(f.omp_num_threads, 'thread')} each"
        if n * f.omp_num_threads > cores:
            threads += f": {n * f.omp_num_threads} threads on {cores:g} cores, oversubscribed"
    else:
        threads = "OMP_NUM_THREADS unset: each may start a thread per core, oversubscribing them"
    same = "the same" if cores == f.baseline_cpus else "fewer than the"
    text = f"{f.at.run}: {n} {who} share {cores:g} cores ({threads}), {same} {f.baseline_cpus:g} cores {f.baseline} had alone"
    if f.core_ms_per_image is not None and f.rank_cores is not None and f.baseline_cores is not None:
        text += (f": compute per image {ms(f.compute_ms_per_image or 0.0)} ms on each rank's "
                 f"{_s(f.rank_cores, 'core')} vs {ms(f.baseline_compute_ms_per_image or 0.0)} ms on "
                 f"{f.baseline_cores:g} in the 1-device run = {ms(f.core_ms_per_image)} vs "
                 f"{ms(f.baseline_core_ms_per_image or 0.0)} core-ms per image")
    return text + f"; processes on the same cores add no compute, so on these cores the ideal is 1×, not {n}×"


def _comm(f: fd.CommFigures) -> str:
    if f.at.device_type == vocab.CPU:
        what = f"{f.at.devices} gloo processes: all-reduce"
    elif f.at.strategy in vocab.DP_STRATEGIES:
        what = f"at {f.at.devices} GPUs scatter/replicate/gather/reduce"
    elif f.at.strategy == vocab.DDP:
        what = f"at {f.at.devices} GPUs the exposed NCCL all-reduce"
    else:
        what = "communication"
    text = _part(what, f.share, f.comm_ms, f.step_ms, f.at.run)
    if f.bytes_per_step is not None:
        text += f": {'at least ' if not f.bytes_complete else ''}{gb(f.bytes_per_step)} moved per step"
        if f.bandwidth_gbps:
            text += f" at {f.bandwidth_gbps:.1f} GB/s ({f.bandwidth_source})"
        if f.predicted_ms:
            text += f" = {f.predicted_ms:.1f} ms predicted"
            if f.mismatch == "slower":
                text += (f"; measured is {f.measured_over_predicted:.1f}× that (time beyond raw transfer: launches, "
                         "syncs, contention)")
            elif f.mismatch == "faster":
                text += (f"; measured is {f.measured_over_predicted:.2g}× that (copies run in parallel or hide under "
                         "other work)")
    if f.overlap is not None:
        text += f"; {pct(f.overlap)} of the all-reduce overlaps backward"
    return text


def _imbalance(f: fd.ImbalanceFigures) -> str:
    if f.others_similar:
        others = f"{span([i for i, _ in f.others])} busy {pct(sum(b for _, b in f.others) / len(f.others))}"
    else:
        others = ", ".join(f"GPU {i} busy {pct(b)}" for i, b in f.others)
    return (f"GPU {f.top_index} busy {pct(f.top_busy)}, {others} ({f.at.run}: one process drives all GPUs and "
            f"GPU {f.top_index} also gathers, computes the loss and steps the optimizer)")


def _straggler(f: fd.StragglerFinding) -> str:
    doing = ", ".join(f"{c.replace('_', ' ')} {pct(v)}" for c, v in f.doing)
    among = f" among the {f.traced} traced ranks of {f.world}" if f.world else ""
    return (f"{f.straggler} is the straggler{among}: it arrived last at {pct(f.last_share)} of {f.matched} matched "
            f"collectives, and the other ranks wait for it {f.others_wait_ms:.1f} ms per step inside them "
            f"({pct(f.others_wait_ms / f.others_comm_ms if f.others_comm_ms else 0.0)} of their "
            f"{f.others_comm_ms:.1f} ms of communication; the transfer itself {f.transfer_ms:.1f} ms); "
            f"{f.straggler}'s step goes to {doing}; rank skew {f.skew_ms:.1f} ms per step ({f.at.run})")


def _tree(cores: float, allocated: float) -> str:
    return f"the process tree uses {cores:.2f} cores of the job's {cpus(allocated)}"


def _data(f: fd.DataLoadingFigures) -> str:
    text = _part("DataLoader wait", f.share, f.part_ms, f.step_ms, f.at.run)
    if f.workers == 0:
        text += "; workers=0: the training process decodes and augments every batch itself"
    elif f.workers is not None and f.cpus is not None and f.workers >= f.cpus:
        text += f"; {f.workers} workers share {cpus(f.cpus)} ({f.cpus_source})"
    if f.tree_cpu_cores is not None and f.cpus is not None:
        text += f"; {_tree(f.tree_cpu_cores, f.cpus)}"
    return text


def _cpu_saturated(f: fd.CpuSaturatedFigures) -> str:
    it = "it" if f.cpus == 1 else "them"
    verb = "is" if f.cpus == 1 else "are"
    loops = "the training loop" if f.processes == 1 else f"{f.processes} DDP processes"
    if f.workers:
        workers = f.workers * f.processes
        who = f"{workers} DataLoader worker{'s' if workers != 1 else ''} and {loops} share {it}"
    else:
        who = f"{loops} alone use{'s' if f.processes == 1 else ''} {it} (no DataLoader workers)"
    text = f"the job's {cpus(f.cpus)} {verb} saturated: {who}"
    if f.data_share >= 0.005:
        text += f"; data loading is {pct(f.data_share)} of the step"
    else:
        text += "; data loading is under 1 % of the step, so the CPUs go to compute"
    return text + f" ({_tree(f.tree_cpu_cores, f.cpus)}, allocation from {f.cpus_source}; {f.at.run})"


def _h2d(f: fd.HostToDeviceFigures) -> str:
    text = _part("host→device input copying", f.share, f.part_ms, f.step_ms, f.at.run)
    if f.pin_memory is False:
        text += "; pin_memory is off"
    if f.htod_gbps is not None:
        text += f"; HtoD copies ran at {f.htod_gbps:.1f} GB/s"
    return text


SHARE_WHAT = {
    vocab.HOST_OVERHEAD: "host overhead (Python, dispatch, launches, DP replica threads) while no device works",
    vocab.IDLE: "nothing busy (idle)",
    vocab.UNCLASSIFIED: "time in events the classifier does not know (unclassified)",
}


def _share(f: fd.ShareFigures) -> str:
    return _part(SHARE_WHAT[f.category], f.share, f.part_ms, f.step_ms, f.at.run)


def _gpu_util(f: fd.GpuUtilFigures) -> str:
    detail = ", ".join(f"GPU {d} {v:.0f} %" for d, v in f.per_gpu_pct.items())
    return f"NVML: mean GPU utilisation {f.mean_pct:.0f} % over the run ({detail}; {f.at.run})"


FINDING_WORDS: dict[fd.FindingKind, Callable[[Any], str]] = {
    "scaling": _scaling, "superlinear": _superlinear, "phase_scaling": _phase_scaling, "cpu_sharing": _cpu_sharing,
    "communication": _comm, "imbalance": _imbalance, "cpu_saturated": _cpu_saturated, "data_loading": _data,
    "host_to_device": _h2d, "host_overhead": _share, "idle": _share, "unclassified": _share, "gpu_util": _gpu_util,
    "straggler": _straggler,
}


def finding_text(f: fd.Finding) -> str:
    return FINDING_WORDS[f.kind](f.figures)


# --- recommendations --------------------------------------------------------------------------

def _ddp(f: fd.DdpFigures) -> str:
    head = "Use DDP (--strategy ddp): "
    if f.how == "measured_run":
        return (head + f"measured {f.ddp_run} does {f.global_batch} images in {(f.ddp_ms or 0.0):.1f} ms vs "
                f"{f.step_ms:.1f} ms here")
    if f.how == "per_rank":
        tail = (f" + its all-reduce {f.allreduce_ms:.1f} ms at {f.bandwidth_gbps:.1f} GB/s, assumed not overlapped"
                if f.allreduce_ms is not None and f.bandwidth_gbps else
                " (all-reduce time not predicted: no link bandwidth)")
        return (head + f"each rank would do what {f.baseline} does on {f.per_device_batch} images "
                f"({(f.rank_ms or 0.0):.1f} ms){tail} = {(f.ddp_ms or 0.0):.1f} ms per step vs {f.step_ms:.1f} ms now")
    if f.how == "no_bandwidth":
        return (head + f"removes per-step replicate/scatter/gather; up to the {(f.comm_ms or 0.0):.1f} ms of exposed "
                "communication (no bandwidth to predict DDP's all-reduce)")
    return (head + f"one process per GPU, no replicate/scatter/gather; its all-reduce of {gb(f.allreduce_bytes or 0.0)} "
            f"per rank takes {(f.allreduce_ms or 0.0):.1f} ms at {(f.bandwidth_gbps or 0.0):.1f} GB/s (even without "
            f"overlap) vs {(f.comm_ms or 0.0):.1f} ms of communication now")


def _cpus_rec(f: fd.CpusFigures) -> str:
    if f.how == "request":
        why = []
        if f.outnumbered:
            loops = "the training loop" if f.processes == 1 else f"{f.processes} training processes"
            why.append(f"{(f.workers or 0) * f.processes} workers and {loops} on {cpus(f.cpus)}")
        if f.saturated and f.tree_cpu_cores is not None:
            why.append(_tree(f.tree_cpu_cores, f.cpus))
        return (f"Give each DataLoader worker its own CPU: request ≥ {f.request_cpus} CPUs (request_cpus = "
                f"{f.request_cpus} in HTCondor) — {', '.join(why)}; up to the {f.data_ms:.1f} ms data wait per step")
    return (f"Raise --workers above {f.workers} (the job's CPUs are not saturated: "
            f"{_tree(f.tree_cpu_cores or 0.0, f.cpus)}): up to the {f.data_ms:.1f} ms data wait per step")


def _pinned(f: fd.PinnedFigures) -> str:
    return (f"Use --pin-memory: host→device copying is {f.h2d_ms:.1f} ms per step; pinned buffers copy "
            f"faster and asynchronously (assumed {pct(f.assumed_saving)} of it saved)")


def _batch(f: fd.BatchFigures) -> str:
    return (f"Raise the per-device batch from {f.per_device_batch} to {f.new_per_device_batch} (--batch-size "
            f"{f.new_per_device_batch * f.devices}): the per-step parameter traffic and host overhead "
            f"({f.fixed_ms:.1f} ms) are paid once per {f.factor}× the images (re-tune the learning rate)")


def _amp(f: fd.AmpFigures) -> str:
    return (f"Try --amp: compute is {f.compute_ms:.1f} ms of the {f.step_ms:.1f} ms step; assuming mixed "
            f"precision removes {pct(f.assumed_saving)} of it (not measured here)")


def _cpu_cores(f: fd.CpuCoresFigures) -> str:
    text = (f"Give each of the {f.processes} processes its own cores (on a CPU, more processes on the same cores "
            f"cannot speed up compute-bound training): {f.cores:g} cores, {f.per_process:g} per process as "
            f"{f.baseline} had (request_cpus = {f.cores:g} in HTCondor), or one process per node")
    if f.predicted_ms is None:
        return text + "; no saving predicted here"
    return text + (f"; predicted: each rank then runs {f.baseline}'s step minus its optimizer on "
                   f"{f.per_device_batch} images ({ms(f.scaled_ms or 0.0)} ms) + the optimizer over all parameters "
                   f"({ms(f.optimizer_ms or 0.0)} ms, does not shrink) + the measured exposed all-reduce "
                   f"({ms(f.allreduce_ms or 0.0)} ms) = {ms(f.predicted_ms)} ms per step vs {ms(f.step_ms or 0.0)} ms now")


def _host_bound(f: fd.HostBoundFigures) -> str:
    batch = (f"raise the per-device batch above {f.per_device_batch}" if f.per_device_batch
             else "raise the per-device batch")
    idle = (f" (each GPU idle with nothing launched {pct(f.gpu_waiting_host)} of the step, in a synchronize "
            f"{pct(f.gpu_in_sync or 0.0)})" if f.gpu_waiting_host is not None else "")
    return (f"Cut launch overhead: the devices wait {f.host_ms:.1f} ms of the {f.step_ms:.1f} ms step while the "
            f"host dispatches{idle}; capture the step with CUDA graphs or torch.compile(mode=\"reduce-overhead\"), or "
            f"{batch} so each launch does more work (assumed {pct(f.assumed_saving)} of that wait saved)")


def _overlap(f: fd.OverlapFigures) -> str:
    return (f"Hide DDP's all-reduce under backward: {f.comm_ms:.1f} ms of communication per step, only "
            f"{pct(f.overlap)} overlapped; try DDP(bucket_cap_mb=...) sized to the gradients, "
            f"gradient_as_bucket_view=True, and with gradient accumulation no_sync() on all but the last "
            f"micro-batch (assumed {pct(f.assumed_saving)} of it hidden)")


def _straggler_rec(f: fd.StragglerFinding) -> str:
    doing = " and ".join(c.replace("_", " ") for c, _ in f.doing) or "its own work"
    return (f"Even out {f.straggler}: the others wait {f.others_wait_ms:.1f} ms per step for it, and it spends its "
            f"step on {doing} (look for work only it does -- logging, checkpoints, evaluation -- an uneven data "
            f"shard, or a slower device or host)")


def _data_bound(f: fd.DataBoundFigures) -> str:
    knobs = [f"more DataLoader workers (now {f.workers})" if f.workers is not None else "more DataLoader workers",
             "pin_memory=True" if f.pin_memory is not True else None, "a CPU per worker in the job's request"]
    return f"Feed the loop faster: it waits {f.data_ms:.1f} ms per step on data; " + ", ".join(k for k in knobs if k)


RECOMMENDATION_WORDS: dict[fd.RecommendationKind, Callable[[Any], str]] = {
    "ddp": _ddp, "cpus_per_worker": _cpus_rec, "pinned_memory": _pinned, "per_gpu_batch": _batch, "amp": _amp,
    "cpu_cores": _cpu_cores, "host_bound": _host_bound, "ddp_overlap": _overlap, "data_bound": _data_bound,
    "straggler": _straggler_rec,
}


def recommendation_text(r: fd.Recommendation) -> str:
    """The advice and, where the data puts a number on it, the saving with its basis."""
    text = RECOMMENDATION_WORDS[r.kind](r.figures)
    if r.basis == "none":
        return f"{text} ({r.run})"
    return (f"{text} → saves ~{r.saving_ms:.1f} ms of {r.step_ms:.1f} ms per step "
            f"({pct(r.saving_share)}, {r.basis}; {r.run})")


# --- cost model -------------------------------------------------------------------------------

COST_ITEM_SHORT = {cm.REPLICATE: "replicate", cm.REDUCE: "reduce", cm.ALLREDUCE: "all-reduce",
                   cm.INPUT_SCATTER: "input", cm.ACTIVATIONS: "activations"}
