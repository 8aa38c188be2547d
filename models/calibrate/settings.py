"""The calibration's fixed sizes, counts and limits (each one's cost noted beside it)."""
from __future__ import annotations

ALLREDUCE_BYTES = 64 * 2**20    # one all-reduce of this many float32 bytes: the loopback rate
MAX_ELEMENTS = 16 * 2**20       # the memory-bound pass: min(parameters, this) float32 values (64 M cost ~25 s more per run)
MAX_BATCH = 8                   # forward + backward on min(this, per-device batch) images
MAX_COUNTS = 8                  # thread counts measured at most
MIN_REPEATS, MAX_REPEATS = 2, 5  # timed calls per point (~1 s each at width 1); the fastest is kept
MEMORY_REPEATS = 3              # the memory pass is steady: at most this many timed calls
POINT_BUDGET_S = 0.75           # more timed calls per point while they took less than this: a 1-s pass is timed once
STEPS = 2                       # timed training steps, alone and as DDP ranks (the mean is kept), when the run
WARMUP = 1                      # ... gives no schedule (--no-profile): after this many untimed steps
MAX_WARMUP = 3                  # the run's schedule followed (its wait + warmup untimed, its active timed) up to
MAX_STEPS = 4                   # ... these; a full-size DDP step is ~15 s on 2 cores, so each one more costs that
WORKERS = 2
WORKER_TIMEOUT_S = 300.0        # the full-size model's first DDP steps take ~15 s each on 2 cores
