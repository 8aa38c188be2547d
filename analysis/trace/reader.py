"""Read one Kineto Chrome-trace file (plain or .gz) into numpy columns.

Decoding (analysis.trace.columns) uses msgspec typed structs that name only the fields the
breakdown needs, so the call stacks, input shapes and the rest of `args` are skipped, never
built as Python objects, and it runs as the file streams in, so the text is never held whole
(benchmarks/RESULTS.md). Both forms are accepted: torch 2.x (`cpu_op`, `kernel`,
`gpu_memcpy`, ...) and the older one (`Operator`, `Runtime`, `Kernel`, `Memcpy`, `Memset`).
Any problem with the file becomes a one-line TraceError naming it.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import msgspec
import numpy as np
from numpy.typing import NDArray

from analysis.trace.errors import TraceError
from profiler.contract.runfiles import open_regular
from analysis.trace.columns import (CHUNK_BYTES, Columns, DistInfo, NotChunkable, TraceFile, decode_document,
                                    decode_stream, device_names, file_blocks, memory_blocks)

@dataclass(frozen=True)
class Distributed:
    """The process group a trace's process was in, as Kineto recorded it (None fields: not said)."""

    backend: str | None
    rank: int | None
    world_size: int | None


def _distributed(info: DistInfo | None) -> Distributed | None:
    if info is None:
        return None
    def whole(v: object) -> int | None:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 2**31 else None
    return Distributed(info.backend if isinstance(info.backend, str) else None, whole(info.rank), whole(info.world_size))


@dataclass
class Trace:
    """The complete ("X") events of one trace file as parallel numpy columns, in start order.

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
    device_names: tuple[str, ...] = ()       # Kineto's deviceProperties: the GPUs the process saw, by index

    def unix_ns(self, trace_us: float) -> int | None:
        """A trace-clock time in ns since the epoch (baseTimeNanoseconds + ts·1000), when the trace says."""
        return None if self.base_time_ns is None else self.base_time_ns + round(trace_us * 1000)

    @cached_property
    def end(self) -> NDArray[np.float64]:
        """ts + dur, computed once (the columns are not changed after reading)."""
        return self.ts + self.dur

    def __len__(self) -> int:
        return len(self.ts)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Whatever goes wrong while reading the file -> one TraceError line naming it."""
    try:
        yield
    except TraceError:
        raise
    except FileNotFoundError:
        if os.path.islink(path):
            raise TraceError(path, f"a broken symbolic link (to {os.readlink(path)})") from None
        raise TraceError(path, "no such file") from None
    except IsADirectoryError:
        raise TraceError(path, "is a directory, not a trace file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise TraceError(path, f"corrupt or truncated gzip ({e})") from None
    except OSError as e:
        raise TraceError(path, f"cannot read ({e.strerror or e})") from None


def gzip_trailer(f: BinaryIO, size: int) -> int | None:
    """A gzip file's uncompressed size from its trailer (mod 2**32); None for a file that is not gzip
    (detected by its magic number, not the name). Leaves the file at its start."""
    f.seek(0)
    if f.read(2) != b"\x1f\x8b":
        f.seek(0)
        return None
    f.seek(max(size - 4, 0))
    hint = struct.unpack("<I", f.read(4).rjust(4, b"\0"))[0]
    f.seek(0)
    return hint


def _text_size(f: BinaryIO) -> tuple[bool, int]:
    """(gzip?, the text's size): a plain file's, or the gzip trailer's -- Kineto JSON inflates ~10-40x,
    so a hint past 64x is most likely a truncated file's garbage tail and is trusted only that far."""
    size = os.fstat(f.fileno()).st_size
    hint = gzip_trailer(f, size)
    return (False, size) if hint is None else (True, min(hint, size * 64))


def _gzip_blocks(f: BinaryIO, block_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The inflated text in blocks of at most block_bytes, member after member (zlib directly:
    never the whole text at once)."""
    d = zlib.decompressobj(31)                      # 31: expect a gzip header
    while data := f.read(1 << 20):
        while data:
            piece = d.decompress(data, block_bytes)
            data = d.unconsumed_tail
            if piece:
                yield piece
            if d.eof:                               # next member of a multi-member file
                rest, data = d.unused_data, b""
                if rest.strip(b"\0"):
                    d, data = zlib.decompressobj(31), rest
    if not d.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")


def read_bytes(path: Path) -> bytes | bytearray:
    """The file's whole (decompressed) text, in one preallocated buffer (never held twice)."""
    with _reading(path), open_regular(path, buffering=0) as f:
        gz, size = _text_size(f)
        buf = bytearray(size)
        n = 0
        for block in (_gzip_blocks(f, 1 << 24) if gz else file_blocks(f, 1 << 24)):
            buf[n:n + len(block)] = block           # grows the buffer when the hint was short
            n += len(block)
        del buf[n:]
        return buf


def read_trace(path: Path | str, jobs: int = 1) -> Trace:
    """Read a Kineto trace file; raises TraceError (one line) for anything unreadable.

    The text is decoded as it is read (analysis.trace.columns.decode_stream), so the file is never
    held whole; jobs > 1: a large plain file is decoded by that many processes (analysis.trace.split),
    the same Trace. A file not laid out as Kineto writes it is read whole and decoded at once."""
    path = Path(path)
    if jobs > 1:
        trace = _read_split(path, jobs)
        if trace is not None:
            return trace
    try:
        return _read_streaming(path)
    except NotChunkable:
        return parse_trace(read_bytes(path), path)


def _read_streaming(path: Path) -> Trace:
    cols = Columns.empty()
    with _reading(path), open_regular(path, buffering=0) as f:
        gz, size = _text_size(f)
        if size <= 2 * CHUNK_BYTES:
            raise NotChunkable                      # small: decoded at once
        doc = decode_stream(_gzip_blocks(f, CHUNK_BYTES) if gz else file_blocks(f, CHUNK_BYTES), cols)
    assert doc is not None
    return _finish(path, cols, doc)


def _read_split(path: Path, jobs: int) -> Trace | None:
    """The Trace decoded by `jobs` processes, or None when the file is small or not laid out for it.

    A plain file is cut into ranges the workers read themselves; a gzip file is inflated here and
    handed to them block by block as it streams in."""
    from analysis.trace import split as readsplit

    with _reading(path), open_regular(path, buffering=0) as f:
        gz, size = _text_size(f)
        if size < readsplit.SPLIT_MIN_BYTES:
            return None
        if gz:
            parts = readsplit.decode_blocks(_gzip_blocks(f, CHUNK_BYTES), jobs, size, 2 * CHUNK_BYTES)
        else:
            parts = readsplit.decode_split(path, jobs)
    if parts is None:
        return None
    last = parts[-1]
    pieces, keys, n_json = readsplit.merge(parts)
    del parts
    return build_trace(path, pieces, keys, n_json, last.base_time_ns, _distributed(last.distributed),
                       last.device_names)


def parse_trace(raw: bytes | bytearray, path: Path | str = "<memory>", chunk_bytes: int = CHUNK_BYTES) -> Trace:
    """Decoded JSON bytes -> Trace; `path` only names the source in errors."""
    path = Path(path)
    if not raw or raw.isspace():             # no strip(): that would copy the whole buffer
        raise TraceError(path, "empty file")
    cols = Columns.empty()
    try:
        if len(raw) <= 2 * chunk_bytes:
            raise NotChunkable
        doc = decode_stream(memory_blocks(raw, chunk_bytes), cols)
    except NotChunkable:
        cols = Columns.empty()
        doc = _decode_whole(path, raw, cols)
    assert doc is not None
    return _finish(path, cols, doc)


def _finish(path: Path, cols: Columns, doc: TraceFile) -> Trace:
    base, dist = doc.baseTimeNanoseconds, _distributed(doc.distributedInfo)
    return build_trace(path, cols.parts, cols.keys(), cols.n_json, base, dist, device_names(doc.deviceProperties))


def _gathered(pieces: dict[str, list[NDArray]], take: NDArray[np.intp] | None) -> dict[str, NDArray]:
    """Each column's pieces joined and, when `take` is given, reordered by it; the pieces are freed
    as each column is built. Writing ~100 MB of fresh pages dominates on VMs, and numpy's copies
    release the GIL, so the columns are built by as many threads as there are cores (up to 4)."""
    if take is None:
        return {c: (np.concatenate(pieces.pop(c)) if pieces[c] else np.empty(0)) for c in list(pieces)}

    def build(c: str) -> NDArray:
        parts = pieces.pop(c)
        if not parts:
            return np.empty(0)
        joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
        del parts
        return np.take(joined, take)

    names = list(pieces)
    from profiler.cpualloc import usable_cpus
    threads = min(4, len(names), usable_cpus())
    if threads < 2 or len(take) < GATHER_THREADS_MIN:
        return {c: build(c) for c in names}
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as pool:
        return dict(zip(names, pool.map(build, names)))


GATHER_THREADS_MIN = 1 << 20     # events; below this a thread costs more than it saves


def _decode_whole(path: Path, data: bytes | bytearray, cols: Columns) -> TraceFile:
    """JSON bytes -> cols and the document's head; any decode or type problem -> TraceError."""
    try:
        return decode_document(data, cols)
    except msgspec.ValidationError as e:
        raise TraceError(path, f"not a Kineto trace: {e}") from None
    except msgspec.DecodeError as e:
        raise TraceError(path, f"not valid JSON: {e}") from None
    except RecursionError:
        raise TraceError(path, "JSON nested too deeply to decode") from None


TIME_LIMIT_US = 1e18    # µs (31,000 years): an event's start or duration past this is dropped, not summed


def build_trace(path: Path, pieces: dict[str, list[NDArray]], keys: dict[str, list], n_json: int,
                base: int | None, dist: Distributed | None, gpus: tuple[str, ...] = ()) -> Trace:
    """The decoded column pieces (emptied as they are used) -> a Trace: untimed events dropped,
    events in start order, times relative to the first."""
    ts_parts = pieces.pop("ts")
    ts = np.concatenate(ts_parts) if ts_parts else np.empty(0)
    del ts_parts
    with np.errstate(invalid="ignore"):      # a bool per event, never a second copy of the durations
        keep = np.isfinite(ts) & (np.abs(ts) <= TIME_LIMIT_US)
        if pieces["dur"]:
            keep &= np.concatenate([d <= TIME_LIMIT_US for d in pieces["dur"]])
    if not keep.any():
        wild = int(np.count_nonzero(np.isfinite(ts)))
        raise TraceError(path, f"no timed events (ph 'X') among {n_json} traceEvents"
                         + (f" ({wild} with timestamps or durations out of range)" if wild else ""))
    take = None if keep.all() else np.flatnonzero(keep)
    if take is not None:
        ts = ts[take]
    if np.any(ts[1:] < ts[:-1]):             # events in start order: every subset is then already
        order = np.argsort(ts, kind="stable")  # sorted for the interval unions (file order on ties)
        ts = ts[order]
        take = order if take is None else take[order]
    c = {"ts": ts, **_gathered(pieces, take)}
    dur = c["dur"]
    with np.errstate(over="ignore", invalid="ignore"):    # ts sorted and finite, dur >= 0: the ends' bound
        in_range = np.isfinite(dur).all() and np.isfinite(ts[-1] + dur.max()) and np.isfinite(ts[-1] - ts[0])
    if not in_range:
        raise TraceError(path, "timestamps or durations out of range")
    t0 = float(ts[0])
    ts -= t0
    return Trace(
        path=path, t0_us=t0, base_time_ns=base, ts=ts, dur=dur,
        pid=c["pid"], tid=c["tid"], device=c["device"], cat=c["cat"], name=c["name"],
        corr=c["corr"], nbytes=c["nbytes"],
        names=keys["name"], cats=keys["cat"], pids=keys["pid"], tids=keys["tid"],
        n_json_events=n_json, distributed=dist, device_names=gpus,
    )
