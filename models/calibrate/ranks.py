"""The two-process part: start `processes` calibration workers (models.calibrate.worker: gloo on
127.0.0.1, cores // processes threads each, what a 2-rank CPU DDP run gives its ranks), wait for
them within a deadline, and read their figures -- the training step as a DDP rank while every
worker steps at once (the mean over the ranks), and a bare all-reduce."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from profiler.contract.runjson import AllReduceRate, StepTimes
from profiler.cpualloc import usable_cpus
from profiler.netport import free_port

from .settings import ALLREDUCE_BYTES, STEPS, WARMUP, WORKER_TIMEOUT_S, WORKERS

__all__ = ["WORKER_MODULE", "Concurrent", "CalibrationError", "worker_args", "concurrent", "over_ranks"]

WORKER_MODULE = f"{__package__}.worker"     # `python -m models.calibrate.worker ARGS`: one rank
_REPO = Path(__file__).resolve().parents[2]


class CalibrationError(RuntimeError):
    """The two-process part could not be measured; str() is the one-line reason for the note."""


class Concurrent(msgspec.Struct, kw_only=True):
    """What one worker measured as one of `processes` DDP ranks stepping at once (its JSON line)."""

    rank: int
    step: StepTimes
    allreduce: AllReduceRate


def worker_args(*, world: int, port: int, threads: int, width: float, batch: int, steps: int, workers: int,
                nbytes: int, lr: float, channels_last: bool, amp: bool, profiled: bool,
                warmup: int = WARMUP) -> list[str]:
    """The worker's command-line arguments, but for its --rank (models.calibrate.worker parses them)."""
    return ["--world", str(world), "--port", str(port), "--threads", str(threads),
            "--width", repr(width), "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup),
            "--loader-workers", str(workers),
            "--bytes", str(nbytes), "--lr", repr(lr), *(["--channels-last"] if channels_last else []),
            *(["--amp"] if amp else []), *(["--profiled"] if profiled else [])]


def concurrent(width: float, batch: int, channels_last: bool = False, amp: bool = False,
               threads: int | None = None, processes: int = WORKERS, nbytes: int = ALLREDUCE_BYTES,
               timeout_s: float = WORKER_TIMEOUT_S, lr: float = 1e-3, steps: int = STEPS,
               profiled: bool = True, workers: int = 0, warmup: int = WARMUP,
               should_stop: Callable[[], bool] | None = None) -> Concurrent:
    """Start `processes` DDP workers (gloo on 127.0.0.1, `threads` each: cores // processes by default),
    return their step figures averaged over the ranks (the all-reduce rate: rank 0's). Raises
    CalibrationError (timeout, a worker failed, stop requested)."""
    threads = threads if threads is not None else max(1, usable_cpus() // processes)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
    args = worker_args(world=processes, port=free_port(), threads=threads, width=width, batch=batch, steps=steps,
                       workers=workers, nbytes=nbytes, lr=lr, channels_last=channels_last, amp=amp,
                       profiled=profiled, warmup=warmup)
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(2 * processes)]
        procs = [subprocess.Popen([sys.executable, "-m", WORKER_MODULE, *args, "--rank", str(r)],
                                  env=env, stdin=subprocess.DEVNULL, stdout=outs[2 * r], stderr=outs[2 * r + 1])
                 for r in range(processes)]
        try:
            deadline = time.monotonic() + timeout_s
            while any(p.poll() is None for p in procs):
                if should_stop is not None and should_stop():
                    raise CalibrationError("two-process calibration stopped: the run was asked to stop")
                if time.monotonic() > deadline:
                    raise CalibrationError(f"two-process calibration timed out after {timeout_s:.0f} s")
                time.sleep(0.05)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        texts = []
        for f in outs:
            f.seek(0)
            texts.append(f.read())
    for r, p in enumerate(procs):
        if p.returncode != 0:
            tail = [line for line in texts[2 * r + 1].splitlines() if line.strip()][-1:] or ["no output"]
            raise CalibrationError(f"calibration worker {r} exited with code {p.returncode}: {tail[0][:300]}")
    results = []
    for r in range(processes):
        lines = texts[2 * r].strip().splitlines()
        try:
            results.append(msgspec.json.decode(lines[-1], type=Concurrent))
        except (IndexError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CalibrationError(f"calibration worker {r} printed no result ({exc})") from None
    return over_ranks(results)


def over_ranks(results: list[Concurrent]) -> Concurrent:
    """Rank 0's record with each phase the mean over the ranks, as the report means a run's ranks:
    one rank's few steps are one sample of who waited for whom."""
    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(sum(known) / len(known), 3) if known else None
    first = results[0]
    steps = [c.step for c in results]
    step = msgspec.structs.replace(first.step, **{f: mean([getattr(s, f) for s in steps])
                                                 for f in ("forward_ms", "backward_ms", "optimizer_ms", "wait_ms")})
    return msgspec.structs.replace(first, step=step)
