"""`python -m models.calibrate`: print this machine's CPU calibration as JSON."""
from __future__ import annotations

import argparse
import sys

import msgspec

from .record import calibrate
from .settings import MAX_BATCH, MAX_STEPS, MAX_WARMUP, STEPS, WARMUP

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.calibrate",
                                description="Print this machine's CPU calibration (what a CPU run records "
                                            "in run.json `calibration`) as JSON.")
    p.add_argument("--width", type=float, default=1.0, help="model width (default: 1.0, the seed model)")
    p.add_argument("--batch", type=int, default=MAX_BATCH, help=f"images per pass of the thread curve (default: {MAX_BATCH})")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--unprofiled", action="store_true", help="time the steps without torch.profiler")
    p.add_argument("--train-batch", type=int, default=None,
                   help="images per process in the step calibration (default: --batch)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers beside each timed step (default: 0)")
    p.add_argument("--warmup-steps", type=int, default=WARMUP, metavar="N",
                   help=f"untimed training steps before the timed ones (default: {WARMUP}; a run uses its profiler's "
                        f"wait + warmup, at most {MAX_WARMUP})")
    p.add_argument("--steps", type=int, default=STEPS, metavar="N",
                   help=f"timed training steps, their mean kept (default: {STEPS}; a run uses its profiler's active, "
                        f"at most {MAX_STEPS})")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cal = calibrate(a.width, a.batch, a.channels_last, a.amp, a.lr, train_batch=a.train_batch, profiled=not a.unprofiled,
                    workers=a.workers, steps=(max(0, a.warmup_steps), max(1, a.steps)))
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(cal), indent=2).decode() + "\n")
    return 0
