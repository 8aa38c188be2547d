"""The torch.profiler sessions of one attached process, and the traces they write.

Two in turn: from the first module forward a recording of every step (`start_prestep`), dropped
at the first optimizer step -- or kept, one step covering the run, when no optimizer ever steps --
then the scheduled session the optimizer advances (`start_scheduled`, `step`). Each trace is
written as `rank<R>.<ms>.pt.trace.json.gz` and named in the process's report. Kineto does not
survive fork: `kineto_used()` says whether this address space has started a profiler.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerAction, ProfilerActivity

from ..session import Schedule, all_threads_config, make_profiler
from .report import AttachSettings, ProcessReport

__all__ = ["Tracer", "kineto_used", "dist_rank"]

_KINETO_USED = False         # this address space has started a profiler (inherited by fork)


def kineto_used() -> bool:
    return _KINETO_USED


def dist_rank() -> tuple[int, int] | None:
    """(rank, world size) of an initialised process group, else None."""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:
        pass
    return None


class Tracer:
    """The pre-step recording and the scheduled session of one process; traces go to `run_dir`."""

    def __init__(self, run_dir: Path, report: ProcessReport, note: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.report = report
        self.note = note
        self.cuda = False            # known once armed: a DataLoader worker never asks
        self.prestep: torch.profiler.profile | None = None
        self.keep_prestep = True
        self.scheduled: Any = None

    def _activities(self) -> list[ProfilerActivity]:
        return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])

    def worker(self) -> str:
        ranks = dist_rank()
        return f"rank{ranks[0] if ranks else self.report.rank}"

    def trace_ready(self, prof: Any) -> None:
        """Write one trace and remember its name (the parent drops a launcher's when ranks trained)."""
        name = f"{self.worker()}.{time.time_ns() // 1_000_000}.pt.trace.json.gz"
        path = self.run_dir / name
        try:
            prof.export_chrome_trace(str(path))
        except OSError as exc:
            self.report.write_error = f"{name}: {exc.strerror or exc}"
            self.note(f"the trace could not be written ({name}: {exc.strerror or exc})")
            try:
                path.unlink()          # half a gzip is no trace
            except OSError:
                pass
            return
        self.report.traces.append(name)

    def start_prestep(self) -> None:
        global _KINETO_USED

        def ready(prof: Any) -> None:
            if self.keep_prestep:
                self.trace_ready(prof)
        experimental = all_threads_config()[0] if self.cuda else None   # DataParallel's replica threads
        self.prestep = torch.profiler.profile(activities=self._activities(), on_trace_ready=ready,
                                              schedule=lambda _step: ProfilerAction.RECORD,
                                              experimental_config=experimental)
        _KINETO_USED = True
        self.prestep.start()

    def stop_prestep(self, keep: bool) -> None:
        prof, self.prestep = self.prestep, None
        if prof is None:
            return
        self.keep_prestep = keep
        prof.stop()

    def start_scheduled(self, settings: AttachSettings, all_threads: bool) -> None:
        """The run's schedule from the first optimizer step on (that step was the first `wait` step)."""
        global _KINETO_USED
        s = settings
        self.scheduled = make_profiler(self.run_dir, self.worker(),
                                       Schedule(wait=max(s.wait - 1, 0), warmup=s.warmup, active=s.active,
                                                repeat=s.repeat),
                                       self.cuda, all_threads=all_threads, notes=self.report.notes,
                                       on_trace_ready=self.trace_ready)
        _KINETO_USED = True
        self.scheduled.start()

    def step(self) -> None:
        """One optimizer step: the scheduled session advances (nothing before it started)."""
        if self.scheduled is not None:
            self._sync_if_recording()
            self.scheduled.step()

    def _sync_if_recording(self) -> None:
        """The step's kernels end inside its window, as the runner ensures -- only while recording."""
        if not self.cuda or getattr(self.scheduled, "current_action", ProfilerAction.NONE) == ProfilerAction.NONE:
            return
        ids = sorted(set(self.report.dp_device_ids)) or ([torch.cuda.current_device()] if torch.cuda.is_initialized() else [])
        for i in ids:
            torch.cuda.synchronize(i)

    def stop(self, keep_prestep: bool) -> None:
        """The end: a pre-step recording still open is kept when `keep_prestep`; the session is stopped
        (its last active steps written), a failure to stop noted."""
        if self.prestep is not None:
            self.stop_prestep(keep=keep_prestep)
        if self.scheduled is not None:
            try:
                self.scheduled.stop()
            except Exception as exc:
                self.note(f"the profiler did not stop cleanly: {type(exc).__name__}: {exc}")
