"""`python -m models.calibrate.worker ARGS`: one rank of the two-process calibration (started by
models.calibrate.ranks.concurrent, never by hand). It joins the gloo group, runs the training step
as a DDP rank with every worker at once, times a bare all-reduce, and prints its `Concurrent` as
one JSON line on stdout."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

import msgspec
import torch

from profiler.contract.runjson import AllReduceRate, StepTimes

from .ranks import Concurrent
from .timing import best_ms, mean_phases
from .workloads import train_step

__all__ = ["build_parser", "run_worker", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.calibrate.worker",
                                description="One rank of the two-process calibration (models.calibrate starts it).")
    for flag in ("--rank", "--world", "--port", "--threads", "--batch", "--steps", "--warmup", "--bytes",
                 "--loader-workers"):
        p.add_argument(flag, type=int, required=True)
    p.add_argument("--width", type=float, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--profiled", action="store_true", help="the steps under torch.profiler, as the run's are")
    return p


def run_worker(a: argparse.Namespace) -> int:
    """One worker: join the group, run the training step as a DDP rank with every worker at once,
    then time a bare all-reduce."""
    import torch.distributed as dist
    from datetime import timedelta
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=a.rank,
                            world_size=a.world, timeout=timedelta(seconds=120))

    def agree(go: bool) -> bool:     # every worker decides alike, and starts the next call together
        flag = torch.tensor([1 if go else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    try:
        step = train_step(a.width, a.batch, a.channels_last, a.amp, a.lr, torch.Generator().manual_seed(a.rank),
                          ddp=True, workers=a.loader_workers, calls=a.warmup + a.steps)
        fwd, bwd, opt, wait = mean_phases(step, a.steps, agree, profiled=a.profiled, warmup=a.warmup)
        del step                      # its DataLoader workers end here
        buf = torch.ones(a.bytes // 4, dtype=torch.float32)
        allreduce_ms = best_ms(lambda: dist.all_reduce(buf), agree, min_repeats=3, max_repeats=3)
        step_times = StepTimes(processes=a.world, threads=a.threads, batch=a.batch, steps=a.steps, warmup=a.warmup,
                               workers=a.loader_workers, forward_ms=round(fwd, 3), backward_ms=round(bwd, 3),
                               optimizer_ms=round(opt, 3), wait_ms=round(wait, 3))
        rate = AllReduceRate(backend="gloo", processes=a.world, bytes=buf.numel() * 4, ms=round(allreduce_ms, 3),
                             threads=a.threads)
        print(msgspec.json.encode(Concurrent(rank=a.rank, step=step_times, allreduce=rate)).decode(), flush=True)
        agree(True)                   # nobody leaves the group before everyone has measured
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    # The figures are out; skip the interpreter's teardown, where gloo's and the profiler's C++
    # threads can abort ("terminate called without an active exception": seen once in ~14 runs).
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    return run_worker(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
