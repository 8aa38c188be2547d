"""The in-process parts: the thread-scaling curve (compute and memory-bound ms at 1, 2, 4, ...
threads up to the allocation) and the run's training step alone at its threads. Both leave the
global RNG and torch's thread count as they found them (the run seeds and threads itself after)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from profiler.contract.runjson import StepTimes, ThreadScaling
from profiler.cpualloc import usable_cpus

from .settings import MAX_BATCH, MAX_ELEMENTS, MEMORY_REPEATS, STEPS, WARMUP
from .timing import best_ms, mean_phases, thread_counts, threads as _threads
from .workloads import compute_pass, memory_pass, train_step

__all__ = ["thread_scaling", "alone_step"]


def alone_step(width: float, batch: int, threads: int, channels_last: bool = False, amp: bool = False,
               lr: float = 1e-3, steps: int = STEPS, profiled: bool = True, workers: int = 0,
               warmup: int = WARMUP) -> StepTimes:
    """The training step in this process at `threads`; the RNG and thread count are left as they were."""
    with torch.random.fork_rng(devices=[]), _threads(threads):
        step = train_step(width, batch, channels_last, amp, lr, torch.Generator().manual_seed(0), workers=workers,
                          calls=warmup + steps)
        fwd, bwd, opt, _ = mean_phases(step, steps, profiled=profiled, warmup=warmup)
        del step
    return StepTimes(processes=1, threads=threads, batch=batch, steps=steps, workers=workers, warmup=warmup,
                     forward_ms=round(fwd, 3), backward_ms=round(bwd, 3), optimizer_ms=round(opt, 3))


def thread_scaling(width: float, batch: int = MAX_BATCH, channels_last: bool = False, amp: bool = False,
                   cpus: int | None = None, elements: int | None = None, lr: float = 1e-3,
                   should_stop: Callable[[], bool] | None = None) -> ThreadScaling:
    """Compute and memory-bound ms at each of `thread_counts(cpus)` in this process; the global RNG
    and the thread count are left as they were (the run seeds and threads itself afterwards)."""
    counts = thread_counts(usable_cpus() if cpus is None else cpus)
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator().manual_seed(0)
        compute, params = compute_pass(width, batch, channels_last, amp, gen)
        n = elements if elements is not None else min(params, MAX_ELEMENTS)
        compute_ms: list[float] = []
        with _threads(counts[-1]):    # one warm-up, at the cheapest count: a new thread count needs none
            compute()
        for t in counts:
            if should_stop is not None and should_stop() and compute_ms:
                break
            with _threads(t):
                compute_ms.append(best_ms(compute, warmup=False))
        del compute
        memory = memory_pass(n, gen, lr)
        memory_ms: list[float] = []
        with _threads(counts[-1]):
            memory()
        for t in counts[:len(compute_ms)]:
            with _threads(t):
                memory_ms.append(best_ms(memory, max_repeats=MEMORY_REPEATS, warmup=False))
    return ThreadScaling(threads=counts[:len(compute_ms)], compute_ms=_r(compute_ms), memory_ms=_r(memory_ms),
                         batch=batch, elements=n)


def _r(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]
