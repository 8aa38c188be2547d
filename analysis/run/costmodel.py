"""The communication cost model: bytes each strategy must move per step, exact from run.json's layer table.

It says how many bytes a strategy moves and how long that should take at the link bandwidth
this run actually achieved, so a reader can compare the prediction with the communication time
the breakdown measured. Every figure rests on what the producer measured (parameter bytes, the
per-sample layer shapes); where run.json lacks them the item is left out with a note, never guessed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from analysis.records import RunAnalysis
from analysis.run.scaling import RunMetrics
from profiler.contract import vocab
from profiler.contract.allreduce import ring_allreduce_bytes
from profiler.contract.runjson import Layer, ModelInfo

HALF_BYTES = 2                   # activations under --amp (autocast to float16/bfloat16)
KIB = 1024                       # NVML reports PCIe throughput in KB/s (1024 bytes)
DEVICE_COPY_KINDS = ("PtoP", "DtoD")
NO_LAYER_SHAPES = "no layer shapes: per-layer traffic not estimated"
NO_INPUT_SHAPE = "no layer shapes: input scatter not estimated"

# item kinds (phrasing.py names them)
REPLICATE, REDUCE, ALLREDUCE, INPUT_SCATTER, ACTIVATIONS = "replicate", "reduce", "allreduce", "input_scatter", \
    "activations"


@dataclass(frozen=True)
class CostItem:
    kind: str                   # one of the kinds above
    bytes: int
    per_image: bool = False     # grows with the batch (inputs, activations); parameter traffic does not


@dataclass
class CostModel:
    """Bytes a strategy must move per step, the achieved bandwidth, predicted vs measured time."""

    run: str
    strategy: str
    devices: int
    parameter_bytes: int | None
    items: list[CostItem]
    complete: bool                      # False: a part could not be counted (see notes)
    bandwidth_gbps: float | None        # the one the prediction uses
    bandwidth_source: str
    bandwidths: dict[str, float]        # every link figure found (GB/s)
    predicted_comm_ms: float | None
    measured_comm_ms: float | None      # exposed communication per step (the breakdown)
    measured_device_comm_ms: float | None  # mean per device per step, overlapped or not
    comm_overlap: float | None = None   # share of the all-reduce under backward (DDP)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_per_step(self) -> int:
        return sum(i.bytes for i in self.items)

    @property
    def allreduce_in_flight_ms(self) -> float | None:
        """All-reduce time per step, overlapped or not: exposed ÷ (1 − overlap) (exact when only backward overlaps it)."""
        if self.measured_comm_ms is None or self.comm_overlap is None or not 0.0 <= self.comm_overlap < 1.0:
            return None
        return self.measured_comm_ms / (1.0 - self.comm_overlap)


def param_traffic(strategy: str, devices: int, parameter_bytes: int) -> list[CostItem]:
    """DP: replicate and reduce P×(N−1) each; DDP: ring all-reduce 2P(N−1)/N per rank."""
    n, p = devices, parameter_bytes
    if n <= 1:
        return []
    if strategy in vocab.DP_STRATEGIES:
        return [CostItem(REPLICATE, p * (n - 1)), CostItem(REDUCE, p * (n - 1))]
    if strategy == vocab.DDP:
        return [CostItem(ALLREDUCE, ring_allreduce_bytes(p, n))]
    return []


def _moved(elements_bytes: int, global_batch: int, devices: int) -> int:
    """The (N−1)/N of a batch's bytes that is not already on GPU 0 (exact: integer bytes)."""
    return elements_bytes * global_batch * (devices - 1) // devices


def activation_traffic(layers: list[Layer], global_batch: int, devices: int, amp: bool = False) -> CostItem:
    """Per-layer DP: each layer scatters its input and gathers its output; backward scatters the
    output's gradient and gathers the input's (none for the first layer: the batch needs no gradient)."""
    per_sample = 0
    for i, layer in enumerate(layers):
        elem = HALF_BYTES if amp else layer.dtype_bytes
        backward_in = layer.input_elements if i > 0 else 0
        per_sample += (layer.input_elements + layer.output_elements + layer.output_elements + backward_in) * elem
    return CostItem(ACTIVATIONS, _moved(per_sample, global_batch, devices), per_image=True)


def input_scatter(first: Layer, global_batch: int, devices: int) -> CostItem:
    """DataParallel scatters the input batch from GPU 0 (the loader's dtype: the first layer's, before autocast)."""
    return CostItem(INPUT_SCATTER, _moved(first.input_elements * first.dtype_bytes, global_batch, devices),
                    per_image=True)


def strategy_traffic(strategy: str, devices: int, global_batch: int | None, model: ModelInfo | None,
                     amp: bool = False) -> tuple[list[CostItem], list[str]]:
    """Every item one step of `strategy` moves, and a note for each part run.json cannot give."""
    notes: list[str] = []
    items: list[CostItem] = []
    if devices <= 1 or strategy not in vocab.STRATEGIES:
        return items, notes
    if model is None or model.parameter_bytes is None:
        notes.append("no parameter_bytes in run.json: parameter traffic unknown")
    else:
        items += param_traffic(strategy, devices, model.parameter_bytes)
    if strategy in vocab.DP_STRATEGIES and global_batch:
        layers = model.layers if model is not None else None
        if not layers:
            notes.append(NO_LAYER_SHAPES if strategy == vocab.DP_LAYERWISE else NO_INPUT_SHAPE)
        else:
            items.append(input_scatter(layers[0], global_batch, devices))
            if strategy == vocab.DP_LAYERWISE:
                items.append(activation_traffic(layers, global_batch, devices, amp))
    return items, notes


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
    s = run.samples
    peaks = list(s.pcie_tx_kbps_max.values()) + list(s.pcie_rx_kbps_max.values())
    if peaks and max(peaks) > 0:
        out["NVML PCIe peak (sampled)"] = max(peaks) * KIB / 1e9
    rated = [g.pcie_max_gbps for g in run.run.environment.gpus if g.pcie_max_gbps is not None] if run.run else []
    if rated:
        out["PCIe rated (run.json)"] = float(min(rated))
    return out


BANDWIDTH_PREFERENCE = ("memcpy device-to-device", "NVML PCIe peak (sampled)", "memcpy HtoD", "PCIe rated (run.json)")


def cost_model(run: RunAnalysis, m: RunMetrics) -> CostModel:
    """Bytes per step for m.strategy, divided by the best achieved link figure, beside the measurement."""
    model = run.run.model if run.run is not None else None
    items, missing = strategy_traffic(m.strategy, m.devices, m.global_batch, model, bool(m.amp))
    notes = list(missing) if run.run is not None else []   # no run.json: the report says so once, for all runs
    bws = link_bandwidths(run)
    bw, src = next(((bws[k], k) for k in BANDWIDTH_PREFERENCE if k in bws), (None, ""))
    total = sum(i.bytes for i in items)
    predicted = total / (bw * 1e9) * 1e3 if bw and items else None
    if items and bw is None:
        notes.append("no link bandwidth measured (no memcpy events, no NVML PCIe rows): no predicted time")
    dev_comm = [d.communication_us / max(len(t.steps), 1) / 1e3 for t in run.traces for d in t.devices if d.index >= 0]
    return CostModel(
        run=m.name, strategy=m.strategy, devices=m.devices, parameter_bytes=model.parameter_bytes if model else None,
        items=items, complete=not missing,
        bandwidth_gbps=bw, bandwidth_source=src, bandwidths=bws, predicted_comm_ms=predicted,
        measured_comm_ms=m.parts_ms.get(vocab.COMMUNICATION) if m.step_ms_source == "trace" else None,
        measured_device_comm_ms=sum(dev_comm) / len(dev_comm) if dev_comm else None,
        comm_overlap=m.comm_overlap, notes=notes)


def ddp_allreduce_ms(parameter_bytes: int, devices: int, bandwidth_gbps: float) -> float:
    """Time DDP's all-reduce needs at the given bandwidth, assuming none of it overlaps backward."""
    return ring_allreduce_bytes(parameter_bytes, devices) / (bandwidth_gbps * 1e9) * 1e3
