"""Fuzzing the reader + breakdown: whatever the bytes, a TraceAnalysis or a one-line TraceError.

Never another exception, never a hang (pytest-timeout guards each test). Examples are
bounded so the file stays a few seconds.
"""
from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.step.breakdown import analyse_trace
from analysis.trace.errors import TraceError
from analysis.records import TraceAnalysis
from builders.kineto import NEW, TraceBuilder

FIXTURE = Path(__file__).parent / "data" / "cpu_single_tiny.pt.trace.json.gz"
REAL = gzip.decompress(FIXTURE.read_bytes())


def _gpu_sample() -> bytes:
    b = TraceBuilder(NEW)
    b.step(1, 0, 100)
    b.op("aten::mm", 0, 10)
    b.kernel("gemm", 10, 30, device=0, launch=2)
    b.kernel("ncclKernel_AllReduce", 20, 30, device=1, launch=3)
    b.memcpy("HtoD", 50, 5, device=0, launch=4, nbytes=100)
    b.label("ss:dp.scatter", 60, 10)
    b.memcpy("PtoP", 62, 5, device=1, launch=61)
    return json.dumps(b.document(), separators=(",", ":")).encode()


GPU = _gpu_sample()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes, gz: bool = False) -> None:
    """The contract: analysis or TraceError with one line naming the file; not an analysis bug."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / ("rank0.1.pt.trace.json" + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(data) if gz else data)
        try:
            a = analyse_trace(p)
        except TraceError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith(str(p))
            assert "could not analyse" not in msg, msg      # that would be a bug in the breakdown
            return
        assert isinstance(a, TraceAnalysis)
        for s in a.steps:
            assert sum(s.parts_us.values()) == pytest.approx(s.wall_us, abs=1e-6 * max(1.0, s.wall_us))
            assert min(s.parts_us.values()) >= 0


@SETTINGS
@given(st.sampled_from([REAL, GPU]), st.floats(0, 1), st.booleans())
def test_truncated(data: bytes, frac: float, gz: bool) -> None:
    cut = data[: int(len(data) * frac)]
    check(gzip.compress(data)[: int(len(gzip.compress(data)) * frac)] if gz else cut, gz=False)


@SETTINGS
@given(st.sampled_from([REAL, GPU]), st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=4)),
                                              min_size=1, max_size=8))
def test_mangled_bytes(data: bytes, edits: list[tuple[float, bytes]]) -> None:
    b = bytearray(data)
    for where, what in edits:
        i = int(where * (len(b) - 1))
        b[i:i + len(what)] = what
    check(bytes(b))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
FIELDS = ["ph", "cat", "name", "pid", "tid", "ts", "dur", "args", "id"]
ARG_FIELDS = ["device", "correlation", "bytes", "memory bandwidth (GB/s)", "stream", "External id"]


@SETTINGS
@given(st.sampled_from([REAL, GPU]), st.lists(
    st.tuples(st.integers(0, 10**6), st.sampled_from(FIELDS + ARG_FIELDS), JSON_VALUES), min_size=1, max_size=6))
def test_mistyped_fields(data: bytes, edits: list[tuple[int, str, Any]]) -> None:
    doc = json.loads(data)
    events = doc["traceEvents"]
    for i, field, value in edits:
        e = events[i % len(events)]
        if field in ARG_FIELDS:
            if not isinstance(e.get("args"), dict):
                e["args"] = {}
            e["args"][field] = value
        else:
            e[field] = value
    check(json.dumps(doc).encode(), gz=bool(edits[0][0] % 2))


@SETTINGS
@given(JSON_VALUES, st.sampled_from(["traceEvents", "baseTimeNanoseconds", "deviceProperties"]))
def test_mistyped_top_level(value: Any, key: str) -> None:
    doc = json.loads(GPU)
    doc[key] = value
    check(json.dumps(doc).encode())


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    check(data)
    check(data, gz=True)
