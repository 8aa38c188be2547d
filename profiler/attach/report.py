"""What one attached process learned, and how the parent merges the processes into run.json.

Torch-free: the training process fills a `ProcessReport` and writes it as JSON beside the
parent's state; the parent reads every report and decides the run's config, model table and
results from them (pure functions here). A field nobody could observe stays None with a note.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..contract import vocab
from ..contract.runjson import ConfigInfo, CudaDevice, ModelInfo, Results, write_json_atomic

__all__ = ["ENV", "AttachSettings", "ProcessReport", "Merged", "read_reports", "write_report", "merge",
           "untrained_traces", "all_stopped", "steps_needed"]

ENV = "SCALESCOPE_ATTACH"          # the settings, as JSON, for every process of the tree


class AttachSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the parent tells every process of the tree (one JSON environment variable)."""

    run_dir: str
    state_dir: str
    wait: int = vocab.DEFAULT_SCHEDULE.wait
    warmup: int = vocab.DEFAULT_SCHEDULE.warmup
    active: int = vocab.DEFAULT_SCHEDULE.active
    repeat: int = vocab.DEFAULT_SCHEDULE.repeat
    stop_steps: int | None = None               # --steps: a trainer flushes after this many optimizer steps
    duration_s: float | None = None             # --duration: ... after this long from its first step

    @property
    def steps_needed(self) -> int:
        return steps_needed(self.wait, self.warmup, self.active, self.repeat)


def steps_needed(wait: int, warmup: int, active: int, repeat: int) -> int:
    """Optimizer steps for every profiled cycle to be recorded (one cycle when repeating forever)."""
    return (wait + warmup + active) * max(repeat, 1)


class ProcessReport(msgspec.Struct, kw_only=True):
    """One training process: what it saw happen, not what it assumes."""

    pid: int
    rank: int = 0
    world_size: int = 1
    torchrun: bool = False                      # started by torchrun (its RANK/LOCAL_RANK environment)
    torch: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    cuda_devices: list[CudaDevice] = msgspec.field(default_factory=list)
    device_type: str | None = None              # where the trained module's parameters live
    ddp: bool = False                           # a DistributedDataParallel was constructed
    dp_wrappers: int = 0                        # nn.DataParallel objects constructed
    dp_device_ids: list[int] = msgspec.field(default_factory=list)
    first_batch: int | None = None              # leading dimension of the first batch the loader gave
    images: int = 0                             # Σ leading dimensions of the training loader's batches
    loop_images: int = 0                        # of those, the ones fetched by the last optimizer step
    loop_s: float = 0.0                         # first training batch -> last optimizer step (the loop's wall)
    workers: int | None = None
    pin_memory: bool | None = None
    optimizer: str | None = None
    optimizer_steps: int = 0
    step_times_ms: list[float] = msgspec.field(default_factory=list)
    model: ModelInfo | None = None
    wall_s: float = 0.0
    first_step_ns: int | None = None            # time.time_ns() of the first optimizer step
    stopped: str | None = None                  # "steps" | "duration": done, the parent may stop the command
    traces: list[str] = msgspec.field(default_factory=list)    # trace files it wrote into the run folder
    write_error: str | None = None              # a trace it could not write (a full disk)
    notes: list[str] = msgspec.field(default_factory=list)


def write_report(state_dir: Path, report: ProcessReport) -> None:
    write_json_atomic(Path(state_dir) / f"{report.pid}.json", report)


def read_reports(state_dir: Path) -> tuple[list[ProcessReport], list[str]]:
    """Every report in `state_dir`, rank order; a file that does not decode becomes a note."""
    out: list[ProcessReport] = []
    notes: list[str] = []
    for path in sorted(Path(state_dir).glob("*.json")):
        try:
            out.append(msgspec.json.decode(path.read_bytes(), type=ProcessReport))
        except (OSError, msgspec.DecodeError) as exc:
            notes.append(f"attach: a process report could not be read ({path.name}: {exc})")
    out.sort(key=lambda r: (r.rank, r.pid))
    return out, notes


@dataclass
class Merged:
    """run.json's config, model and results as far as the reports tell, and what they could not."""

    config: dict[str, object] = field(default_factory=dict)
    model: ModelInfo | None = None
    results: Results | None = None
    cuda_devices: list[CudaDevice] = field(default_factory=list)
    versions: tuple[str | None, str | None, int | None] = (None, None, None)
    notes: list[str] = field(default_factory=list)


def _strategy(trainers: Sequence[ProcessReport]) -> str:
    if any(r.ddp for r in trainers):
        return vocab.DDP
    wrappers = max(r.dp_wrappers for r in trainers)
    if wrappers > 1:
        return vocab.DP_LAYERWISE
    if wrappers == 1:
        return vocab.DP
    return vocab.SINGLE


def merge(reports: Sequence[ProcessReport], wall_s: float) -> Merged:
    """The run as the processes saw it. Trainers are the processes that stepped an optimizer.
    Results are the training loop's (first batch to last optimizer step, as the runner's are), not
    the command's `wall_s` (interpreter start, imports, data setup), which is the fallback only."""
    m = Merged()
    if not reports:
        m.notes.append("no torch process: no Python process of the command imported torch, so there is "
                       "no trace and no model; samples.csv has the host and the process tree")
        return m
    first = reports[0]
    m.versions = (first.torch, first.cuda, first.cudnn)
    m.cuda_devices = list(first.cuda_devices)
    for r in reports:
        m.notes.extend(n for n in r.notes if n not in m.notes)
    trainers = [r for r in reports if r.optimizer_steps > 0]
    if not trainers:
        m.notes.append("no optimizer step in any process (inference?): the trace covers the whole run as one "
                       "step; strategy, batch and model table are unknown")
        return m
    lead = trainers[0]
    strategy = _strategy(trainers)
    if strategy in vocab.DP_STRATEGIES and (lead.device_type != vocab.CUDA or not lead.dp_device_ids):
        wrappers = max(r.dp_wrappers for r in trainers)
        m.notes.append(f"attach: nn.DataParallel ran nothing in parallel: no GPU was visible, so "
                       f"{'each of its ' + str(wrappers) + ' wrappers' if wrappers > 1 else 'it'} just called "
                       f"its module on the {lead.device_type or 'host'}; profiled as a single-device run")
        strategy = vocab.SINGLE
    world = max(len(trainers), max(r.world_size for r in trainers)) if strategy == vocab.DDP else 1
    if strategy == vocab.DDP:
        devices: int | None = world
    elif strategy in vocab.DP_STRATEGIES:
        devices = len(lead.dp_device_ids) or None
    else:
        devices = 1
    cfg: dict[str, object] = {"strategy": strategy, "device_type": lead.device_type, "devices": devices,
                              "workers": lead.workers, "pin_memory": lead.pin_memory}
    if strategy in vocab.DP_STRATEGIES:
        cfg["device_ids"] = list(lead.dp_device_ids)
    batch = lead.first_batch
    if batch is None:
        m.notes.append("attach: no batch came from a torch DataLoader: per-device and global batch unknown")
    elif strategy == vocab.DDP:
        cfg["per_device_batch"], cfg["global_batch"] = batch, batch * world
    elif strategy in vocab.DP_STRATEGIES and devices:
        cfg["global_batch"] = batch
        if batch % devices == 0:
            cfg["per_device_batch"] = batch // devices
        else:
            m.notes.append(f"attach: DataParallel splits a batch of {batch} unevenly over {devices} devices: "
                           "per-device batch left unknown")
    else:
        cfg["per_device_batch"] = cfg["global_batch"] = batch
    if lead.workers is None:
        m.notes.append("attach: no torch DataLoader seen: workers and pin_memory unknown")
    m.config = cfg
    m.model = lead.model
    if lead.model is None:
        m.notes.append("attach: the model table is unknown (see the process notes)")
    if lead.optimizer:
        m.notes.append(f"attach: optimizer {lead.optimizer}")
    images = sum(r.loop_images for r in trainers) if strategy == vocab.DDP else lead.loop_images
    loop = lead.loop_s if lead.loop_s > 0 else wall_s
    m.results = Results(steps=lead.optimizer_steps, images=images, wall_s=loop,
                        images_per_s=images / loop if loop > 0 and images else None,
                        step_times_ms=list(lead.step_times_ms))
    return m


def as_config(base: ConfigInfo, merged: Merged) -> ConfigInfo:
    """`base` (what the parent knows: argv, schedule, sample period) with what the processes saw."""
    return msgspec.structs.replace(base, **merged.config)



def untrained_traces(reports: Sequence[ProcessReport]) -> list[str]:
    """Traces of processes that never stepped an optimizer (a launcher that ran a forward, then
    started its ranks), when some process did train: they are not the run."""
    if not any(r.optimizer_steps > 0 for r in reports):
        return []
    return [t for r in reports if r.optimizer_steps == 0 for t in r.traces]


def all_stopped(reports: Sequence[ProcessReport]) -> bool:
    """--steps / --duration: every process that stepped has flushed its trace, and at least as many as
    the largest world size any of them joined (a rank that has not stepped yet is still to come)."""
    stepped = [r for r in reports if r.optimizer_steps > 0]
    done = [r for r in stepped if r.stopped]
    if not done or len(done) < len(stepped):
        return False
    return len(done) >= max(r.world_size for r in stepped)
