"""A drift-free periodic ticker for the sampler.

Deadlines are ``t0 + k * period`` on ``time.monotonic_ns()``: a slow tick delays
only itself, never every tick after it (which ``sleep(period)`` in a loop would).
A tick that overran past later deadlines skips them instead of firing them
back-to-back, so a stalled sampler never emits a burst of near-identical rows.
Sleeping is ``Event.wait(remaining)``, so ``stop()`` wakes the loop at once.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["Ticker", "deadline_ns", "next_tick_index"]


def deadline_ns(t0_ns: int, period_ns: int, k: int) -> int:
    """The k-th deadline: exact integer arithmetic, so no drift accumulates."""
    return t0_ns + k * period_ns


def next_tick_index(t0_ns: int, period_ns: int, last_k: int, now_ns: int) -> int:
    """Index of the next tick to fire after tick ``last_k`` finished at ``now_ns``.

    ``last_k + 1`` if its deadline is still ahead (or exactly now); otherwise the
    first deadline strictly after ``now_ns`` -- the ticks in between are skipped.
    """
    if period_ns <= 0:
        raise ValueError(f"period must be positive, got {period_ns} ns")
    k = last_k + 1
    if deadline_ns(t0_ns, period_ns, k) >= now_ns:
        return k
    return (now_ns - t0_ns) // period_ns + 1


class Ticker:
    """Yields tick indices at ``t0 + k * period`` until :meth:`stop` is called.

    ``clock`` (ns) and ``sleep`` (seconds -> True when stopped) are injectable so
    the deadline logic can be tested without real time; by default they are
    ``time.monotonic_ns`` and the stop event's ``wait``.
    """

    def __init__(
        self,
        period_s: float,
        *,
        first_tick: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"period must be positive, got {period_s!r} s")
        self.period_ns = max(1, round(period_s * 1e9))
        self.first_tick = first_tick
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self.t0_ns: int | None = None
        self.skipped = 0     # deadlines passed over because a tick overran
        self.fired = 0

    def stop(self) -> None:
        """Ask the loop to end; an ongoing sleep returns immediately."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def deadline(self, k: int) -> int:
        if self.t0_ns is None:
            raise RuntimeError("ticker not started")
        return deadline_ns(self.t0_ns, self.period_ns, k)

    def __iter__(self) -> Iterator[int]:
        self.t0_ns = self._clock()
        k = self.first_tick
        while not self._stop.is_set():
            while (remaining := self.deadline(k) - self._clock()) > 0:
                if self._sleep(remaining / 1e9):
                    return                  # stop() during the wait
            if self._stop.is_set():
                return
            self.fired += 1
            yield k
            nxt = next_tick_index(self.t0_ns, self.period_ns, k, self._clock())
            self.skipped += nxt - k - 1
            k = nxt
