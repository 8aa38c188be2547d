"""The runner's command line and the validated run configuration it turns into.

Everything a user can get wrong is checked here, before a run folder exists, and reported
as one line (exit 2). `RunConfig.as_record()` is run.json "config" (the contract's ConfigInfo).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from profiler.contract import vocab
from profiler.contract.runjson import ConfigInfo, ProfilerSchedule
from profiler.contract.runname import format_run_name


class UsageError(Exception):
    """Bad input the user can fix: printed as one line, exit 2, nothing written."""


EPILOG = """\
examples:
  # the seed's one-GPU job (batch 64), profiled, into traces/single-1gpu-b64/
  python -m models.train --strategy single --gpus 1
  # the seed's two-GPU DataParallel job (global batch 128)
  python -m models.train --strategy dp --gpus 2
  # the fix: DDP, one process per GPU, 64 per GPU, pinned memory
  python -m models.train --strategy ddp --gpus 4 --batch-size 256 --pin-memory --workers 4
  # no GPU: two gloo processes on the CPU, tiny model, a few steps
  python -m models.train --strategy ddp --device cpu --gpus 2 --width 0.0625 --max-steps 5

output: <out>/<strategy>-<N><gpu|cpu>-b<global batch>[-<tag>]/ holding one
<worker>.<ts>.pt.trace.json.gz per process (rank0, rank1, ...), samples.csv, run.json and
TensorBoard event files. Read them with `python -m analysis.report <out>` or
`tensorboard --logdir <out>`.
exit codes: 0 complete, 1 failed (see run.json message), 2 bad input (nothing written),
130/143 interrupted by SIGINT/SIGTERM (trace collected so far is kept).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m models.train",
        description="Train the seed CIFAR-10 CNN under torch.profiler and NVML/host sampling, "
                    "writing one self-describing run folder.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("strategy and devices")
    g.add_argument("--strategy", choices=vocab.STRATEGIES, default=vocab.SINGLE,
                   help="single device; dp = whole model in DataParallel; dp-layerwise = every conv/linear "
                        "layer in its own DataParallel; ddp = DistributedDataParallel, one process per device")
    g.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto = cuda when a GPU is visible, else cpu (default: auto)")
    g.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="number of devices: GPUs, or CPU processes for ddp with --device cpu (default: 1)")
    g.add_argument("--device-ids", default=None, metavar="IDS",
                   help="dp/dp-layerwise only: CUDA ids to spread over, e.g. 0,0 to exercise DP on one GPU")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, default=None, metavar="GLOBAL",
                   help="global batch over all devices (default: 64 x N, as the seed)")
    g.add_argument("--workers", type=int, default=4, help="DataLoader workers per process (default: 4)")
    g.add_argument("--pin-memory", action="store_true", help="pin DataLoader memory (async H2D copies)")
    g.add_argument("--epochs", type=int, default=1, help="epochs (default: 1)")
    g.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="stop after N optimizer steps in total (default: the full epochs)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    g.add_argument("--seed", type=int, default=0, help="seed for data, init and shuffling (default: 0)")
    g.add_argument("--width", type=float, default=1.0,
                   help="channel/hidden width multiplier; 1.0 = the seed model (140,902,954 params). "
                        "Smaller only for fast tests")
    g.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA with GradScaler, bf16 on CPU)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    g.add_argument("--eval", action="store_true", help="evaluate test accuracy after each epoch")
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=("synthetic", "cifar10"), default="synthetic",
                   help="synthetic CIFAR-shaped images (default) or real CIFAR-10 from --data-dir")
    g.add_argument("--data-dir", default=None, metavar="DIR", help="where CIFAR-10 is (or goes, with --download)")
    g.add_argument("--download", action="store_true", help="download CIFAR-10 into --data-dir if missing")
    g.add_argument("--train-size", type=int, default=None, metavar="N",
                   help="training images (synthetic default 50000; cifar10: first N)")
    g = p.add_argument_group("profiling")
    sched = vocab.DEFAULT_SCHEDULE
    g.add_argument("--profile-wait", type=int, default=sched.wait, metavar="N",
                   help=f"steps before warmup (default: {sched.wait})")
    g.add_argument("--profile-warmup", type=int, default=sched.warmup, metavar="N",
                   help=f"warmup steps (default: {sched.warmup})")
    g.add_argument("--profile-active", type=int, default=sched.active, metavar="N",
                   help=f"recorded steps (default: {sched.active})")
    g.add_argument("--profile-repeat", type=int, default=sched.repeat, metavar="N",
                   help=f"schedule cycles, 0 = until the end (default: {sched.repeat})")
    g.add_argument("--no-profile", action="store_true", help="no torch.profiler (labels and sampler stay)")
    g.add_argument("--sample-period", type=float, default=0.1, metavar="S",
                   help="NVML/host sampling period in seconds (default: 0.1)")
    g.add_argument("--no-calibrate", action="store_true",
                   help="skip the short thread-scaling and all-reduce calibration the what-if uses "
                        "(CPU runs measure it before training: ~15 s for the seed model on 2 cores, ~4 s at width "
                        "0.0625; recorded in run.json calibration)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="traces", help="output root (default: traces)")
    g.add_argument("--name", default=None, help="run folder name (default: <strategy>-<N><gpu|cpu>-b<batch>[-<tag>])")
    g.add_argument("--tag", default=None, help="suffix for the default run name")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run files in an existing run folder (default: refuse)")
    g = p.add_argument_group("testing")
    g.add_argument("--fail-at-step", type=int, default=None, metavar="N", help="raise at step N (tests the failed path)")
    g.add_argument("--debug", action="store_true", help="print full tracebacks")
    return p


@dataclass
class RunConfig:
    """The validated run; `as_record()` is run.json "config"."""

    strategy: str
    device_type: str
    devices: int
    device_ids: tuple[int, ...]
    global_batch: int
    per_device_batch: int
    workers: int
    pin_memory: bool
    epochs: int
    max_steps: int | None
    data: str
    data_dir: str | None
    download: bool
    train_size: int | None
    width: float
    amp: bool
    channels_last: bool
    eval: bool
    lr: float
    seed: int
    profiler: dict[str, Any]
    sample_period_s: float
    name: str
    run_dir: Path
    overwrite: bool
    fail_at_step: int | None
    debug: bool
    argv: list[str] = field(default_factory=list)
    calibrate: bool = True

    def as_record(self) -> ConfigInfo:
        return ConfigInfo(
            strategy=self.strategy, device_type=self.device_type, devices=self.devices,
            device_ids=list(self.device_ids), global_batch=self.global_batch,
            per_device_batch=self.per_device_batch, workers=self.workers, pin_memory=self.pin_memory,
            epochs=self.epochs, max_steps=self.max_steps, data=self.data, data_dir=self.data_dir,
            train_size=self.train_size, width=self.width, amp=self.amp, channels_last=self.channels_last,
            eval=self.eval, lr=self.lr, seed=self.seed, profiler=ProfilerSchedule(**self.profiler),
            sample_period_s=self.sample_period_s, argv=list(self.argv))

    def to_dict(self) -> dict[str, Any]:
        """Picklable/plain copy for spawned ranks."""
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        d["run_dir"] = Path(d["run_dir"])
        d["device_ids"] = tuple(d["device_ids"])
        return cls(**d)


def run_name(strategy: str, n: int, device_type: str, global_batch: int, tag: str | None) -> str:
    """The default run folder name (the contract's format; analysis parses it with parse_run_name)."""
    return format_run_name(strategy, n, device_type, global_batch, tag)


def _positive(name: str, value: int | float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'} (got {value})")


def make_config(args: argparse.Namespace, device_type: str, device_ids: tuple[int, ...],
                argv: list[str] | None = None) -> RunConfig:
    """Check the numbers and derive batch split, name and folder (strategy/device already checked)."""
    n = args.gpus
    for flag, val, zero in (("--epochs", args.epochs, False), ("--max-steps", args.max_steps, False),
                            ("--batch-size", args.batch_size, False), ("--workers", args.workers, True),
                            ("--width", args.width, False), ("--train-size", args.train_size, False),
                            ("--profile-wait", args.profile_wait, True),
                            ("--profile-warmup", args.profile_warmup, True),
                            ("--profile-active", args.profile_active, False),
                            ("--profile-repeat", args.profile_repeat, True),
                            ("--sample-period", args.sample_period, False), ("--lr", args.lr, False)):
        _positive(flag, val, zero)
    global_batch = args.batch_size if args.batch_size is not None else 64 * n
    if global_batch % n:
        raise UsageError(f"--batch-size {global_batch} does not split evenly over {n} devices; "
                         f"use a multiple of {n}, e.g. {64 * n}")
    if args.download and args.data != "cifar10":
        raise UsageError("--download only applies to --data cifar10")
    for text, flag in ((args.tag, "--tag"), (args.name, "--name")):
        if text is not None and (not text or "/" in text or text in (".", "..")):
            raise UsageError(f"{flag} must be a plain folder name (got {text!r})")
    name = args.name or run_name(args.strategy, n, device_type, global_batch, args.tag)
    run_dir = Path(args.out).expanduser() / name
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not args.overwrite:
        raise UsageError(f"run folder {run_dir} is not empty; pass --overwrite, or --tag/--name for a new one")
    return RunConfig(
        strategy=args.strategy, device_type=device_type, devices=n, device_ids=device_ids,
        global_batch=global_batch, per_device_batch=global_batch // n, workers=args.workers,
        pin_memory=args.pin_memory, epochs=args.epochs, max_steps=args.max_steps, data=args.data,
        data_dir=str(Path(args.data_dir).expanduser()) if args.data_dir else None, download=args.download,
        train_size=args.train_size, width=args.width, amp=args.amp, channels_last=args.channels_last,
        eval=args.eval, lr=args.lr, seed=args.seed,
        profiler={"wait": args.profile_wait, "warmup": args.profile_warmup, "active": args.profile_active,
                  "repeat": args.profile_repeat, "enabled": not args.no_profile},
        sample_period_s=args.sample_period, name=name, run_dir=run_dir, overwrite=args.overwrite,
        fail_at_step=args.fail_at_step, debug=args.debug,
        argv=list(sys.argv if argv is None else argv), calibrate=not args.no_calibrate)
