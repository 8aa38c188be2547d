"""`python -m analysis.whatif RUN [RUN...]`: predict other configurations from a profiled run, and check itself.

Reads run folders like analysis.report, takes the 1-device runs among them as inputs (else every
traced run), predicts each requested (strategy, devices) term by term, predicts every measured
multi-device run from its 1-device run to show the error, and prints the HTCondor request lines
for the cheapest and the fastest GPU configuration.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from analysis.trace.errors import InputError
from analysis.run.analyse import analyse_runs
from analysis.run.discover import require_runs
from analysis.run.scaling import attach_speedups, run_metrics
from analysis.whatif import wording
from analysis.whatif.advice import advise, provisioned
from analysis.whatif.ask import Ask, predictions
from analysis.whatif.check import check_runs
from analysis.datasheet import find_gpu, names
from analysis.whatif.profile import WhatIfError
from profiler.contract import vocab
from profiler.contract.runjson import encode_json

PROG = "python -m analysis.whatif"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:        # one line, exit 2 (argparse would add the usage)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"device counts must be 1 or more: {text!r}")
    return values


def _positive(kind: type) -> object:
    def parse(text: str) -> float | int:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
        return v
    return parse


def _strategies(text: str) -> list[str]:
    values = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in values if s not in vocab.STRATEGIES]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"unknown strategy {', '.join(bad) or text!r} (choose from "
                                         f"{', '.join(vocab.STRATEGIES)})")
    return values


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Predict step time, images/s, speedup, images per device-hour, bytes moved and memory per device "
                    "for single, dp, dp-layerwise and ddp at N devices, from one profiled run (run.json + trace). Every "
                    "prediction is a sum of terms with its basis: compute and optimizer as measured (scaled by the "
                    "per-device batch and, on a CPU, by the threads a process gets, from run.json's calibration when "
                    "it has one), the bytes each strategy moves (analysis.run.costmodel) at a measured or stated link "
                    "bandwidth, DDP's bucket overlap with backward, and data loading from the DataLoader's measured "
                    "CPU cost. A GPU predicted from a CPU profile (--gpu) is labelled analytic (FLOPs and bytes "
                    "against the datasheet). Measured multi-device runs among RUN are predicted from the 1-device run "
                    "and shown with their error. Ends with HTCondor request lines for the configuration with the "
                    "most images per GPU-hour and the fastest.",
        epilog="Exit status: 0 ok; 2 bad input (a path that does not exist, no run or no profiled trace, an unknown "
               "GPU, a device count below 1, a strategy that does not apply). GPUs known to --gpu: "
               + ", ".join(names()))
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders, or folders holding them")
    p.add_argument("--strategy", type=_strategies, default=None,
                   help="comma list of single, dp, dp-layerwise, ddp (default: all that apply: single at 1 device; "
                        "ddp on a CPU; dp, dp-layerwise, ddp on GPUs)")
    p.add_argument("--devices", type=_positive_list, default=[1, 2, 4], help="comma list of device counts (default 1,2,4)")
    p.add_argument("--device-type", choices=("cpu", "cuda"), default=None,
                   help="what to predict for (default: the run's; cuda when --gpu is given)")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--global-batch", type=_positive(int), default=None, metavar="N",
                       help="the global batch at every device count")
    batch.add_argument("--batch-per-device", type=_positive(int), default=None, metavar="N",
                       help="the batch per device (default: the run's, as the seed's jobs scale it)")
    p.add_argument("--link-gbps", type=_positive(float), default=None, metavar="X",
                   help="device-to-device bandwidth in GB/s (overrides the measured / run.json / datasheet link)")
    p.add_argument("--gpu", default=None, metavar="NAME",
                   help="the card to predict for, from the built-in datasheet table (e.g. A100-SXM4-80GB, L40S)")
    p.add_argument("--cpus", type=_positive(float), default=None, metavar="N",
                   help="CPU cores the job gets (default: the run's allocation; for GPUs from a CPU profile, "
                        "(workers + 1) per GPU as condor/profile.sub asks)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="DataLoader workers per training process (default: the run's)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="stdout format (default: text)")
    return p


def ask_of(args: argparse.Namespace) -> Ask:
    return Ask(strategies=tuple(args.strategy) if args.strategy else None, devices=tuple(args.devices),
               device_type=args.device_type, global_batch=args.global_batch, batch_per_device=args.batch_per_device,
               link_gbps=args.link_gbps, cpus=args.cpus, workers=args.workers)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        gpu = None
        if args.gpu is not None:
            gpu = find_gpu(args.gpu)
            if gpu is None:
                raise WhatIfError(f"unknown GPU {args.gpu!r} (known: {', '.join(names())})")
        runs = analyse_runs(require_runs(args.runs), progress=False)
        metrics = [run_metrics(r) for r in runs]
        attach_speedups(metrics)
        results, inputs, problems = predictions(runs, metrics, ask_of(args), gpu)
    except (InputError, WhatIfError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    checks, _, notes = check_runs(runs, metrics)
    notes = [n for p, _ in results for n in p.notes] + notes + [f"skipped: {x}" for x in problems]
    rss = next((p.peak_rss_mib for p in inputs if p.peak_rss_mib), None)
    pairs = provisioned(results)
    advice = advise(pairs, rss)
    if args.format == "json":
        sys.stdout.write(encode_json(wording.to_json(results, checks, advice, notes, pairs)).decode())
    else:
        print(wording.render_text(results, checks, advice, notes, pairs))
    return 0
