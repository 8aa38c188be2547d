"""The torch.profiler session a run trains under, and the phase labels it records.

One place decides how every run is profiled (activities, schedule, trace
handler, threads), so traces from all strategies are comparable.

Early exit: `torch.profiler.profile.__exit__` calls ``stop()``, which ends the
open ``ProfilerStep#N`` and, when the schedule is in an active step (RECORD or
RECORD_AND_SAVE), stops tracing and calls ``on_trace_ready`` -- so an exception
or KeyboardInterrupt inside the ``with`` still writes the trace collected so
far (checked against torch 2.14's action map and by tests). An exit during
wait/warmup writes nothing: nothing was recorded yet.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function, tensorboard_trace_handler

from .contract import vocab
from .contract.runjson import CudaDevice
from .nvml import normalise_uuid

__all__ = ["Schedule", "make_profiler", "phase", "NullProfiler", "all_threads_config", "devices_to_sync",
           "synchronize_devices", "cuda_devices"]


@dataclass
class Schedule:
    """torch.profiler.schedule: skip ``wait`` steps, warm up ``warmup``, record ``active``; ``repeat`` cycles."""
    wait: int = vocab.DEFAULT_SCHEDULE.wait
    warmup: int = vocab.DEFAULT_SCHEDULE.warmup
    active: int = vocab.DEFAULT_SCHEDULE.active
    repeat: int = vocab.DEFAULT_SCHEDULE.repeat

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"profiler {name} must be a non-negative integer, got {value!r}")
        if self.active < 1:
            raise ValueError(f"profiler active must be at least 1, got {self.active}")

    @property
    def steps_needed(self) -> int:
        """Steps the loop must run for every cycle to be recorded (0 = repeat forever)."""
        return (self.wait + self.warmup + self.active) * self.repeat


class NullProfiler:
    """The no-op stand-in for ``--no-profile``: same context manager and ``step()``."""

    def __enter__(self) -> "NullProfiler":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def step(self) -> None:
        pass


def all_threads_config() -> tuple[Any | None, str | None]:
    """``_ExperimentalConfig(profile_all_threads=True)`` if this torch has it, else (None, why not).

    Without it Kineto records only the thread that started the profiler, and
    DataParallel's replica threads (forward on GPUs 1..N-1) are missing.
    """
    cls = getattr(torch.profiler, "_ExperimentalConfig", None)
    if cls is None:
        return None, f"torch {torch.__version__} has no torch.profiler._ExperimentalConfig; only the main thread is profiled"
    try:
        return cls(profile_all_threads=True), None
    except TypeError:
        return None, (f"torch {torch.__version__} lacks _ExperimentalConfig(profile_all_threads=...); "
                      "only the main thread is profiled (DataParallel replica threads are missing)")


def make_profiler(
    run_dir: Path,
    worker_name: str,
    schedule: Schedule,
    cuda: bool,
    enabled: bool = True,
    all_threads: bool = True,
    notes: list[str] | None = None,
    on_trace_ready: Any = None,
) -> profile | NullProfiler:
    """A torch.profiler.profile writing ``<run_dir>/<worker_name>.<ts>.pt.trace.json.gz``.

    CPU + CUDA activities when ``cuda``; shapes and stacks off (they bloat the
    trace and slow the step). ``notes`` (if given) receives any fallback, e.g.
    a torch without ``profile_all_threads``; otherwise it becomes a warning. ``on_trace_ready``
    replaces the file writer (attach names each file it writes).
    """
    if not enabled:
        return NullProfiler()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    experimental = None
    if all_threads:
        experimental, why_not = all_threads_config()
        if why_not is not None:
            if notes is not None:
                notes.append(why_not)
            else:
                warnings.warn(why_not, stacklevel=2)
    return profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=schedule.wait, warmup=schedule.warmup,
                                         active=schedule.active, repeat=schedule.repeat),
        on_trace_ready=on_trace_ready or tensorboard_trace_handler(str(run_dir), worker_name=worker_name,
                                                                   use_gzip=True),
        record_shapes=False,
        with_stack=False,
        experimental_config=experimental,
    )


def devices_to_sync(device: torch.device, device_ids: Sequence[int] = ()) -> list[int]:
    """The CUDA indices a process drives: every distinct DataParallel id, else its own device."""
    if device.type != vocab.CUDA:
        return []
    if device_ids:
        return sorted(set(device_ids))
    return [device.index if device.index is not None else torch.cuda.current_device()]


def synchronize_devices(device: torch.device, device_ids: Sequence[int] = ()) -> None:
    """Wait for the kernels of every device the run uses, before ``prof.step()`` ends a step.

    ``torch.cuda.synchronize()`` waits for the current device only (pytorch issue 181238): a
    DataParallel step would close with the replicas' kernels on GPUs 1..N still running, and
    the last active step's trace would miss them.
    """
    for index in devices_to_sync(device, device_ids):
        torch.cuda.synchronize(index)


def phase(label: str) -> record_function:
    """``with phase(vocab.FORWARD): ...`` -- a named span in the trace (a `record_function`)."""
    return record_function(label)


def cuda_devices(n: int) -> list[CudaDevice]:
    """CUDA index -> the driver's UUID (NVML's spelling) and name, for indices 0..n-1."""
    out = []
    for i in range(n):
        props = torch.cuda.get_device_properties(i)
        raw = getattr(props, "uuid", None)
        out.append(CudaDevice(index=i, uuid=normalise_uuid(str(raw)) if raw is not None else None,
                              name=props.name))
    return out
