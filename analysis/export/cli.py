"""`python -m analysis.export RUN --out FILE[.json|.json.gz]`: the command line of the merged timeline.

Checks what the user can get wrong before any trace is read (RUN missing or without traces, an output
folder that does not exist or cannot be written), then runs analysis.export.writer.export_run. Every
failure is one line on stderr and exit status 2; no traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from analysis.export.writer import CAT_PHASES, CAT_SPANS, export_run
from analysis.run.discover import find_traces
from analysis.text.terminal import shown
from analysis.trace.errors import InputError, TraceError

__all__ = ["PROG", "PROGRESS_MIN_FILES", "main", "parser"]

PROG = "python -m analysis.export"
PROGRESS_MIN_FILES = 6        # --progress auto: a bar when the run has this many trace files


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Merge every trace of one run folder (all *.pt.trace.json[.gz] in RUN: every rank, every "
                    "GPU) into ONE Chrome-trace JSON on one clock, to open in https://ui.perfetto.dev or "
                    "chrome://tracing. Each trace file becomes one process (pid = rank index, named by its "
                    "worker, e.g. 'rank0 (pid 24263)') holding its host threads and GPU streams ('gpu 0 "
                    f"stream 7'); all are shifted by their baseTimeNanoseconds onto one clock whose 0 is the "
                    f"earliest event. scalescope adds tracks to each process: 'step breakdown' (cat "
                    f"'{CAT_SPANS}': one span per contiguous piece of each category -- compute, communication, "
                    f"host_to_device, data_loading, host_overhead, unclassified, idle -- within each profiled "
                    f"step, exactly the pieces the report's breakdown sums), 'gpu N breakdown' per GPU, and the "
                    f"ss:* phase labels (cat '{CAT_PHASES}'). Traces are read one at a time, so memory does not "
                    "grow with the number of ranks.",
        epilog="Carried from the traces: complete (ph 'X') events with name, category, thread, time and the "
               "args device/correlation/bytes; not carried: flow arrows, counters, other args. "
               "Exit status: 0 written; 2 bad input (RUN missing or without traces, a trace that cannot be "
               "read, an output folder that does not exist or cannot be written).")
    p.add_argument("run", type=Path, metavar="RUN", help="a run folder (e.g. traces/ddp-2gpu-b128), or one trace file")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="the merged trace to write: FILE.json, or FILE.json.gz for gzip; written atomically "
                        "(temp file + rename), replacing FILE")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help=f"tqdm bar over the trace files on stderr (auto: when there are {PROGRESS_MIN_FILES} or more)")
    return p


def _traces(run: Path, out: Path) -> list[Path]:
    if not run.exists() and not run.is_symlink():
        raise InputError(f"{run}: no such file or directory")
    if not run.is_dir():
        return [run]
    try:
        found = find_traces(run)
    except OSError as e:
        raise InputError(f"{run}: cannot list the folder ({e.strerror or e})") from None
    found = [p for p in found if p.resolve() != out.resolve()]       # a re-export next to its traces
    if not found:
        raise InputError(f"{run}: no traces (*.pt.trace.json[.gz]) in this folder")
    return found


def _check_out(out: Path) -> None:
    folder = out.parent
    if not folder.exists():
        raise InputError(f"--out {out}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"--out {out}: {folder} is not a folder")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name ending in .json or .json.gz")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {folder} is not writable")


def _bar(show: bool | None, n: int) -> Callable[[str, int], Callable[[], None]] | None:
    if not (show or (show is None and n >= PROGRESS_MIN_FILES)):
        return None
    from tqdm import tqdm

    bars: list = []

    def start(phase: str, total: int) -> Callable[[], None]:
        for b in bars:
            b.close()
        bars[:] = [tqdm(total=total, desc=phase, unit="trace", file=sys.stderr, leave=False)]
        return lambda: bars[0].update(1)
    return start


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out: Path = args.out
    try:
        _check_out(out)
        traces = _traces(args.run, out)
        result = export_run(traces, out, args.run.resolve().name,
                            _bar({"auto": None, "on": True, "off": False}[args.progress], len(traces)))
    except (InputError, TraceError) as e:
        print(f"{PROG}: error: {shown(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROG}: error: cannot write {shown(out)}: {shown(e.strerror or e)}", file=sys.stderr)
        return 2
    mib = result.bytes / 2**20
    print(f"{out}: {len(result.ranks)} traces, {result.events} events, {mib:.1f} MiB "
          f"(open in https://ui.perfetto.dev or chrome://tracing)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
