"""Traces analysed in a process pool sized to the job's CPUs and to memory, with results identical to one by one.

A run with 8 rank traces on a machine with spare cores should not wait for them in turn. Each
trace is independent; a worker's peak memory is known in advance from the file (about
PEAK_PER_JSON_BYTE x its JSON: the columns and one block of text being decoded), so the pool never
starts more workers than the available memory holds. The one dependency between traces -- the
first trace of a run with steps gets the timeline the report plots -- is kept by asking the
first trace for it and, when that one has no steps, the next ones in order afterwards.
"""
from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from analysis.records import TraceAnalysis
from profiler.cpualloc import usable_cpus

__all__ = ["PEAK_PER_JSON_BYTE", "json_bytes", "available_memory", "pool_size", "split_size",
           "analyse_traces"]

PEAK_PER_JSON_BYTE = 0.8        # a worker's peak RSS per byte of the trace's JSON, streamed (RESULTS.md: ~0.6)
WORKER_BASE_BYTES = 150 << 20   # an analysis worker's own interpreter, numpy and msgspec
SPLIT_PEAK_PER_JSON_BYTE = 0.8  # one trace decoded by several processes: the parent's columns (RESULTS.md: ~0.55)

Outcome = tuple[TraceAnalysis | None, BaseException | None]


def json_bytes(path: Path) -> int:
    """The trace's JSON size: the file's, or for gzip its trailer's (mod 4 GiB, at least the file's)."""
    from analysis.trace.reader import gzip_trailer
    from profiler.contract.runfiles import open_regular

    try:
        size = path.stat().st_size
        with open_regular(path) as f:
            return max(size, gzip_trailer(f, size) or 0)
    except OSError:            # a FIFO, a broken link: the reader gives its one-line error
        return 0


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def pool_size(paths: Sequence[Path], jobs: int | None = None, memory: int | None = None) -> int:
    """Workers: at most `jobs` (default the cores), the traces, and what memory holds at the largest peak."""
    want = min(jobs or usable_cpus(), len(paths))
    if want <= 1:
        return max(want, 1)
    memory = available_memory() if memory is None else memory
    if memory is not None:
        peak = WORKER_BASE_BYTES + PEAK_PER_JSON_BYTE * max(json_bytes(p) for p in paths)
        want = min(want, max(1, int(memory // peak)))
    return want


def split_size(path: Path, jobs: int | None = None, memory: int | None = None) -> int:
    """Processes to decode one trace between them (analysis.trace.split): at most `jobs` (default the
    cores), and what memory holds -- the text once, split among them, plus each one's own base."""
    want = jobs or usable_cpus()
    if want <= 1:
        return 1
    memory = available_memory() if memory is None else memory
    if memory is not None:
        room = memory - SPLIT_PEAK_PER_JSON_BYTE * json_bytes(path)
        want = min(want, max(1, int(room // WORKER_BASE_BYTES)))
    return want


def _one(path: Path, timeline: bool) -> Outcome:
    from analysis.step.breakdown import analyse_trace
    try:
        return analyse_trace(path, timeline=timeline), None
    except Exception as exc:      # reported in the parent as the sequential path reports it (analysis.run.analyse)
        try:
            pickle.dumps(exc)
        except Exception:         # an exception that cannot cross the process boundary: its one line
            exc = ValueError(f"{type(exc).__name__}: {exc}")
        return None, exc


def analyse_traces(runs: Sequence[Sequence[Path]], workers: int,
                   on_trace: Callable[[Path], None] | None = None) -> list[list[Outcome]]:
    """Every run's traces analysed by `workers` processes; per run, outcomes in the runs' own order."""
    out: list[list[Outcome]] = [[(None, None)] * len(paths) for paths in runs]
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_one, p, i == 0): (r, i) for r, paths in enumerate(runs) for i, p in enumerate(paths)}
        for fut in as_completed(futures):
            r, i = futures[fut]
            out[r][i] = fut.result()
            if on_trace is not None:
                on_trace(runs[r][i])
    for r, paths in enumerate(runs):     # the timeline goes to the first trace with steps, as one by one
        for i in range(1, len(paths)):
            if any(t is not None and t.timeline for t, _ in out[r][:i]):
                break
            t, err = out[r][i]
            if t is not None and t.steps:
                out[r][i] = _one(paths[i], True)
    return out

