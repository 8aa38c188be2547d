"""What a run's step achieves against the hardware: MFU (achieved FLOP/s over the datasheet peak)
and energy and device-hours per image.

Pure functions over typed records; the basis of every figure is a plain statement of what it
rests on, never a finding. Nothing is guessed: a figure the run does not support is None, with
the reason in `basis` (or, where the whole record cannot be made, a note).

**MFU.** Forward FLOPs per image (run.json `model.forward_flops`, else the sum of the layer
table's `flops`) × 3 (forward + backward, the usual 1 + 2) × images per step per device ÷ the
mean profiled step (RunMetrics.step_ms) = achieved TFLOP/s per device. On a GPU the datasheet
table (`analysis.datasheet`) gives the peak for the precision the run used: AMP → the fp16
tensor-core peak; otherwise convolutions run in TF32 by default on Ampere and later (cuDNN,
`torch.backends.cudnn.allow_tf32` defaults True) while matmuls run in fp32 (`allow_tf32`
defaults False), so the peak is the FLOP-weighted mix: the rate at which the conv FLOPs at the
TF32 peak and the rest at the fp32 peak would take the same time (a harmonic mean, weighted by FLOPs).

**Energy.** NVML power (samples.csv `nvml,<CUDA index>,power_w`, on `time.time_ns()`, the clock
of Kineto's `baseTimeNanoseconds`) is integrated per GPU over the profiled step windows, piecewise
linear between samples (a trapezoid), and summed over the GPUs → joules per step and per image.
A step's window on that clock is `baseTimeNanoseconds + ts µs × 1000` (TraceAnalysis.base_time_ns);
a trace whose ts are already unix µs (older Kineto) is used as it is; without either, the mean
power over the whole of samples.csv × the step time stands in, and the basis says so.
samples.csv is read again (through the contract) only for a run whose summary has power rows:
the summary keeps times relative to its first row.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analysis.datasheet import GpuSpec, find_gpu
from analysis.records import RunAnalysis, SampleSummary, TraceAnalysis
from analysis.run.scaling import RunMetrics
from profiler.contract import vocab
from profiler.contract.runjson import ModelInfo, RunInfo
from profiler.contract.samples import Sample

__all__ = [
    "Energy",
    "FlopMix",
    "Mfu",
    "Peak",
    "achieved_tflops",
    "device_hours_per_million_images",
    "energy",
    "flop_mix",
    "integrate_power",
    "mfu",
    "peak_for",
    "power_series",
    "run_energy",
    "run_mfu",
    "step_windows_ns",
]

FWD_BWD = 3                             # forward + backward ≈ 3 × forward FLOPs
UNIX_US_2001 = 978_307_200 * 1_000_000  # a trace ts past this is unix µs already (older Kineto)
NO_RAPL = "no GPU power in samples.csv; CPU energy not recorded (RAPL not sampled)"

PowerSeries = Mapping[str, tuple[Sequence[int], Sequence[float]]]   # CUDA index -> (unix ns, watts), in time order
Window = tuple[int, int]                                            # [start, end) in unix ns


# --- MFU ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlopMix:
    """Forward FLOPs per image and the part of them in convolutions (TF32 by default on Ampere+)."""

    forward_flops: int
    conv_flops: int
    source: str                # "model.forward_flops" | "layer table"

    @property
    def conv_share(self) -> float:
        return self.conv_flops / self.forward_flops if self.forward_flops > 0 else 0.0


@dataclass(frozen=True)
class Peak:
    tflops: float
    precision: str             # "fp16" | "fp32" | "tf32" | "tf32+fp32"
    basis: str


@dataclass(frozen=True)
class Mfu:
    achieved_tflops: float     # per device
    peak_tflops: float | None  # None: a CPU, or a GPU the datasheet table does not know
    mfu: float | None          # achieved ÷ peak (0..1)
    basis: str


def _is_conv(layer_type: str) -> bool:
    return layer_type.startswith("Conv")          # Conv1d/2d/3d, ConvTranspose*d


def flop_mix(model: ModelInfo | None) -> FlopMix | None:
    """Per-image forward FLOPs (model.forward_flops when present, else the layer table's sum); None without either."""
    if model is None or not model.layers:
        if model is not None and model.forward_flops:
            return FlopMix(int(model.forward_flops), 0, "model.forward_flops")
        return None
    conv = sum(la.flops for la in model.layers if _is_conv(la.type))
    if model.forward_flops:
        return FlopMix(int(model.forward_flops), min(conv, int(model.forward_flops)), "model.forward_flops")
    total = sum(la.flops for la in model.layers)
    return FlopMix(total, conv, "layer table") if total > 0 else None


def peak_for(spec: GpuSpec, mix: FlopMix, amp: bool) -> Peak:
    """The datasheet peak for the precision the run used (dense, per device)."""
    if amp:
        return Peak(spec.fp16_tflops, "fp16", f"AMP: {spec.name} fp16 tensor-core peak {spec.fp16_tflops:g} TFLOP/s "
                                              "(datasheet, dense)")
    fp32, tf32 = spec.fp32_tflops, spec.tf32_tflops
    if tf32 is None:
        return Peak(fp32, "fp32", f"{spec.name} fp32 peak {fp32:g} TFLOP/s (datasheet; no TF32 on this card)")
    conv = mix.conv_share
    if conv <= 0:
        return Peak(fp32, "fp32", f"{spec.name} fp32 peak {fp32:g} TFLOP/s (datasheet; no conv layers, matmuls in "
                                  "fp32: torch.backends.cuda.matmul.allow_tf32 defaults False)")
    if conv >= 1:
        return Peak(tf32, "tf32", f"{spec.name} TF32 peak {tf32:g} TFLOP/s (datasheet, dense; convolutions run in "
                                  "TF32: torch.backends.cudnn.allow_tf32 defaults True)")
    peak = 1.0 / (conv / tf32 + (1 - conv) / fp32)
    return Peak(peak, "tf32+fp32",
                f"{spec.name} FLOP-weighted peak {peak:.1f} TFLOP/s: conv {conv * 100:.0f} % of the FLOPs at the TF32 peak "
                f"{tf32:g} (cudnn.allow_tf32 defaults True), the rest {(1 - conv) * 100:.0f} % at the fp32 peak {fp32:g} "
                "(matmul.allow_tf32 defaults False), datasheet, dense; the time-weighted (harmonic) mix")


def achieved_tflops(forward_flops: float, images_per_device: int, step_ms: float) -> float:
    """forward FLOPs per image × 3 × images per step per device ÷ the step, in TFLOP/s."""
    return forward_flops * FWD_BWD * images_per_device / (step_ms / 1e3) / 1e12


def gpu_spec(info: RunInfo | None) -> tuple[GpuSpec | None, str | None]:
    """The datasheet entry of the run's GPU (NVML's name, else torch's) and the name as recorded."""
    if info is None:
        return None, None
    env = info.environment
    name = next((g.name for g in env.gpus if g.name), None) or next((d.name for d in env.cuda_devices if d.name), None)
    return find_gpu(name), name


def mfu(info: RunInfo | None, m: RunMetrics) -> tuple[Mfu | None, str | None]:
    """(MFU record, None) or (None, the reason it cannot be computed)."""
    mix = flop_mix(info.model if info is not None else None)
    if mix is None:
        return None, "no layer table or forward FLOPs in run.json: MFU not computed"
    if not m.step_ms or not m.per_device_batch:
        return None, "no step time or per-device batch: MFU not computed"
    got = achieved_tflops(mix.forward_flops, m.per_device_batch, m.step_ms)
    basis = (f"{mix.forward_flops / 1e9:.4g} GFLOP forward per image ({mix.source}) × {FWD_BWD} (forward + backward) × "
             f"{m.per_device_batch} images per device ÷ {m.step_ms:.1f} ms step = {got:.3g} TFLOP/s per device")
    if m.device_type != vocab.CUDA:
        return Mfu(got, None, None, basis + "; CPU: no datasheet peak, so no MFU"), None
    spec, name = gpu_spec(info)
    if spec is None:
        why = f"GPU {name!r} is not in the datasheet table" if name else "run.json names no GPU"
        return Mfu(got, None, None, f"{basis}; {why}: no peak, so no MFU"), None
    peak = peak_for(spec, mix, bool(m.amp))
    return Mfu(got, peak.tflops, got / peak.tflops, f"{basis}; ÷ {peak.basis}"), None


def run_mfu(run: RunAnalysis, m: RunMetrics) -> tuple[Mfu | None, str | None]:
    return mfu(run.run, m)


# --- energy ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Energy:
    joules_per_step: float | None            # summed over the GPUs; None: no power recorded
    joules_per_image: float | None
    gpu_hours_per_million_images: float | None   # devices × step time ÷ images per step × 1e6 ÷ 3600
    kwh_per_million_images: float | None
    basis: str


def device_hours_per_million_images(devices: int, step_ms: float, images_per_step: int) -> float:
    return devices * (step_ms / 1e3) / images_per_step * 1e6 / 3600


def _interp(ts: Sequence[int], ws: Sequence[float], t: float) -> float:
    """Power at t, linear between samples, the edge value held outside them."""
    if t <= ts[0]:
        return float(ws[0])
    if t >= ts[-1]:
        return float(ws[-1])
    lo, hi = 0, len(ts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ts[mid] <= t:
            lo = mid
        else:
            hi = mid
    span = ts[hi] - ts[lo]
    return float(ws[lo]) if span <= 0 else float(ws[lo]) + (float(ws[hi]) - float(ws[lo])) * (t - ts[lo]) / span


def integrate_power(times_ns: Sequence[int], watts: Sequence[float], windows: Sequence[Window]) -> float:
    """Joules over the windows: the trapezoid over the samples inside each window and its interpolated edges."""
    if not times_ns:
        return 0.0
    joules = 0.0
    for a, b in windows:
        if b <= a:
            continue
        pts = [a, *(t for t in times_ns if a < t < b), b]
        vals = [_interp(times_ns, watts, t) for t in pts]
        joules += sum((pts[i + 1] - pts[i]) * (vals[i] + vals[i + 1]) / 2 for i in range(len(pts) - 1)) / 1e9
    return joules


def _covered_ns(times_ns: Sequence[int], windows: Sequence[Window]) -> int:
    lo, hi = times_ns[0], times_ns[-1]
    return sum(max(0, min(b, hi) - max(a, lo)) for a, b in windows)


def step_windows_ns(trace: TraceAnalysis) -> list[Window] | None:
    """The trace's profiled steps on the unix-ns clock of samples.csv; None when the trace does not tie its clock."""
    if not trace.steps:
        return None
    if trace.steps[0].start_us > UNIX_US_2001:
        return [(round(s.start_us * 1000), round(s.end_us * 1000)) for s in trace.steps]
    if trace.base_time_ns is None:
        return None
    return [(trace.base_time_ns + round(s.start_us * 1000), trace.base_time_ns + round(s.end_us * 1000))
            for s in trace.steps]


def power_series(samples: Sequence[Sample]) -> dict[str, tuple[list[int], list[float]]]:
    """nvml power_w per CUDA index, in time order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for s in samples:
        if s.source == vocab.SOURCE_NVML and s.metric == vocab.POWER:
            out.setdefault(s.device, []).append((s.time_ns, s.value))
    return {d: ([t for t, _ in sorted(v)], [w for _, w in sorted(v)]) for d, v in sorted(out.items())}


def summary_power(s: SampleSummary) -> dict[str, tuple[list[int], list[float]]]:
    """nvml power_w per CUDA index from the run's samples summary (read once with the run): its series
    count seconds from the first row, whose time it keeps."""
    if s.start_ns is None:
        return {}
    return {d: ([s.start_ns + round(t * 1e9) for t in ts], list(ws))
            for d, (ts, ws) in sorted(s.series_of(vocab.SOURCE_NVML, vocab.POWER).items())}


def _no_power(devices: int, step_ms: float, images: int, why: str, word: str) -> Energy:
    hours = device_hours_per_million_images(devices, step_ms, images)
    return Energy(None, None, hours, None,
                  f"{why}; {word}-hours per million images = {devices} × {step_ms:.1f} ms ÷ {images} images × 1e6 ÷ 3600 s")


def energy(power: PowerSeries, windows: Mapping[str, Sequence[Window]] | None, devices: int, step_ms: float,
           images_per_step: int, device_type: str = vocab.CUDA) -> Energy:
    """Energy and device-hours per image from the GPUs' power over the step windows.

    power: CUDA index -> (unix ns, watts); windows: CUDA index -> that GPU's profiled steps (unix ns;
    key "" is the default for a GPU without its own); None: the trace's clock is unknown, so the
    mean power over all the samples × the step time stands in."""
    word = "GPU" if device_type == vocab.CUDA else "device"
    series = {d: (t, w) for d, (t, w) in power.items() if t}
    if not series:
        why = NO_RAPL if device_type != vocab.CUDA else "no GPU power in samples.csv (nvml power_w)"
        return _no_power(devices, step_ms, images_per_step, why, word)
    hours = device_hours_per_million_images(devices, step_ms, images_per_step)
    tail = (f"; {word}-hours per million images = {devices} × {step_ms:.1f} ms ÷ {images_per_step} images × 1e6 ÷ "
            "3600 s; NVML power_w as sampled (the driver's own averaging)")
    if windows is None:
        total = 0.0
        for ts, ws in series.values():
            span = ts[-1] - ts[0]
            mean_w = (integrate_power(ts, ws, [(ts[0], ts[-1])]) / (span / 1e9)) if span > 0 else float(ws[0])
            total += mean_w * step_ms / 1e3
        j_img = total / images_per_step
        return Energy(total, j_img, hours, j_img * 1e6 / 3.6e6,
                      f"mean NVML power over all of samples.csv (start-up and any eval included) × {step_ms:.1f} ms "
                      f"step, summed over {len(series)} GPU(s): the trace does not tie its clock to samples.csv "
                      f"(no baseTimeNanoseconds), so the step windows cannot be placed" + tail)
    per_step = 0.0
    outside = 0
    seconds = 0.0
    used = 0
    for d, (ts, ws) in series.items():
        win = windows.get(d) or windows.get("")
        if not win:
            continue
        covered = _covered_ns(ts, win)
        if covered <= 0:
            continue
        span = sum(b - a for a, b in win)
        outside += span - covered
        seconds += span / 1e9
        per_step += integrate_power(ts, ws, win) / len(win)
        used += 1
    if not used:
        return _no_power(devices, step_ms, images_per_step,
                         "NVML power samples do not overlap the profiled steps on the shared clock", word)
    j_img = per_step / images_per_step
    held = (f"; {outside / 1e9:.3f} s of step time outside the samples, edge value held" if outside > 0 else "")
    return Energy(per_step, j_img, hours, j_img * 1e6 / 3.6e6,
                  f"NVML power integrated (trapezoid, linear between samples) over the profiled step windows "
                  f"({seconds:.3f} s over {used} GPU(s)), per step summed over the GPUs, ÷ {images_per_step} images per "
                  f"step{held}" + tail)


def _windows(traces: Sequence[TraceAnalysis]) -> dict[str, list[Window]] | None:
    """CUDA index -> the steps of the trace that drove it; "" -> the first trace's (None: no clock anywhere)."""
    out: dict[str, list[Window]] = {}
    for t in traces:
        w = step_windows_ns(t)
        if w is None:
            continue
        out.setdefault("", w)
        for d in t.devices:
            if d.index >= 0:
                out.setdefault(str(d.index), w)
    return out or None


def run_energy(run: RunAnalysis, m: RunMetrics,
               samples: Sequence[Sample] | None = None) -> tuple[Energy | None, str | None]:
    """(Energy record, None) or (None, why not); samples: the run's samples.csv rows (None: read when it has power)."""
    images = m.global_batch
    if not m.step_ms or not images or not m.devices:
        return None, "no step time or global batch: energy and GPU-hours per image not computed"
    power = power_series(samples) if samples is not None else summary_power(run.samples)
    traced = {str(d.index) for t in run.traces for d in t.devices if d.index >= 0}
    if traced and len(power) > m.devices and traced & set(power):
        power = {d: v for d, v in power.items() if d in traced}
    return energy(power, _windows(run.traces), m.devices, m.step_ms, images, m.device_type), None
