"""A short calibration every CPU run records, so the what-if can predict other CPU configurations.

One profiled run measures one point: its step time at the threads it had. Predicting 2 processes
on the same cores needs what the trace cannot give -- how this model's compute and its optimizer's
memory-bound update speed up with threads here (never assumed linear), how much slower each gets
when two processes share the machine, and what a gloo all-reduce costs on loopback. So before
training the runner measures, in seconds:

1. in-process: forward + backward of the run's own model on a small batch, and an Adam step over
   `elements` float32 values, at 1, 2, 4, ... threads up to the allocation (fastest of a few after a warm-up);
2. two worker processes (`python -m models.calibrate --worker`, gloo on 127.0.0.1, cores // 2
   threads each, what a 2-rank CPU DDP run gives its ranks) run the same two passes at the same
   time, then all-reduce 64 MiB.

Nothing here fails a run: what could not be measured becomes a note in run.json `calibration`.
`python -m models.calibrate` prints this machine's calibration as JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import torch
from torch import nn

from models.convnet import ConvNet
from profiler.contract.runjson import AllReduceRate, Calibration, ThreadScaling
from profiler.cpualloc import cpu_allocation

__all__ = ["ALLREDUCE_BYTES", "Concurrent", "CalibrationError", "thread_counts", "allocation_cpus",
           "thread_scaling", "concurrent", "calibrate", "calibration_for", "main"]

ALLREDUCE_BYTES = 64 * 2**20    # one all-reduce of this many float32 bytes: the loopback rate
MAX_ELEMENTS = 16 * 2**20       # the memory-bound pass: min(parameters, this) float32 values (64 M cost ~25 s more per run)
MAX_BATCH = 8                   # forward + backward on min(this, per-device batch) images
MAX_COUNTS = 8                  # thread counts measured at most
MIN_REPEATS, MAX_REPEATS = 2, 5  # timed calls per point (~1 s each at width 1); the fastest is kept
MEMORY_REPEATS = 3              # the memory pass is steady: at most this many timed calls
POINT_BUDGET_S = 0.75           # more timed calls per point while they took less than this: a 1-s pass is timed once
WORKERS = 2
WORKER_TIMEOUT_S = 120.0
_REPO = Path(__file__).resolve().parents[1]


class CalibrationError(RuntimeError):
    """The two-process part could not be measured; str() is the one-line reason for the note."""


class Concurrent(msgspec.Struct, kw_only=True):
    """What one worker measured while `processes` workers ran the same passes at once (its JSON line)."""

    rank: int
    processes: int
    threads: int
    batch: int
    elements: int
    compute_ms: float
    memory_ms: float
    allreduce_bytes: int
    allreduce_ms: float

    def allreduce_rate(self) -> AllReduceRate:
        return AllReduceRate(backend="gloo", processes=self.processes, bytes=self.allreduce_bytes,
                             ms=self.allreduce_ms, threads=self.threads)


# --- what is timed ------------------------------------------------------------------
def thread_counts(cpus: int, cap: int = MAX_COUNTS) -> list[int]:
    """1, 2, 4, ... below `cpus`, then `cpus` itself; at most `cap` counts (the largest always kept)."""
    cpus = max(1, int(cpus))
    return [*[1 << i for i in range(cpus.bit_length()) if 1 << i < cpus][: max(1, cap) - 1], cpus]


def allocation_cpus() -> int:
    """Whole CPUs this job may use (affinity, cgroup quota, HTCondor Cpus), at least 1."""
    return max(1, math.floor(cpu_allocation().cpus))


def _compute_pass(width: float, batch: int, channels_last: bool, amp: bool,
                  gen: torch.Generator) -> tuple[Callable[[], None], int]:
    """Forward + backward of the run's model on random CIFAR-shaped images (as its loop does it:
    grads set to None, the loss under autocast with --amp); and the model's parameter count."""
    model = ConvNet(width=width).train()
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=gen)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with ctx:
            loss = loss_fn(model(x), y)
        loss.backward()
    return step, sum(p.numel() for p in model.parameters())


def _memory_pass(elements: int, gen: torch.Generator, lr: float = 1e-3) -> Callable[[], None]:
    """One Adam update of `elements` float32 values, op for op as torch.optim.Adam does it on CPU
    (its single-tensor path): memory-bound, the optimizer's cost per element at the current threads.
    Written out rather than calling Adam.step, whose first call imports seconds of torch._dynamo."""
    p, g = torch.rand(elements, generator=gen), torch.rand(elements, generator=gen)
    exp_avg, exp_avg_sq = torch.zeros(elements), torch.zeros(elements)
    b1, b2, eps, bc2_sqrt = 0.9, 0.999, 1e-8, math.sqrt(1 - 0.999)

    @torch.no_grad()
    def step() -> None:
        exp_avg.lerp_(g, 1 - b1)
        exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.addcdiv_(exp_avg, (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps), value=-lr / (1 - b1))
    return step


def best_ms(fn: Callable[[], Any], agree: Callable[[bool], bool] | None = None,
              min_repeats: int = MIN_REPEATS, max_repeats: int = MAX_REPEATS,
              budget_s: float = POINT_BUDGET_S, warmup: bool = True) -> float:
    """Fastest wall ms of `fn` after one warm-up call (the least disturbed by whatever else shares the
    machine): at least `min_repeats` timed calls, more up to `max_repeats` while they took under `budget_s`. `agree` (workers) makes every process take the
    same decision before each call, which also starts the calls together."""
    if warmup:
        fn()
    times: list[float] = []
    while True:
        go = len(times) < min_repeats or (len(times) < max_repeats and sum(times) < budget_s)
        if agree is not None:
            go = agree(go)
        if not go:
            return min(times) * 1e3
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)


@contextlib.contextmanager
def _threads(n: int) -> Any:
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


# --- in-process thread scaling ------------------------------------------------------
def thread_scaling(width: float, batch: int = MAX_BATCH, channels_last: bool = False, amp: bool = False,
                   cpus: int | None = None, elements: int | None = None, lr: float = 1e-3,
                   should_stop: Callable[[], bool] | None = None) -> ThreadScaling:
    """Compute and memory-bound ms at each of `thread_counts(cpus)` in this process; the global RNG
    and the thread count are left as they were (the run seeds and threads itself afterwards)."""
    counts = thread_counts(allocation_cpus() if cpus is None else cpus)
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator().manual_seed(0)
        compute, params = _compute_pass(width, batch, channels_last, amp, gen)
        n = elements if elements is not None else min(params, MAX_ELEMENTS)
        compute_ms: list[float] = []
        with _threads(counts[-1]):    # one warm-up, at the cheapest count: a new thread count needs none
            compute()
        for t in counts:
            if should_stop is not None and should_stop() and compute_ms:
                break
            with _threads(t):
                compute_ms.append(best_ms(compute, warmup=False))
        del compute
        memory = _memory_pass(n, gen, lr)
        memory_ms: list[float] = []
        with _threads(counts[-1]):
            memory()
        for t in counts[:len(compute_ms)]:
            with _threads(t):
                memory_ms.append(best_ms(memory, max_repeats=MEMORY_REPEATS, warmup=False))
    return ThreadScaling(threads=counts[:len(compute_ms)], compute_ms=_r(compute_ms), memory_ms=_r(memory_ms),
                         batch=batch, elements=n)


def _r(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


# --- two processes at once ----------------------------------------------------------
def concurrent(width: float, batch: int, elements: int, channels_last: bool = False, amp: bool = False,
               threads: int | None = None, processes: int = WORKERS, nbytes: int = ALLREDUCE_BYTES,
               timeout_s: float = WORKER_TIMEOUT_S, lr: float = 1e-3,
               should_stop: Callable[[], bool] | None = None) -> Concurrent:
    """Start `processes` workers (gloo on 127.0.0.1, `threads` each: cores // processes by default),
    return rank 0's figures. Raises CalibrationError (timeout, a worker failed, stop requested)."""
    threads = threads if threads is not None else max(1, allocation_cpus() // processes)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
    port = _free_port()
    args = ["--worker", "--world", str(processes), "--port", str(port), "--threads", str(threads),
            "--width", repr(width), "--batch", str(batch), "--elements", str(elements),
            "--bytes", str(nbytes), "--lr", repr(lr), *(["--channels-last"] if channels_last else []),
            *(["--amp"] if amp else [])]
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(2 * processes)]
        procs = [subprocess.Popen([sys.executable, "-m", "models.calibrate", *args, "--rank", str(r)],
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
    lines = texts[0].strip().splitlines()
    try:
        return msgspec.json.decode(lines[-1], type=Concurrent)
    except (IndexError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CalibrationError(f"calibration worker 0 printed no result ({exc})") from None


def _free_port() -> int:
    """A free loopback port (models.ddp has the same; importing it costs the workers a second)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(a: argparse.Namespace) -> int:
    """One worker: join the group, time both passes with every worker at once, then the all-reduce."""
    import torch.distributed as dist
    from datetime import timedelta
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=a.rank,
                            world_size=a.world, timeout=timedelta(seconds=60))

    def agree(go: bool) -> bool:     # every worker decides alike, and starts the next call together
        flag = torch.tensor([1 if go else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    try:
        gen = torch.Generator().manual_seed(a.rank)
        compute, _ = _compute_pass(a.width, a.batch, a.channels_last, a.amp, gen)
        compute_ms = best_ms(compute, agree)
        del compute
        memory_ms = best_ms(_memory_pass(a.elements, gen, a.lr), agree, max_repeats=MEMORY_REPEATS)
        buf = torch.ones(a.bytes // 4, dtype=torch.float32)
        allreduce_ms = best_ms(lambda: dist.all_reduce(buf), agree, min_repeats=3, max_repeats=3)
    finally:
        dist.destroy_process_group()
    print(msgspec.json.encode(Concurrent(
        rank=a.rank, processes=a.world, threads=a.threads, batch=a.batch, elements=a.elements,
        compute_ms=round(compute_ms, 3), memory_ms=round(memory_ms, 3), allreduce_bytes=buf.numel() * 4,
        allreduce_ms=round(allreduce_ms, 3))).decode())
    return 0


# --- what the runner records --------------------------------------------------------
def calibrate(width: float, batch: int, channels_last: bool = False, amp: bool = False, lr: float = 1e-3,
              should_stop: Callable[[], bool] | None = None) -> Calibration:
    """Both parts; whatever fails becomes a note, never an exception (but KeyboardInterrupt)."""
    cal = Calibration()
    t0 = time.perf_counter()
    try:
        cal.thread_scaling = thread_scaling(width, batch, channels_last, amp, lr=lr, should_stop=should_stop)
    except Exception as exc:
        cal.notes.append(f"thread-scaling calibration failed: {type(exc).__name__}: {exc}")
    elements = cal.thread_scaling.elements if cal.thread_scaling else MAX_ELEMENTS
    t1 = time.perf_counter()
    try:
        if should_stop is not None and should_stop():
            raise CalibrationError("two-process calibration skipped: the run was asked to stop")
        c = concurrent(width, batch, elements, channels_last, amp, lr=lr, should_stop=should_stop)
        cal.allreduce = c.allreduce_rate()
        if cal.thread_scaling is not None:
            cal.thread_scaling.concurrent = c.processes
            cal.thread_scaling.concurrent_threads = c.threads
            cal.thread_scaling.concurrent_compute_ms = c.compute_ms
            cal.thread_scaling.concurrent_memory_ms = c.memory_ms
            if c.threads != 1:
                cal.notes.append(f"concurrent figures: {c.processes} processes x {c.threads} threads each "
                                 "(the allreduce's `threads`)")
    except CalibrationError as exc:
        cal.notes.append(str(exc))
    except Exception as exc:
        cal.notes.append(f"two-process calibration failed: {type(exc).__name__}: {exc}")
    t2 = time.perf_counter()
    cal.notes.append(f"calibration took {t2 - t0:.1f} s before training (in-process {t1 - t0:.1f} s, "
                     f"{WORKERS} processes {t2 - t1:.1f} s)")
    return cal


def calibration_for(device_type: str, width: float, per_device_batch: int, channels_last: bool = False,
                    amp: bool = False, lr: float = 1e-3, enabled: bool = True,
                    should_stop: Callable[[], bool] | None = None) -> Calibration | None:
    """run.json `calibration` for a run: None with --no-calibrate; CPU runs only (a GPU run's compute
    does not scale with host threads, and its links are measured in the trace)."""
    if not enabled:
        return None
    if device_type != "cpu":
        return Calibration(notes=[f"not calibrated: a {device_type} run (thread scaling and the gloo "
                                  "all-reduce rate are measured for CPU runs only)"])
    return calibrate(width, max(1, min(MAX_BATCH, per_device_batch)), channels_last, amp, lr, should_stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.calibrate",
                                description="Print this machine's CPU calibration (what a CPU run records "
                                            "in run.json `calibration`) as JSON.")
    p.add_argument("--width", type=float, default=1.0, help="model width (default: 1.0, the seed model)")
    p.add_argument("--batch", type=int, default=MAX_BATCH, help=f"images per pass (default: {MAX_BATCH})")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--rank", "--world", "--port", "--threads", "--elements", "--bytes"):
        p.add_argument(flag, type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return _worker(a)
    cal = calibrate(a.width, a.batch, a.channels_last, a.amp, a.lr)
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(cal), indent=2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
