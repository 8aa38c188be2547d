"""The what-if's terms as pure functions of figures: no run folders, no wording.

Each function is one rule of the model (docs/design.md "The what-if terms") so a test can pin it with fixed
numbers and predict.py only decides which measured or stated figure goes in. Times are ms,
sizes bytes, bandwidths GB/s (1e9 B/s).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.datasheet import GpuSpec, Precision
from profiler.contract.allreduce import ring_allreduce_bytes  # noqa: F401  (a term of the model)
from profiler.contract.runjson import Layer, StepTimes, ThreadScaling

MIB = 1024 * 1024
DDP_BUCKET_BYTES = 25 * MIB          # torch DDP bucket_cap_mb=25 (MiB)
DDP_FIRST_BUCKET_BYTES = 1 * MIB     # torch DDP closes its first bucket at 1 MiB so the all-reduce starts early
ADAM_STATE_COPIES = 2                # exp_avg, exp_avg_sq
# Adam's minimum memory traffic per fp32 parameter: read param, grad, exp_avg, exp_avg_sq (16 bytes)
# and write param, exp_avg, exp_avg_sq back (12 bytes).
ADAM_BYTES_PER_PARAMETER = 28
BACKWARD_FLOPS_PER_FORWARD = 2       # grad w.r.t. the input and w.r.t. the weights, each ~ one forward


# --- compute on a CPU: threads per process -------------------------------------------------

def curve_at(threads: Sequence[int], values: Sequence[float], t: int) -> tuple[float, str]:
    """The calibrated time at t threads: exact, interpolated, or beyond the curve linear in threads from its end.

    Returns (ms, how) with how one of "measured", "interpolated", "extrapolated"."""
    pts = sorted(zip(threads, values))
    for th, v in pts:
        if th == t:
            return float(v), "measured"
    lo = [(th, v) for th, v in pts if th < t]
    hi = [(th, v) for th, v in pts if th > t]
    if lo and hi:
        (t0, v0), (t1, v1) = lo[-1], hi[0]
        return float(v0 + (v1 - v0) * (t - t0) / (t1 - t0)), "interpolated"
    th, v = (lo[-1] if lo else hi[0])
    return float(v) * th / t, "extrapolated"


@dataclass(frozen=True)
class ThreadFactor:
    """How much longer the same work takes at the target's threads than at the input run's."""

    factor: float
    source: str                      # "curve" | "assumed"
    at_base_ms: float | None = None  # the calibration's figure at the input run's threads
    at_target_ms: float | None = None
    how: str = ""                    # curve_at's "measured" / "interpolated" / "extrapolated" at the target


def thread_factor(cal: ThreadScaling | None, memory: bool, base_threads: int, threads: int) -> ThreadFactor:
    """Compute (memory=False) or optimizer-like memory-bound work (memory=True), input threads → target,
    from the in-process curve (processes measured alone); with no calibration, linear in threads."""
    if cal is None or not cal.threads:
        return ThreadFactor(base_threads / threads, "assumed")
    values = cal.memory_ms if memory else cal.compute_ms
    at_base, _ = curve_at(cal.threads, values, base_threads)
    at_target, how = curve_at(cal.threads, values, threads)
    return ThreadFactor(at_target / at_base, "curve", at_base, at_target, how)


def at_batch(b_cal: int, ms_cal: float, b_in: int, ms_in: float, batch: int) -> float:
    """One process's time for a phase at `batch` images on the line through the calibration's point and
    the input run's: a fixed part (the seed's fc1 weights are read and written whatever the batch)
    plus a part per image, neither negative; proportional to the calibration's point when the two
    points cannot make such a line."""
    if b_in != b_cal:
        slope = (ms_in - ms_cal) / (b_in - b_cal)
        fixed = ms_cal - slope * b_cal
        if slope >= 0 and fixed >= 0:
            return fixed + slope * batch
    return ms_cal * batch / b_cal if b_cal > 0 else ms_cal


@dataclass(frozen=True)
class DdpContention:
    """What N DDP ranks on the input run's cores cost, from the calibration's two timings of one step."""

    compute: float          # rank forward ÷ alone forward: the ranks' compute slows by this (backward too)
    allreduce_ms: float     # rank backward − alone backward × compute: the all-reduce on cores backward needs


def ddp_contention(alone: StepTimes, ranks: StepTimes) -> DdpContention:
    """Both timings ran the same model on the same batch per process; backward's compute is taken to
    slow as forward's did (forward has no communication), the rest of the rank's backward is gloo's."""
    compute = ranks.forward_ms / alone.forward_ms if alone.forward_ms > 0 else 1.0
    return DdpContention(compute, max(0.0, ranks.backward_ms - alone.backward_ms * compute))


def contention_applies(ranks: StepTimes | None, processes: int, threads: int, same_cpus: bool) -> bool:
    """The calibration's ranks ran like the target: as many, with its threads, on the input run's CPUs."""
    return ranks is not None and same_cpus and ranks.processes == processes and ranks.threads == threads


def threads_per_process(cpus: float, processes: int) -> int:
    """The runner's rule (models.ddp.threads_per_rank): cores ÷ processes, at least one."""
    return max(1, int(cpus) // processes)


# --- compute and optimizer from datasheet figures (analytic) ---------------------------------

def flops_ms(flops: float, tflops: float, efficiency: float) -> float:
    return flops / (tflops * 1e12 * efficiency) * 1e3


ACTIVATION_PASSES = 2      # the activation after a Conv/Linear (ReLU) reads and writes its output once (stated)


@dataclass(frozen=True)
class LayerTime:
    """One layer of the layer table on a GPU: the slower of its FLOPs at the precision torch runs it in
    and its bytes at the memory bandwidth, each at a stated share of the datasheet figure."""

    name: str
    precision: str              # "fp16" | "tf32" | "fp32"
    flops_ms: float
    bytes_ms: float

    @property
    def ms(self) -> float:
        return max(self.flops_ms, self.bytes_ms)

    @property
    def memory_bound(self) -> bool:
        return self.bytes_ms > self.flops_ms


def layer_precision(layer_type: str, has_tf32: bool, amp: bool) -> Precision:
    """torch's defaults: AMP runs in fp16; cuDNN convolutions in TF32 on Ampere and later
    (torch.backends.cudnn.allow_tf32 defaults True); matmuls in fp32 (cuda.matmul.allow_tf32 defaults False)."""
    if amp:
        return "fp16"
    return "tf32" if has_tf32 and layer_type.startswith("Conv") else "fp32"


def layer_time(layer: Layer, images: int, spec: GpuSpec, amp: bool, passes: int, compute_efficiency: float,
               memory_efficiency: float) -> LayerTime:
    """passes: 1 forward, 2 backward (input and weight gradients: twice the FLOPs and the traffic)."""
    precision = layer_precision(layer.type, spec.tf32_tflops is not None, amp)
    flops = layer.flops * images * passes
    dtype = 2 if amp else layer.dtype_bytes
    moved = passes * (layer.parameters * dtype
                      + (layer.input_elements + layer.output_elements * (1 + ACTIVATION_PASSES)) * images * dtype)
    return LayerTime(layer.name, precision, flops_ms(flops, spec.peak_tflops(precision), compute_efficiency),
                     moved / (spec.memory_gbps * 1e9 * memory_efficiency) * 1e3)


def adam_bytes(parameters: int) -> int:
    return parameters * ADAM_BYTES_PER_PARAMETER


def transfer_ms(nbytes: float, gbps: float) -> float:
    return nbytes / (gbps * 1e9) * 1e3


def backward_weights(layers: Sequence[Layer]) -> list[float]:
    """Each layer's share of backward: its forward FLOPs × 2 (the first layer needs no input gradient: × 1)."""
    raw = [layer.flops * (BACKWARD_FLOPS_PER_FORWARD if i > 0 else 1) for i, layer in enumerate(layers)]
    total = sum(raw)
    return [r / total for r in raw] if total > 0 else [1 / len(raw)] * len(raw) if raw else []


# --- DDP: buckets and their overlap with backward ----------------------------------------------

@dataclass(frozen=True)
class Bucket:
    bytes: int
    layers: tuple[str, ...]        # in the order backward produces their gradients (last layer first)
    ready_ms: float                # since backward began: when its last gradient exists
    start_ms: float
    end_ms: float


def ddp_buckets(layers: Sequence[Layer], cap: int = DDP_BUCKET_BYTES, first_cap: int = DDP_FIRST_BUCKET_BYTES
                ) -> list[tuple[int, list[int]]]:
    """DDP's bucket assignment by size: parameters in reverse layer order, a bucket closes once it reaches its cap.

    Returns (bytes, layer indices) per bucket in all-reduce order; a layer is never split (a
    layer above the cap is a bucket of its own, as DDP does for a large tensor)."""
    out: list[tuple[int, list[int]]] = []
    size, members = 0, []
    for i in reversed(range(len(layers))):
        b = layers[i].parameters * layers[i].dtype_bytes
        if b == 0:
            continue
        size, members = size + b, members + [i]
        if size >= (first_cap if not out else cap):
            out.append((size, members))
            size, members = 0, []
    if members:
        out.append((size, members))
    return out


def ddp_schedule(layers: Sequence[Layer], backward_ms: float, allreduce_ms: float,
                 cap: int = DDP_BUCKET_BYTES, first_cap: int = DDP_FIRST_BUCKET_BYTES) -> list[Bucket]:
    """Each bucket's all-reduce: it starts when backward has produced its gradients and the previous one is done.

    Backward runs the layers last to first, each taking its FLOP share of backward_ms; the
    all-reduces run one at a time, each its byte share of allreduce_ms."""
    weights = backward_weights(layers)
    done_at: dict[int, float] = {}
    t = 0.0
    for i in reversed(range(len(layers))):
        t += weights[i] * backward_ms
        done_at[i] = t
    buckets = ddp_buckets(layers, cap, first_cap)
    total = sum(b for b, _ in buckets)
    out: list[Bucket] = []
    free = 0.0
    for size, members in buckets:
        ready = max(done_at[i] for i in members)
        start = max(ready, free)
        free = start + allreduce_ms * size / total
        out.append(Bucket(size, tuple(layers[i].name for i in members), ready, start, free))
    return out


def exposed_after_backward(schedule: Sequence[Bucket], backward_ms: float) -> float:
    """What of the all-reduce is left when backward ends: the step waits for it before the optimizer."""
    return max(0.0, schedule[-1].end_ms - backward_ms) if schedule else 0.0


def rate_scaled_ms(ms: float, measured_bytes: int, measured_processes: int, gradient_bytes: int,
                   processes: int) -> float:
    """A measured all-reduce time scaled linearly in bytes and by the ring's 2(N−1)/N."""
    ring = (processes - 1) / processes
    ring_measured = (measured_processes - 1) / measured_processes if measured_processes > 1 else ring
    return ms * gradient_bytes / measured_bytes * (ring / ring_measured if ring_measured > 0 else 1.0)


# --- data loading ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LoaderCores:
    cores: float           # cores the loading runs on
    overlapped: bool       # True: workers on cores of their own, in parallel with the step
    why: str               # "free" | "shared" | "main" (workers=0: the training process loads)


def loader_cores(cpus: float, busy_cores: float, processes: int, workers: int) -> LoaderCores:
    """Cores the DataLoader gets: what the training processes leave free, else a share of the same cores."""
    if workers <= 0:
        return LoaderCores(float(processes), False, "main")
    free = cpus - busy_cores
    if free >= 1:
        return LoaderCores(min(float(processes * workers), free), True, "free")
    return LoaderCores(max(cpus, 1e-9), False, "shared")


def loader_wait_ms(cost_ms_per_image: float, images: int, cores: LoaderCores, rest_ms: float) -> float:
    """The step's wait on data: loading that runs beside the step waits only for what exceeds it;
    loading on the step's own cores adds in full."""
    loading = cost_ms_per_image * images / cores.cores
    return max(0.0, loading - rest_ms) if cores.overlapped else loading


def loader_cores_needed(cost_ms_per_image: float, images_per_s: float) -> float:
    """Cores the loader keeps busy at a given rate: CPU ms per image × images per second."""
    return cost_ms_per_image * images_per_s / 1e3


# --- memory per device ----------------------------------------------------------------------

def activation_bytes(layers: Sequence[Layer], batch: int, amp: bool = False) -> int:
    """Inputs and outputs of every layer in the table, kept for backward (ReLU/pool outputs are not in it: a floor)."""
    per_sample = sum((la.input_elements + la.output_elements) * (2 if amp else la.dtype_bytes) for la in layers)
    return per_sample * batch


def memory_parts(parameter_bytes: int, layers: Sequence[Layer] | None, batch: int, optimizer_here: bool,
                 ddp: bool, amp: bool = False) -> dict[str, int]:
    """Bytes one device holds: parameters, gradients, Adam state (where the optimizer runs), DDP's
    gradient buckets, activations of `batch` images."""
    parts = {"parameters": parameter_bytes, "gradients": parameter_bytes}
    if optimizer_here:
        parts["adam_state"] = ADAM_STATE_COPIES * parameter_bytes
    if ddp:
        parts["ddp_buckets"] = parameter_bytes
    if layers:
        parts["activations"] = activation_bytes(layers, batch, amp)
    return parts


def ceil_gb(nbytes: float, margin: float = 1.0) -> int:
    return max(1, math.ceil(nbytes * margin / 1e9))
