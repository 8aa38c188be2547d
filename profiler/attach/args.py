"""attach's command line: the options, their checks, and COMMAND (bad input: one line, exit 2)."""
from __future__ import annotations

import argparse
import math
from typing import Any

from ..contract import vocab
from . import command as cmdline
from .report import steps_needed

__all__ = ["UsageError", "EPILOG", "build_parser", "checked_command"]


EPILOG = """\
examples:
  python -m profiler.attach -- python train.py --epochs 1
  python -m profiler.attach --steps 20 -- python train.py --epochs 10     # profile, then stop it
  python -m profiler.attach -- python ddp_spawn.py      # ranks from torch.multiprocessing.spawn
  python -m profiler.attach -- torchrun --nproc-per-node 2 train_ddp.py
  python -m profiler.attach --name seed-dp -- bash run.sh
  python -m analysis.report traces/train-1cpu       # the attached run, explained

Every Python process of COMMAND that trains is profiled -- it initialises a process group, builds an
optimizer or steps one -- however it was started: directly, behind a shell script, by torchrun, by
torch.multiprocessing.spawn / start_processes or multiprocessing.Process. DataLoader workers and
torchrun's agent are not. The schedule advances on each optimizer step; the steps before the first one
count as the first `wait` step. Only scalescope's boot folder goes on PYTHONPATH: your own `models`,
`profiler` or `analysis` modules are the ones your script imports. The folder is <out>/<name>, renamed
<name>-<N><gpu|cpu> at the end when the processes showed how many devices of which kind they trained
on (not with --name). COMMAND runs in its own process group: a signal to attach reaches all of it, and
nothing of it outlives attach.
"""


class UsageError(Exception):
    """Bad input: one line, exit 2, nothing written."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:    # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see --help)\n")


def _count(name: str, least: int = 0) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{name} must be >= {least}, got {value}")
        return value
    return parse


def _seconds(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number of seconds, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{name} must be finite and positive, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m profiler.attach", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Profile an unchanged training script into a scalescope run folder.")
    p.add_argument("--out", default="traces", help="parent folder of the run folder (default: traces)")
    p.add_argument("--name", default=None, help="run folder name (default: the script's name, with -<N><gpu|cpu>)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of an existing run folder")
    sched = vocab.DEFAULT_SCHEDULE
    p.add_argument("--wait", type=_count("wait"), default=sched.wait,
                   help=f"optimizer steps skipped (default {sched.wait}: the first)")
    p.add_argument("--warmup", type=_count("warmup"), default=sched.warmup,
                   help=f"steps profiled but not kept (default {sched.warmup})")
    p.add_argument("--active", type=_count("active", 1), default=sched.active,
                   help=f"steps recorded (default {sched.active})")
    p.add_argument("--repeat", type=_count("repeat"), default=sched.repeat,
                   help="cycles of wait+warmup+active (0: forever)")
    p.add_argument("--steps", type=_count("steps", 1), default=None, metavar="N",
                   help="stop COMMAND after N optimizer steps in every rank (at least wait+warmup+active); "
                        "the run is complete and attach exits 0 (default: run COMMAND to its end)")
    p.add_argument("--duration", type=_seconds("--duration"), default=None, metavar="S",
                   help="stop COMMAND once S seconds have passed since its first optimizer step and the "
                        "profiled steps are recorded, like nsys profile --duration")
    p.add_argument("--sample-period", type=_seconds("--sample-period"), default=0.1,
                   help="seconds between host/NVML samples (default 0.1)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return p


def checked_command(args: argparse.Namespace) -> list[str]:
    """COMMAND from the parsed options, checked: it exists and --steps covers the profiled steps."""
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command: python -m profiler.attach [options] -- COMMAND [ARGS...]")
    needed = steps_needed(args.wait, args.warmup, args.active, args.repeat)
    if args.steps is not None and args.steps < needed:
        raise UsageError(f"--steps {args.steps} stops before the profiled steps are recorded: it must be at least "
                         f"wait + warmup + active{' x repeat' if args.repeat > 1 else ''} = {needed}")
    if cmdline.resolve_executable(cmd[0]) is None:
        raise UsageError(f"command not found: {cmd[0]}")
    return cmd
