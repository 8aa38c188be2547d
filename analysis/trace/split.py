"""One large trace decoded by several processes, each a range of its entries, merged in order.

A single 400 MB trace is a few seconds of decoding on one core while the others wait. Kineto's
layout ("\\n  {" starts every traceEvents entry, analysis.trace.columns) lets the file be cut at
entry boundaries found by reading a few MB around each cut, so each worker decodes its own
range into columns with its own intern tables; the parent remaps the codes part by part in file
order, which gives the tables the same first-seen order -- and so the same Trace -- as one
process reading the whole file (tests/test_analysis_readsplit.py). The workers stream their own
ranges of a plain file (the parent never holds the text). A gzip file cannot be cut before it is
inflated, so the parent inflates it as one stream and hands the workers blocks of whole entries
as they come (decode_blocks). The columns come back through a shared map, not a pipe. Anything
unexpected -- another layout, a worker that dies, no fork -- and the caller reads the file in
one process.
"""
from __future__ import annotations

import mmap
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec
import numpy as np
from numpy.typing import NDArray

from analysis.trace.columns import (CHUNK_BYTES, COLUMN_TYPES, COLUMNS, HEAD_LIMIT, INTERNED, Columns, DistInfo,
                                    EntryCuts, Interner, NotChunkable, add_entries, decode_document, decode_stream,
                                    device_names, document_head, file_blocks, first_boundary)
from profiler.contract.runfiles import open_regular

SPLIT_MIN_BYTES = 64 << 20      # below this a second process costs more than it saves
PARTS_PER_WORKER = 3            # smaller parts even out ranges that decode at different speeds
CUT_WINDOW = 8 << 20            # an entry boundary is looked for this far past each cut


@dataclass(frozen=True)
class Part:
    """Entries [lo, hi) of the file; the last part (hi None) carries the document's head."""

    path: Path
    lo: int
    hi: int | None
    head: bytes | None
    block_bytes: int
    tail: bytes = b""               # closes the head (a bare array's "}")


@dataclass
class Decoded:
    """One part's columns with its own intern tables (their raw keys, in first-seen order)."""

    arrays: dict[str, list[NDArray]]          # the columns, sent back pickled (when not placed)
    keys: dict[str, list]
    n_json: int
    placed: dict[str, tuple[int, int, str]] | None = None   # or where they lie in the shared map
    base_time_ns: int | None = None
    distributed: DistInfo | None = None
    device_names: tuple[str, ...] = ()

    shared: mmap.mmap | None = None                         # that map, in the parent

    def columns(self) -> dict[str, list[NDArray]]:
        if self.placed is None or self.shared is None:
            return self.arrays
        return {c: [np.frombuffer(self.shared, np.dtype(dt), count=n, offset=off)]
                for c, (off, n, dt) in self.placed.items()}


# Results come back through one shared anonymous map made before the workers fork, not pickled
# through a pipe: each worker reserves its columns' bytes with a shared bump pointer and writes
# them there, and the parent reads them in place (sending them was ~0.3 s of a 2 s read).
_SHM: mmap.mmap | None = None
_NEXT = None                                   # multiprocessing.Value: the next free byte of _SHM
MIN_EVENT_BYTES = 10                           # '{"ph":"X"}': no X event is shorter in the text
_NORESERVE = 0x4000 if sys.platform.startswith("linux") else 0   # MAP_NORESERVE: untouched pages cost nothing


def _to_shared(pieces: dict[str, list[NDArray]]) -> dict[str, tuple[int, int, str]] | None:
    """Write a part's columns into the shared map; None (send them pickled) if there is none or no room."""
    if _SHM is None or _NEXT is None:
        return None
    sizes = {c: (sum(len(a) for a in v), v[0].dtype if v else np.dtype(np.float64)) for c, v in pieces.items()}
    need = sum(-(-n * dt.itemsize // 8) * 8 for n, dt in sizes.values())
    with _NEXT.get_lock():
        at = _NEXT.value
        if at + need > len(_SHM):
            return None
        _NEXT.value = at + need
    placed = {}
    for c, (n, dt) in sizes.items():
        if pieces[c]:
            np.concatenate(pieces[c], out=np.frombuffer(_SHM, dt, count=n, offset=at))
        placed[c] = (at, n, dt.str)
        at += -(-n * dt.itemsize // 8) * 8
    return placed


def fork_context() -> multiprocessing.context.BaseContext | None:
    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def cut_points(f: BinaryIO, size: int, parts: int) -> tuple[bytes, bytes, list[int]]:
    """The document's head and tail (tracecolumns.document_head) and the start of each part (entry
    boundaries, increasing), from a few reads of the open file; NotChunkable when there is no events list
    near the start. A boundary inside a string or deeper in an entry makes its parts fail to decode,
    and the file is then read in one process."""
    window = f.read(min(size, HEAD_LIMIT))
    found = document_head(window)
    if found is None:
        raise NotChunkable
    start, head, tail = found
    first = start + 1
    starts = [first]
    for k in range(1, parts):
        target = first + (size - first) * k // parts
        if target <= starts[-1]:
            continue
        f.seek(target)
        at = first_boundary(f.read(CUT_WINDOW), 0)
        if at >= 0 and target + at > starts[-1]:
            starts.append(target + at)
    return head, tail, starts


def plan(path: Path, parts: int, block_bytes: int = CHUNK_BYTES) -> list[Part]:
    with open_regular(path) as f:
        head, tail, starts = cut_points(f, os.fstat(f.fileno()).st_size, parts)
    ends: list[int | None] = [*starts[1:], None]
    return [Part(path, lo, hi, head if hi is None else None, block_bytes, tail if hi is None else b"")
            for lo, hi in zip(starts, ends)]


def decode_part(part: Part) -> Decoded:
    """A worker's job: its range streamed from the file into columns (NotChunkable if it does not decode).

    The range is read from one byte before its first entry: room for a chunk's "[" (tracecolumns)."""
    cols = Columns.empty()
    with open_regular(part.path, buffering=0) as f:
        f.seek(part.lo - 1)
        doc = decode_stream(file_blocks(f, part.block_bytes, part.hi), cols, head=part.head, whole=False,
                            tail=part.tail)
    return _decoded(cols, doc)


def decode_text(text: bytearray) -> Decoded:
    """A worker's job when the parent streams the text (gzip): one block of whole entries, from
    one byte before the first to just after the last one's comma (decoded in place)."""
    cols = Columns.empty()
    add_entries(text, 1, len(text), cols)
    return _decoded(cols, None)


def _decoded(cols: Columns, doc, share: bool = True) -> Decoded:
    """A part's result: its columns placed in the shared map when there is one (share: in a worker)."""
    placed = _to_shared(cols.parts) if share else None
    out = Decoded({} if placed else cols.parts, {c: list(t) for c, t in cols.tables.items()}, cols.n_json, placed)
    if doc is not None:
        out.base_time_ns, out.distributed = doc.baseTimeNanoseconds, doc.distributedInfo
        out.device_names = device_names(doc.deviceProperties)
    return out


def merge(parts: list[Decoded]) -> tuple[dict[str, list[NDArray]], dict[str, list], int]:
    """Parts in file order -> column pieces whose codes index one set of tables in first-seen order
    (the parts' code arrays are remapped in place)."""
    tables = {c: Interner() for c in INTERNED}
    pieces: dict[str, list[NDArray]] = {c: [] for c in COLUMNS}
    for p in parts:
        cols = p.columns()
        for c in COLUMNS:
            got = cols[c]
            if c in tables and got:
                remap = np.fromiter(map(tables[c].__getitem__, p.keys[c]), np.int32, len(p.keys[c]))
                for a in got:
                    np.take(remap, a, out=a, mode="clip")     # "clip": unbuffered, codes are in range
            pieces[c].extend(got)
        p.arrays = {}
    return pieces, {c: t.keys_list() for c, t in tables.items()}, sum(p.n_json for p in parts)


def decode_split(path: Path, workers: int, block_bytes: int = CHUNK_BYTES) -> list[Decoded] | None:
    """The plain file's parts decoded by `workers` forked processes, in file order; None: read it in one."""
    ctx = fork_context()
    if ctx is None or workers < 2:
        return None
    try:
        parts = plan(path, workers * PARTS_PER_WORKER, block_bytes)
        if len(parts) < 2:
            return None
        with _shared_results(ctx, path.stat().st_size, len(parts)) as shared, \
                ProcessPoolExecutor(max_workers=min(workers, len(parts)), mp_context=ctx) as pool:
            decoded = list(pool.map(decode_part, parts))
        for d in decoded:
            d.shared = shared
        return decoded
    except (NotChunkable, BrokenProcessPool, OSError, MemoryError):
        return None


def decode_blocks(blocks: Iterator[bytes], workers: int, json_bytes: int,
                  task_bytes: int = 2 * CHUNK_BYTES) -> list[Decoded] | None:
    """A text that can only be read in order (inflated gzip), cut at entry boundaries as it streams
    in and decoded by `workers` forked processes while the parent reads on; None: read it in one.

    At most 2 x workers blocks are in flight, so the parent never holds much more text than that.
    json_bytes: the expected size of the text (the shared map for the results is sized from it;
    a worker that finds it full sends its columns pickled instead). Errors of the stream itself
    (a corrupt gzip) propagate."""
    ctx = fork_context()
    if ctx is None or workers < 1:
        return None
    try:
        with _shared_results(ctx, json_bytes, 1 + json_bytes // task_bytes) as shared:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            try:
                futures, rest, head, tail = _submit_blocks(pool, blocks, workers, task_bytes)
                decoded = [f.result() for f in futures]
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        cols = Columns.empty()                       # the document's end: read here, with its head
        try:
            doc = decode_document(head + rest + tail, cols)
        except (msgspec.MsgspecError, RecursionError):
            raise NotChunkable from None
        last = _decoded(cols, doc, share=False)
        for d in decoded:
            d.shared = shared
        return [*decoded, last]
    except (NotChunkable, BrokenProcessPool, MemoryError):
        return None


def _submit_blocks(pool: ProcessPoolExecutor, blocks: Iterator[bytes], workers: int,
                   task_bytes: int) -> tuple[list[Future], bytes, bytes, bytes]:
    """Cut the stream into tasks of whole entries; returns their futures, the text after the last
    boundary (the document's end), the document's head and what closes it."""
    futures: list[Future] = []
    cuts = EntryCuts(blocks, min_bytes=task_bytes)
    for cut in cuts:
        if sum(not f.done() for f in futures) >= 2 * workers:
            wait([f for f in futures if not f.done()], return_when=FIRST_COMPLETED)
        futures.append(pool.submit(decode_text, cuts.buf[cuts.pos - 1:cut]))   # one copy, sent as it is
    assert cuts.head is not None
    return futures, cuts.rest(), cuts.head, cuts.tail


@contextmanager
def _shared_results(ctx: multiprocessing.context.BaseContext, json_bytes: int, parts: int) -> Iterator[mmap.mmap | None]:
    """The shared map the forked workers write their columns into, sized for the most X events the
    text can hold; None when the system will not map it (the columns then come back pickled)."""
    global _SHM, _NEXT
    bound = json_bytes // MIN_EVENT_BYTES * sum(np.dtype(t).itemsize for t in COLUMN_TYPES.values())
    try:
        _SHM = mmap.mmap(-1, bound + 8 * len(COLUMNS) * parts, flags=mmap.MAP_SHARED | _NORESERVE)
        _NEXT = ctx.Value("q", 0)
    except (OSError, ValueError, OverflowError):
        _SHM = _NEXT = None
    try:
        yield _SHM
    finally:
        _SHM = _NEXT = None       # the map lives on in the parts (and their views) until they are dropped
