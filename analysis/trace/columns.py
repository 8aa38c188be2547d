"""Kineto JSON text -> numpy columns of its complete ("X") events, a chunk at a time.

Two decoders name only the fields the breakdown needs, so call stacks, input shapes and the
rest of `args` are skipped by msgspec, never built as Python objects:
- the *strict* one types every field as Kineto writes it (a number is a number, absent fields
  take their column's default), so the columns come out of one C-level pass per field;
- the *tolerant* one accepts nulls, strings and odd numbers in `args` and is used for a chunk
  only when the strict one rejects it (foreign or hand-made traces); both give the same columns.
Names, categories, pids and tids are interned to small ints in first-seen order.

Entry boundaries come from the JSON structure, not from whitespace: traceEvents holds objects, so
two entries meet at "}" "," "{" with only whitespace between (Kineto's "},\\n  {", compact
json.dump's "},{", pretty-printed "},\\n    {", CRLF line ends alike). The same three bytes can
also occur inside a string or deeper in an entry's args, and a cut there cannot be told from a
real one without reading from the start -- but it can never decode: the text on either side then
holds an unclosed string or bracket, msgspec rejects it, and the caller decodes the whole document
instead (same columns, or its exact error). A cut that decodes is a real boundary. The text is
decoded as it streams in, ~CHUNK_BYTES at a time, so the peak is one block of text and its
objects, never the file; separate processes can decode separate ranges (analysis.trace.split).
A document whose top level is a bare array of events (the old Chrome format) reads the same way.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, BinaryIO, Union

import msgspec
import numpy as np
from numpy.typing import NDArray

NAN = float("nan")
CHUNK_BYTES = 4 << 20
_BOUNDARY = re.compile(rb"\}[ \t\r\n]*(,)[ \t\r\n]*\{")     # "}" "," "{": two traceEvents entries meet
_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")
BARE_HEAD = b'{"traceEvents":['     # a bare top-level array is read as this document ...
BARE_TAIL = b"}"                    # ... closed by this
COLUMN_TYPES = {"ts": np.float64, "dur": np.float64, "name": np.int32, "cat": np.int32, "pid": np.int32,
                "tid": np.int32, "device": np.int64, "corr": np.int64, "nbytes": np.float64}
COLUMNS = tuple(COLUMN_TYPES)
INTERNED = ("name", "cat", "pid", "tid")

_Num = Union[int, float, str, None]   # tolerated in args; anything but a finite number reads as "absent"
# Every other Chrome-trace phase: flows, instants, counters, metadata... their fields are
# skipped by the decoder, not built (a third of a torch 2.x trace's entries).
_OTHER_PHASES = tuple(
    msgspec.defstruct(f"_Phase{i}", [], tag_field="ph", tag=ph, gc=False)
    for i, ph in enumerate("B E i I C b n e s t f P N O D M V v R c ( ) S T F p".split()))


class _StrictArgs(msgspec.Struct, gc=False, frozen=True):
    device: int = -1
    correlation: int = -1
    nbytes: float = msgspec.field(default=NAN, name="bytes")
    bandwidth: float = msgspec.field(default=NAN, name="memory bandwidth (GB/s)")


_NO_ARGS = _StrictArgs()


class _StrictEvent(msgspec.Struct, tag_field="ph", tag="X", gc=False):
    """A complete event as Kineto writes it; its absent fields are already the columns' defaults."""

    cat: str = ""
    name: str = ""
    pid: Union[int, str] = ""
    tid: Union[int, str] = ""
    ts: float = NAN
    dur: float = 0.0
    args: _StrictArgs = _NO_ARGS


class _Args(msgspec.Struct, gc=False):
    device: _Num = None
    correlation: _Num = None
    nbytes: _Num = msgspec.field(default=None, name="bytes")
    bandwidth: _Num = msgspec.field(default=None, name="memory bandwidth (GB/s)")


class _Event(msgspec.Struct, tag_field="ph", tag="X", gc=False):
    """A complete event, whatever else a producer put in its fields; other phases decode to empty structs."""

    cat: Union[str, None] = None
    name: Union[str, None] = None
    pid: Union[int, str, None] = None
    tid: Union[int, str, None] = None
    ts: Union[float, None] = None
    dur: Union[float, None] = None
    args: Union[_Args, None] = None


class DistInfo(msgspec.Struct, gc=False):
    """Kineto's top-level `distributedInfo` (torch.distributed was initialised when it recorded)."""

    backend: Union[str, None] = None
    rank: _Num = None
    world_size: _Num = None


def _events(kind: type) -> type:
    return list[Union[(kind,) + _OTHER_PHASES]]  # type: ignore[return-value,valid-type]


class TraceFile(msgspec.Struct):
    traceEvents: _events(_Event)  # type: ignore[valid-type]
    baseTimeNanoseconds: Union[int, None] = None
    distributedInfo: Union[DistInfo, None] = None
    deviceProperties: Any = None       # Kineto's list of the GPUs it saw; any shape (device_names reads it)


class _StrictTraceFile(msgspec.Struct):
    traceEvents: _events(_StrictEvent)  # type: ignore[valid-type]
    baseTimeNanoseconds: Union[int, None] = None
    distributedInfo: Union[DistInfo, None] = None
    deviceProperties: Any = None


def device_names(props: Any) -> tuple[str, ...]:
    """The GPU names of Kineto's deviceProperties ([{"id": 0, "name": "Tesla V100-DGXS-32GB", ...}]), in
    its order; () for anything else -- a producer's odd head never fails a trace."""
    if not isinstance(props, list):
        return ()
    return tuple(p["name"] for p in props if isinstance(p, dict) and isinstance(p.get("name"), str))


DOCUMENT = msgspec.json.Decoder(TraceFile)
_STRICT_DOCUMENT = msgspec.json.Decoder(_StrictTraceFile)
_STRICT_LIST = msgspec.json.Decoder(_events(_StrictEvent))
_TOLERANT_LIST = msgspec.json.Decoder(_events(_Event))

_GET = {c: attrgetter(c) for c in ("ts", "dur", "name", "cat", "pid", "tid", "args")}
_GET_ARG = {"device": attrgetter("device"), "corr": attrgetter("correlation"),
            "nbytes": attrgetter("nbytes"), "bw": attrgetter("bandwidth")}


class NotChunkable(Exception):
    """The text is not laid out as Kineto writes it (or a chunk does not decode); decode it whole instead."""


class Interner(dict):
    """Value -> small int in first-seen order; a new key costs one Python call, a known one none."""

    def __missing__(self, key: object) -> int:
        code = self[key] = len(self)
        return code

    def keys_list(self) -> list:
        """The keys in code order; None -> "", and an integer beyond int64 (a pid or tid of 2**63) as its
        text, so that no reader ever converts it to a C integer."""
        return ["" if k is None else str(k) if type(k) is int and not -2**63 <= k < 2**63 else k for k in self]


def _numbers(values: list, default: float) -> NDArray[np.float64]:
    """Finite numbers as float64; None, text and out-of-range values become `default`."""
    try:
        a = np.array(values, np.float64)      # fast path: None -> nan
    except (TypeError, ValueError, OverflowError):
        a = np.array([v if type(v) is float or (type(v) is int and -2**63 < v < 2**63) else None
                      for v in values], np.float64)
    a[~np.isfinite(a)] = default
    return a


def _ids(values: list) -> NDArray[np.int64]:
    """Integer ids (device index, correlation) as int64; absent or beyond int64 -> -1, never a cast warning."""
    a = _numbers(values, -1.0)
    a[np.abs(a) >= 2.0**63] = -1.0
    return a.astype(np.int64)


@dataclass
class Columns:
    """The X events of the chunks added so far, as numpy column pieces and intern tables."""

    parts: dict[str, list[NDArray]]
    tables: dict[str, Interner]
    n_json: int = 0

    @classmethod
    def empty(cls) -> Columns:
        return cls({c: [] for c in COLUMNS}, {c: Interner() for c in INTERNED})

    def add_json(self, text: bytes | bytearray | memoryview) -> None:
        """One JSON list of traceEvents entries; raises msgspec errors for text neither decoder takes."""
        try:
            self.add(_STRICT_LIST.decode(text), _StrictEvent)
        except msgspec.ValidationError:
            self.add(_TOLERANT_LIST.decode(text), _Event)

    def add(self, events: list, kind: type) -> None:
        """Decoded entries, all of one decoder (`kind`: its X-event struct)."""
        self.n_json += len(events)
        xs = [e for e in events if type(e) is kind]
        if not xs:
            return
        if kind is _StrictEvent:
            try:
                self._append(self._strict(xs))
                return
            except OverflowError:         # an id beyond int64: the tolerant conversion turns it into -1
                pass
        self._append(self._tolerant(xs))

    def _append(self, cols: dict[str, NDArray]) -> None:
        """One chunk's columns, finished: durations at least 0, bytes from bandwidth when only it is given."""
        dur, nbytes, bw = cols["dur"], cols["nbytes"], cols.pop("bw")
        np.maximum(dur, 0.0, out=dur)
        guess = np.isnan(nbytes) & ~np.isnan(bw)    # GB/s * µs * 1e3 = bytes
        nbytes[guess] = bw[guess] * dur[guess] * 1e3
        for c, a in cols.items():
            self.parts[c].append(a)

    def _interned(self, xs: list) -> dict[str, NDArray]:
        n = len(xs)
        return {c: np.fromiter(map(self.tables[c].__getitem__, map(_GET[c], xs)), np.int32, n) for c in INTERNED}

    def _strict(self, xs: list[_StrictEvent]) -> dict[str, NDArray]:
        """Every field is already a number of its column's type: one pass each, no checks."""
        n = len(xs)
        args = list(map(_GET["args"], xs))
        return {"ts": np.fromiter(map(_GET["ts"], xs), np.float64, n),
                "dur": np.fromiter(map(_GET["dur"], xs), np.float64, n),
                **self._interned(xs),
                "device": np.fromiter(map(_GET_ARG["device"], args), np.int64, n),
                "corr": np.fromiter(map(_GET_ARG["corr"], args), np.int64, n),
                "nbytes": np.fromiter(map(_GET_ARG["nbytes"], args), np.float64, n),
                "bw": np.fromiter(map(_GET_ARG["bw"], args), np.float64, n)}

    def _tolerant(self, xs: list) -> dict[str, NDArray]:
        args = [_NO_ARGS if a is None else a for a in map(_GET["args"], xs)]
        return {"ts": np.array(list(map(_GET["ts"], xs)), np.float64),      # missing -> nan, dropped later
                "dur": _numbers(list(map(_GET["dur"], xs)), 0.0),
                **self._interned(xs),
                "device": _ids(list(map(_GET_ARG["device"], args))),
                "corr": _ids(list(map(_GET_ARG["corr"], args))),
                "nbytes": _numbers(list(map(_GET_ARG["nbytes"], args)), NAN),
                "bw": _numbers(list(map(_GET_ARG["bw"], args)), NAN)}

    def keys(self) -> dict[str, list]:
        return {c: t.keys_list() for c, t in self.tables.items()}


def decode_document(text: bytes | bytearray | memoryview, cols: Columns) -> TraceFile | _StrictTraceFile:
    """A whole trace document, its events added to cols (and dropped from the returned head);
    the strict decoder first, the tolerant one for what it rejects."""
    if _bare_array(text):
        cols.add_json(text)
        return TraceFile(traceEvents=[])
    try:
        doc, kind = _STRICT_DOCUMENT.decode(text), _StrictEvent
    except msgspec.ValidationError:
        doc, kind = DOCUMENT.decode(text), _Event
    events, doc.traceEvents = doc.traceEvents, []
    cols.add(events, kind)
    return doc


def events_start(raw: bytes | bytearray) -> int:
    """Index of the traceEvents list's "[" (the document's head ends there); -1 if not (yet) seen."""
    key = raw.find(b'"traceEvents"')
    return raw.find(b"[", key) if key >= 0 else -1


def _bare_array(text: bytes | bytearray | memoryview) -> bool:
    """The document's top level is an array of events (the old Chrome format), not an object."""
    first = _LEADING_SPACE.match(text).end()
    return first < len(text) and text[first] == 0x5B      # "["


def document_head(raw: bytes | bytearray) -> tuple[int, bytes, bytes] | None:
    """Where the events list opens: (index of its "[", the head to decode the last part with, the tail to
    close it). An object's head is its text up to that "["; a bare array (the old Chrome format) is read
    as {"traceEvents": [...]}. None while it is not (yet) seen."""
    if _bare_array(raw):
        return _LEADING_SPACE.match(raw).end(), BARE_HEAD, BARE_TAIL
    start = events_start(raw)
    return None if start < 0 else (start, bytes(raw[:start + 1]), b"")


def first_boundary(buf: bytes | bytearray, lo: int) -> int:
    """The first entry boundary in buf[lo:] -- the index just after the comma between two entries -- or -1."""
    m = _BOUNDARY.search(buf, lo)
    return m.end(1) if m else -1


def last_boundary(buf: bytes | bytearray, lo: int) -> int:
    """The last entry boundary in buf[lo:], looked for back from the end in growing windows; -1 if none."""
    end, window = len(buf), 1 << 16
    while True:
        start = max(lo, end - window)
        found = -1
        for m in _BOUNDARY.finditer(buf, start, end):
            found = m.end(1)
        if found >= 0 or start == lo:
            return found
        window *= 8


def add_entries(buf: bytearray, pos: int, cut: int, cols: Columns) -> None:
    """Entries buf[pos:cut] (the last ends with a comma) decoded as one JSON list, bracketed in
    place -- "[" over the byte before pos, "]" over that comma, both put back -- never copied."""
    end = cut
    while end > pos and buf[end - 1] in b" \t\r\n":
        end -= 1
    if end <= pos or buf[end - 1] != 0x2C:              # the entry before the cut ends with ","
        raise NotChunkable
    before, comma = buf[pos - 1], buf[end - 1]
    buf[pos - 1], buf[end - 1] = 0x5B, 0x5D
    view = memoryview(buf)
    try:
        cols.add_json(view[pos - 1:end])
    except (msgspec.MsgspecError, RecursionError):
        raise NotChunkable from None
    finally:
        view.release()
        buf[pos - 1], buf[end - 1] = before, comma


class EntryCuts:
    """A stream of text blocks cut at entry boundaries as it arrives: iterating yields each `cut`
    such that entries buf[pos:cut] are whole (read them before the next step: the text before them
    is then dropped, so only about one block is ever held).

    whole: the stream is the whole document, whose head (up to traceEvents' "[") is found in it;
    otherwise it starts one byte before an entry boundary (a part cut by analysis.trace.split).
    min_bytes: cut only once that much text is waiting. After the loop, buf[pos:] is the rest.
    """

    def __init__(self, blocks: Iterable[bytes | bytearray | memoryview], whole: bool = True,
                 min_bytes: int = 0) -> None:
        self.blocks, self.min_bytes = blocks, min_bytes
        self.buf, self.pos, self.head, self.tail = bytearray(), (-1 if whole else 1), None, b""

    def __iter__(self) -> Iterator[int]:
        buf = self.buf
        for block in self.blocks:
            buf += block
            if self.pos < 0:
                found = document_head(buf)
                if found is None:
                    if len(buf) > HEAD_LIMIT:
                        raise NotChunkable
                    continue
                start, self.head, self.tail = found
                self.pos = start + 1
            if len(buf) - self.pos < self.min_bytes:
                continue
            cut = last_boundary(buf, self.pos)
            if cut > self.pos:
                yield cut
                del buf[:cut - 1]                   # O(1) in CPython: the buffer's start moves
                self.pos = 1
        if self.pos < 0:
            raise NotChunkable

    def rest(self) -> bytes:
        return bytes(self.buf[self.pos:])


def decode_stream(blocks: Iterable[bytes | bytearray | memoryview], cols: Columns,
                  head: bytes | None = None, whole: bool = True, tail: bytes = b"") -> TraceFile | _StrictTraceFile | None:
    """Decode a stream of text blocks into cols, every complete entry as soon as it has arrived.

    whole: the stream is the whole document. Otherwise it starts one byte before an entry boundary
    (a part cut by analysis.trace.split) and either is the document's end (`head` given: the document
    up to traceEvents' "[", and `tail` to close it, see document_head) or ends just after an entry's comma. Returns the document's head, its
    events already added (for baseTimeNanoseconds and distributedInfo), or None for a middle part.
    NotChunkable for any other layout or text that does not decode (the caller decodes the whole
    text for the exact error).
    """
    cuts = EntryCuts(blocks, whole)
    for cut in cuts:
        add_entries(cuts.buf, cuts.pos, cut, cols)
    if whole:
        head, tail = cuts.head, cuts.tail
    if head is None:
        if cuts.buf[cuts.pos:].strip():
            add_entries(cuts.buf, cuts.pos, len(cuts.buf), cols)
        return None
    try:
        return decode_document(head + cuts.rest() + tail, cols)
    except (msgspec.MsgspecError, RecursionError):
        raise NotChunkable from None


HEAD_LIMIT = 16 << 20           # the document's head (up to traceEvents' "[") must lie in this


def file_blocks(f: BinaryIO, block_bytes: int = CHUNK_BYTES, stop: int | None = None) -> Iterator[bytes]:
    """An open file from its current position (to `stop`) in blocks, for decode_stream."""
    while stop is None or (left := stop - f.tell()) > 0:
        block = f.read(block_bytes if stop is None else min(block_bytes, left))
        if not block:
            return
        yield block


def memory_blocks(raw: bytes | bytearray, block_bytes: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """Text already in memory as blocks, for decode_stream."""
    view = memoryview(raw)
    try:
        for i in range(0, len(raw), max(1, block_bytes)):
            yield view[i:i + block_bytes]
    finally:
        view.release()
