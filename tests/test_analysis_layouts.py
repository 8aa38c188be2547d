"""A trace reads the same, and by the fast paths, whatever its JSON layout: Kineto's, compact, spaced,
pretty-printed with any indent or CRLF line ends, keys in any order, a bare event array, gzipped.

"Fast path" is checked, not assumed: the streamed and split reads never hand msgspec more than a block
of text plus the document's head and tail (a fallback decodes the whole document at once)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.trace import reader

from analysis.trace import split as readsplit

from analysis.trace import columns as tracecolumns
from analysis.trace.errors import TraceError
from analysis.trace.reader import Trace, parse_trace, read_trace

DATA = Path(__file__).parent / "data"
TINY = gzip.decompress((DATA / "cpu_single_tiny.pt.trace.json.gz").read_bytes())     # real torch.profiler
DOC = json.loads(TINY)
EVENTS = DOC["traceEvents"]
REST = {k: v for k, v in DOC.items() if k != "traceEvents"}


def _layouts() -> dict[str, bytes]:
    out = {
        "kineto": TINY,
        "compact": json.dumps(DOC, separators=(",", ":")).encode(),
        "spaced": json.dumps(DOC).encode(),
        "indent1": json.dumps(DOC, indent=1).encode(),
        "indent2": json.dumps(DOC, indent=2).encode(),
        "indent4": json.dumps(DOC, indent=4).encode(),
        "crlf": json.dumps(DOC, indent=2).replace("\n", "\r\n").encode(),
        "events_first": json.dumps({"traceEvents": EVENTS, **REST}, separators=(",", ":")).encode(),
        "sorted_keys": json.dumps(DOC, indent=2, sort_keys=True).encode(),
        "bare_array": json.dumps(EVENTS, indent=1).encode(),
    }
    return out


LAYOUTS = _layouts()
WHOLE = parse_trace(TINY, "whole", chunk_bytes=len(TINY))


def same_events(a: Trace, b: Trace, with_head: bool = True) -> None:
    assert len(a) == len(b) and a.n_json_events == b.n_json_events
    if with_head:
        assert (a.base_time_ns, a.distributed) == (b.base_time_ns, b.distributed)
    assert (a.t0_us, a.names, a.cats, a.pids, a.tids) == (b.t0_us, b.names, b.cats, b.pids, b.tids)
    for col in ("ts", "dur", "pid", "tid", "device", "cat", "name", "corr", "nbytes"):
        x, y = getattr(a, col), getattr(b, col)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), col


class Biggest:
    """The largest text msgspec was handed as one document (a fallback hands it the whole file)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.size = 0
        real = tracecolumns.decode_document

        def spy(text, cols):
            self.size = max(self.size, len(text))
            return real(text, cols)
        for module in (tracecolumns, readsplit, reader):
            monkeypatch.setattr(module, "decode_document", spy)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_streams_and_splits_to_the_same_columns(tmp_path: Path, monkeypatch, layout: str,
                                                             gz: bool) -> None:
    text = LAYOUTS[layout]
    p = tmp_path / ("t.pt.trace.json" + (".gz" if gz else ""))
    p.write_bytes(gzip.compress(text) if gz else text)
    head = layout != "bare_array"                       # a bare array has no baseTimeNanoseconds
    biggest = Biggest(monkeypatch)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 4096)    # streamed in 4 KB blocks
    streamed = read_trace(p)
    same_events(streamed, WHOLE, head)
    assert len(streamed) == len(WHOLE) > 300
    assert 0 < biggest.size < 8192, biggest.size         # head + tail only: never the whole document
    monkeypatch.setattr(readsplit, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(tracecolumns, "CHUNK_BYTES", 4096)
    if not gz:
        assert readsplit.decode_split(p, 2, block_bytes=4096) is not None
    same_events(read_trace(p, jobs=2), WHOLE, head)     # split across processes
    assert biggest.size < 8192, biggest.size


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.sampled_from(sorted(LAYOUTS)), st.integers(16, 8192))
def test_any_block_size_gives_the_same_columns(layout: str, block: int) -> None:
    same_events(parse_trace(LAYOUTS[layout], "t", chunk_bytes=block), WHOLE, layout != "bare_array")


@SETTINGS
@given(st.sampled_from(sorted(LAYOUTS)), st.floats(0.0, 1.0), st.integers(64, 4096))
def test_truncated_anywhere_is_the_whole_decodes_one_line(layout: str, frac: float, block: int) -> None:
    text = LAYOUTS[layout]
    cut = text[: int(len(text) * frac)]
    try:
        streamed = parse_trace(cut, "t", chunk_bytes=block)
    except TraceError as e:
        with pytest.raises(TraceError) as whole:
            parse_trace(cut, "t", chunk_bytes=max(len(cut), 1))
        assert str(e) == str(whole.value) and "\n" not in str(e)
        return
    same_events(streamed, parse_trace(cut, "t", chunk_bytes=max(len(cut), 1)))


@SETTINGS
@given(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", '"},{"', "[" * 1200 + "]" * 1200]),
       st.integers(0, len(EVENTS) - 1), st.sampled_from(["ts", "dur", "name", "args"]), st.integers(64, 4096))
def test_odd_values_anywhere_read_as_the_whole_decode_or_its_one_line(value: str, at: int, field: str,
                                                                     block: int) -> None:
    events = [json.dumps(e, separators=(",", ":")) for e in EVENTS]
    e = json.loads(events[at])
    e[field] = "@@"
    events[at] = json.dumps(e, separators=(",", ":")).replace('"@@"', value)
    text = ('{"traceEvents":[' + ",".join(events) + "]}").encode()
    try:
        whole = parse_trace(text, "t", chunk_bytes=len(text))
    except TraceError as e:
        with pytest.raises(TraceError) as streamed:
            parse_trace(text, "t", chunk_bytes=block)
        assert str(streamed.value) == str(e) and "\n" not in str(e)
        return
    same_events(parse_trace(text, "t", chunk_bytes=block), whole, with_head=False)


SPLIT_SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                  HealthCheck.function_scoped_fixture])


@SPLIT_SETTINGS
@given(st.sampled_from(["kineto", "compact", "indent2", "bare_array"]),
       st.lists(st.tuples(st.floats(0, 1), st.sampled_from([b"}", b",", b"{", b'"', b"]", b"\\", b"NaN", b"},{"])),
                max_size=3))
def test_the_split_path_reads_mangled_text_as_one_process_does(tmp_path: Path, layout: str,
                                                               edits: list[tuple[float, bytes]]) -> None:
    text = bytearray(LAYOUTS[layout])
    for where, what in edits:
        i = int(where * (len(text) - 1))
        text[i:i + len(what)] = what
    p = tmp_path / f"m{abs(hash((layout, tuple(edits))))}.pt.trace.json"
    p.write_bytes(bytes(text))
    try:
        one = read_trace(p)
    except TraceError as e:
        with pytest.raises(TraceError) as split:
            _split_read(p)
        assert str(split.value) == str(e)
        return
    same_events(_split_read(p), one, layout != "bare_array")


def _split_read(p: Path) -> Trace:
    old = readsplit.SPLIT_MIN_BYTES
    readsplit.SPLIT_MIN_BYTES = 0
    try:
        return read_trace(p, jobs=2)
    finally:
        readsplit.SPLIT_MIN_BYTES = old
