"""Interval set algebra, checked against a brute-force integer grid."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.step import intervals as iv

spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)).map(lambda t: (t[0], t[0] + t[1])), max_size=12)


def grid(a) -> set[int]:
    return {x for s, e in np.asarray(a, float).reshape(-1, 2) for x in range(int(s), int(e))}


def test_union_merges_overlapping_and_touching() -> None:
    got = iv.union(np.array([[5, 8], [0, 2], [1, 3], [3, 4], [9, 9]], float))
    assert got.tolist() == [[0, 4], [5, 8]]
    assert iv.union().shape == (0, 2) and iv.total(iv.EMPTY) == 0


def test_intersect_subtract_clip_contains() -> None:
    a = np.array([[0, 10], [20, 30]], float)
    b = np.array([[5, 25]], float)
    assert iv.intersect(a, b).tolist() == [[5, 10], [20, 25]]
    assert iv.subtract(a, b).tolist() == [[0, 5], [25, 30]]
    assert iv.subtract(a, iv.EMPTY).tolist() == a.tolist()
    assert iv.clip(a, 8, 22).tolist() == [[8, 10], [20, 22]]
    assert iv.total(iv.clip(a, 8, 22)) == 4
    assert iv.contains(a, np.array([0, 10, 15, 29.5])).tolist() == [True, False, False, True]


@settings(max_examples=150, deadline=None)
@given(spans, spans, st.integers(0, 80), st.integers(0, 80))
def test_against_brute_force(a: list, b: list, s: int, e: int) -> None:
    A, B = np.array(a, float).reshape(-1, 2), np.array(b, float).reshape(-1, 2)
    ga, gb = grid(A), grid(B)
    assert grid(iv.union(A, B)) == ga | gb
    assert grid(iv.intersect(A, B)) == ga & gb
    assert grid(iv.subtract(A, B)) == ga - gb
    assert grid(iv.clip(iv.union(A), s, e)) == {x for x in ga if s <= x < e}
    u = iv.union(A)
    assert iv.total(u) == len(ga)
    windows = [(s, e), (e, s), (0, 80), (s, s), (min(s, e), max(s, e))]
    got = iv.lengths_in(u, np.array([w[0] for w in windows]), np.array([w[1] for w in windows]))
    assert got.tolist() == [len({x for x in ga if lo <= x < hi}) for lo, hi in windows]   # empty when hi <= lo
    assert np.all(u[1:, 0] > u[:-1, 1]) and np.all(u[:, 1] > u[:, 0])   # merged: sorted, disjoint, non-empty


@settings(max_examples=150, deadline=None)
@given(st.lists(spans, min_size=1, max_size=4), spans)
def test_exclusive_gives_each_instant_to_the_first_set_covering_it(sets: list, window: list) -> None:
    """The one priority sweep: per label, the instants of its set in the window that no earlier set covers."""
    merged = [(i, iv.union(np.array(s, float).reshape(-1, 2))) for i, s in enumerate(sets)]
    W = np.array(window, float).reshape(-1, 2)
    got = iv.exclusive(merged, W)
    assert [label for label, _ in got] == list(range(len(sets)))
    gw, taken = grid(W), set()
    for (i, mine), s in zip(got, sets):
        assert grid(mine) == (grid(np.array(s, float).reshape(-1, 2)) & gw) - taken, i
        taken |= grid(mine)


def test_exclusive_one_step_window_is_clipped() -> None:
    a, b = np.array([[0, 10]], float), np.array([[5, 30]], float)
    got = iv.exclusive([("a", a), ("b", b)], np.array([[2, 20]], float))
    assert [(label, x.tolist()) for label, x in got] == [("a", [[2, 10]]), ("b", [[10, 20]])]
    assert [x.tolist() for _, x in iv.exclusive([("a", a)], np.array([[5, 5]], float))] == [[]]
