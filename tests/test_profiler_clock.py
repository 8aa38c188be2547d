"""The sampler's clock: deadlines never drift, overruns skip ticks, stop() is immediate."""
from __future__ import annotations

import threading
import time

import pytest

from profiler.clock import Ticker, deadline_ns, next_tick_index


class FakeTime:
    """A clock that moves only when the ticker sleeps or a tick 'works'."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now = start_ns
        self.sleeps: list[float] = []

    def clock(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        # oversleep a little, like a real OS does
        self.now += round(seconds * 1e9) + 1_234
        return False


def test_deadlines_are_exact_multiples_of_the_period() -> None:
    assert [deadline_ns(100, 7, k) for k in range(4)] == [100, 107, 114, 121]


@pytest.mark.parametrize(("last_k", "now", "expected"), [
    (0, 5, 1),      # on time -> next
    (0, 10, 1),     # exactly at the deadline -> still next
    (0, 11, 2),     # missed deadline 1 -> skip to 2
    (3, 57, 6),     # ticks 4 and 5 (40, 50) passed -> 6 (60)
])
def test_next_tick_index_skips_passed_deadlines(last_k: int, now: int, expected: int) -> None:
    assert next_tick_index(0, 10, last_k, now) == expected


def test_no_drift_over_many_ticks_even_when_each_tick_works_and_oversleeps() -> None:
    ft = FakeTime()
    period_s = 0.01
    ticker = Ticker(period_s, clock=ft.clock, sleep=ft.sleep)
    fired_at: list[tuple[int, int]] = []
    for k in ticker:
        fired_at.append((k, ft.now))
        ft.now += 3_000_000          # each tick works 3 ms of the 10 ms period
        if k == 999:
            ticker.stop()
    assert ticker.t0_ns is not None
    assert [k for k, _ in fired_at] == list(range(1000))
    # tick k fires at its own deadline plus only that sleep's oversleep: nothing accumulates
    for k, at in fired_at[1:]:
        assert 0 <= at - (ticker.t0_ns + k * ticker.period_ns) <= 1_234
    assert ticker.skipped == 0
    # every sleep asked only for what was left of the period (10 ms - 3 ms - the previous oversleep)
    assert all(s < 0.0071 for s in ft.sleeps)


def test_an_overrunning_tick_skips_missed_deadlines_instead_of_bunching() -> None:
    ft = FakeTime()
    ticker = Ticker(0.01, clock=ft.clock, sleep=ft.sleep)
    fired: list[int] = []
    for k in ticker:
        fired.append(k)
        ft.now += 35_000_000 if k == 3 else 1_000_000   # tick 3 takes 3.5 periods
        if len(fired) == 8:
            ticker.stop()
    # deadlines 4, 5, 6 passed while tick 3 ran: the next tick is 7, at its deadline
    assert fired == [0, 1, 2, 3, 7, 8, 9, 10]
    assert ticker.skipped == 3


def test_first_tick_offsets_the_start() -> None:
    ft = FakeTime()
    ticker = Ticker(0.5, first_tick=1, clock=ft.clock, sleep=ft.sleep)
    it = iter(ticker)
    assert next(it) == 1
    assert ft.sleeps == [0.5]


def test_real_clock_ticks_in_order_and_stop_interrupts_a_long_wait() -> None:
    ticker = Ticker(0.002)
    seen: list[int] = []
    for k in ticker:
        seen.append(k)
        if len(seen) == 20:
            break
    # every index appears once, in order; any gap is accounted as skipped
    assert seen == sorted(set(seen)) and seen[0] == 0
    assert seen[-1] == 19 + ticker.skipped

    slow = Ticker(3600.0, first_tick=1)     # would sleep an hour
    out: list[int] = []
    t = threading.Thread(target=lambda: out.extend(slow))
    t.start()
    time.sleep(0.05)
    slow.stop()
    t.join(timeout=5)
    assert not t.is_alive() and out == []


def test_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ticker(0)
