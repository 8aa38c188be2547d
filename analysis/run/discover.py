"""Find run folders: any folder holding run.json and/or Kineto traces, searched recursively.

Anything named like a trace counts -- a FIFO, a broken link -- so that it becomes that run's one-line
error later, never a silently missing run (nor a hang: nothing here opens a file that is not regular).
"""
from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from analysis.trace.errors import InputError
from profiler.contract import vocab
from profiler.contract.runfiles import open_regular

__all__ = ["find_traces", "discover_runs", "require_runs"]

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
SNIFF_BYTES = 1 << 16     # how much of an oddly named *.json(.gz) we read to see if it is a trace

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


def require_runs(paths: Sequence[Path]) -> list[Path]:
    """discover_runs, and InputError (one line) when there is nothing to analyse."""
    found = discover_runs(paths)
    if not found:
        raise InputError("no run folders (run.json or *.pt.trace.json[.gz]) found under "
                         + ", ".join(str(p) for p in paths))
    return found
