"""What one measured run gives the what-if: per-image compute, the optimizer, data loading's CPU cost.

Everything here is read from the run (its traces' phase labels, run.json, samples.csv); a
figure the run cannot give is None with a note, and predict.py then states an assumption.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.run.costmodel import link_bandwidths
from analysis.trace.shapes import input_batch
from analysis.records import RunAnalysis
from analysis.run.scaling import RunMetrics, run_metrics
from analysis.whatif.terms import threads_per_process
from profiler.contract import vocab
from profiler.contract.runjson import Calibration, GpuInfo, ModelInfo


class WhatIfError(Exception):
    """Input the what-if cannot use (a run with no trace, a strategy that does not apply); one line."""


@dataclass
class Profile:
    """The input run, reduced to the figures the model scales."""

    name: str
    run_dir: str
    strategy: str
    device_type: str
    devices: int
    global_batch: int
    per_device_batch: int
    processes: int
    cpus: float                       # the job's CPU allocation (run.json), else the threads
    cpus_known: bool                  # False: no run.json said (anyone's trace): targets default their CPUs
    threads: int                      # compute threads per process
    threads_basis: str
    workers: int
    step_ms: float
    images_per_s: float               # global batch ÷ the profiled step (what the prediction is compared with)
    forward_ms: float                 # per step, per process, compute only (DP internals and exposed comm taken out)
    loss_ms: float
    backward_ms: float
    optimizer_ms: float
    data_wait_ms: float
    h2d_ms: float
    host_ms: float                    # the rest of the step: step − every phase above − exposed comm
    amp: bool
    model: ModelInfo | None
    calibration: Calibration | None
    gpus: list[GpuInfo]
    gpu_name: str | None
    bandwidths: dict[str, float]
    loader_ms_per_image: float | None  # CPU ms the DataLoader spends per image
    loader_basis: str
    peak_rss_mib: float | None
    device_mem_mib: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def compute_images(self) -> int:
        """Images one device computes per step."""
        return self.per_device_batch

    @property
    def loss_images(self) -> int:
        """DataParallel computes the loss on GPU 0 over the gathered batch."""
        return self.global_batch if self.strategy in vocab.DP_STRATEGIES else self.per_device_batch


def _threads(m: RunMetrics, cpus: float) -> tuple[int, str]:
    if m.device_type != vocab.CPU:
        return 1, "one host thread per process (CUDA)"
    if m.omp_num_threads:
        return m.omp_num_threads, f"OMP_NUM_THREADS={m.omp_num_threads} in {m.name}"
    t = threads_per_process(cpus, m.processes)
    return t, (f"OMP_NUM_THREADS unset in {m.name}: torch's default, taken as the {cpus:g} allocated cores"
               + (f" ÷ {m.processes} processes" if m.processes > 1 else ""))


def _loader(run: RunAnalysis, m: RunMetrics, data_wait_ms: float, global_batch: int) -> tuple[float | None, str]:
    """The loader's CPU ms per image: its workers' CPU (samples.csv children) ÷ the run's images/s."""
    workers = m.workers or 0
    if workers == 0:
        span = "ss:data_wait" if vocab.DATA_WAIT in m.phase_ms or vocab.TORCH_DATALOADER not in m.phase_ms \
            else "the exposed wait under torch's DataLoader span"
        return data_wait_ms / global_batch, (f"workers=0: the training process loads: {span} "
                                             f"{data_wait_ms:.1f} ms ÷ {global_batch} images in {m.name}")
    kids = run.samples.children_cpu_pct
    if m.strategy == vocab.DDP or m.processes > 1:
        return None, f"the DataLoader's CPU cost is not separable in {m.name} (DDP ranks are child processes too)"
    if kids is None:
        return None, f"no samples.csv CPU rows in {m.name}: the DataLoader's CPU cost is unknown"
    res = run.run.results if run.run is not None else None
    rate = res.images_per_s if res is not None and res.images_per_s else m.images_per_s
    if not rate:
        return None, f"no images/s in {m.name}: the DataLoader's CPU cost is unknown"
    cost = kids / 100 / rate * 1e3
    whose = "the worker's" if workers == 1 else f"the {workers} workers'"
    return cost, (f"{cost:.2f} CPU ms per image: {whose} {kids / 100:.3f} cores (samples.csv "
                  f"proc/children) ÷ {rate:.1f} images/s in {m.name}")


def _batch(m: RunMetrics, global_batch: int | None, batch_per_device: int | None, notes: list[str],
           trace_paths: Sequence[Path] = ()) -> tuple[int, int] | None:
    """(global, per device): the run's, else what the user states (--global-batch / --batch-per-device),
    else the first dimension of the model's inputs where the trace recorded shapes."""
    if m.global_batch and m.per_device_batch:
        return m.global_batch, m.per_device_batch
    if global_batch:
        per = global_batch // max(m.devices, 1)
        notes.append(f"{m.name}: batch {global_batch} as stated (--global-batch): the run does not record it")
        return global_batch, per
    if batch_per_device:
        notes.append(f"{m.name}: batch {batch_per_device} per device as stated (--batch-per-device): the run does "
                     "not record it")
        return batch_per_device * max(m.devices, 1), batch_per_device
    for path in trace_paths:
        found = input_batch(path)
        if found is not None:
            per, agree = found
            notes.append(f"{m.name}: batch {per} per device from the recorded input shapes (record_shapes) of "
                         f"{agree} conv/linear ops in {path.name}")
            return per * max(m.devices, 1), per
    return None


def _torch_phases(m: RunMetrics, notes: list[str]) -> tuple[float, float, float, float, float] | None:
    """Anyone's trace without our labels: (forward, loss, backward, optimizer, data_wait) from torch's own
    spans -- the DataLoader's exposed wait, torch.optim's step, the rest of the step as forward + backward."""
    ph = m.phase_ms
    if vocab.TORCH_DATALOADER not in ph and vocab.TORCH_OPTIMIZER not in ph:
        return None
    data = m.parts_ms.get(vocab.DATA_LOADING, 0.0)
    opt = ph.get(vocab.TORCH_OPTIMIZER, 0.0)
    rest = max(0.0, (m.step_ms or 0.0) - data - opt)
    notes.append(f"{m.name}: no ss: labels: phases from torch's own spans (DataLoader wait {data:.1f} ms exposed, "
                 f"Optimizer.step {opt:.1f} ms), forward + backward = the rest of the step ({rest:.1f} ms, not split)")
    return rest, 0.0, 0.0, opt, data


def profile_of(run: RunAnalysis, m: RunMetrics | None = None, global_batch: int | None = None,
               batch_per_device: int | None = None) -> Profile:
    """The Profile of a measured run; WhatIfError when it has no profiled steps or no batch.
    global_batch / batch_per_device: what the user states for a run that does not record its batch."""
    m = m if m is not None else run_metrics(run)
    if m.step_ms_source != "trace" or not m.step_ms:
        raise WhatIfError(f"{run.run_dir}: no profiled steps (no trace with ProfilerStep): nothing to scale")
    notes: list[str] = []
    batch = _batch(m, global_batch, batch_per_device, notes, [t.path for t in run.traces])
    if batch is None:
        raise WhatIfError(f"{run.run_dir}: the batch size is unknown (no run.json, folder name not <strategy>-<N>"
                          "<gpu|cpu>-b<batch>, no recorded input shapes): pass --global-batch or --batch-per-device")
    gb, per_device = batch
    ph = m.phase_ms
    fwd, loss, bwd, opt = (ph.get(k, 0.0) for k in (vocab.FORWARD, vocab.LOSS, vocab.BACKWARD, vocab.OPTIMIZER))
    data_wait, h2d = ph.get(vocab.DATA_WAIT, 0.0), ph.get(vocab.H2D, 0.0)
    torch_only = fwd + bwd <= 0
    if torch_only:
        phases = _torch_phases(m, notes)
        if phases is None:
            raise WhatIfError(f"{run.run_dir}: no ss:forward / ss:backward labels and no torch DataLoader or optimizer "
                              "spans in the trace: per-phase time unknown")
        fwd, loss, bwd, opt, data_wait = phases
    comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
    if m.strategy in vocab.DP_STRATEGIES:
        internals = sum(ph.get(k, 0.0) for k in (vocab.SCATTER, vocab.REPLICATE, vocab.GATHER))
        fwd = max(0.0, fwd - internals)
        notes.append(f"{m.name}: forward without DataParallel's scatter/replicate/gather ({internals:.1f} ms)")
    if m.strategy == vocab.DDP and comm > 0:
        bwd = max(0.0, bwd - comm)
        notes.append(f"{m.name}: backward without its exposed all-reduce ({comm:.1f} ms)")
    accounted = fwd + loss + bwd + opt + data_wait + h2d + (comm if m.strategy == vocab.DDP else 0.0)
    if m.strategy in vocab.DP_STRATEGIES:
        accounted += sum(ph.get(k, 0.0) for k in (vocab.SCATTER, vocab.REPLICATE, vocab.GATHER))
    info = run.run
    env = info.environment if info is not None else None
    cpus_known = bool(m.cpus) or env is not None
    cpus = m.cpus if m.cpus else float(env.cpu_count or 1) if env is not None else 1.0
    threads, threads_basis = _threads(m, cpus)
    loader, loader_basis = _loader(run, m, data_wait, gb)
    mem = run.samples.gpu_mem_used_mib_max
    gpus = list(env.gpus) if env is not None else []
    traced_names = [n for t in run.traces for n in t.gpu_names]
    return Profile(
        name=m.name, run_dir=m.run_dir, strategy=m.strategy, device_type=m.device_type, devices=m.devices,
        global_batch=gb, per_device_batch=per_device, processes=m.processes, cpus=cpus, cpus_known=cpus_known,
        threads=threads, threads_basis=threads_basis, workers=m.workers or 0, step_ms=m.step_ms,
        images_per_s=gb / (m.step_ms / 1e3), forward_ms=fwd, loss_ms=loss, backward_ms=bwd,
        optimizer_ms=opt, data_wait_ms=data_wait, h2d_ms=h2d, host_ms=max(0.0, m.step_ms - accounted),
        amp=bool(m.amp), model=info.model if info is not None else None,
        calibration=info.calibration if info is not None else None, gpus=gpus,
        gpu_name=next((g.name for g in gpus if g.name), None) or next(
            (d.name for d in (env.cuda_devices if env is not None else []) if d.name), None) or next(
            iter(traced_names), None),
        bandwidths=link_bandwidths(run), loader_ms_per_image=loader, loader_basis=loader_basis,
        peak_rss_mib=run.samples.peak_rss_mib, device_mem_mib=max(mem.values()) if mem else None, notes=notes)
