"""`python -m analysis.report [PATHS...]`: the table, findings and recommendations for every run found.

Reads run folders (run.json and/or Kineto traces) under PATHS through the library facade
(analysis.api.Analysis), and renders its one view to the terminal (text, markdown or JSON),
report/index.html (with plots) and report/summary.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.api import Analysis
from analysis.report.outputs import write_outputs, write_tensorboard
from analysis.text.terminal import shown
from analysis.trace.errors import InputError
from analysis.view import render
from analysis.view.summary import summary_bytes

__all__ = ["PROG", "parser", "main"]

PROG = "python -m analysis.report"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Explain why training is slower on more devices: reads run folders (run.json and/or "
                    "*.pt.trace.json[.gz]) found recursively under PATHS, prints one row per run (step time, "
                    "images/s, speedup and scaling efficiency vs the 1-device run, where each step's time goes), "
                    "numbered findings with their figures and recommendations ranked by estimated saving; writes "
                    "a self-contained index.html and summary.json.",
        epilog="Exit status: 0 ok; 2 bad input (a path that does not exist, no run found, or a trace/run.json that "
               "could not be read — the other runs are still reported and the files still written).")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("traces")], metavar="PATHS",
                   help="run folders or folders holding them (default: traces/)")
    p.add_argument("--out", type=Path, default=Path("report"), metavar="DIR",
                   help="where index.html and summary.json go (default: report/)")
    p.add_argument("--no-html", action="store_true", help="print only; write nothing under --out")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                   help="what goes to stdout (default: text)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write the breakdown and findings as TensorBoard events into each run folder "
                        "(needs analysis.tensorboard; a failure is a warning, not an error)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="tqdm bar while analysing traces (auto: when there are 6 or more)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes analysing traces at once, or decoding one large trace between them "
                        "(default: the job's CPUs -- affinity, cgroup quota, HTCondor Cpus -- fewer if memory is short; "
                        "1: one by one in this process)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    try:
        if args.jobs is not None and args.jobs < 1:
            raise InputError(f"--jobs must be at least 1, got {args.jobs}")
        a = Analysis(args.paths, progress=progress, jobs=args.jobs)
        report = a.report
    except InputError as exc:
        print(f"{PROG}: error: {shown(exc)}", file=sys.stderr)
        return 2
    view = a.view
    if args.format == "json":
        sys.stdout.write(summary_bytes(report, view).decode() + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render.render_markdown(view, escape=True))
    else:
        print(render.render_text(view))
    for e in report.errors:
        print(f"{PROG}: error: {shown(e)}", file=sys.stderr)
    if not args.no_html:
        try:
            index = write_outputs(report, args.out, view)
        except OSError as exc:
            print(f"{PROG}: error: cannot write the report into {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"report: {index} and {args.out / 'summary.json'}", file=sys.stderr)
    if args.tensorboard:
        for w in write_tensorboard(report, view):
            print(f"{PROG}: warning: {w}", file=sys.stderr)
    return 2 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
