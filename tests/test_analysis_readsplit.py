"""One trace decoded by several processes, or streamed by one, gives exactly the Trace of one
whole-text decode; memory stays about one block of text; odd files fall back, errors stay the same."""
from __future__ import annotations

import gzip
import json
import mmap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.trace import reader

from analysis.trace import split as readsplit
from analysis.step.breakdown import analyse_trace
from analysis.trace.errors import TraceError
from analysis.trace.reader import Trace, parse_trace, read_trace
from analysis.api import Analysis

DATA = Path(__file__).parent / "data"
TINY = gzip.decompress((DATA / "cpu_single_tiny.pt.trace.json.gz").read_bytes())     # real torch.profiler
RANK1 = gzip.decompress((DATA / "ddp_gloo_rank1_tiny.pt.trace.json.gz").read_bytes())


def same(a: Trace, b: Trace) -> None:
    assert len(a) == len(b) and a.n_json_events == b.n_json_events
    assert (a.base_time_ns, a.distributed, a.t0_us) == (b.base_time_ns, b.distributed, b.t0_us)
    assert (a.names, a.cats, a.pids, a.tids) == (b.names, b.cats, b.pids, b.tids)
    for col in ("ts", "dur", "pid", "tid", "device", "cat", "name", "corr", "nbytes"):
        x, y = getattr(a, col), getattr(b, col)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), col


def split(path: Path, workers: int = 2) -> Trace:
    parts = readsplit.decode_split(path, workers)
    assert parts is not None and len(parts) == workers * readsplit.PARTS_PER_WORKER
    last = parts[-1]
    pieces, keys, n_json = readsplit.merge(parts)
    return reader.build_trace(path, pieces, keys, n_json, last.base_time_ns, reader._distributed(last.distributed))


@pytest.mark.parametrize("text", [TINY, RANK1], ids=["cpu_single", "ddp_gloo_rank1"])
def test_split_equals_one_whole_decode(tmp_path: Path, monkeypatch, text: bytes) -> None:
    p = tmp_path / "rank1.1.pt.trace.json"
    p.write_bytes(text)
    whole = parse_trace(text, p, chunk_bytes=len(text))
    same(split(p), whole)
    monkeypatch.setattr(reader, "GATHER_THREADS_MIN", 0)      # the final columns built by threads, as on large traces
    same(split(p, workers=3), whole)
    assert len(whole) > 300 and whole.base_time_ns is not None


def test_split_results_come_back_the_same_without_the_shared_map(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "t.pt.trace.json"
    p.write_bytes(RANK1)
    via_map = split(p)

    def no_map(*_a, **_k):
        raise OSError("no shared memory here")
    monkeypatch.setattr(mmap, "mmap", no_map)
    parts = readsplit.decode_split(p, 2)
    assert parts is not None and all(d.placed is None and d.arrays for d in parts)     # pickled back instead
    same(split(p), via_map)


def test_report_path_splits_a_large_file_and_gets_the_same_analysis(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "rank0.1.pt.trace.json"
    p.write_bytes(TINY)
    one = analyse_trace(p)
    calls = []
    real = readsplit.decode_split
    monkeypatch.setattr(readsplit, "decode_split", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(readsplit, "SPLIT_MIN_BYTES", 0)
    two = analyse_trace(p, read_jobs=2)
    assert len(calls) == 1
    assert [s.parts_us for s in two.steps] == [s.parts_us for s in one.steps] and len(one.steps) == 2
    assert two.phase_totals_us == one.phase_totals_us and two.devices == one.devices
    run = tmp_path / "run"                                 # the whole report: one trace, one process or split
    run.mkdir()
    (run / p.name).write_bytes(TINY)
    summaries = [json.dumps(Analysis([run], jobs=jobs).summary(), sort_keys=True, default=str) for jobs in (1, 2)]
    assert summaries[0] == summaries[1] and len(calls) == 2


def test_any_layout_splits_a_cut_inside_a_string_falls_back_and_errors_read_the_same(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    monkeypatch.setattr(readsplit, "SPLIT_MIN_BYTES", 0)
    compact = tmp_path / "compact.pt.trace.json"
    compact.write_bytes(json.dumps(json.loads(TINY), separators=(",", ":")).encode())   # one line
    assert readsplit.decode_split(compact, 2) is not None                                # cut by structure
    same(read_trace(compact, jobs=2), read_trace(compact))
    same(read_trace(compact), parse_trace(TINY, compact, chunk_bytes=len(TINY)))
    tricky = tmp_path / "tricky.pt.trace.json"            # "},{" inside every name: every cut is in a string
    doc = json.loads(TINY)
    for e in doc["traceEvents"]:
        if isinstance(e.get("name"), str):
            e["name"] += "},{" * 3
    text = json.dumps(doc, separators=(",", ":")).encode()
    tricky.write_bytes(text)
    assert readsplit.decode_split(tricky, 2) is None     # the parts did not decode: read in one process
    same(read_trace(tricky, jobs=2), parse_trace(text, tricky, chunk_bytes=len(text)))
    assert any(n.endswith("},{},{},{") for n in read_trace(tricky).names)
    bad = tmp_path / "bad.pt.trace.json"                  # a mistyped event in a middle part
    at = TINY.index(b'"name": "', len(TINY) // 2)
    bad.write_bytes(TINY[:at] + b'"name": 5, "_was": ' + TINY[at + 8:])
    with pytest.raises(TraceError) as one:
        read_trace(bad)
    with pytest.raises(TraceError) as two:
        read_trace(bad, jobs=2)
    assert str(two.value) == str(one.value) and "name" in str(one.value) and "\n" not in str(one.value)


def _repeated(copies: int) -> bytes:
    """The real CPU trace's entries repeated along time in Kineto's layout (not committed: built here)."""
    doc = json.loads(TINY)
    events = doc.pop("traceEvents")
    span = max(e["ts"] + e.get("dur", 0) for e in events if "ts" in e) + 1000
    body = []
    for k in range(copies):
        for e in events:
            e = dict(e)
            if "ts" in e:
                e["ts"] = e["ts"] + k * span
            body.append(b"\n  " + json.dumps(e).encode())
    return json.dumps(doc).encode()[:-1] + b', "traceEvents": [' + b",".join(body) + b"\n]}"


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_streaming_holds_about_one_block_never_the_file(tmp_path: Path, monkeypatch, gz: bool) -> None:
    text = _repeated(60)                                  # ~6.8 MB of JSON
    p = tmp_path / ("r.pt.trace.json.gz" if gz else "r.pt.trace.json")
    p.write_bytes(gzip.compress(text, 1) if gz else text)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 256 << 10)
    tracemalloc.start()
    try:
        streamed = read_trace(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = parse_trace(text, p, chunk_bytes=len(text))
    same(streamed, whole)
    columns = sum(getattr(whole, c).nbytes for c in ("ts", "dur", "pid", "tid", "device", "cat", "name", "corr", "nbytes"))
    assert len(text) > 6e6          # measured: peak 2.7 MB (plain) / 3.1 MB (gzip), columns 1.8 MB, JSON 6.8 MB
    assert peak < 2 * columns and peak < 0.6 * len(text), (peak, columns, len(text))


def test_a_truncated_gzip_streamed_is_still_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(reader, "CHUNK_BYTES", 64 << 10)
    z = gzip.compress(_repeated(10))
    p = tmp_path / "cut.pt.trace.json.gz"
    p.write_bytes(z[: len(z) // 2])
    with pytest.raises(TraceError, match="truncated"):
        read_trace(p)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0, 1), st.sampled_from([b"", b"}", b"{", b",", b'"', b"\n  {", b"5", b"null"])),
                min_size=1, max_size=3), st.booleans())
def test_streamed_and_whole_decodes_agree_on_mangled_text(tmp_path: Path, monkeypatch, edits, gz: bool) -> None:
    """Whatever the damage: the same Trace, or the same one-line error, streamed in small blocks or decoded whole."""
    text = bytearray(TINY)
    for frac, piece in edits:
        at = int(frac * (len(text) - 1))
        text[at:at + 1] = piece
    p = tmp_path / ("m.pt.trace.json.gz" if gz else "m.pt.trace.json")
    p.write_bytes(gzip.compress(bytes(text)) if gz else bytes(text))
    monkeypatch.setattr(reader, "CHUNK_BYTES", 4096)
    outcomes = []
    for read in (lambda: read_trace(p), lambda: parse_trace(bytes(text), p, chunk_bytes=len(text))):
        try:
            outcomes.append(read())
        except TraceError as e:
            outcomes.append(str(e))
    streamed, whole = outcomes
    if isinstance(whole, str) or isinstance(streamed, str):
        assert streamed == whole and "\n" not in whole
    else:
        same(streamed, whole)


def test_a_gzip_file_is_inflated_once_and_decoded_by_the_workers_as_it_streams(tmp_path: Path, monkeypatch) -> None:
    text = _repeated(8)
    p = tmp_path / "rank0.1.pt.trace.json.gz"
    p.write_bytes(gzip.compress(text, 1))
    monkeypatch.setattr(readsplit, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 16 << 10)
    got = []
    real = readsplit.decode_blocks
    monkeypatch.setattr(readsplit, "decode_blocks", lambda *a, **k: got.append(real(*a, **k)) or got[-1])
    same(read_trace(p, jobs=2), parse_trace(text, p, chunk_bytes=len(text)))
    assert len(got) == 1 and got[0] is not None and len(got[0]) > 20        # ~32 KB blocks of a 0.9 MB text
    cut = tmp_path / "cut.pt.trace.json.gz"
    cut.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(TraceError, match="corrupt or truncated gzip"):
        read_trace(cut, jobs=2)
