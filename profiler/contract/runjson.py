"""run.json as typed Structs: what the producer knows, written once; every reader decodes these.

Schema 2 adds the exact layer table (shapes per sample, forward FLOPs), the CPU allocation
and where it came from, and the UUID torch reports for every CUDA index. Schema-1 folders
still read: their layer list has no shapes, so it is dropped with a note (per-layer traffic
is then not estimated, never guessed). Torch-free; msgspec only.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from . import vocab
from .runfiles import open_regular

__all__ = ["Layer", "ModelInfo", "ProfilerSchedule", "ConfigInfo", "CudaDevice", "GpuInfo", "CpuAllocation",
           "Environment", "EpochResult", "Results", "ThreadScaling", "StepTimes", "AllReduceRate", "Calibration", "RunInfo", "RunJsonError", "read_run_json", "load_run_json",
           "encode_json", "decode_run_json", "write_json_atomic", "write_bytes_atomic",
           "atomic_output"]


class _S(msgspec.Struct, kw_only=True):
    """Base: unknown fields are ignored (a newer writer's additions), missing ones take defaults."""


class Layer(_S):
    """One Conv2d/Linear, measured by a forward hook on one sample (no batch dimension)."""

    name: str
    type: str
    parameters: int
    input_shape: list[int]
    output_shape: list[int]
    flops: int                 # forward FLOPs per sample (torch.utils.flop_counter)
    dtype_bytes: int           # bytes per element of the layer's parameters and activations

    @property
    def input_elements(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_elements(self) -> int:
        return math.prod(self.output_shape)


class ModelInfo(_S):
    parameters: int | None = None
    parameter_bytes: int | None = None
    layers: list[Layer] | None = None          # None: no layer table (schema 1, another tool's run)
    forward_flops: int | None = None           # per sample, the whole model

    @property
    def input_shape(self) -> list[int] | None:
        """The per-sample input of the first layer: what DataParallel scatters."""
        return list(self.layers[0].input_shape) if self.layers else None


class ProfilerSchedule(_S):
    wait: int = vocab.DEFAULT_SCHEDULE.wait
    warmup: int = vocab.DEFAULT_SCHEDULE.warmup
    active: int = vocab.DEFAULT_SCHEDULE.active
    repeat: int = vocab.DEFAULT_SCHEDULE.repeat
    enabled: bool = True


class ConfigInfo(_S):
    """What ran. None where the producer does not know (e.g. an attached foreign script)."""

    strategy: str | None = None
    device_type: str | None = None             # "cuda" | "cpu"
    devices: int | None = None
    device_ids: list[int] = msgspec.field(default_factory=list)
    global_batch: int | None = None
    per_device_batch: int | None = None
    workers: int | None = None
    pin_memory: bool | None = None
    epochs: int | None = None
    max_steps: int | None = None
    data: str | None = None
    data_dir: str | None = None
    train_size: int | None = None
    width: float | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    eval: bool | None = None
    lr: float | None = None
    seed: int | None = None
    profiler: ProfilerSchedule | None = None
    sample_period_s: float | None = None
    argv: list[str] = msgspec.field(default_factory=list)


class CudaDevice(_S):
    """CUDA index i as torch sees it, and the driver's UUID for it (how NVML is matched)."""

    index: int
    uuid: str | None           # "GPU-..." / "MIG-..." as NVML spells it
    name: str | None = None


class GpuInfo(_S):
    """One sampled GPU as NVML describes it; fields NVML cannot give are None."""

    index: int                 # the CUDA index it was matched to
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_mib: int | None = None
    pcie_link_gen: int | None = None
    pcie_link_width: int | None = None
    pcie_max_gbps: float | None = None
    nvlink_links: int | None = None


class CpuAllocation(_S):
    """The CPUs the job may use: the smallest of its affinity, cgroup quota and HTCondor's Cpus."""

    cpus: float
    source: str                # "affinity" | "cgroup cpu.max" | "HTCondor Cpus" (which one set `cpus`)
    affinity: int | None = None
    cgroup_quota: float | None = None
    condor_cpus: float | None = None


class Environment(_S):
    hostname: str | None = None
    platform: str | None = None
    python: str | None = None
    torch: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    cpu_count: int | None = None
    cpus_allowed: list[int] | None = None
    cpu_allocation: CpuAllocation | None = None
    omp_num_threads: str | None = None
    cuda_visible_devices: str | None = None
    cuda_devices: list[CudaDevice] = msgspec.field(default_factory=list)
    nvml: str | None = None
    driver: str | None = None
    gpus: list[GpuInfo] = msgspec.field(default_factory=list)
    topology: str | None = None
    condor: dict[str, Any] | None = None

    @property
    def omp_threads(self) -> int | None:
        text = (self.omp_num_threads or "").strip()
        return int(text) if text.isdigit() else None


class ThreadScaling(_S):
    """How this model's work speeds up with threads on this machine, measured, not assumed linear.

    `compute_ms[i]`: forward + backward of the run's own model on `batch` images with
    `threads[i]` threads; `memory_ms[i]`: an optimizer-like memory-bound pass over `elements`
    float32 values (what Adam does to every parameter) with the same threads, in one process.
    """

    threads: list[int]
    compute_ms: list[float]
    memory_ms: list[float]
    batch: int
    elements: int


class StepTimes(_S):
    """The run's own training step, timed phase by phase in the calibration (mean over `steps`
    timed steps after `warmup` untimed ones, the run's profiler schedule where it had one): alone
    in the runner's process, or as `processes` gloo DDP ranks at once on the run's CPUs -- the
    contention a CPU DDP run meets, which no per-pass figure shows (on a 2-core VM two ranks' Adam
    took 3.5x its time alone, their passes 1.6x)."""

    processes: int              # 1: alone; N: N DDP ranks at once (each figure the mean over the ranks)
    threads: int                # per process
    batch: int                  # images per process
    steps: int
    forward_ms: float           # forward + loss
    backward_ms: float          # zero_grad + backward; under DDP with its gloo all-reduce
    optimizer_ms: float
    workers: int = 0            # forked DataLoader workers per process while timed (they cost the step too)
    warmup: int = 1             # untimed steps before them (run.json before this field: always 1)
    # ranks: at each step's end, waiting for the slowest rank (the loop's loss all-reduce does the same);
    # a step lasts as long as its slowest rank, its phases are each rank's own. None: not measured.
    wait_ms: float | None = None


class AllReduceRate(_S):
    """A timed loopback all-reduce between `processes` processes (gloo on CPU, NCCL on GPUs)."""

    backend: str
    processes: int
    bytes: int                 # the tensor each process reduces
    ms: float                  # fastest wall time of one all-reduce (of 3)
    threads: int | None = None  # threads per process while it ran


class Calibration(_S):
    """Short measurements the runner adds so the what-if can predict other configurations."""

    thread_scaling: ThreadScaling | None = None
    allreduce: AllReduceRate | None = None
    alone_step: StepTimes | None = None
    ddp_step: StepTimes | None = None
    notes: list[str] = msgspec.field(default_factory=list)


class EpochResult(_S):
    epoch: int
    steps: int
    images: int
    wall_s: float
    images_per_s: float
    accuracy: float | None = None


class Results(_S):
    steps: int = 0
    images: int = 0
    wall_s: float = 0.0
    images_per_s: float | None = None
    epochs: list[EpochResult] = msgspec.field(default_factory=list)
    step_times_ms: list[float] = msgspec.field(default_factory=list)
    final_loss: float | None = None
    accuracy: float | None = None


class RunInfo(_S):
    schema: int = vocab.RUN_SCHEMA_VERSION
    name: str | None = None
    status: str | None = None
    message: str | None = None
    config: ConfigInfo = msgspec.field(default_factory=ConfigInfo)
    model: ModelInfo = msgspec.field(default_factory=ModelInfo)
    environment: Environment = msgspec.field(default_factory=Environment)
    results: Results | None = None
    calibration: Calibration | None = None
    notes: list[str] = msgspec.field(default_factory=list)


class RunJsonError(Exception):
    """run.json exists but cannot be read as the contract; str() is one line naming the file."""


def _upgrade_v1(data: dict[str, Any], notes: list[str]) -> None:
    """Schema 1 in place: a layer list without shapes is no layer table; affinity was the only allocation."""
    model = data.get("model")
    if isinstance(model, dict) and model.get("layers") is not None:
        model["layers"] = None
        notes.append("run.json schema 1: no layer shapes: per-layer traffic not estimated")
    env = data.get("environment")
    if isinstance(env, dict) and env.get("cpu_allocation") is None and isinstance(env.get("cpus_allowed"), list):
        env["cpu_allocation"] = {"cpus": len(env["cpus_allowed"]), "source": "affinity",
                                 "affinity": len(env["cpus_allowed"])}


def decode_run_json(raw: bytes, where: str = "run.json") -> tuple[RunInfo, list[str]]:
    """The Struct and reader notes (e.g. a schema-1 upgrade); RunJsonError for anything unreadable."""
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise RunJsonError(f"{where}: run.json is not readable JSON ({exc})") from None
    except RecursionError:
        raise RunJsonError(f"{where}: run.json is nested too deeply to decode") from None
    if not isinstance(data, dict):
        raise RunJsonError(f"{where}: run.json is not a JSON object")
    notes: list[str] = []
    schema = data.get("schema", 1)
    if schema == 1:
        _upgrade_v1(data, notes)
    elif not isinstance(schema, int) or schema > vocab.RUN_SCHEMA_VERSION:
        notes.append(f"run.json schema {schema!r} is newer than this reader ({vocab.RUN_SCHEMA_VERSION}): "
                     "fields it does not know are ignored")
    try:
        return msgspec.convert(data, RunInfo, strict=False), notes
    except msgspec.ValidationError as exc:
        raise RunJsonError(f"{where}: run.json does not follow the contract ({exc})") from None
    except RecursionError:
        raise RunJsonError(f"{where}: run.json is nested too deeply to decode") from None


RUN_JSON_MAX_BYTES = 64 << 20     # a run.json with a 10,000-layer table is ~5 MB; past this it is not one


def read_run_json(path: Path) -> tuple[RunInfo, list[str]]:
    """run.json of a folder: a regular file (never a FIFO that would block), at most RUN_JSON_MAX_BYTES."""
    path = Path(path)
    try:
        with open_regular(path) as f:
            raw = f.read(RUN_JSON_MAX_BYTES + 1)
    except OSError as exc:
        raise RunJsonError(f"{path}: cannot read run.json ({exc.strerror or exc})") from None
    if len(raw) > RUN_JSON_MAX_BYTES:
        raise RunJsonError(f"{path}: run.json is larger than {RUN_JSON_MAX_BYTES >> 20} MB: not a run.json")
    return decode_run_json(raw, str(path))


def load_run_json(run_dir: Path) -> tuple[RunInfo | None, list[str], str | None]:
    """(RunInfo or None when absent/unreadable, reader notes, one-line error or None)."""
    path = Path(run_dir) / vocab.RUN_JSON
    if not os.path.lexists(path):
        return None, [], None
    try:
        info, notes = read_run_json(path)
    except RunJsonError as exc:
        return None, [], str(exc)
    return info, notes, None


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):           # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def encode_json(data: Any, indent: int = 2) -> bytes:
    """Any JSON document of the project (run.json, summary.json): msgspec, the one JSON library."""
    raw = msgspec.json.encode(data, enc_hook=_enc_hook, order="sorted" if not isinstance(data, msgspec.Struct) else None)
    return (msgspec.json.format(raw, indent=indent) if indent else raw) + b"\n"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via temp file + rename: a reader (the analysis, a job wrapper) never sees half a file."""
    write_bytes_atomic(path, encode_json(data))


@contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A temp file beside `path`, fsynced and renamed onto it when the block ends without an error,
    removed otherwise: the old file stays whole until the new one is."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)   # mkstemp makes it 0600; run folders are shared with collaborators
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write a file via temp file + fsync + rename (atomic_output)."""
    with atomic_output(path) as f:
        f.write(payload)
