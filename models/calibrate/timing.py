"""How the calibration times what it runs: thread counts, the fastest of a few calls, the mean of
a few profiled training steps, and torch's thread count set for a block."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

from .settings import MAX_COUNTS, MAX_REPEATS, MAX_STEPS, MAX_WARMUP, MIN_REPEATS, POINT_BUDGET_S, STEPS, WARMUP

__all__ = ["thread_counts", "schedule_steps", "threads", "as_profiled", "mean_phases", "best_ms"]


def thread_counts(cpus: int, cap: int = MAX_COUNTS) -> list[int]:
    """1, 2, 4, ... below `cpus`, then `cpus` itself; at most `cap` counts (the largest always kept)."""
    cpus = max(1, int(cpus))
    return [*[1 << i for i in range(cpus.bit_length()) if 1 << i < cpus][: max(1, cap) - 1], cpus]


def schedule_steps(profiler: dict[str, Any] | None) -> tuple[int, int]:
    """(untimed, timed) steps for the step calibration: the steps the run's profiler skips and records
    (wait + warmup, active), so the calibration times the same mix of first-step transients and
    steady steps the run's report averages (on 2 cores a rank's 2nd step took 5-10x the steady
    optimizer time); capped at (MAX_WARMUP, MAX_STEPS). No profiler: (WARMUP, STEPS)."""
    if not profiler or not profiler.get("enabled", True):
        return WARMUP, STEPS
    untimed = int(profiler.get("skip_first", 0)) + int(profiler.get("wait", 0)) + int(profiler.get("warmup", 0))
    return min(MAX_WARMUP, max(1, untimed)), min(MAX_STEPS, max(1, int(profiler.get("active", STEPS))))


@contextlib.contextmanager
def threads(n: int) -> Any:
    """torch's intra-op threads at `n` inside the block, as they were after it."""
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@contextlib.contextmanager
def as_profiled(enabled: bool) -> Any:
    """Steps timed as a run's profiled steps are: under torch.profiler (CPU, every thread), the trace
    thrown away -- what the what-if predicts is a profiled step, so both carry the profiler's cost."""
    if not enabled:
        yield
        return
    from profiler.session import all_threads_config
    experimental, _ = all_threads_config()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=False,
                                with_stack=False, experimental_config=experimental):
        yield


def mean_phases(step: Callable[[], tuple[float, float, float]], steps: int = STEPS,
                agree: Callable[[bool], bool] | None = None, profiled: bool = True,
                warmup: int = WARMUP) -> tuple[float, float, float, float]:
    """Mean ms of forward, backward, optimizer and the wait after the step over `steps` calls after
    `warmup` untimed ones, as a run's profiled steps are (the report means them too). `agree`
    (workers) starts every call on every rank together; the wait is how long this rank then sits in
    it for the slowest one, as the loop's loss all-reduce at each step's end does (0 alone)."""
    sums = [0.0, 0.0, 0.0, 0.0]
    with as_profiled(profiled):
        for i in range(warmup + steps + (agree is not None)):
            if agree is not None:
                t0 = time.perf_counter()
                agree(True)
                if i > warmup:                   # the wait that ends timed step i - 1
                    sums[3] += time.perf_counter() - t0
            if i == warmup + steps:              # the last wait is in: no more steps
                break
            times = step()
            if i >= warmup:
                sums[:3] = [a + b for a, b in zip(sums[:3], times)]
    return tuple(x / steps * 1e3 for x in sums)  # type: ignore[return-value]


def best_ms(fn: Callable[[], Any], agree: Callable[[bool], bool] | None = None,
            min_repeats: int = MIN_REPEATS, max_repeats: int = MAX_REPEATS,
            budget_s: float = POINT_BUDGET_S, warmup: bool = True) -> float:
    """Fastest wall ms of `fn` after one warm-up call (the least disturbed by whatever else shares the
    machine): at least `min_repeats` timed calls, more up to `max_repeats` while they took under
    `budget_s`. `agree` (workers) makes every process take the same decision before each call, which
    also starts the calls together."""
    if warmup:
        fn()
    times: list[float] = []
    while True:
        go = len(times) < min_repeats or (len(times) < max_repeats and sum(times) < budget_s)
        if agree is not None:
            go = agree(go)
        if not go:
            return min(times) * 1e3
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
