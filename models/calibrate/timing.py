"""How the calibration times what it runs: thread counts, the fastest of a few calls, the mean of
a few profiled training steps, and torch's thread count set for a block."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

from .settings import MAX_COUNTS, MAX_REPEATS, MIN_REPEATS, POINT_BUDGET_S, STEPS

__all__ = ["thread_counts", "threads", "as_profiled", "mean_phases", "best_ms"]


def thread_counts(cpus: int, cap: int = MAX_COUNTS) -> list[int]:
    """1, 2, 4, ... below `cpus`, then `cpus` itself; at most `cap` counts (the largest always kept)."""
    cpus = max(1, int(cpus))
    return [*[1 << i for i in range(cpus.bit_length()) if 1 << i < cpus][: max(1, cap) - 1], cpus]


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
                agree: Callable[[bool], bool] | None = None, profiled: bool = True) -> tuple[float, float, float]:
    """Mean ms of each phase over `steps` calls after one warm-up, as a run's profiled steps 1..steps
    are (the report means them too); `agree` (workers) starts every call on every rank together."""
    sums = [0.0, 0.0, 0.0]
    with as_profiled(profiled):
        for i in range(steps + 1):
            if agree is not None:
                agree(True)
            times = step()
            if i:
                sums = [a + b for a, b in zip(sums, times)]
    return sums[0] / steps * 1e3, sums[1] / steps * 1e3, sums[2] / steps * 1e3


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
