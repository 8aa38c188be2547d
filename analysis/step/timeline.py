"""The one-step phase timeline the report plots: lanes per GPU, the exclusive breakdown, host phases.

Built from the breakdown's own classification, category table and priority sweep
(Events.device_sets from classify.DEVICE_CATEGORY_OF_KIND, intervals.exclusive), so the picture matches the numbers.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.step import intervals as iv
from analysis.step.classify import Kind
from analysis.records import TimelineSpan, TraceAnalysis
from profiler.contract import vocab

if TYPE_CHECKING:
    from analysis.step.events import Events


TIMELINE_BINS = 800       # columns a lane is resampled to for drawing (dominant_runs)
TIMELINE_MAX_SPANS = 4000   # per lane; beyond it spans shorter than the step / 2000 are dropped from the plot


def median_step(ta: TraceAnalysis) -> int:
    """Index of the step with the median wall time (the one the report draws)."""
    order = sorted(range(len(ta.steps)), key=lambda i: ta.steps[i].wall_us)
    return order[len(order) // 2]


def step_timeline(ev: Events, sets: list[tuple[str, iv.Intervals]], ta: TraceAnalysis
                  ) -> tuple[list[TimelineSpan], int]:
    """Lanes of the median step: each GPU's compute/communication/host→device, the exclusive
    breakdown, and the host's phase labels (train-step phases and DataParallel phases apart).

    Takes the breakdown's own resolved events and category sets (analyse(timeline=True)),
    so the picture matches the numbers and nothing is classified twice.
    """
    step = ta.steps[median_step(ta)]
    tr = ev.tr
    s, e = step.start_us - tr.t0_us, step.end_us - tr.t0_us
    spans: list[TimelineSpan] = []
    min_len = (e - s) / 2000

    def add(lane: str, label: str, ivs: Any) -> None:
        rows = iv.clip(ivs, s, e)
        if len(rows) > TIMELINE_MAX_SPANS:
            rows = rows[(rows[:, 1] - rows[:, 0]) >= min_len]
        spans.extend(TimelineSpan(lane, float(a - s), float(b - s), label) for a, b in rows.tolist())

    window = np.array([[s, e]], np.float64)
    if ta.has_gpu:
        for d in np.unique(ev.gpu_index[ev.gpu]).tolist():
            on = ev.gpu & (ev.gpu_index == d)
            for label, mine in iv.exclusive(ev.device_sets(on), window):
                add(f"gpu {d}", label, mine)
    for cat, mine in iv.exclusive(sets, window):
        add("step (exclusive)", cat, mine)
    names = tr.names
    for lane, labels in (("host: step phases", vocab.TRAIN_STEP_PHASES), ("host: DataParallel", vocab.DP_PHASES)):
        for label in labels:
            if label in names:
                idx = names.index(label)
                add(lane, label, ev.spans((tr.name == idx) & (ev.kind != Kind.IGNORE)))
    return spans, step.step


def dominant_runs(spans: Sequence[tuple[float, float, str]], width: float, bins: int = TIMELINE_BINS
                  ) -> list[tuple[float, float, str]]:
    """Resample one lane to `bins` columns, each showing the label that covers most of it (or nothing,
    when the lane is idle most of it), merged into runs: thousands of µs-long kernels would otherwise
    draw as overlapping slivers whose colours misstate the shares."""
    if width <= 0 or not spans:
        return []
    edges = np.linspace(0.0, width, bins + 1)
    labels = sorted({lab for _, _, lab in spans})
    occ = np.zeros((len(labels) + 1, bins))
    for i, lab in enumerate(labels):
        a = np.array([x for x, _, l2 in spans if l2 == lab])
        b = np.array([y for _, y, l2 in spans if l2 == lab])
        cov = np.clip(edges[:, None] - a[None, :], 0.0, (b - a)[None, :]).sum(axis=1)
        occ[i + 1] = np.diff(cov)
    occ[0] = np.maximum(0.0, np.diff(edges) - occ[1:].sum(axis=0))
    best = occ.argmax(axis=0)
    runs: list[tuple[float, float, str]] = []
    start = 0
    for j in range(1, bins + 1):
        if j == bins or best[j] != best[start]:
            if best[start] > 0:
                runs.append((float(edges[start]), float(edges[j]), labels[best[start] - 1]))
            start = j
    return runs
