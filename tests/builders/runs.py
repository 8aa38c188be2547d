"""Hand-made analyses, run.json as the contract Structs, and run folders on disk, for the report and
what-if tests (the traces in run folders come from builders.kineto)."""
from __future__ import annotations

from pathlib import Path

from analysis.records import DeviceView, MemcpyStats, RunAnalysis, SampleSummary, StepBreakdown, TraceAnalysis
from builders.kineto import labelled_trace
from profiler.contract import vocab
from profiler.contract.runjson import (ConfigInfo, CpuAllocation, Environment, Layer, ModelInfo, Results, RunInfo,
                                       encode_json)


def parts(step_us: float, **shares: float) -> dict[str, float]:
    """Category µs for a step of step_us where the named categories take the given shares; idle the rest."""
    out = {c: 0.0 for c in vocab.CATEGORIES}
    for k, v in shares.items():
        out[k] = step_us * v
    out[vocab.IDLE] += step_us - sum(out.values())
    return out


def trace(worker: str = "rank0", step_us: float = 100_000.0, n_steps: int = 3, shares: dict[str, float] | None = None,
          gpus: dict[int, float] | None = None, memcpy: list[MemcpyStats] | None = None,
          phase: dict[str, float] | None = None, has_gpu: bool = True, overlap: float | None = None,
          pid: int = 1) -> TraceAnalysis:
    """A TraceAnalysis of n equal steps; gpus maps CUDA index -> busy share (all compute)."""
    p = parts(step_us, **(shares or {}))
    steps = [StepBreakdown(i + 1, i * step_us, (i + 1) * step_us, dict(p)) for i in range(n_steps)]
    wall = step_us * n_steps
    devices = []
    for idx, busy in (gpus or {}).items():
        devices.append(DeviceView(f"pid {pid} gpu {idx}", pid, idx, wall, wall * busy, 0.0, 0.0, wall * (1 - busy)))
    if not has_gpu:
        devices = [DeviceView("cpu", pid, -1, wall, wall * 0.5, 0.0, 0.0, wall * 0.5)]
    return TraceAnalysis(path=Path(f"/x/{worker}.1.pt.trace.json.gz"), worker=worker, has_gpu=has_gpu, steps=steps,
                         devices=devices, phase_totals_us={k: v * n_steps for k, v in (phase or {}).items()},
                         memcpy=memcpy or [], comm_overlap=overlap)


TWO_LAYERS = [Layer(name="a", type="Linear", parameters=210, input_shape=[10], output_shape=[20], flops=400,
                    dtype_bytes=4),
              Layer(name="b", type="Linear", parameters=105, input_shape=[20], output_shape=[5], flops=200,
                    dtype_bytes=4)]     # 100 elements per sample move per layer-wise DP step (see test_report_scaling)

# two layers of 4 MB and 40 MB parameters (1 M and 10 M float32): DDP's buckets, in reverse layer order
LAYERS = [Layer(name="a", type="Conv2d", parameters=1_000_000, input_shape=[1], output_shape=[1], flops=300,
                dtype_bytes=4),
          Layer(name="b", type="Linear", parameters=10_000_000, input_shape=[1], output_shape=[1], flops=100,
                dtype_bytes=4)]


def run_info(name: str, strategy: str, devices: int, global_batch: int, device_type: str = "cuda",
             images_per_s: float | None = None, parameter_bytes: int | None = None, workers: int = 4,
             cpus: float | None = None, pin_memory: bool = False, amp: bool = False,
             layers: list[Layer] | None = None, status: str = "complete", omp: str | None = None) -> RunInfo:
    """run.json as the contract Structs; `cpus` is the job's CPU allocation (source: affinity)."""
    model = ModelInfo(layers=layers)
    if parameter_bytes is not None:
        model = ModelInfo(parameters=parameter_bytes // 4, parameter_bytes=parameter_bytes, layers=layers)
    return RunInfo(
        name=name, status=status,
        config=ConfigInfo(strategy=strategy, device_type=device_type, devices=devices, global_batch=global_batch,
                          per_device_batch=global_batch // devices, workers=workers, pin_memory=pin_memory, amp=amp),
        model=model,
        environment=Environment(cpu_allocation=None if cpus is None else CpuAllocation(cpus=cpus, source="affinity"),
                                omp_num_threads=omp),
        results=Results(steps=10, images=10 * global_batch, images_per_s=images_per_s))


def run(name: str, traces: list[TraceAnalysis], info: RunInfo | None = None,
        samples: SampleSummary | None = None, root: Path = Path("/runs")) -> RunAnalysis:
    return RunAnalysis(run_dir=root / name, name=name, run=info, traces=traces, samples=samples or SampleSummary())


# --- run folders on disk ---------------------------------------------------------------------

def write_run(root: Path, name: str, info: RunInfo | None, gpu: bool = True,
              samples: str | None = None, traces: int = 1) -> Path:
    """root/name holding `traces` rank traces (builders.kineto.labelled_trace), run.json and samples.csv."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for r in range(traces):
        labelled_trace(gpu=gpu, pid=100 + r).write(d / f"rank{r}.1700000000000.pt.trace.json.gz")
    if info is not None:
        (d / vocab.RUN_JSON).write_bytes(encode_json(info))
    if samples is not None:
        (d / vocab.SAMPLES_CSV).write_text(samples)
    return d


SAMPLES = """time_ns,source,device,metric,value
1000000000,nvml,0,gpu_util_pct,90
1000000000,nvml,1,gpu_util_pct,20
1000000000,nvml,0,pcie_tx_kbps,1000000
1000000000,host,all,cpu_pct,50
1000000000,host,cpu0,cpu_pct,40
1000000000,proc,main,cpu_pct,100
1000000000,proc,children,cpu_pct,300
1000000000,proc,main,rss_mib,1000
1000000000,proc,children,rss_mib,500
1000000000,proc,tree,cpu_cores,3.5
1100000000,nvml,0,gpu_util_pct,70
1100000000,nvml,1,gpu_util_pct,40
1100000000,nvml,0,pcie_tx_kbps,2000000
1100000000,host,all,cpu_pct,100
1100000000,proc,main,cpu_pct,80
1100000000,proc,children,cpu_pct,100
1100000000,proc,main,rss_mib,1200
1100000000,proc,children,rss_mib,200
1100000000,proc,tree,cpu_cores,1.5
1200000000,nvml,0,gpu_u
"""


def seed_model() -> ModelInfo:
    """The seed ConvNet's exact layer table as the producer writes it into run.json (meta device, no weights)."""
    from models.train import model_description

    return model_description(1.0)


MS = 1000.0   # µs per ms


def gpu_run(name: str = "single-1gpu-b64", cpus: float = 5, workers: int = 4, batch: int = 64, model=None):
    """A 1-GPU run: 100 ms steps, forward 20 / backward 40 / optimizer 10 / data_wait 1 ms, loader 2 CPU ms per image."""
    info = run_info(name, "single", 1, batch, images_per_s=500.0, parameter_bytes=400_000_000, workers=workers,
                    cpus=cpus)
    if model is not None:
        info.model = model
    info.environment.gpus = []
    tr = trace(step_us=100 * MS, shares={vocab.COMPUTE: 0.7}, gpus={0: 0.7},
               phase={vocab.FORWARD: 20 * MS, vocab.BACKWARD: 40 * MS, vocab.OPTIMIZER: 10 * MS,
                      vocab.DATA_WAIT: 1 * MS})
    # the workers' cores: 2 ms per image at 500 images/s = 1.0 core
    return run(name, [tr], info, samples=SampleSummary(rows=3, children_cpu_pct=100.0, peak_rss_mib=3000.0))
