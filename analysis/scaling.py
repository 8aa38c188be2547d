"""Per-run figures, speedup/efficiency against the 1-device run, and the communication cost model.

The cost model says how many bytes each strategy must move per step and how long that
should take at the link bandwidth this run actually achieved, so a reader can compare the
prediction with the communication time the breakdown measured.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from analysis.records import RunAnalysis, TraceAnalysis
from profiler.contract import vocab

RUN_NAME = re.compile(r"^(?P<strategy>single|dp-layerwise|dp|ddp)-(?P<n>\d+)(?P<kind>gpu|cpu)-b(?P<batch>\d+)(?:-.*)?$")
DP_STRATEGIES = ("dp", "dp-layerwise")
IMAGE_SHAPE = (3, 32, 32)        # CIFAR-10 / the synthetic CIFAR-shaped data
FLOAT_BYTES = 4
HALF_BYTES = 2
KIB = 1024                       # NVML reports PCIe throughput in KB/s (1024 bytes)
DEVICE_COPY_KINDS = ("PtoP", "DtoD")


@dataclass
class DeviceBusy:
    device: str
    index: int             # CUDA index (-1: CPU)
    worker: str
    busy: float            # (compute + communication + h2d) / wall
    compute: float
    communication: float
    idle: float


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
    cpus_allowed: int | None
    traces: int
    steps_profiled: int
    step_ms: float | None            # mean wall of the profiled steps (mean over ranks)
    step_ms_source: str              # "trace" | "run.json" | ""
    images_per_s: float | None
    images_per_s_source: str         # "run.json" | "trace" | ""
    parts_ms: dict[str, float]       # mean ms per step in each breakdown category
    shares: dict[str, float]         # the same as fractions of the step
    phase_ms: dict[str, float]       # inclusive ms per step under each phase label
    device_busy: list[DeviceBusy]
    mean_gpu_util_pct: float | None
    comm_overlap: float | None
    speedup: float | None = None
    efficiency: float | None = None
    baseline: str | None = None
    notes: list[str] = field(default_factory=list)
    omp_num_threads: int | None = None   # run.json environment (None: unset, torch's default)
    parameters: int | None = None        # run.json model.parameters


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):      # cpus_allowed may be a list of cores
        return len(value)
    return None


def _env_int(value: Any) -> int | None:
    """An environment variable as run.json records it ("1", 1 or null)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return _as_int(value)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _trace_devices(traces: list[TraceAnalysis]) -> int:
    gpus = {(d.pid, d.index) for t in traces for d in t.devices if d.index >= 0}
    return len(gpus) if gpus else len({t.worker for t in traces})


def run_metrics(run: RunAnalysis) -> RunMetrics:
    """The row for one run: run.json config/results where present, else what the traces and name say."""
    info = run.run or {}
    cfg = info.get("config") or {}
    env = info.get("environment") or {}
    results = info.get("results") or {}
    notes: list[str] = []
    m = RUN_NAME.match(run.name) or RUN_NAME.match(run.run_dir.name)
    has_gpu = any(t.has_gpu for t in run.traces)
    strategy = cfg.get("strategy") or (m.group("strategy") if m else "unknown")
    device_type = cfg.get("device_type") or (
        ("cuda" if m.group("kind") == "gpu" else "cpu") if m else ("cuda" if has_gpu else "cpu"))
    devices = _as_int(cfg.get("devices")) or (int(m.group("n")) if m else _trace_devices(run.traces))
    global_batch = _as_int(cfg.get("global_batch")) or (int(m.group("batch")) if m else None)
    per_device = _as_int(cfg.get("per_device_batch")) or (
        global_batch // devices if global_batch and devices else None)

    traces = run.traces
    step_walls = [t.mean_step_us() for t in traces if t.steps]
    step_ms: float | None = None
    step_src = ""
    parts_ms = {c: 0.0 for c in vocab.CATEGORIES}
    phase_ms: dict[str, float] = {}
    if step_walls:
        step_ms = float(sum(step_walls) / len(step_walls) / 1e3)
        step_src = "trace"
        with_steps = [t for t in traces if t.steps]
        for t in with_steps:
            for c, v in t.mean_parts_us().items():
                parts_ms[c] = parts_ms.get(c, 0.0) + float(v) / 1e3 / len(with_steps)
            n = len(t.steps)
            for label, v in t.phase_totals_us.items():
                phase_ms[label] = phase_ms.get(label, 0.0) + float(v) / n / 1e3 / len(with_steps)
        if len(with_steps) > 1:
            what = "ranks" if len({t.worker for t in with_steps}) == len(with_steps) else "trace files"
            notes.append(f"step and breakdown are the mean over {len(with_steps)} {what}")
    elif results.get("step_times_ms"):
        times = [float(x) for x in results["step_times_ms"]]
        step_ms = sum(times) / len(times)
        step_src = "run.json"
    total = sum(parts_ms.values())
    shares = {c: (v / total if total > 0 else 0.0) for c, v in parts_ms.items()}

    ips = results.get("images_per_s")
    ips_src = "run.json" if isinstance(ips, (int, float)) and ips > 0 else ""
    if not ips_src:
        ips = None
        if step_ms and global_batch:
            ips = global_batch / (step_ms / 1e3)
            ips_src = "trace"

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
                idle=float(d.idle_us / d.wall_us)))
    overlaps = [float(t.comm_overlap) for t in traces if t.comm_overlap is not None]
    return RunMetrics(
        name=run.name, run_dir=str(run.run_dir), status=info.get("status"), strategy=strategy,
        device_type=device_type, devices=devices, global_batch=global_batch, per_device_batch=per_device,
        workers=_as_int(cfg.get("workers")), pin_memory=cfg.get("pin_memory"), amp=cfg.get("amp"),
        cpus_allowed=_as_int(env.get("cpus_allowed")), traces=len(traces),
        steps_profiled=sum(len(t.steps) for t in traces) // max(len(traces), 1),
        step_ms=step_ms, step_ms_source=step_src, images_per_s=ips, images_per_s_source=ips_src,
        parts_ms=parts_ms, shares=shares, phase_ms=phase_ms, device_busy=busy,
        mean_gpu_util_pct=(run.samples or {}).get("mean_gpu_util_pct"),
        comm_overlap=_mean(overlaps), notes=notes, omp_num_threads=_env_int(env.get("omp_num_threads")),
        parameters=_as_int((info.get("model") or {}).get("parameters")))


def _baseline_for(m: RunMetrics, ones: list[RunMetrics]) -> RunMetrics | None:
    """The 1-device run of the same device type: same folder first, then strategy single."""
    same = [b for b in ones if b.device_type == m.device_type and b.images_per_s]
    if not same:
        return None
    parent = m.run_dir.rsplit("/", 1)[0]
    return sorted(same, key=lambda b: (b.run_dir.rsplit("/", 1)[0] != parent,
                                       b.strategy != "single", b.name))[0]


def attach_speedups(metrics: list[RunMetrics]) -> None:
    """speedup = images/s ÷ the 1-device run's; efficiency = speedup ÷ devices (in place)."""
    ones = [m for m in metrics if m.devices == 1 and m.strategy != "unknown"]
    for m in metrics:
        if m.strategy == "unknown" or not m.images_per_s:
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


def group_by_strategy(metrics: list[RunMetrics]) -> dict[str, list[RunMetrics]]:
    groups: dict[str, list[RunMetrics]] = {}
    for m in sorted(metrics, key=lambda x: (x.strategy, x.device_type, x.devices, x.name)):
        groups.setdefault(m.strategy, []).append(m)
    return groups


# --- cost model ---------------------------------------------------------------------------

@dataclass
class CostItem:
    what: str
    bytes: float
    estimate: bool = False      # True when it rests on an assumption (said in `what`)
    per_image: bool = False     # grows with the batch (inputs, activations); parameter traffic does not


@dataclass
class CostModel:
    """Bytes a strategy must move per step, the achieved bandwidth, predicted vs measured time."""

    run: str
    strategy: str
    devices: int
    parameter_bytes: int | None
    items: list[CostItem]
    bandwidth_gbps: float | None        # the one the prediction uses
    bandwidth_source: str
    bandwidths: dict[str, float]        # every link figure found (GB/s)
    predicted_comm_ms: float | None
    measured_comm_ms: float | None      # exposed communication per step (the breakdown)
    measured_device_comm_ms: float | None  # mean per device per step, overlapped or not
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_per_step(self) -> float:
        return sum(i.bytes for i in self.items)

    @property
    def estimated(self) -> bool:
        return any(i.estimate for i in self.items)


def param_traffic(strategy: str, devices: int, parameter_bytes: int) -> list[CostItem]:
    """Parameter bytes moved per step: DP replicate + reduce P×(N−1) each; DDP all-reduce 2P(N−1)/N per rank."""
    n, p = devices, parameter_bytes
    if n <= 1 or strategy in ("single", "unknown"):
        return []
    if strategy in DP_STRATEGIES:
        return [CostItem(f"replicate parameters to {n - 1} more GPU(s): params × (N−1)", p * (n - 1)),
                CostItem(f"reduce gradients from {n - 1} GPU(s): params × (N−1)", p * (n - 1))]
    if strategy == "ddp":
        return [CostItem("ring all-reduce of gradients: 2 × params × (N−1)/N per rank", 2 * p * (n - 1) / n)]
    return []


def _numel(shape: Any) -> int | None:
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(x, int) for x in shape):
        return math.prod(shape)
    return None


def layer_activations(layers: list[dict[str, Any]], image: tuple[int, int, int] = IMAGE_SHAPE
                      ) -> tuple[list[tuple[int, int]], bool] | None:
    """(input, output) elements per sample of every conv/linear layer, and whether they are exact.

    Exact when run.json gives each layer's "input_shape"/"output_shape" (per sample). Otherwise
    estimated by chaining channels from the parameter counts (3×3 convs, bias) at the input
    resolution, with the flattened size the first Linear's parameter count implies; None when
    the chain does not resolve.
    """
    if not layers:
        return None
    if all(_numel(layer.get("input_shape")) and _numel(layer.get("output_shape")) for layer in layers):
        return [(_numel(layer["input_shape"]) or 0, _numel(layer["output_shape"]) or 0) for layer in layers], True
    c, h, w = image
    out: list[tuple[int, int]] = []
    conv_idx: list[int] = []
    for layer in layers:
        kind = str(layer.get("type", ""))
        params = _as_int(layer.get("parameters")) or 0
        if "Conv" in kind:
            cout = None
            for k in (3, 1, 5, 7):
                for bias in (1, 0):
                    if params % (c * k * k + bias) == 0:
                        cout = params // (c * k * k + bias)
                        break
                if cout:
                    break
            if not cout:
                return None
            conv_idx.append(len(out))
            out.append((c * h * w, cout * h * w))
            c = cout
        elif "Linear" in kind:
            flat = c * h * w
            for shrink in (1, 4, 16, 64, 256):       # pooling layers are not in the list
                fin = flat // shrink
                for bias in (1, 0):
                    if fin and params % (fin + bias) == 0:
                        fout = params // (fin + bias)
                        break
                else:
                    continue
                break
            else:
                return None
            out.append((fin, fout))
            c, h, w = fout, 1, 1
    return out, False


def activation_traffic(layers: list[dict[str, Any]], global_batch: int, devices: int,
                       amp: bool = False) -> CostItem | None:
    """Per-layer DP: every layer scatters its input and gathers its output, and backward does the reverse.

    Each transfer moves the (N−1)/N of the batch that is not already on GPU 0.
    """
    acts = layer_activations(layers)
    if acts is None or devices <= 1:
        return None
    sizes, exact = acts
    elem = HALF_BYTES if amp else FLOAT_BYTES
    per_sample = 0
    for i, (fin, fout) in enumerate(sizes):
        per_sample += fin + fout                 # forward: scatter input, gather output
        per_sample += fout + (fin if i > 0 else 0)  # backward: scatter grad-output, gather grad-input
    total = per_sample * elem * global_batch * (devices - 1) / devices
    how = ("from the layers' shapes in run.json" if exact else
           "ESTIMATE: shapes inferred from parameter counts, convs at the input resolution (an upper bound)")
    return CostItem(f"scatter/gather every layer's activations, forward and backward ({how})", total,
                    estimate=not exact, per_image=True)


def input_scatter(global_batch: int, devices: int) -> CostItem:
    per = math.prod(IMAGE_SHAPE) * FLOAT_BYTES
    return CostItem(f"scatter the input batch from GPU 0 ({IMAGE_SHAPE[0]}×{IMAGE_SHAPE[1]}×{IMAGE_SHAPE[2]} "
                    "float32 images assumed): batch × (N−1)/N", global_batch * per * (devices - 1) / devices,
                    estimate=True, per_image=True)


def link_bandwidths(run: RunAnalysis) -> dict[str, float]:
    """GB/s: achieved memcpy bytes/duration per kind, NVML PCIe peaks, and the links' rated maximum."""
    out: dict[str, float] = {}
    totals: dict[str, list[float]] = {}
    for t in run.traces:
        for mc in t.memcpy:
            b, d = totals.setdefault(mc.kind, [0.0, 0.0])
            totals[mc.kind] = [b + mc.bytes, d + mc.dur_us]
    for kind, (b, d) in sorted(totals.items()):
        if d > 0 and b > 0:
            out[f"memcpy {kind}"] = b / (d * 1e3)
    dev_b = sum(totals.get(k, [0.0, 0.0])[0] for k in DEVICE_COPY_KINDS)
    dev_d = sum(totals.get(k, [0.0, 0.0])[1] for k in DEVICE_COPY_KINDS)
    if dev_b > 0 and dev_d > 0:
        out["memcpy device-to-device"] = dev_b / (dev_d * 1e3)
    s = run.samples or {}
    peaks = [v for key in ("pcie_tx_kbps_max", "pcie_rx_kbps_max") for v in (s.get(key) or {}).values()]
    if peaks and max(peaks) > 0:
        out["NVML PCIe peak (sampled)"] = max(peaks) * KIB / 1e9
    gpus = ((run.run or {}).get("environment") or {}).get("gpus") or []
    rated = [g.get("pcie_max_gbps") for g in gpus if isinstance(g.get("pcie_max_gbps"), (int, float))]
    if rated:
        out["PCIe rated (run.json)"] = float(min(rated))
    return out


BANDWIDTH_PREFERENCE = ("memcpy device-to-device", "NVML PCIe peak (sampled)", "memcpy HtoD", "PCIe rated (run.json)")


def cost_model(run: RunAnalysis, m: RunMetrics) -> CostModel:
    """Bytes per step for m.strategy, divided by the best achieved link figure, beside the measurement."""
    model = (run.run or {}).get("model") or {}
    pbytes = _as_int(model.get("parameter_bytes"))
    notes: list[str] = []
    items: list[CostItem] = []
    if pbytes is None:
        if run.run:
            notes.append("no parameter_bytes in run.json: bytes per step unknown")
    else:
        items = param_traffic(m.strategy, m.devices, pbytes)
    if m.strategy in DP_STRATEGIES and m.devices > 1 and m.global_batch:
        items.append(input_scatter(m.global_batch, m.devices))
        if m.strategy == "dp-layerwise":
            act = activation_traffic(model.get("layers") or [], m.global_batch, m.devices, bool(m.amp))
            if act is None:
                notes.append("activation traffic unknown: run.json's layer list did not resolve to shapes")
            else:
                items.append(act)
    bws = link_bandwidths(run)
    bw, src = None, ""
    for key in BANDWIDTH_PREFERENCE:
        if key in bws:
            bw, src = bws[key], key
            break
    total = sum(i.bytes for i in items)
    predicted = total / (bw * 1e9) * 1e3 if bw and items else (0.0 if not items and pbytes is not None else None)
    if items and bw is None:
        notes.append("no link bandwidth measured (no memcpy events, no NVML PCIe rows): no predicted time")
    dev_comm = []
    for t in run.traces:
        n = max(len(t.steps), 1)
        dev_comm += [d.communication_us / n / 1e3 for d in t.devices if d.index >= 0]
    return CostModel(
        run=m.name, strategy=m.strategy, devices=m.devices, parameter_bytes=pbytes, items=items,
        bandwidth_gbps=bw, bandwidth_source=src, bandwidths=bws, predicted_comm_ms=predicted,
        measured_comm_ms=m.parts_ms.get(vocab.COMMUNICATION) if m.step_ms_source == "trace" else None,
        measured_device_comm_ms=_mean(dev_comm), notes=notes)


def ddp_prediction_ms(pbytes: int, devices: int, bandwidth_gbps: float) -> float:
    """Time DDP's all-reduce needs at the given bandwidth, assuming none of it overlaps backward."""
    return 2 * pbytes * (devices - 1) / devices / (bandwidth_gbps * 1e9) * 1e3


def allreduce_total_ms(exposed_ms: float, overlap: float | None) -> float | None:
    """All-reduce time per step, overlapped or not, from its exposed part and the share that overlaps backward.

    Exact when all compute the all-reduce overlaps is backward's (DDP's buckets); None without an overlap figure.
    """
    if overlap is None or not 0.0 <= overlap < 1.0:
        return None
    return exposed_ms / (1.0 - overlap)
