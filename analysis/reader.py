"""Read one Kineto Chrome-trace file (plain or .gz) into numpy columns.

Decoding uses msgspec typed structs that name only the fields the breakdown needs, so
the call stacks, input shapes and the rest of `args` are skipped, never built as
Python objects (measured against orjson in benchmarks/RESULTS.md: ~3.5x faster and
~2.5x less memory). Names, categories, pids and tids are interned to small ints.
Both forms are accepted: torch 2.x (`cpu_op`, `kernel`, `gpu_memcpy`, ...) and the
older one (`Operator`, `Runtime`, `Kernel`, `Memcpy`, `Memset`). Any problem with
the file becomes a one-line TraceError naming it.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Union

import msgspec
import numpy as np
from numpy.typing import NDArray

from analysis.errors import TraceError

_Num = Union[int, float, str, None]   # tolerated in args; anything but a finite number reads as "absent"


class _Args(msgspec.Struct, gc=False):
    device: _Num = None
    correlation: _Num = None
    nbytes: _Num = msgspec.field(default=None, name="bytes")
    bandwidth: _Num = msgspec.field(default=None, name="memory bandwidth (GB/s)")


class _Event(msgspec.Struct, tag_field="ph", tag="X", gc=False):
    """A complete event, the only kind with a duration; other phases decode to empty structs."""

    cat: Union[str, None] = None
    name: Union[str, None] = None
    pid: Union[int, str, None] = None
    tid: Union[int, str, None] = None
    ts: Union[float, None] = None
    dur: Union[float, None] = None
    args: Union[_Args, None] = None


# Every other Chrome-trace phase: flows, instants, counters, metadata... their fields are
# skipped by the decoder, not built (a third of a torch 2.x trace's entries).
_OTHER_PHASES = tuple(
    msgspec.defstruct(f"_Phase{i}", [], tag_field="ph", tag=ph, gc=False)
    for i, ph in enumerate("B E i I C b n e s t f P N O D M V v R c ( ) S T F p".split()))


class _DistInfo(msgspec.Struct, gc=False):
    """Kineto's top-level `distributedInfo` (torch.distributed was initialised when it recorded)."""

    backend: Union[str, None] = None
    rank: _Num = None
    world_size: _Num = None


class _TraceFile(msgspec.Struct):
    traceEvents: list[Union[(_Event,) + _OTHER_PHASES]]  # type: ignore[valid-type]
    baseTimeNanoseconds: Union[int, None] = None
    distributedInfo: Union[_DistInfo, None] = None


@dataclass(frozen=True)
class Distributed:
    """The process group a trace's process was in, as Kineto recorded it (None fields: not said)."""

    backend: str | None
    rank: int | None
    world_size: int | None


def _distributed(info: _DistInfo | None) -> Distributed | None:
    if info is None:
        return None
    def whole(v: _Num) -> int | None:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 2**31 else None
    return Distributed(info.backend if isinstance(info.backend, str) else None, whole(info.rank), whole(info.world_size))


_DECODER = msgspec.json.Decoder(_TraceFile)
_NO_ARGS = _Args()
_get_ts, _get_dur, _get_name, _get_cat, _get_pid, _get_tid, _get_args = (
    attrgetter(f) for f in ("ts", "dur", "name", "cat", "pid", "tid", "args"))
_get_device, _get_corr, _get_bytes, _get_bw = (attrgetter(f) for f in ("device", "correlation", "nbytes", "bandwidth"))


@dataclass
class Trace:
    """The complete ("X") events of one trace file as parallel numpy columns.

    `ts` is microseconds relative to `t0_us` (the first event), which keeps float64
    precision on traces whose clock reads ~1.6e15 µs. A GPU event's `device` is its
    CUDA index; host events carry -1. `corr` links a launch to the GPU work it started.
    """

    path: Path
    t0_us: float                    # trace-clock µs of ts == 0
    base_time_ns: int | None        # Kineto's baseTimeNanoseconds when present
    ts: NDArray[np.float64]
    dur: NDArray[np.float64]
    pid: NDArray[np.int32]          # index into pids
    tid: NDArray[np.int32]          # index into tids
    device: NDArray[np.int64]       # CUDA device index (GPU events) or -1
    cat: NDArray[np.int32]          # index into cats
    name: NDArray[np.int32]         # index into names
    corr: NDArray[np.int64]         # correlation id or -1
    nbytes: NDArray[np.float64]     # bytes moved (memcpy / memset) or nan
    names: list[str]
    cats: list[str]
    pids: list[int | str]
    tids: list[int | str]
    n_json_events: int              # every entry of traceEvents, timed or not
    distributed: Distributed | None = None   # Kineto's distributedInfo, when torch.distributed was up

    def unix_ns(self, trace_us: float) -> int | None:
        """A trace-clock time in ns since the epoch (baseTimeNanoseconds + ts·1000), when the trace says."""
        return None if self.base_time_ns is None else self.base_time_ns + round(trace_us * 1000)

    @property
    def end(self) -> NDArray[np.float64]:
        return self.ts + self.dur

    def __len__(self) -> int:
        return len(self.ts)


def read_bytes(path: Path) -> bytes | bytearray:
    """The file's (decompressed) bytes; gzip is detected by its magic number, not the name.

    Both paths fill one preallocated buffer, so reading never holds the text twice.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(2)
            if head != b"\x1f\x8b":
                buf = bytearray(size)
                buf[:len(head)] = head
                view = memoryview(buf)
                n = len(head)
                while n < size and (got := f.readinto(view[n:])):
                    n += got
                view.release()
                del buf[n:]
                return buf
            f.seek(max(size - 4, 0))
            size_hint = struct.unpack("<I", f.read(4).rjust(4, b"\0"))[0]   # uncompressed size mod 2**32
        # Kineto JSON inflates ~10-40x; a larger hint is most likely a truncated file's garbage
        # tail, so trust it only up to 64x and let the buffer grow past that if it is real.
        return _gunzip(path, min(size_hint, size * 64))
    except TraceError:
        raise
    except FileNotFoundError:
        raise TraceError(path, "no such file") from None
    except IsADirectoryError:
        raise TraceError(path, "is a directory, not a trace file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise TraceError(path, f"corrupt or truncated gzip ({e})") from None
    except OSError as e:
        raise TraceError(path, f"cannot read ({e.strerror or e})") from None


def _gunzip(path: Path, size_hint: int) -> bytearray:
    """Inflate into one preallocated buffer with zlib directly.

    gzip.GzipFile.readinto would first build the whole text as a bytes object and
    then copy it: twice the memory and a slower read.
    """
    out = bytearray(size_hint)
    n = 0
    d = zlib.decompressobj(31)                      # 31: expect a gzip header
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            while chunk:
                piece = d.decompress(chunk)
                out[n:n + len(piece)] = piece       # grows the buffer when the hint was short
                n += len(piece)
                chunk = b""
                if d.eof:                           # next member of a multi-member file
                    rest = d.unused_data
                    if rest.strip(b"\0"):
                        d, chunk = zlib.decompressobj(31), rest
    if not d.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    del out[n:]
    return out


def decode(path: Path, data: bytes | bytearray) -> _TraceFile:
    """JSON bytes -> typed events; any decode or type problem -> TraceError."""
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as e:
        raise TraceError(path, f"not a Kineto trace: {e}") from None
    except msgspec.DecodeError as e:
        raise TraceError(path, f"not valid JSON: {e}") from None


class _Interner:
    """Value -> small int, first-seen order, shared across chunks (C-level loops)."""

    def __init__(self) -> None:
        self.table: dict = {}

    def codes(self, values: list) -> NDArray[np.int32]:
        table = self.table
        for v in dict.fromkeys(values):
            if v not in table:
                table[v] = len(table)
        return np.fromiter(map(table.__getitem__, values), np.int32, len(values))

    def keys(self) -> list:
        return ["" if k is None else k for k in self.table]


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


_COLUMNS = ("ts", "dur", "name", "cat", "pid", "tid", "device", "corr", "nbytes", "bw")


class _Columns:
    """Accumulates the X events of one or more decoded chunks as numpy columns."""

    def __init__(self) -> None:
        self.parts: dict[str, list[NDArray]] = {c: [] for c in _COLUMNS}
        self.names, self.cats, self.pids, self.tids = _Interner(), _Interner(), _Interner(), _Interner()
        self.n_json = 0

    def add(self, events: list) -> None:
        self.n_json += len(events)
        xs = [e for e in events if type(e) is _Event]
        if not xs:
            return
        p = self.parts
        p["ts"].append(np.array(list(map(_get_ts, xs)), np.float64))      # missing -> nan, dropped later
        p["dur"].append(_numbers(list(map(_get_dur, xs)), 0.0))
        p["name"].append(self.names.codes(list(map(_get_name, xs))))
        p["cat"].append(self.cats.codes(list(map(_get_cat, xs))))
        p["pid"].append(self.pids.codes(list(map(_get_pid, xs))))
        p["tid"].append(self.tids.codes(list(map(_get_tid, xs))))
        args = [_NO_ARGS if a is None else a for a in map(_get_args, xs)]
        p["device"].append(_ids(list(map(_get_device, args))))
        p["corr"].append(_ids(list(map(_get_corr, args))))
        p["nbytes"].append(_numbers(list(map(_get_bytes, args)), float("nan")))
        p["bw"].append(_numbers(list(map(_get_bw, args)), float("nan")))

    def arrays(self) -> dict[str, NDArray]:
        return {c: (np.concatenate(v) if v else np.empty(0)) for c, v in self.parts.items()}


# Chunked decoding. Kineto writes each traceEvents entry on a new line indented by exactly
# two spaces ("\n  {"); a JSON string cannot hold a raw newline and nested objects sit
# deeper, so those positions are entry boundaries. Decoding ~CHUNK_BYTES at a time keeps
# the peak at the raw text plus one chunk's objects instead of plus every event's objects.
CHUNK_BYTES = 4 << 20
_EVENT_LIST = msgspec.json.Decoder(list[Union[(_Event,) + _OTHER_PHASES]])  # type: ignore[valid-type]
_ENTRY = b"\n  {"


class _NotChunkable(Exception):
    """The text is not laid out as Kineto writes it; decode it whole instead."""


def _decode_chunked(raw: bytes | bytearray, cols: _Columns, chunk_bytes: int) -> _TraceFile:
    """Decode traceEvents chunk by chunk into cols; returns the document's head (its last events
    already added), for baseTimeNanoseconds and distributedInfo."""
    key = raw.find(b'"traceEvents"')
    start = raw.find(b"[", key) if key >= 0 else -1
    if start < 0:
        raise _NotChunkable
    pos = start + 1
    chunk_bytes = max(1, chunk_bytes)
    view = memoryview(raw)
    try:
        while (cut := raw.find(_ENTRY, pos + chunk_bytes)) >= 0:
            end = cut
            while end > pos and raw[end - 1] in b" \t\r\n":
                end -= 1
            if raw[end - 1] != 0x2C:                        # the entry before the cut ends with ","
                raise _NotChunkable
            body = bytearray(b"[")
            body += view[pos:end - 1]
            body += b"]"
            cols.add(_EVENT_LIST.decode(body))
            del body
            pos = cut
        # the rest: the document's head with only the remaining entries (validates the whole shape)
        doc = _DECODER.decode(bytes(view[:start + 1]) + bytes(view[pos:]))
    except msgspec.MsgspecError:
        raise _NotChunkable from None
    finally:
        view.release()
    cols.add(doc.traceEvents)
    doc.traceEvents = []
    return doc


def read_trace(path: Path | str) -> Trace:
    """Read a Kineto trace file; raises TraceError (one line) for anything unreadable."""
    path = Path(path)
    return parse_trace(read_bytes(path), path)


def parse_trace(raw: bytes | bytearray, path: Path | str = "<memory>", chunk_bytes: int = CHUNK_BYTES) -> Trace:
    """Decoded JSON bytes -> Trace; `path` only names the source in errors."""
    path = Path(path)
    if not raw or raw.isspace():             # no strip(): that would copy the whole buffer
        raise TraceError(path, "empty file")
    cols = _Columns()
    try:
        if len(raw) <= 2 * chunk_bytes:
            raise _NotChunkable
        doc = _decode_chunked(raw, cols, chunk_bytes)
    except _NotChunkable:
        cols = _Columns()
        doc = decode(path, raw)
        cols.add(doc.traceEvents)
        doc.traceEvents = []
    base, dist = doc.baseTimeNanoseconds, _distributed(doc.distributedInfo)
    del doc
    del raw
    c = cols.arrays()
    ts = c["ts"]
    keep = np.isfinite(ts)
    if not keep.any():
        raise TraceError(path, f"no timed events (ph 'X') among {cols.n_json} traceEvents")
    np.maximum(c["dur"], 0.0, out=c["dur"])
    if not keep.all():
        c = {k: v[keep] for k, v in c.items()}
    ts, dur = c["ts"], c["dur"]
    with np.errstate(over="ignore", invalid="ignore"):
        in_range = np.isfinite(ts + dur).all() and np.isfinite(ts.max() - ts.min())
    if not in_range:
        raise TraceError(path, "timestamps or durations out of range")
    t0 = float(ts.min())
    ts -= t0
    nbytes, bw = c["nbytes"], c["bw"]
    guess = np.isnan(nbytes) & ~np.isnan(bw)   # bytes absent, bandwidth given: GB/s * µs * 1e3 = bytes
    nbytes[guess] = bw[guess] * dur[guess] * 1e3
    return Trace(
        path=path, t0_us=t0, base_time_ns=base, ts=ts, dur=dur,
        pid=c["pid"], tid=c["tid"], device=c["device"], cat=c["cat"], name=c["name"],
        corr=c["corr"], nbytes=nbytes,
        names=cols.names.keys(), cats=cols.cats.keys(), pids=cols.pids.keys(), tids=cols.tids.keys(),
        n_json_events=cols.n_json, distributed=dist,
    )
