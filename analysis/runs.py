"""Find run folders, load run.json and samples.csv, and analyse every trace into a RunAnalysis.

A run folder is any folder holding run.json and/or Kineto traces. One bad trace becomes one
line in RunAnalysis.errors so that the other traces and runs are still reported.
"""
from __future__ import annotations

import csv
import gzip
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from analysis.errors import TraceError
from analysis.records import RunAnalysis, TraceAnalysis
from profiler.contract import vocab

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
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                head = fh.read(SNIFF_BYTES)
        else:
            with path.open("rb") as fh:
                head = fh.read(SNIFF_BYTES)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return head.lstrip()[:1] == b"{" and b'"traceEvents"' in head


def find_traces(run_dir: Path) -> list[Path]:
    """Trace files directly in run_dir: torch's *.pt.trace.json(.gz), else other Kineto-looking JSON."""
    files = sorted(p for p in run_dir.iterdir() if p.is_file())
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


# --- run.json -------------------------------------------------------------------------------

def load_run_json(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """run.json as a dict ({} when absent) and a one-line error when it cannot be read."""
    path = run_dir / vocab.RUN_JSON
    if not path.exists():
        return {}, None
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return {}, f"{path}: run.json is not readable JSON ({_one_line(exc)})"
    if not isinstance(data, dict):
        return {}, f"{path}: run.json is not a JSON object"
    return data, None


# --- samples.csv ----------------------------------------------------------------------------

@dataclass
class SampleRow:
    time_ns: int
    source: str
    device: str
    metric: str
    value: float


def iter_samples(path: Path) -> Iterator[SampleRow]:
    """Rows of samples.csv; malformed rows (e.g. a half-written last line) are skipped."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        if tuple(h.strip() for h in header) != vocab.SAMPLES_HEADER:
            raise ValueError(f"unexpected header {','.join(header)!r}")
        for row in reader:
            if len(row) != 5:
                continue
            try:
                yield SampleRow(int(row[0]), row[1], row[2], row[3], float(row[4]))
            except ValueError:
                continue


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise_samples(path: Path) -> dict[str, Any]:
    """Means/peaks of samples.csv: GPU util per device, host CPU %, DataLoader children CPU %, peak RSS.

    Empty dict when the file is absent; a host-only file simply has no GPU keys filled.
    """
    if not path.exists():
        return {}
    gpu: dict[str, list[float]] = defaultdict(list)
    mem_used: dict[str, float] = {}
    pcie: dict[str, dict[str, list[float]]] = {vocab.PCIE_TX: defaultdict(list), vocab.PCIE_RX: defaultdict(list)}
    host_all: list[float] = []
    host_cores: set[str] = set()
    proc_cpu: dict[str, list[float]] = defaultdict(list)
    rss_at: dict[int, float] = defaultdict(float)
    t_min: int | None = None
    t_max: int | None = None
    rows = 0
    for r in iter_samples(path):
        rows += 1
        t_min = r.time_ns if t_min is None else min(t_min, r.time_ns)
        t_max = r.time_ns if t_max is None else max(t_max, r.time_ns)
        if r.source == vocab.SOURCE_NVML:
            if r.metric == vocab.GPU_UTIL:
                gpu[r.device].append(r.value)
            elif r.metric == vocab.MEM_USED:
                mem_used[r.device] = max(mem_used.get(r.device, 0.0), r.value)
            elif r.metric in pcie:
                pcie[r.metric][r.device].append(r.value)
        elif r.source == vocab.SOURCE_HOST and r.metric == vocab.CPU_PCT:
            if r.device == vocab.HOST_ALL:
                host_all.append(r.value)
            else:
                host_cores.add(r.device)
        elif r.source == vocab.SOURCE_PROC:
            if r.metric == vocab.CPU_PCT:
                proc_cpu[r.device].append(r.value)
            elif r.metric == vocab.RSS:
                rss_at[r.time_ns] += r.value
    workers = proc_cpu.pop(vocab.PROC_CHILDREN, [])   # the run's child processes (DataLoader workers, ranks)
    main = [v for vals in proc_cpu.values() for v in vals]
    out: dict[str, Any] = {
        "rows": rows,
        "duration_s": (t_max - t_min) / 1e9 if t_min is not None and t_max is not None else 0.0,
        "gpu_util_pct": {d: sum(v) / len(v) for d, v in sorted(gpu.items())},
        "gpu_mem_used_mib_max": dict(sorted(mem_used.items())),
        "pcie_tx_kbps_mean": {d: sum(v) / len(v) for d, v in sorted(pcie[vocab.PCIE_TX].items())},
        "pcie_rx_kbps_mean": {d: sum(v) / len(v) for d, v in sorted(pcie[vocab.PCIE_RX].items())},
        "pcie_tx_kbps_max": {d: max(v) for d, v in sorted(pcie[vocab.PCIE_TX].items())},
        "pcie_rx_kbps_max": {d: max(v) for d, v in sorted(pcie[vocab.PCIE_RX].items())},
        "host_cpu_pct": _mean(host_all),
        "host_cpu_pct_max": max(host_all) if host_all else None,
        "host_cores_sampled": len(host_cores),
        "main_cpu_pct": _mean(main),
        "children_cpu_pct": _mean(workers),
        "peak_rss_mib": max(rss_at.values()) if rss_at else None,
    }
    gpu_means = list(out["gpu_util_pct"].values())
    out["mean_gpu_util_pct"] = _mean(gpu_means)
    return out


Series = dict[str, tuple[list[float], list[float]]]   # device -> (seconds since the first sample, values)


def load_all_series(path: Path) -> dict[tuple[str, str], Series]:
    """Every (source, metric) of samples.csv over time per device, in one read (for plots)."""
    series: dict[tuple[str, str], Series] = defaultdict(dict)
    if not path.exists():
        return {}
    t0: int | None = None
    try:
        for r in iter_samples(path):
            if t0 is None:
                t0 = r.time_ns
            ts, vs = series[(r.source, r.metric)].setdefault(r.device, ([], []))
            ts.append((r.time_ns - t0) / 1e9)
            vs.append(r.value)
    except (OSError, ValueError):
        return {}
    return dict(series)


def load_series(path: Path, source: str, metric: str) -> Series:
    """One metric over time per device: seconds since the file's first sample, and values."""
    return load_all_series(path).get((source, metric), {})


# --- one run --------------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def analyse_run(run_dir: Path, analyser: TraceAnalyser | None = None,
                on_trace: Callable[[Path], None] | None = None,
                trace_paths: Sequence[Path] | None = None) -> RunAnalysis:
    """run.json + every trace + samples.csv of one folder; problems become RunAnalysis.errors lines.

    trace_paths: the folder's find_traces() when the caller already has it (not listed twice)."""
    from analysis.breakdown import analyse_trace   # numpy: imported only when there is work

    run, err = load_run_json(run_dir)
    errors = [err] if err else []
    traces: list[TraceAnalysis] = []
    for trace_path in find_traces(run_dir) if trace_paths is None else trace_paths:
        try:
            if analyser is None:   # the first trace with steps also gets the timeline the report plots
                traces.append(analyse_trace(trace_path, timeline=not any(t.timeline for t in traces)))
            else:
                traces.append(analyser(trace_path))
        except TraceError as exc:
            line = _one_line(exc)
            errors.append(line if str(trace_path.name) in line else f"{trace_path}: {line}")
        except (ImportError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            errors.append(f"{trace_path}: cannot analyse ({type(exc).__name__}: {_one_line(exc)})")
        if on_trace is not None:
            on_trace(trace_path)
    try:
        samples = summarise_samples(run_dir / vocab.SAMPLES_CSV)
    except (OSError, ValueError) as exc:
        samples = {}
        errors.append(f"{run_dir / vocab.SAMPLES_CSV}: {_one_line(exc)}")
    name = str(run.get("name") or run_dir.name)
    return RunAnalysis(run_dir=run_dir, name=name, run=run, traces=traces, samples=samples, errors=errors)


def analyse_runs(run_dirs: Sequence[Path], analyser: TraceAnalyser | None = None,
                 progress: bool | None = None) -> list[RunAnalysis]:
    """Analyse each run folder; a tqdm bar over the traces when there are many of them."""
    found = [(d, find_traces(d)) for d in run_dirs]
    trace_count = sum(len(paths) for _, paths in found)
    show = progress if progress is not None else trace_count >= PROGRESS_MIN_TRACES
    from tqdm import tqdm

    with tqdm(total=trace_count, desc="traces", unit="trace", disable=not show, leave=False) as bar:
        return [analyse_run(d, analyser, on_trace=lambda _p: bar.update(1), trace_paths=paths)
                for d, paths in found]


PROGRESS_MIN_TRACES = 6
