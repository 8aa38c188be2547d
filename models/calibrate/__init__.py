"""A short calibration every 1-process CPU run records, so the what-if can predict other CPU configurations.

One profiled run measures one point: its step time at the threads it had. Predicting 2 processes
on the same cores needs what the trace cannot give -- how this model's compute and its optimizer's
memory-bound update speed up with threads here (never assumed linear), how much slower each gets
when two processes share the machine, and what a gloo all-reduce costs on loopback. So before
training the runner measures (about a minute for the full-size model on 2 cores, seconds at the
tests' widths):

1. in-process: forward + backward of the run's own model on a small batch, and an Adam step over
   `elements` float32 values, at 1, 2, 4, ... threads up to the allocation (fastest of a few after
   a warm-up): the thread-scaling curve;
2. in-process, at the run's threads: its own training step (forward + loss, backward, Adam) on
   half its per-device batch, with the run's DataLoader workers forked beside it, under
   torch.profiler as the run's profiled steps are: the mean of the steps its profiler records, after
   the steps it skips (wait + warmup; at most 3 untimed + 4 timed, 1 + 2 without a profiler);
3. two worker processes (`python -m models.calibrate.worker`, gloo on 127.0.0.1, cores // 2
   threads each, what a 2-rank CPU DDP run gives its ranks) run that step as DDP ranks at the
   same time, then all-reduce 64 MiB. Step 2 against step 3 is what two ranks on these cores
   cost. Each part of that is needed (measured on a 2-core VM, full-size model): timed as
   separate passes the ranks looked 1.6x slower, as a DDP step their Adam was 3.5x; a forked
   DataLoader worker beside each rank took their Adam from 2.4 s to 4.2 s.

Nothing here fails a run: what could not be measured becomes a note in run.json `calibration`.
`python -m models.calibrate` prints this machine's calibration as JSON.

Modules: `settings` (sizes and limits), `timing` (how things are timed), `workloads` (what is
timed), `alone` (parts 1 and 2), `ranks` (part 3's launcher) and `worker` (its entry point),
`record` (the run.json `calibration`), `cli` (`python -m models.calibrate`).
"""
from __future__ import annotations

from models.convnet import ConvNet
from profiler.cpualloc import usable_cpus as allocation_cpus

from .alone import alone_step, thread_scaling
from .cli import main
from .ranks import CalibrationError, Concurrent, concurrent, over_ranks
from .record import calibrate, calibration_for, step_batch
from .settings import (ALLREDUCE_BYTES, MAX_BATCH, MAX_COUNTS, MAX_ELEMENTS, MAX_REPEATS, MEMORY_REPEATS,
                       MIN_REPEATS, POINT_BUDGET_S, STEPS, WARMUP, WORKER_TIMEOUT_S, WORKERS)
from .timing import best_ms, mean_phases, schedule_steps, thread_counts

__all__ = ["ALLREDUCE_BYTES", "Concurrent", "CalibrationError", "thread_counts", "allocation_cpus",
           "thread_scaling", "alone_step", "concurrent", "over_ranks", "calibrate", "calibration_for", "main",
           "step_batch", "mean_phases", "schedule_steps", "best_ms", "ConvNet", "MAX_BATCH", "MAX_COUNTS",
           "MAX_ELEMENTS",
           "MAX_REPEATS", "MEMORY_REPEATS", "MIN_REPEATS", "POINT_BUDGET_S", "STEPS", "WARMUP", "WORKER_TIMEOUT_S",
           "WORKERS"]
