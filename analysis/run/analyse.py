"""Find run folders and analyse each into a RunAnalysis: run.json, every trace, samples.csv.

A run folder is any folder holding run.json and/or Kineto traces. run.json and samples.csv
are read through the contract (profiler.contract), samples.csv once per run. One bad trace
becomes one line in RunAnalysis.errors so that the other traces and runs are still reported.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from analysis.run.discover import find_traces
from analysis.trace.errors import TraceError
from analysis.records import RunAnalysis, TraceAnalysis
from analysis.run.samples import SampleSummary, summarise
from profiler.contract import vocab
from profiler.contract.runjson import load_run_json
from profiler.contract.samples import SamplesError, read_samples

TraceAnalyser = Callable[[Path], TraceAnalysis]


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
    outcomes: the traces already analysed (analysis.run.pool), in trace_paths order;
    read_jobs: processes that decode each (large) trace file between them (analysis.trace.split)."""
    from analysis.step.breakdown import analyse_trace   # numpy: imported only when there is work

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
            from analysis.run.pool import pool_size
            workers = pool_size([p for _, paths in found for p in paths], jobs)
        if workers > 1:
            from concurrent.futures.process import BrokenProcessPool

            from analysis.run.pool import analyse_traces
            try:
                outcomes = analyse_traces([paths for _, paths in found], workers, on_trace=lambda _p: bar.update(1))
                return [analyse_run(d, trace_paths=paths, outcomes=o) for (d, paths), o in zip(found, outcomes)]
            except (BrokenProcessPool, OSError):      # a worker killed (memory) or no fork: one by one instead
                bar.reset()
        read_jobs = 1
        if analyser is None and trace_count == 1 and jobs != 1:
            from analysis.run.pool import split_size
            read_jobs = split_size(next(p for _, paths in found for p in paths), jobs)
        return [analyse_run(d, analyser, on_trace=lambda _p: bar.update(1), trace_paths=paths, read_jobs=read_jobs)
                for d, paths in found]


PROGRESS_MIN_TRACES = 6
