"""Property: for any set of events the parts are non-negative and sum to each step's wall."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.step.breakdown import analyse
from analysis.trace.reader import parse_trace
from profiler.contract import vocab
from builders.kineto import NEW, OLD, TraceBuilder

t = st.integers(0, 400)
d = st.integers(0, 120)
HOST = st.sampled_from(["aten::mm", vocab.FORWARD, vocab.BACKWARD, vocab.DATA_WAIT, "gloo:all_reduce",
                        vocab.SCATTER, "Gather", "enumerate(DataLoader)#_X.__next__", "aten::add"])
GPU = st.sampled_from(["gemm", "ncclKernel_AllReduce", "memset"])
COPY = st.sampled_from(["HtoD", "DtoH", "PtoP", "DtoD"])


@st.composite
def traces(draw) -> TraceBuilder:
    b = TraceBuilder(draw(st.sampled_from([NEW, OLD])))
    for n, (s, dur) in enumerate(sorted(draw(st.lists(st.tuples(t, d), max_size=4)))):
        b.step(n, s, dur)
    for _ in range(draw(st.integers(0, 12))):
        b.op(draw(HOST), draw(t), draw(d), tid=draw(st.sampled_from([None, 7, 8])))
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["kernel", "copy"]))
        args = dict(ts=draw(t), dur=draw(d), device=draw(st.integers(0, 3)), launch=draw(t))
        if kind == "kernel":
            b.kernel(draw(GPU), **args)
        else:
            b.memcpy(draw(COPY), nbytes=draw(st.integers(0, 10**9)), **args)
    if draw(st.booleans()):
        b.raw({"ph": "X", "cat": "mystery", "name": "m", "pid": 1, "tid": 1, "ts": b.origin + draw(t), "dur": draw(d)})
    return b


@settings(max_examples=200, deadline=None)
@given(traces())
def test_parts_non_negative_and_sum_to_the_step(b: TraceBuilder) -> None:
    a = analyse(parse_trace(b.bytes()))
    assert a.steps
    prev_end = -float("inf")
    for s in a.steps:
        assert set(s.parts_us) == set(vocab.CATEGORIES)
        assert all(v >= 0 for v in s.parts_us.values())
        assert sum(s.parts_us.values()) == pytest.approx(s.wall_us, abs=1e-6)
        assert s.start_us >= prev_end                      # steps never share an instant
        prev_end = s.end_us
    for dv in a.devices:
        busy = dv.compute_us + dv.communication_us + dv.h2d_us
        assert min(dv.compute_us, dv.communication_us, dv.h2d_us, dv.idle_us) >= 0
        assert busy + dv.idle_us == pytest.approx(dv.wall_us, abs=1e-6)
    if a.comm_overlap is not None:
        assert 0 <= a.comm_overlap <= 1
