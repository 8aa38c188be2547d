"""What one measured run gives the what-if: per-image compute, the optimizer, data loading's CPU cost.

Everything here is read from the run (its traces' phase labels, run.json, samples.csv); a
figure the run cannot give is None with a note, and predict.py then states an assumption.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from analysis.run.costmodel import link_bandwidths
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


def _loader(run: RunAnalysis, m: RunMetrics, data_wait_ms: float) -> tuple[float | None, str]:
    """The loader's CPU ms per image: its workers' CPU (samples.csv children) ÷ the run's images/s."""
    workers = m.workers or 0
    if workers == 0:
        return data_wait_ms / m.global_batch, (f"workers=0: the training process loads: ss:data_wait "
                                               f"{data_wait_ms:.1f} ms ÷ {m.global_batch} images in {m.name}")
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
    return cost, (f"{cost:.2f} CPU ms per image: the {workers} workers' {kids / 100:.3f} cores (samples.csv "
                  f"proc/children) ÷ {rate:.1f} images/s in {m.name}")


def profile_of(run: RunAnalysis, m: RunMetrics | None = None) -> Profile:
    """The Profile of a measured run; WhatIfError when it has no profiled steps or no batch."""
    m = m if m is not None else run_metrics(run)
    if m.step_ms_source != "trace" or not m.step_ms:
        raise WhatIfError(f"{run.run_dir}: no profiled steps (no trace with ProfilerStep): nothing to scale")
    if not m.global_batch or not m.per_device_batch:
        raise WhatIfError(f"{run.run_dir}: the batch size is unknown (no run.json, folder name not <strategy>-<N>"
                          "<gpu|cpu>-b<batch>)")
    ph = m.phase_ms
    notes: list[str] = []
    fwd, loss, bwd, opt = (ph.get(k, 0.0) for k in (vocab.FORWARD, vocab.LOSS, vocab.BACKWARD, vocab.OPTIMIZER))
    if fwd + bwd <= 0:
        raise WhatIfError(f"{run.run_dir}: no ss:forward / ss:backward labels in the trace: per-phase time unknown")
    comm = m.parts_ms.get(vocab.COMMUNICATION, 0.0)
    if m.strategy in vocab.DP_STRATEGIES:
        internals = sum(ph.get(k, 0.0) for k in (vocab.SCATTER, vocab.REPLICATE, vocab.GATHER))
        fwd = max(0.0, fwd - internals)
        notes.append(f"{m.name}: forward without DataParallel's scatter/replicate/gather ({internals:.1f} ms)")
    if m.strategy == vocab.DDP and comm > 0:
        bwd = max(0.0, bwd - comm)
        notes.append(f"{m.name}: backward without its exposed all-reduce ({comm:.1f} ms)")
    data_wait, h2d = ph.get(vocab.DATA_WAIT, 0.0), ph.get(vocab.H2D, 0.0)
    accounted = fwd + loss + bwd + opt + data_wait + h2d + (comm if m.strategy == vocab.DDP else 0.0)
    if m.strategy in vocab.DP_STRATEGIES:
        accounted += sum(ph.get(k, 0.0) for k in (vocab.SCATTER, vocab.REPLICATE, vocab.GATHER))
    info = run.run
    env = info.environment if info is not None else None
    cpus = m.cpus if m.cpus else float(env.cpu_count or 1) if env is not None else 1.0
    threads, threads_basis = _threads(m, cpus)
    loader, loader_basis = _loader(run, m, data_wait)
    mem = run.samples.gpu_mem_used_mib_max
    gpus = list(env.gpus) if env is not None else []
    return Profile(
        name=m.name, run_dir=m.run_dir, strategy=m.strategy, device_type=m.device_type, devices=m.devices,
        global_batch=m.global_batch, per_device_batch=m.per_device_batch, processes=m.processes, cpus=cpus,
        threads=threads, threads_basis=threads_basis, workers=m.workers or 0, step_ms=m.step_ms,
        images_per_s=m.global_batch / (m.step_ms / 1e3), forward_ms=fwd, loss_ms=loss, backward_ms=bwd,
        optimizer_ms=opt, data_wait_ms=data_wait, h2d_ms=h2d, host_ms=max(0.0, m.step_ms - accounted),
        amp=bool(m.amp), model=info.model if info is not None else None,
        calibration=info.calibration if info is not None else None, gpus=gpus,
        gpu_name=next((g.name for g in gpus if g.name), None) or next(
            (d.name for d in (env.cuda_devices if env is not None else []) if d.name), None),
        bandwidths=link_bandwidths(run), loader_ms_per_image=loader, loader_basis=loader_basis,
        peak_rss_mib=run.samples.peak_rss_mib, device_mem_mib=max(mem.values()) if mem else None, notes=notes)
