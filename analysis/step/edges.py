"""Time at a trace's two edges that belongs to no recorded step's training.

A profiler schedule records steps N..M of a loop that was already running, so its first and last
recorded steps each hold time that is not theirs:

- head: the loop ran unrecorded steps before the trace began; their GPU work, launched before the
  trace, is still running when the first recorded step starts, and the first call that needs the
  GPU waits behind it. The trace shows it as the gap between the launch of its first GPU event and
  that event's start (the plugin's 4-worker ResNet-50: 36.4 and 42.9 ms inside a 40 ms
  cudaMemcpyAsync). In the steady state the same work is inside the previous step's window.
- tail: the last recorded step ends when the profiler is stopped, and its last stretch holds no
  recorded event at all (the same trace: 80.4 ms after the optimizer's last kernel). Only the tail
  beyond the median tail of the other steps counts: a loop's own untraced Python between steps is
  in every step.

Both are returned as intervals on the trace's relative clock; the breakdown splits them by the
same priority sweep as the steps and the run's step time leaves them out (docs/design.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from analysis.step.classify import Kind
from analysis.step.events import Events

__all__ = ["EDGE_MIN_US", "Edge", "edges"]

# A pageable host->device copy of a CIFAR/ImageNet batch starts its DMA ~0.1-0.2 ms after its call
# (staging); a wait past 1 ms is the stream being busy, and a tail under 1 ms is noise.
EDGE_MIN_US = 1000.0

EdgeKind = Literal["head", "tail"]


@dataclass(frozen=True)
class Edge:
    """[start, end) of step `index` (relative µs) that is not that step's training, and why."""

    index: int
    start: float
    end: float
    kind: EdgeKind

    @property
    def us(self) -> float:
        return self.end - self.start


def _head(ev: Events, windows: NDArray[np.float64]) -> Edge | None:
    gpu = np.flatnonzero(ev.gpu)
    if not len(gpu):
        return None
    first = gpu[np.argmin(ev.tr.ts[gpu])]
    start, launch = float(ev.tr.ts[first]), float(ev.launch_ts[first])
    s0, e0 = windows[0]
    if np.isnan(launch) or not (s0 <= launch < start < e0) or start - launch <= EDGE_MIN_US:
        return None
    return Edge(0, launch, start, "head")


def _tail(ev: Events, windows: NDArray[np.float64]) -> Edge | None:
    tr = ev.tr
    recorded = np.flatnonzero((ev.kind != Kind.IGNORE) & (ev.kind != Kind.STEP))
    if not len(recorded):
        return None
    ts, end = tr.ts[recorded], tr.end[recorded]
    lo = np.searchsorted(ts, windows[:, 0], side="left")
    hi = np.searchsorted(ts, windows[:, 1], side="left")
    tails = np.array([w_end - (end[a:b].max() if b > a else w_start)
                      for (w_start, w_end), a, b in zip(windows, lo, hi)])
    tails = np.maximum(tails, 0.0)
    usual = float(np.median(tails[:-1])) if len(tails) > 1 else 0.0
    excess = float(tails[-1]) - usual
    if excess <= EDGE_MIN_US:
        return None
    w_end = float(windows[-1, 1])
    return Edge(len(windows) - 1, w_end - excess, w_end, "tail")


def edges(ev: Events, windows: NDArray[np.float64]) -> list[Edge]:
    """The head and tail time of a trace's steps (windows: the steps' [start, end), in order)."""
    if not len(windows):
        return []
    return [e for e in (_head(ev, windows), _tail(ev, windows)) if e is not None]
