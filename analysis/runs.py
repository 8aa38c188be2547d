"""Find run folders and analyse each into a RunAnalysis: run.json, every trace, samples.csv.

A run folder is any folder holding run.json and/or Kineto traces. run.json and samples.csv
are read through the contract (profiler.contract), samples.csv once per run. One bad trace
becomes one line in RunAnalysis.errors so that the other traces and runs are still reported.
"""
from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from analysis.errors import TraceError
from analysis.records import RunAnalysis, TraceAnalysis
from analysis.samplestats import SampleSummary, summarise
from profiler.contract import vocab
from profiler.contract.runfiles import open_regular
from profiler.contract.runjson import load_run_json
from profiler.contract.samples import SamplesError, read_samples

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
SNIFF_BYTES = 1 << 16     # how much of an oddly named *.json(.gz) we read to see if it is a trace

TraceAnalyser = Callable[[Path], TraceAnalysis]


class InputError(Exception):
    """Bad input the user can fix (missing path, nothing to analyse); str() is one line."""


# --- discovery ----------------------------------------------------------------------------

def _is_named_trace(name: str) -> bool:
    return name.endswith(vocab.TRACE_SUFFIXES)


def _looks_like_trace(path: Path) -> bool:
    """A *.json(.gz) not named like torch's traces (e.g. HTA's test data) counts if it says traceEvents."""
    try:
        with open_regular(path) as raw:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                    head = fh.read(SNIFF_BYTES)
            else:
                head = raw.read(SNIFF_BYTES)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error):
        return False
    return head.lstrip()[:1] == b"{" and b'"traceEvents"' in head


def find_traces(run_dir: Path) -> list[Path]:
    """Trace files directly in run_dir: torch's *.pt.trace.json(.gz), else other Kineto-looking JSON.
    Anything named like a trace that is not a directory counts -- a FIFO, a broken or looping link --
    so that it becomes that run's one-line error, never a silent run without traces (nor a hang)."""
    files = sorted(p for p in run_dir.iterdir() if not p.is_dir())
    named = [p for p in files if _is_named_trace(p.name)]
    if named:
        return named
    others = [p for p in files
              if p.name != vocab.RUN_JSON and p.name.endswith((".json", ".json.gz"))]
    return [p for p in others if _looks_like_trace(p)]


def _is_run_dir(path: Path, filenames: Iterable[str]) -> bool:
    names = list(filenames)
    if vocab.RUN_JSON in names or any(_is_named_trace(n) for n in names):
        return True
    candidates = [n for n in names if n.endswith((".json", ".json.gz"))]
    return any(_looks_like_trace(path / n) for n in candidates)


def discover_runs(paths: Sequence[Path]) -> list[Path]:
    """Every run folder under paths (recursively), sorted; InputError for a path that does not exist."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_file():
            found.add(path.resolve().parent)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
            if _is_run_dir(Path(dirpath), filenames):
                found.add(Path(dirpath).resolve())
    return sorted(found)


# --- one run --------------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# what one trace's analysis may raise on odd input: reported as that trace's error line, never a crash
_REPORTED = (ImportError, OSError, ValueError, KeyError, TypeError, IndexError, ArithmeticError, RecursionError)


def _record(trace_path: Path, outcome: tuple[TraceAnalysis | None, BaseException | None],
            traces: list[TraceAnalysis], errors: list[str]) -> None:
    """One trace's analysis, or its one-line error (the other traces and runs still go on)."""
    result, exc = outcome
    if result is not None:
        traces.append(result)
    elif isinstance(exc, TraceError):
        line = _one_line(exc)
        errors.append(line if str(trace_path.name) in line else f"{trace_path}: {line}")
    elif isinstance(exc, _REPORTED):
        errors.append(f"{trace_path}: cannot analyse ({type(exc).__name__}: {_one_line(exc)})")
    elif exc is not None:
        raise exc


def analyse_run(run_dir: Path, analyser: TraceAnalyser | None = None,
                on_trace: Callable[[Path], None] | None = None,
                trace_paths: Sequence[Path] | None = None,
                outcomes: Sequence[tuple[TraceAnalysis | None, BaseException | None]] | None = None,
                read_jobs: int = 1) -> RunAnalysis:
    """run.json + every trace + samples.csv of one folder; problems become RunAnalysis.errors lines.

    trace_paths: the folder's find_traces() when the caller already has it (not listed twice);
    outcomes: the traces already analysed (analysis.parallel), in trace_paths order;
    read_jobs: processes that decode each (large) trace file between them (analysis.readsplit)."""
    from analysis.breakdown import analyse_trace   # numpy: imported only when there is work

    run, reader_notes, err = load_run_json(run_dir)
    errors = [err] if err else []
    traces: list[TraceAnalysis] = []
    paths = find_traces(run_dir) if trace_paths is None else trace_paths
    for i, trace_path in enumerate(paths):
        if outcomes is not None:
            _record(trace_path, outcomes[i], traces, errors)
            continue
        try:
            if analyser is None:   # the first trace with steps also gets the timeline the report plots
                outcome = (analyse_trace(trace_path, timeline=not any(t.timeline for t in traces),
                                         read_jobs=read_jobs), None)
            else:
                outcome = (analyser(trace_path), None)
        except (TraceError, *_REPORTED) as exc:
            outcome = (None, exc)
        _record(trace_path, outcome, traces, errors)
        if on_trace is not None:
            on_trace(trace_path)
    try:
        samples = summarise(read_samples(run_dir / vocab.SAMPLES_CSV))
    except SamplesError as exc:
        samples = SampleSummary()
        errors.append(_one_line(exc))
    name = (run.name if run is not None and run.name else None) or run_dir.name
    return RunAnalysis(run_dir=run_dir, name=name, run=run, traces=traces, samples=samples, errors=errors,
                       notes=list(reader_notes))


def analyse_runs(run_dirs: Sequence[Path], analyser: TraceAnalyser | None = None,
                 progress: bool | None = None, jobs: int | None = None) -> list[RunAnalysis]:
    """Analyse each run folder; a tqdm bar over the traces when there are many of them.

    jobs: worker processes for the traces (None: as many as the cores and memory allow; 1: one by
    one); the results are the same either way (tests/test_analysis_parallel.py)."""
    found = [(d, find_traces(d)) for d in run_dirs]
    trace_count = sum(len(paths) for _, paths in found)
    show = progress if progress is not None else trace_count >= PROGRESS_MIN_TRACES
    from tqdm import tqdm

    with tqdm(total=trace_count, desc="traces", unit="trace", disable=not show, leave=False) as bar:
        workers = 1
        if analyser is None and trace_count >= 2 and jobs != 1:
            from analysis.parallel import pool_size
            workers = pool_size([p for _, paths in found for p in paths], jobs)
        if workers > 1:
            from concurrent.futures.process import BrokenProcessPool

            from analysis.parallel import analyse_traces
            try:
                outcomes = analyse_traces([paths for _, paths in found], workers, on_trace=lambda _p: bar.update(1))
                return [analyse_run(d, trace_paths=paths, outcomes=o) for (d, paths), o in zip(found, outcomes)]
            except (BrokenProcessPool, OSError):      # a worker killed (memory) or no fork: one by one instead
                bar.reset()
        read_jobs = 1
        if analyser is None and trace_count == 1 and jobs != 1:
            from analysis.parallel import split_size
            read_jobs = split_size(next(p for _, paths in found for p in paths), jobs)
        return [analyse_run(d, analyser, on_trace=lambda _p: bar.update(1), trace_paths=paths, read_jobs=read_jobs)
                for d, paths in found]


PROGRESS_MIN_TRACES = 6
