"""Set operations on time intervals held as numpy arrays.

An interval set is a float64 array of shape (n, 2): [start, end) rows. The functions
accept any rows (unsorted, overlapping, empty) and return *merged* sets: sorted,
disjoint, non-touching, non-empty rows. The priority sweep (`exclusive`) is
union-then-subtract on these, so every instant lands in exactly one category; the
breakdown's totals, the per-device views and the timeline's lanes all come from it.
Pure numpy, O(n log n), no Python loop over intervals.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

Intervals = NDArray[np.float64]
L = TypeVar("L")

EMPTY: Intervals = np.empty((0, 2), dtype=np.float64)


def make(starts: NDArray, ends: NDArray) -> Intervals:
    """Stack start and end arrays into an (n, 2) interval array (not merged)."""
    return np.column_stack((np.asarray(starts, np.float64), np.asarray(ends, np.float64))).reshape(-1, 2)


def union(*sets: Intervals) -> Intervals:
    """Merge any number of interval sets into one merged set (an already merged single set is
    returned as it is: interval arrays are never changed in place)."""
    parts = [np.asarray(s, np.float64).reshape(-1, 2) for s in sets]
    a = (parts[0] if len(parts) == 1 else np.concatenate(parts)) if parts else EMPTY
    nonempty = a[:, 1] > a[:, 0]
    if not nonempty.all():
        a = a[nonempty]
    if len(a) == 0:
        return EMPTY.copy()
    if np.any(a[1:, 0] < a[:-1, 0]):      # rows of one trace's events come in start order already
        a = a[np.argsort(a[:, 0], kind="stable")]
    ends = np.maximum.accumulate(a[:, 1])
    gaps = np.flatnonzero(a[1:, 0] > ends[:-1])        # a new group starts after each gap
    if len(gaps) == len(a) - 1:
        return a                                         # already merged
    out = np.empty((len(gaps) + 1, 2))
    out[0, 0], out[1:, 0] = a[0, 0], a[gaps + 1, 0]
    out[:-1, 1], out[-1, 1] = ends[gaps], ends[-1]
    return out


def _overlaps(a: Intervals, b: Intervals) -> Intervals:
    """The intersection of two merged sets: every (row of a, row of b) pair that overlaps, found by
    binary search, cut to their common part. Both inputs being non-touching, so are the pieces."""
    lo = np.searchsorted(b[:, 1], a[:, 0], side="right")     # first row of b ending after a row's start
    hi = np.searchsorted(b[:, 0], a[:, 1], side="left")      # rows of b starting before its end
    counts = np.maximum(hi - lo, 0)
    n = int(counts.sum())
    if n == 0:
        return EMPTY.copy()
    ai = np.repeat(np.arange(len(a)), counts)
    bi = np.arange(n) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
    start = np.maximum(a[ai, 0], b[bi, 0])
    end = np.minimum(a[ai, 1], b[bi, 1])
    keep = end > start
    return np.column_stack((start[keep], end[keep]))


def _gaps(b: Intervals) -> Intervals:
    """What a merged set leaves out, from -inf to +inf (non-empty rows: the set is non-touching)."""
    g = np.empty((len(b) + 1, 2))
    g[0, 0], g[-1, 1] = -np.inf, np.inf
    g[1:, 0], g[:-1, 1] = b[:, 1], b[:, 0]
    return g


def intersect(a: Intervals, b: Intervals) -> Intervals:
    """Instants in both a and b."""
    a, b = union(a), union(b)
    return _overlaps(a, b) if len(a) and len(b) else EMPTY.copy()


def subtract(a: Intervals, b: Intervals) -> Intervals:
    """Instants in a but not in b."""
    a, b = union(a), union(b)
    if len(a) == 0 or len(b) == 0:
        return a if len(a) else EMPTY.copy()
    return _overlaps(a, _gaps(b))


def clip(a: Intervals, start: float, end: float) -> Intervals:
    """The part of a merged set inside [start, end); cheap (binary search, no re-sort)."""
    a = np.asarray(a, np.float64).reshape(-1, 2)
    if end <= start or len(a) == 0:
        return EMPTY.copy()
    lo = int(np.searchsorted(a[:, 1], start, side="right"))
    hi = int(np.searchsorted(a[:, 0], end, side="left"))
    out = a[lo:hi].copy()
    if len(out):
        out[0, 0] = max(out[0, 0], start)
        out[-1, 1] = min(out[-1, 1], end)
        out = out[out[:, 1] > out[:, 0]]
    return out


def total(a: Intervals) -> float:
    """Summed length of a merged set (merge first if rows may overlap)."""
    a = np.asarray(a, np.float64).reshape(-1, 2)
    return float(np.sum(a[:, 1] - a[:, 0])) if len(a) else 0.0


def lengths_in(a: Intervals, starts: NDArray, ends: NDArray) -> NDArray[np.float64]:
    """Length of a merged set inside each [starts[i], ends[i]) at once: F(end) - F(start), where
    F(t) is the set's length before t (one cumulative sum and two binary searches, no loop)."""
    a = np.asarray(a, np.float64).reshape(-1, 2)
    s, e = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    if len(a) == 0:
        return np.zeros(s.shape)
    before = np.concatenate(([0.0], np.cumsum(a[:, 1] - a[:, 0])))

    def covered_before(t: NDArray[np.float64]) -> NDArray[np.float64]:
        i = np.searchsorted(a[:, 0], t, side="right")       # rows starting at or before t
        j = np.maximum(i - 1, 0)                            # the last of them
        part = np.clip(t - a[j, 0], 0.0, a[j, 1] - a[j, 0])
        return np.where(i > 0, before[j] + part, 0.0)

    return np.maximum(covered_before(np.maximum(e, s)) - covered_before(s), 0.0)


def contains(a: Intervals, points: NDArray) -> NDArray[np.bool_]:
    """For each point, whether a merged set covers it (start inclusive, end exclusive)."""
    a = np.asarray(a, np.float64).reshape(-1, 2)
    p = np.asarray(points, np.float64)
    if len(a) == 0:
        return np.zeros(p.shape, dtype=bool)
    i = np.searchsorted(a[:, 0], p, side="right") - 1
    ok = i >= 0
    out = np.zeros(p.shape, dtype=bool)
    out[ok] = p[ok] < a[i[ok], 1]
    return out


def exclusive(sets: Sequence[tuple[L, Intervals]], window: Intervals) -> list[tuple[L, Intervals]]:
    """The priority sweep, written once: each labelled *merged* set inside `window`, minus every
    set before it, so no instant belongs to two labels. What no set covers (idle) is the rest of
    the window. `window` is any interval set; one row (a step) is clipped without a re-sort."""
    w = union(window)
    out: list[tuple[L, Intervals]] = []
    covered = EMPTY
    for label, s in sets:
        here = clip(s, w[0, 0], w[0, 1]) if len(w) == 1 else intersect(s, w)
        out.append((label, subtract(here, covered)))
        covered = union(covered, here)
    return out
