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

from analysis.runs import InputError, analyse_runs, discover_runs
from analysis.scaling import attach_speedups, run_metrics
from analysis.whatif import wording
from analysis.whatif.advice import advise
from analysis.whatif.check import check_runs
from analysis.whatif.gpus import GpuSpec, find_gpu, names
from analysis.whatif.predict import Prediction, Target, predict
from analysis.whatif.profile import Profile, WhatIfError, profile_of
from profiler.contract import vocab
from profiler.contract.runjson import encode_json

PROG = "python -m analysis.whatif"
CUDA_ONLY = vocab.DP_STRATEGIES


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
                    "it has one), the bytes each strategy moves (analysis.costmodel) at a measured or stated link "
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


def _default_strategies(device_type: str, n: int) -> list[str]:
    if n == 1:
        return [vocab.SINGLE]
    return [vocab.DDP] if device_type == "cpu" else [vocab.DP, vocab.DP_LAYERWISE, vocab.DDP]


def targets(prof: Profile, args: argparse.Namespace, gpu: GpuSpec | None) -> list[Target]:
    """Every configuration asked for, checked; WhatIfError (one line) for one that does not apply."""
    device_type = args.device_type or ("cuda" if gpu is not None else prof.device_type)
    if device_type == "cpu" and gpu is not None:
        raise WhatIfError("--gpu with --device-type cpu: a GPU is only used for cuda predictions")
    workers = prof.workers if args.workers is None else args.workers
    if workers < 0:
        raise WhatIfError("--workers must be 0 or more")
    out: list[Target] = []
    for n in args.devices:
        for s in args.strategy or _default_strategies(device_type, n):
            if s in CUDA_ONLY and device_type == "cpu":
                raise WhatIfError(f"--strategy {s} does not apply on a CPU (DataParallel needs CUDA devices)")
            if (s == vocab.SINGLE and n > 1) or (s in CUDA_ONLY and n == 1):
                continue           # a list of strategies × devices: the pairs that exist
            if s == vocab.DDP and n == 1 and vocab.SINGLE in (args.strategy or ()):
                continue           # one rank of DDP is the single run, shown once
            gb = args.global_batch or (args.batch_per_device or prof.per_device_batch) * n
            if gb % n:
                raise WhatIfError(f"--global-batch {gb} does not split evenly over {n} devices")
            procs = n if s == vocab.DDP else 1
            if args.cpus is not None:
                cpus = args.cpus
            elif device_type == prof.device_type:
                cpus = prof.cpus
            else:
                cpus = float(procs * (workers + 1)) if s == vocab.DDP else float(n * (workers + 1))
            out.append(Target(s, n, device_type, gb, cpus, workers, gpu, args.link_gbps))
    if not out:
        raise WhatIfError("no configuration to predict (single runs on 1 device; dp and dp-layerwise need 2 or more)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        gpu = None
        if args.gpu is not None:
            gpu = find_gpu(args.gpu)
            if gpu is None:
                raise WhatIfError(f"unknown GPU {args.gpu!r} (known: {', '.join(names())})")
        run_dirs = discover_runs(args.runs)
        if not run_dirs:
            raise InputError("no run folders (run.json or *.pt.trace.json[.gz]) found under "
                             + ", ".join(str(p) for p in args.runs))
        runs = analyse_runs(run_dirs, progress=False)
        metrics = [run_metrics(r) for r in runs]
        attach_speedups(metrics)
        profiles: list[Profile] = []
        problems: list[str] = []
        for r, m in zip(runs, metrics):
            try:
                profiles.append(profile_of(r, m))
            except WhatIfError as exc:
                problems.append(str(exc) + (f" ({r.errors[0]})" if r.errors else ""))
        if not profiles:
            raise WhatIfError(problems[0] if problems else "no run to predict from")
        inputs = [p for p in profiles if p.devices == 1] or profiles
        results: list[tuple[Profile, list[Prediction]]] = [(p, [predict(p, t) for t in targets(p, args, gpu)])
                                                           for p in inputs]
    except (InputError, WhatIfError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    checks, _, notes = check_runs(runs, metrics)
    notes = [n for p, _ in results for n in p.notes] + notes + [f"skipped: {x}" for x in problems]
    preds = [x for _, ps in results for x in ps]
    rss = next((p.peak_rss_mib for p in inputs if p.peak_rss_mib), None)
    advice = advise(preds, rss)
    if args.format == "json":
        sys.stdout.write(encode_json(wording.to_json(results, checks, advice, notes)).decode())
    else:
        print(wording.render_text(results, checks, advice, notes))
    return 0
