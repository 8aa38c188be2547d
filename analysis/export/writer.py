"""Write every trace of one run folder into one Chrome-trace JSON on one clock, in bounded memory.

Two passes, one trace in memory at a time:

1. *read*: each trace file goes through the reader (analysis.trace.reader.read_trace) and the
   step layer (resolve, analysis.step.spans.breakdown_spans); what the export needs of it -- the
   complete events' columns, the thread table, the scalescope spans -- is pickled to a spill file
   in a temporary folder beside the output, and the trace is dropped. Its clock is noted: Kineto
   writes `ts` in µs relative to `baseTimeNanoseconds` when the file has it (absolute otherwise).
2. *write*: the earliest event of all files is now known, so each spill file is loaded in turn,
   its events shifted onto the common clock (the earliest event at 0) and encoded (msgspec) in
   chunks straight into the output, which is a temp file renamed into place at the end (gzip when
   its name ends in .gz).

In the output each trace file is one process: pid = its index in worker order (torch.distributed
rank when the trace says it, else the worker name in natural order), named by `process_name`
metadata ("rank0 (pid 24263)"). Its host threads and GPU streams become that process's threads
("thread 24263", "gpu 0 stream 7"), and scalescope adds its tracks to it: "step breakdown" (one
`cat: "scalescope"` span per contiguous piece of each category within each profiled step window,
the pieces the breakdown sums), "gpu N breakdown" per GPU, and the `ss:*` phase labels
(`cat: "scalescope_phase"`). Every span's `args.step` is its ProfilerStep number.

What is carried of the source: the complete ("X") events -- name, category, thread, start,
duration, and the args the reader keeps (device, correlation, bytes). Flow arrows, counters,
instants and the other args (shapes, call stacks) are not (the reader never decodes them).
Times are written to the nanosecond (3 decimals of µs), the grid Kineto writes on.
"""
from __future__ import annotations

import gzip
import pickle
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec
import numpy as np
from numpy.typing import NDArray

from analysis.step.events import Events, resolve, worker_name
from analysis.step.spans import (
    BREAKDOWN,
    DP_PHASE_TRACK,
    PHASE_TRACK,
    STEP_TRACK,
    SpanSet,
    breakdown_spans,
)
from analysis.trace.errors import TraceError
from analysis.trace.reader import read_trace
from profiler.contract.runjson import atomic_output

__all__ = ["CAT_PHASES", "CAT_SPANS", "CHUNK_EVENTS", "ExportResult", "RankInfo", "export_run"]

CAT_SPANS = "scalescope"            # the breakdown's exclusive pieces
CAT_PHASES = "scalescope_phase"     # the ss:* phase labels
CHUNK_EVENTS = 1 << 16              # events encoded and written at a time
GZIP_LEVEL = 6


class _Args(msgspec.Struct, omit_defaults=True, gc=False):
    device: int = -1
    correlation: int = -1
    bytes: float | None = None


class _Step(msgspec.Struct, gc=False):
    step: int


class _X(msgspec.Struct, tag_field="ph", tag="X", omit_defaults=True, gc=False):
    cat: str
    name: str
    pid: int
    tid: int
    ts: float
    dur: float
    args: object = None


class _M(msgspec.Struct, tag_field="ph", tag="M", gc=False):
    name: str
    pid: int
    tid: int
    args: dict


@dataclass
class _Spill:
    """What pass 2 needs of one trace (pickled between the passes)."""

    ts: NDArray[np.float64]            # µs relative to the trace's first event
    dur: NDArray[np.float64]
    thread: NDArray[np.int32]          # index into threads
    name: NDArray[np.int32]
    cat: NDArray[np.int32]
    device: NDArray[np.int64]
    corr: NDArray[np.int64]
    nbytes: NDArray[np.float64]
    names: list[str]
    cats: list[str]
    threads: list[str]                 # output thread names, in output order
    spans: list[SpanSet]


@dataclass
class RankInfo:
    """One trace file of the run: its process in the export."""

    path: Path
    worker: str
    host_pid: int | str
    rank: int | None                   # torch.distributed rank, when the trace says
    base_ns: int | None                # baseTimeNanoseconds
    t0_us: float                       # its first event, on its own clock
    events: int
    spans: int
    spill: Path
    pid: int = -1
    shift_us: float = 0.0              # added to its times (relative to t0_us) in the export
    label: str = ""


@dataclass
class ExportResult:
    out: Path
    ranks: list[RankInfo] = field(default_factory=list)
    events: int = 0                    # traceEvents entries written (metadata included)
    bytes: int = 0                     # size of the file written
    origin_unix_ns: int | None = None  # what ts == 0 is, when every trace has baseTimeNanoseconds


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _whole(x: int | str) -> int | str:
    """A pid or tid the old trace format wrote as text ("25738") as the number it is."""
    return int(x) if isinstance(x, str) and x.isdigit() else x


def _threads(ev: Events) -> tuple[NDArray[np.int32], list[str]]:
    """Each event's output thread, and the threads' names: the host process's threads (by thread id),
    then other host processes', then each GPU's streams, then whatever else (Kineto's "Spans")."""
    tr = ev.tr
    key = tr.pid.astype(np.int64) * (len(tr.tids) + 1) + tr.tid
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    rows = []
    host_pid = _whole(ev.host_pid)
    for i in first.tolist():
        pid, tid = _whole(tr.pids[tr.pid[i]]), _whole(tr.tids[tr.tid[i]])
        if ev.gpu[i]:
            d = int(ev.gpu_index[i])
            stream = tid.removeprefix("stream ") if isinstance(tid, str) else tid     # the old format's "stream 7"
            rows.append(((2, d, _natural(str(stream))), f"gpu {d} stream {stream}"))
        elif isinstance(pid, int) and isinstance(tid, int):
            own = pid == host_pid
            rows.append(((0 if own else 1, pid, [tid]), f"thread {tid}" if own else f"pid {pid} thread {tid}"))
        else:
            rows.append(((3, 0, _natural(f"{pid} {tid}")), f"{pid}: {tid}"))
    order = sorted(range(len(rows)), key=lambda j: rows[j][0])
    new_of_old = np.empty(len(rows), np.int32)
    new_of_old[order] = np.arange(len(rows), dtype=np.int32)
    return new_of_old[inverse.reshape(-1)], [rows[j][1] for j in order]


def _read_one(path: Path, spill_dir: Path, index: int) -> RankInfo:
    """Pass 1 for one trace: read, resolve, compute the spans, spill; nothing of it stays in memory."""
    tr = read_trace(path)
    try:
        ev = resolve(tr)
        thread, threads = _threads(ev)
        spans = breakdown_spans(ev)
    except (ValueError, IndexError, OverflowError, TypeError, KeyError, ZeroDivisionError) as e:
        raise TraceError(path, f"could not analyse ({type(e).__name__}: {e})") from None
    spill = spill_dir / f"{index}.pickle"
    data = _Spill(tr.ts, tr.dur, thread, tr.name, tr.cat, tr.device, tr.corr, tr.nbytes,
                  tr.names, tr.cats, threads, spans)
    with open(spill, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    dist = tr.distributed
    return RankInfo(path, worker_name(path), ev.host_pid, dist.rank if dist else None, tr.base_time_ns,
                    tr.t0_us, len(tr), sum(len(s) for s in spans), spill)


def _place(ranks: list[RankInfo]) -> int | None:
    """Order the traces (pid), name them, and put them on one clock: shift_us per trace, the earliest
    event at 0. Returns the origin in ns since the epoch when every trace has baseTimeNanoseconds."""
    ranks.sort(key=lambda r: (r.rank is None, r.rank if r.rank is not None else 0, _natural(r.worker), r.path.name))
    workers = [r.worker for r in ranks]
    ref = min((r.base_ns for r in ranks if r.base_ns is not None), default=0)
    # (base_ns - ref) is whole ns and the t0s lie on Kineto's ns grid: the shifts are sums of small differences
    base_us = [(0 if r.base_ns is None else r.base_ns - ref) / 1000 for r in ranks]
    o = min(range(len(ranks)), key=lambda i: base_us[i] + ranks[i].t0_us)
    for pid, r in enumerate(ranks):
        r.pid = pid
        r.shift_us = (base_us[pid] - base_us[o]) + (r.t0_us - ranks[o].t0_us)
        name = r.worker if workers.count(r.worker) == 1 else r.path.name
        r.label = f"{name} (pid {r.host_pid})"
    first = ranks[o]
    if first.base_ns is not None and all(r.base_ns is not None for r in ranks):
        return first.base_ns + round(first.t0_us * 1000)
    return None


def _ns(a: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.round(a, 3)


def _source_events(r: RankInfo, s: _Spill) -> Iterator[list]:
    """The trace's complete events, shifted, in chunks of CHUNK_EVENTS."""
    names = np.array(s.names, dtype=object)
    cats = np.array(s.cats, dtype=object)
    tids = (s.thread.astype(np.int64) + _first_thread_tid(s)).tolist() if len(s.thread) else []
    for lo in range(0, len(s.ts), CHUNK_EVENTS):
        hi = min(lo + CHUNK_EVENTS, len(s.ts))
        dev, corr, nb = s.device[lo:hi], s.corr[lo:hi], s.nbytes[lo:hi]
        has = (dev >= 0) | (corr >= 0) | ~np.isnan(nb)
        args: list[object] = [None] * (hi - lo)
        for j in np.flatnonzero(has).tolist():
            b = float(nb[j])
            args[j] = _Args(int(dev[j]), int(corr[j]), None if np.isnan(b) else b)
        yield list(map(_X, cats[s.cat[lo:hi]].tolist(), names[s.name[lo:hi]].tolist(), [r.pid] * (hi - lo),
                       tids[lo:hi], _ns(s.ts[lo:hi] + r.shift_us).tolist(), s.dur[lo:hi].tolist(), args))


def _tracks(s: _Spill) -> list[str]:
    """scalescope's own tracks of this trace, first in the process: step breakdown, phases, per-GPU breakdowns."""
    present = {x.track for x in s.spans}
    fixed = [t for t in (STEP_TRACK, PHASE_TRACK, DP_PHASE_TRACK) if t in present]
    return fixed + sorted(present - set(fixed), key=_natural)


def _first_thread_tid(s: _Spill) -> int:
    return len(_tracks(s)) + 1


def _span_events(r: RankInfo, s: _Spill) -> Iterator[list]:
    """scalescope's spans on the common clock: start and end each rounded to the ns, so that the
    pieces of one track still tile (no two overlap)."""
    tid_of = {t: i + 1 for i, t in enumerate(_tracks(s))}
    for x in s.spans:
        start, end = _ns(x.rows[:, 0] + r.shift_us), _ns(x.rows[:, 1] + r.shift_us)
        dur = _ns(end - start)
        cat = CAT_SPANS if x.kind == BREAKDOWN else CAT_PHASES
        n = len(start)
        for lo in range(0, n, CHUNK_EVENTS):
            hi = min(lo + CHUNK_EVENTS, n)
            yield list(map(_X, [cat] * (hi - lo), [x.label] * (hi - lo), [r.pid] * (hi - lo),
                           [tid_of[x.track]] * (hi - lo), start[lo:hi].tolist(), dur[lo:hi].tolist(),
                           list(map(_Step, x.step[lo:hi].tolist()))))


def _metadata(r: RankInfo, s: _Spill) -> list:
    out = [_M("process_name", r.pid, 0, {"name": r.label}),
           _M("process_sort_index", r.pid, 0, {"sort_index": r.pid})]
    names = [f"scalescope: {t}" for t in _tracks(s)] + s.threads
    for i, name in enumerate(names):
        out += [_M("thread_name", r.pid, i + 1, {"name": name}), _M("thread_sort_index", r.pid, i + 1, {"sort_index": i + 1})]
    return out


class _Counting:
    """A binary file wrapper that counts traceEvents entries and separates them with ",\\n"."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.n = f, 0

    def events(self, batch: list) -> None:
        if not batch:
            return
        text = _ENCODER.encode(batch)                       # b"[{...},{...}]"
        body = text[1:-1].replace(b"},{\"ph\"", b"},\n{\"ph\"")
        self.f.write((b",\n" if self.n else b"\n") + body)
        self.n += len(batch)


_ENCODER = msgspec.json.Encoder()


@contextmanager
def _atomic(out: Path) -> Iterator[BinaryIO]:
    """The contract's atomic output (temp file, fsync, rename; removed on error), gzipped when out ends
    in .gz: out is never seen half written."""
    with atomic_output(out) as raw:
        if out.name.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw


def export_run(traces: list[Path], out: Path, run_name: str = "",
               progress: Callable[[str, int], Callable[[], None]] | None = None) -> ExportResult:
    """Write `traces` (one run's trace files) into one Chrome-trace JSON at `out` (see the module docstring).

    Raises TraceError (one line, naming the file) for a trace that cannot be read, OSError for the output.
    progress: called as progress(phase, total) -> tick, for a bar over the files of each pass."""
    out = Path(out)
    result = ExportResult(out)
    tick = progress("read", len(traces)) if progress else (lambda: None)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.spill.") as spill_dir:
        for i, path in enumerate(traces):
            result.ranks.append(_read_one(Path(path), Path(spill_dir), i))
            tick()
        result.origin_unix_ns = _place(result.ranks)
        tick = progress("write", len(traces)) if progress else (lambda: None)
        with _atomic(out) as f:
            f.write(b'{"displayTimeUnit":"ms",')
            if result.origin_unix_ns is not None:
                f.write(b'"baseTimeNanoseconds":%d,' % result.origin_unix_ns)
            f.write(b'"otherData":' + _ENCODER.encode({
                "producer": "scalescope (python -m analysis.export)", "run": run_name,
                "ranks": [{"pid": r.pid, "worker": r.worker, "file": r.path.name, "host_pid": r.host_pid,
                           "rank": r.rank, "shift_us": round(r.shift_us, 3)} for r in result.ranks]}))
            f.write(b',"traceEvents":[')
            w = _Counting(f)
            for r in result.ranks:
                with open(r.spill, "rb") as sf:
                    s: _Spill = pickle.load(sf)
                r.spill.unlink()
                w.events(_metadata(r, s))
                for batch in _source_events(r, s):
                    w.events(batch)
                for batch in _span_events(r, s):
                    w.events(batch)
                del s
                tick()
            f.write(b"\n]}\n")
            result.events = w.n
    result.bytes = out.stat().st_size
    return result
