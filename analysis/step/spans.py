"""The breakdown as spans on a timeline: the exact pieces whose lengths the breakdown sums.

`breakdown_spans(ev)` reuses the breakdown's own step windows (breakdown._step_windows), its
category sets (breakdown.category_sets) and the one priority sweep (intervals.exclusive), so a
timeline drawn from these spans cannot disagree with the numbers: within each profiled step
window, the "step" track's pieces of category c sum to that step's `parts_us[c]` (idle is the
rest of the window). Per GPU, the same is done with the device's own sets (Events.device_sets),
as the per-device views and the report's timeline lanes do. The phase labels (`ss:*`) become
one track for the training step's phases and one for DataParallel's, each label merged over
the host threads that ran it (the whole trace, not only the profiled steps).

Pure numpy over a resolved trace; times are on the trace's own clock (µs relative to
`Trace.t0_us`, like `Trace.ts`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from analysis.step import intervals as iv
from analysis.step.breakdown import _step_windows, category_sets
from analysis.step.classify import Kind
from analysis.step.events import Events
from profiler.contract import vocab

__all__ = [
    "BREAKDOWN",
    "DP_PHASE_TRACK",
    "PHASE",
    "PHASE_TRACK",
    "STEP_TRACK",
    "SpanSet",
    "breakdown_spans",
    "gpu_track",
]

BREAKDOWN = "breakdown"      # SpanSet.kind: exclusive category pieces (one instant, one category)
PHASE = "phase"              # SpanSet.kind: a phase label's merged spans
STEP_TRACK = "step breakdown"
PHASE_TRACK = "step phases"
DP_PHASE_TRACK = "DataParallel phases"


def gpu_track(device: int) -> str:
    return f"gpu {device} breakdown"


@dataclass(frozen=True)
class SpanSet:
    """All spans of one label on one track: rows [start, end) on the trace's clock, sorted, disjoint.

    kind: BREAKDOWN (label is a vocab.CATEGORIES category) or PHASE (label is an ss:* phase label).
    step: per row, the ProfilerStep number of the window it lies in (-1 for a phase outside every window).
    """

    track: str
    kind: str
    label: str
    rows: iv.Intervals
    step: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.rows)


def _window_pieces(track: str, sets: list[tuple[str, iv.Intervals]], numbers: list[int],
                   windows: NDArray[np.float64]) -> list[SpanSet]:
    """The sweep's exclusive pieces of each category cut at the window bounds, plus idle: each
    window minus every category's pieces in it (windows never share an instant)."""
    W = iv.union(windows)
    mine = iv.exclusive(sets, W)
    per_label: dict[str, tuple[list[iv.Intervals], list[NDArray[np.int64]]]] = {}
    for (s, e), n in zip(windows.tolist(), numbers):
        covered = []
        for c, x in mine:
            rows = iv.clip(x, s, e)
            covered.append(rows)
            per_label.setdefault(c, ([], []))
            per_label[c][0].append(rows)
            per_label[c][1].append(np.full(len(rows), n, np.int64))
        idle = iv.subtract(np.array([[s, e]], np.float64), iv.union(*covered)) if e > s else iv.EMPTY
        per_label.setdefault(vocab.IDLE, ([], []))
        per_label[vocab.IDLE][0].append(idle)
        per_label[vocab.IDLE][1].append(np.full(len(idle), n, np.int64))
    return [SpanSet(track, BREAKDOWN, c, np.concatenate(rows).reshape(-1, 2), np.concatenate(steps))
            for c, (rows, steps) in per_label.items()]


def _phase_spans(ev: Events, numbers: list[int], windows: NDArray[np.float64]) -> list[SpanSet]:
    tr = ev.tr
    host = ev.kind != Kind.IGNORE
    out = []
    for i, name in enumerate(tr.names):
        if not vocab.is_phase_label(name):
            continue
        rows = ev.spans(host & (tr.name == i))
        if not len(rows):
            continue
        w = np.searchsorted(windows[:, 0], rows[:, 0], side="right") - 1     # the window a span starts in
        inside = (w >= 0) & (rows[:, 0] < windows[np.maximum(w, 0), 1])
        step = np.where(inside, np.asarray(numbers, np.int64)[np.maximum(w, 0)], -1)
        track = DP_PHASE_TRACK if name in vocab.DP_PHASES else PHASE_TRACK
        out.append(SpanSet(track, PHASE, name, rows, step))
    return out


def breakdown_spans(ev: Events) -> list[SpanSet]:
    """Every breakdown piece and phase span of one trace (see the module docstring).

    Tracks: STEP_TRACK (the breakdown's categories, in priority order, then idle), one
    gpu_track(d) per GPU of a GPU trace (compute / communication / host_to_device / idle on that
    device), PHASE_TRACK and DP_PHASE_TRACK (ss:* labels). Empty sets are left out."""
    has_gpu = bool(ev.gpu.any())
    numbers, windows, notes = _step_windows(ev)
    out = _window_pieces(STEP_TRACK, category_sets(ev, has_gpu, notes), numbers, windows)
    if has_gpu:
        for d in np.unique(ev.gpu_index[ev.gpu]).tolist():
            on = ev.gpu & (ev.gpu_index == d)
            out += _window_pieces(gpu_track(int(d)), ev.device_sets(on), numbers, windows)
    out += _phase_spans(ev, numbers, windows)
    return [s for s in out if len(s)]
