"""What the runner records: all three parts as run.json `calibration`, every failure a note."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from profiler.contract import vocab
from profiler.contract.runjson import Calibration

from .alone import alone_step, thread_scaling
from .ranks import CalibrationError, concurrent
from .settings import MAX_BATCH, STEPS, WARMUP, WORKERS
from .timing import schedule_steps

__all__ = ["step_batch", "calibrate", "calibration_for"]


def step_batch(per_device_batch: int, processes: int = WORKERS) -> int:
    """The batch the step calibration runs: the run's per-device batch split over `processes` ranks,
    as DDP at 2 with the same global batch runs it (CPU time per image depends on the batch)."""
    return max(1, per_device_batch // processes)


def calibrate(width: float, batch: int, channels_last: bool = False, amp: bool = False, lr: float = 1e-3,
              should_stop: Callable[[], bool] | None = None, train_batch: int | None = None,
              threads: int | None = None, profiled: bool = True, workers: int = 0,
              steps: tuple[int, int] = (WARMUP, STEPS)) -> Calibration:
    """All three parts (`batch`: the curve's, `train_batch`: the steps', default `batch`; `threads`:
    the run's, default torch's; `profiled`: the steps under torch.profiler, as the run's are; `workers`:
    the run's DataLoader workers per process, forked beside each timed step; `steps`: (untimed, timed)
    training steps, timing.schedule_steps of the run's profiler schedule);
    whatever fails becomes a note, never an exception (but KeyboardInterrupt)."""
    cal = Calibration()
    train_batch = train_batch or batch
    threads = threads or torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        cal.thread_scaling = thread_scaling(width, batch, channels_last, amp, lr=lr, should_stop=should_stop)
    except Exception as exc:
        cal.notes.append(f"thread-scaling calibration failed: {type(exc).__name__}: {exc}")
    t1 = time.perf_counter()
    try:
        if should_stop is None or not should_stop():
            cal.alone_step = alone_step(width, train_batch, threads, channels_last, amp, lr, steps=steps[1],
                                        profiled=profiled, workers=workers, warmup=steps[0])
    except Exception as exc:
        cal.notes.append(f"step calibration failed: {type(exc).__name__}: {exc}")
    t2 = time.perf_counter()
    try:
        if should_stop is not None and should_stop():
            raise CalibrationError("two-process calibration skipped: the run was asked to stop")
        c = concurrent(width, train_batch, channels_last, amp, lr=lr, steps=steps[1], profiled=profiled,
                       workers=workers, warmup=steps[0], should_stop=should_stop)
        cal.allreduce, cal.ddp_step = c.allreduce, c.step
    except CalibrationError as exc:
        cal.notes.append(str(exc))
    except Exception as exc:
        cal.notes.append(f"two-process calibration failed: {type(exc).__name__}: {exc}")
    t3 = time.perf_counter()
    cal.notes.append(f"calibration took {t3 - t0:.1f} s before training (thread curve {t1 - t0:.1f} s, "
                     f"step alone {t2 - t1:.1f} s, {WORKERS} DDP processes {t3 - t2:.1f} s; steps timed "
                     f"{steps[0] + 1}-{steps[0] + steps[1]} after {steps[0]} untimed)")
    return cal


def calibration_for(device_type: str, width: float, per_device_batch: int, channels_last: bool = False,
                    amp: bool = False, lr: float = 1e-3, enabled: bool = True, processes: int = 1,
                    profiled: bool = True, workers: int = 0,
                    should_stop: Callable[[], bool] | None = None,
                    schedule: dict[str, Any] | None = None) -> Calibration | None:
    """run.json `calibration` for a run: None with --no-calibrate; CPU runs of one process only (a GPU
    run's compute does not scale with host threads and its links are in the trace; a DDP run's
    ranks already show their contention). `schedule`: the run's profiler schedule (config.profiler),
    whose skipped and recorded steps the step calibration follows."""
    if not enabled:
        return None
    if device_type != vocab.CPU:
        return Calibration(notes=[f"not calibrated: a {device_type} run (thread scaling and the gloo "
                                  "all-reduce rate are measured for CPU runs only)"])
    if processes > 1:
        return Calibration(notes=[f"not calibrated: a run of {processes} processes measures its ranks' contention "
                                  "itself (the what-if calibrates from a 1-process run)"])
    return calibrate(width, max(1, min(MAX_BATCH, per_device_batch)), channels_last, amp, lr, should_stop,
                     train_batch=step_batch(per_device_batch), profiled=profiled, workers=workers,
                     steps=schedule_steps(schedule if profiled else None))
