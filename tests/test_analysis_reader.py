"""The trace reader: both forms, plain or gzip, and a one-line TraceError for every bad file."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.step.breakdown import analyse_trace
from analysis.trace.errors import TraceError
from analysis.trace.reader import parse_trace, read_trace
from builders.kineto import NEW, OLD, TraceBuilder

FIXTURE = Path(__file__).parent / "data" / "cpu_single_tiny.pt.trace.json.gz"


def sample() -> TraceBuilder:
    b = TraceBuilder(NEW)
    b.step(1, 0, 100)
    b.kernel("gemm", 10, 20, device=2, launch=1)
    return b


def test_real_fixture_reads() -> None:
    t = read_trace(FIXTURE)
    assert len(t) > 100 and "ProfilerStep#2" in t.names and "cpu_op" in t.cats
    assert t.base_time_ns is not None and (t.device == -1).all()
    assert t.ts.min() == 0 and (t.dur >= 0).all()


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    b = sample()
    plain_named_gz = tmp_path / "a.pt.trace.json.gz"
    plain_named_gz.write_bytes(b.bytes())
    gz_named_plain = tmp_path / "b.pt.trace.json"
    gz_named_plain.write_bytes(gzip.compress(b.bytes()))
    assert len(read_trace(plain_named_gz)) == len(read_trace(gz_named_plain)) == 4


def test_multi_member_gzip(tmp_path: Path) -> None:
    data = sample().bytes()
    p = tmp_path / "m.json.gz"
    p.write_bytes(gzip.compress(data[:100]) + gzip.compress(data[100:]))
    assert len(read_trace(p)) == 4


def test_args_tolerate_odd_values_and_bytes_from_bandwidth() -> None:
    b = TraceBuilder(OLD)
    b.memcpy("HtoD", 0, 4, bandwidth=1.5)
    b.raw({"ph": "X", "cat": "Kernel", "name": "k", "pid": 0, "tid": "stream 7", "ts": 10, "dur": 1,
           "args": {"device": "zero", "correlation": "n/a", "bytes": None, "Call stack": [1, 2]}})
    t = parse_trace(b.bytes())
    copy = t.names.index("Memcpy HtoD (Pinned -> Device)")
    assert t.nbytes[t.name == copy][0] == pytest.approx(6000)      # 1.5 GB/s x 4 µs
    k = t.name == t.names.index("k")
    assert t.device[k][0] == -1 and t.corr[k][0] == -1 and np.isnan(t.nbytes[k][0])


GOOD = sample().bytes()
BAD_FILES = {
    "empty": (b"", "empty file"),
    "whitespace": (b"  \n", "empty file"),
    "not json": (b"hello world", "not valid JSON"),
    "truncated json": (GOOD[: len(GOOD) // 2], "not valid JSON"),
    "json list": (b"[1, 2, 3]", "not a Kineto trace"),
    "json number": (b"42", "not a Kineto trace"),
    "no traceEvents": (json.dumps({"schemaVersion": 1}).encode(), "traceEvents"),
    "traceEvents not a list": (json.dumps({"traceEvents": {"a": 1}}).encode(), "not a Kineto trace"),
    "event not an object": (json.dumps({"traceEvents": [1, 2]}).encode(), "not a Kineto trace"),
    "name is a number": (json.dumps({"traceEvents": [{"ph": "X", "name": 5, "ts": 1, "dur": 1}]}).encode(),
                         "traceEvents[0].name"),
    "ts is a string": (json.dumps({"traceEvents": [{"ph": "X", "name": "a", "ts": "1", "dur": 1}]}).encode(),
                       "traceEvents[0].ts"),
    "args is a list": (json.dumps({"traceEvents": [{"ph": "X", "name": "a", "ts": 1, "args": []}]}).encode(),
                       "not a Kineto trace"),
    "no timed events": (json.dumps({"traceEvents": [{"ph": "M", "name": "process_name"}]}).encode(),
                        "no timed events"),
    "huge timestamps": (json.dumps({"traceEvents": [{"ph": "X", "name": "a", "ts": 1e308, "dur": 1e308}]}).encode(),
                        "out of range"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    data, why = BAD_FILES[case]
    p = tmp_path / "rank0.1.pt.trace.json"
    p.write_bytes(data)
    for path in (p, _gz(tmp_path, data)):
        with pytest.raises(TraceError) as e:
            analyse_trace(path)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(str(path)) and why in msg


def _gz(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "rank0.2.pt.trace.json.gz"
    p.write_bytes(gzip.compress(data))
    return p


@pytest.mark.parametrize("mangle,why", [
    (lambda z: z[: len(z) // 2], "truncated"),
    (lambda z: z[:-6], "truncated"),
    (lambda z: z[:10] + bytes(b ^ 0x5A for b in z[10:40]) + z[40:], "gzip"),
    (lambda z: z[:3] + b"\xff" + z[4:], "gzip"),
])
def test_corrupt_gzip(tmp_path: Path, mangle, why: str) -> None:
    p = tmp_path / "x.pt.trace.json.gz"
    p.write_bytes(mangle(gzip.compress(GOOD)))
    with pytest.raises(TraceError) as e:
        read_trace(p)
    assert why in str(e.value) or "JSON" in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "nope.json")
    with pytest.raises(TraceError, match="directory"):
        read_trace(tmp_path)


def _same(a, b) -> None:
    assert len(a) == len(b) and a.n_json_events == b.n_json_events and a.base_time_ns == b.base_time_ns
    for col in ("ts", "dur", "device", "corr"):
        assert np.array_equal(getattr(a, col), getattr(b, col)), col
    for codes, table in (("name", "names"), ("cat", "cats"), ("pid", "pids"), ("tid", "tids")):
        assert [getattr(a, table)[i] for i in getattr(a, codes)] == [getattr(b, table)[i] for i in getattr(b, codes)]


@pytest.mark.parametrize("chunk", [1, 300, 5000])
def test_chunked_decoding_equals_whole(chunk: int) -> None:
    """Large Kineto files are decoded a chunk at a time (memory); the result must not change."""
    raw = gzip.decompress(FIXTURE.read_bytes())
    assert raw.count(b"\n  {") > 500                        # Kineto's layout: one entry per "\n  {"
    _same(parse_trace(raw, "x", chunk_bytes=chunk), parse_trace(raw, "x", chunk_bytes=len(raw)))


def test_chunked_decoding_falls_back_on_other_layouts_and_still_reports_errors() -> None:
    odd = (b'{"traceEvents": [\n{"ph": "X", "name": "a", "ts": 1, "dur": 2, "args":\n  {"device": 1}},'
           b'\n  {"ph": "X", "name": "b", "ts": 3, "dur": 1}], "baseTimeNanoseconds": 7}')
    t = parse_trace(odd, "odd", chunk_bytes=1)                # a cut lands inside an event: decoded whole
    assert t.names == ["a", "b"] and t.device.tolist() == [1, -1] and t.base_time_ns == 7
    raw = gzip.decompress(FIXTURE.read_bytes())
    with pytest.raises(TraceError, match="not valid JSON"):
        parse_trace(raw[: len(raw) * 3 // 4], "cut.json", chunk_bytes=300)
    with pytest.raises(TraceError, match="not a Kineto trace"):
        parse_trace(raw.replace(b'"dur"', b'"dur": "x", "_dur"', 1), "typed.json", chunk_bytes=300)
