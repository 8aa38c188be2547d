"""A short calibration every 1-process CPU run records, so the what-if can predict other CPU configurations.

One profiled run measures one point: its step time at the threads it had. Predicting 2 processes
on the same cores needs what the trace cannot give -- how this model's compute and its optimizer's
memory-bound update speed up with threads here (never assumed linear), how much slower each gets
when two processes share the machine, and what a gloo all-reduce costs on loopback. So before
training the runner measures (about a minute for the full-size model on 2 cores, seconds at the
tests' widths):

1. in-process: forward + backward of the run's own model on a small batch, and an Adam step over
   `elements` float32 values, at 1, 2, 4, ... threads up to the allocation (fastest of a few after
   a warm-up): the thread-scaling curve;
2. in-process, at the run's threads: its own training step (forward + loss, backward, Adam) on
   half its per-device batch, with the run's DataLoader workers forked beside it, under
   torch.profiler as the run's profiled steps are: the mean of steps 1-2 after a warm-up;
3. two worker processes (`python -m models.calibrate --worker`, gloo on 127.0.0.1, cores // 2
   threads each, what a 2-rank CPU DDP run gives its ranks) run that step as DDP ranks at the
   same time, then all-reduce 64 MiB. Step 2 against step 3 is what two ranks on these cores
   cost. Each part of that is needed (measured on a 2-core VM, full-size model): timed as
   separate passes the ranks looked 1.6x slower, as a DDP step their Adam was 3.5x; a forked
   DataLoader worker beside each rank took their Adam from 2.4 s to 4.2 s.

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
from profiler.contract.runjson import AllReduceRate, Calibration, StepTimes, ThreadScaling
from profiler.cpualloc import cpu_allocation

__all__ = ["ALLREDUCE_BYTES", "Concurrent", "CalibrationError", "thread_counts", "allocation_cpus",
           "thread_scaling", "alone_step", "concurrent", "calibrate", "calibration_for", "main"]

ALLREDUCE_BYTES = 64 * 2**20    # one all-reduce of this many float32 bytes: the loopback rate
MAX_ELEMENTS = 16 * 2**20       # the memory-bound pass: min(parameters, this) float32 values (64 M cost ~25 s more per run)
MAX_BATCH = 8                   # forward + backward on min(this, per-device batch) images
MAX_COUNTS = 8                  # thread counts measured at most
MIN_REPEATS, MAX_REPEATS = 2, 5  # timed calls per point (~1 s each at width 1); the fastest is kept
MEMORY_REPEATS = 3              # the memory pass is steady: at most this many timed calls
POINT_BUDGET_S = 0.75           # more timed calls per point while they took less than this: a 1-s pass is timed once
STEPS = 2                       # timed training steps after one warm-up, alone and as DDP ranks (the mean is kept)
WORKERS = 2
WORKER_TIMEOUT_S = 300.0        # the full-size model's first DDP steps take ~15 s each on 2 cores
_REPO = Path(__file__).resolve().parents[1]


class CalibrationError(RuntimeError):
    """The two-process part could not be measured; str() is the one-line reason for the note."""


class Concurrent(msgspec.Struct, kw_only=True):
    """What one worker measured as one of `processes` DDP ranks stepping at once (its JSON line)."""

    rank: int
    step: StepTimes
    allreduce: AllReduceRate


# --- what is timed ------------------------------------------------------------------
def thread_counts(cpus: int, cap: int = MAX_COUNTS) -> list[int]:
    """1, 2, 4, ... below `cpus`, then `cpus` itself; at most `cap` counts (the largest always kept)."""
    cpus = max(1, int(cpus))
    return [*[1 << i for i in range(cpus.bit_length()) if 1 << i < cpus][: max(1, cap) - 1], cpus]


def allocation_cpus() -> int:
    """Whole CPUs this job may use (affinity, cgroup quota, HTCondor Cpus), at least 1."""
    return max(1, math.floor(cpu_allocation().cpus))


def _model_and_batch(width: float, batch: int, channels_last: bool,
                     gen: torch.Generator) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The run's model and one batch of random CIFAR-shaped images, in the run's memory format."""
    model = ConvNet(width=width).train()
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x, torch.randint(0, 10, (batch,), generator=gen)


def _autocast(amp: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def _compute_pass(width: float, batch: int, channels_last: bool, amp: bool,
                  gen: torch.Generator) -> tuple[Callable[[], None], int]:
    """Forward + backward of the run's model on random CIFAR-shaped images (as its loop does it:
    grads set to None, the loss under autocast with --amp); and the model's parameter count."""
    model, x, y = _model_and_batch(width, batch, channels_last, gen)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with _autocast(amp):
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


def _batches(x: torch.Tensor, y: torch.Tensor, workers: int) -> Any:
    """The step's batch from `workers` forked DataLoader workers, as the run gets it (None: no workers).
    A forked worker is not free for the process it copies: on a 2-core VM two DDP ranks' Adam took
    4.2 s with one worker each and 2.4 s without."""
    if workers <= 0:
        return None
    import itertools
    from torch.utils.data import DataLoader, TensorDataset
    ds = TensorDataset(x.repeat(4, 1, 1, 1), y.repeat(4))
    return itertools.cycle(iter(DataLoader(ds, batch_size=len(x), num_workers=workers, multiprocessing_context="fork")))


def _train_step(width: float, batch: int, channels_last: bool, amp: bool, lr: float, gen: torch.Generator,
                ddp: bool = False, workers: int = 0) -> Callable[[], tuple[float, float, float]]:
    """The run's training step as models.loop runs it -- forward + loss, zero_grad(set_to_none) +
    backward, Adam.step -- returning each phase's wall seconds; `ddp` wraps the model in
    DistributedDataParallel first (a gloo group must be up)."""
    model, x, y = _model_and_batch(width, batch, channels_last, gen)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    batches = _batches(x, y, workers)

    def step() -> tuple[float, float, float]:
        nonlocal x, y
        if batches is not None:
            x, y = next(batches)
            if channels_last:        # the loop's h2d phase does the same to every batch
                x = x.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        with _autocast(amp):
            loss = loss_fn(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2
    return step


@contextlib.contextmanager
def _as_profiled(enabled: bool) -> Any:
    """Steps timed as a run's profiled steps are: under torch.profiler (CPU, every thread), the trace
    thrown away -- what the what-if predicts is a profiled step, so both carry the profiler's cost."""
    if not enabled:
        yield
        return
    from profiler.session import all_threads_config
    experimental, _ = all_threads_config()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=False,
                                with_stack=False, experimental_config=experimental):
        yield


def mean_phases(step: Callable[[], tuple[float, float, float]], steps: int = STEPS,
                agree: Callable[[bool], bool] | None = None, profiled: bool = True) -> tuple[float, float, float]:
    """Mean ms of each phase over `steps` calls after one warm-up, as a run's profiled steps 1..steps
    are (the report means them too); `agree` (workers) starts every call on every rank together."""
    sums = [0.0, 0.0, 0.0]
    with _as_profiled(profiled):
        for i in range(steps + 1):
            if agree is not None:
                agree(True)
            times = step()
            if i:
                sums = [a + b for a, b in zip(sums, times)]
    return sums[0] / steps * 1e3, sums[1] / steps * 1e3, sums[2] / steps * 1e3


def alone_step(width: float, batch: int, threads: int, channels_last: bool = False, amp: bool = False,
               lr: float = 1e-3, steps: int = STEPS, profiled: bool = True, workers: int = 0) -> StepTimes:
    """The training step in this process at `threads`; the RNG and thread count are left as they were."""
    with torch.random.fork_rng(devices=[]), _threads(threads):
        step = _train_step(width, batch, channels_last, amp, lr, torch.Generator().manual_seed(0), workers=workers)
        fwd, bwd, opt = mean_phases(step, steps, profiled=profiled)
        del step
    return StepTimes(processes=1, threads=threads, batch=batch, steps=steps, workers=workers,
                     forward_ms=round(fwd, 3), backward_ms=round(bwd, 3), optimizer_ms=round(opt, 3))


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
def concurrent(width: float, batch: int, channels_last: bool = False, amp: bool = False,
               threads: int | None = None, processes: int = WORKERS, nbytes: int = ALLREDUCE_BYTES,
               timeout_s: float = WORKER_TIMEOUT_S, lr: float = 1e-3, steps: int = STEPS,
               profiled: bool = True, workers: int = 0,
               should_stop: Callable[[], bool] | None = None) -> Concurrent:
    """Start `processes` DDP workers (gloo on 127.0.0.1, `threads` each: cores // processes by default),
    return rank 0's figures. Raises CalibrationError (timeout, a worker failed, stop requested)."""
    threads = threads if threads is not None else max(1, allocation_cpus() // processes)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
    port = _free_port()
    args = ["--worker", "--world", str(processes), "--port", str(port), "--threads", str(threads),
            "--width", repr(width), "--batch", str(batch), "--steps", str(steps), "--loader-workers", str(workers),
            "--bytes", str(nbytes), "--lr", repr(lr), *(["--channels-last"] if channels_last else []),
            *(["--amp"] if amp else []), *(["--profiled"] if profiled else [])]
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
        step = _train_step(a.width, a.batch, a.channels_last, a.amp, a.lr, torch.Generator().manual_seed(a.rank),
                           ddp=True, workers=a.loader_workers)
        fwd, bwd, opt = mean_phases(step, a.steps, agree, profiled=a.profiled)
        del step                      # its DataLoader workers end here
        buf = torch.ones(a.bytes // 4, dtype=torch.float32)
        allreduce_ms = best_ms(lambda: dist.all_reduce(buf), agree, min_repeats=3, max_repeats=3)
        step_times = StepTimes(processes=a.world, threads=a.threads, batch=a.batch, steps=a.steps,
                               workers=a.loader_workers, forward_ms=round(fwd, 3), backward_ms=round(bwd, 3),
                               optimizer_ms=round(opt, 3))
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


# --- what the runner records --------------------------------------------------------
def step_batch(per_device_batch: int, processes: int = WORKERS) -> int:
    """The batch the step calibration runs: the run's per-device batch split over `processes` ranks,
    as DDP at 2 with the same global batch runs it (CPU time per image depends on the batch)."""
    return max(1, per_device_batch // processes)


def calibrate(width: float, batch: int, channels_last: bool = False, amp: bool = False, lr: float = 1e-3,
              should_stop: Callable[[], bool] | None = None, train_batch: int | None = None,
              threads: int | None = None, profiled: bool = True, workers: int = 0) -> Calibration:
    """All three parts (`batch`: the curve's, `train_batch`: the steps', default `batch`; `threads`:
    the run's, default torch's; `profiled`: the steps under torch.profiler, as the run's are; `workers`:
    the run's DataLoader workers per process, forked beside each timed step);
    whatever fails becomes a note, never an exception (but KeyboardInterrupt)."""
    cal = Calibration()
    train_batch = train_batch or batch
    threads = threads or torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        cal.thread_scaling = thread_scaling(width, batch, channels_last, amp, lr=lr, should_stop=should_stop)
    except Exception as exc:
        cal.notes.append(f"thread-scaling calibration failed: {type(exc).__name__}: {exc}")
    t1 = time.perf_counter()
    try:
        if should_stop is None or not should_stop():
            cal.alone_step = alone_step(width, train_batch, threads, channels_last, amp, lr, profiled=profiled,
                                        workers=workers)
    except Exception as exc:
        cal.notes.append(f"step calibration failed: {type(exc).__name__}: {exc}")
    t2 = time.perf_counter()
    try:
        if should_stop is not None and should_stop():
            raise CalibrationError("two-process calibration skipped: the run was asked to stop")
        c = concurrent(width, train_batch, channels_last, amp, lr=lr, profiled=profiled, workers=workers,
                       should_stop=should_stop)
        cal.allreduce, cal.ddp_step = c.allreduce, c.step
    except CalibrationError as exc:
        cal.notes.append(str(exc))
    except Exception as exc:
        cal.notes.append(f"two-process calibration failed: {type(exc).__name__}: {exc}")
    t3 = time.perf_counter()
    cal.notes.append(f"calibration took {t3 - t0:.1f} s before training (thread curve {t1 - t0:.1f} s, "
                     f"step alone {t2 - t1:.1f} s, {WORKERS} DDP processes {t3 - t2:.1f} s)")
    return cal


def calibration_for(device_type: str, width: float, per_device_batch: int, channels_last: bool = False,
                    amp: bool = False, lr: float = 1e-3, enabled: bool = True, processes: int = 1,
                    profiled: bool = True, workers: int = 0,
                    should_stop: Callable[[], bool] | None = None) -> Calibration | None:
    """run.json `calibration` for a run: None with --no-calibrate; CPU runs of one process only (a GPU
    run's compute does not scale with host threads and its links are in the trace; a DDP run's
    ranks already show their contention)."""
    if not enabled:
        return None
    if device_type != "cpu":
        return Calibration(notes=[f"not calibrated: a {device_type} run (thread scaling and the gloo "
                                  "all-reduce rate are measured for CPU runs only)"])
    if processes > 1:
        return Calibration(notes=[f"not calibrated: a run of {processes} processes measures its ranks' contention "
                                  "itself (the what-if calibrates from a 1-process run)"])
    return calibrate(width, max(1, min(MAX_BATCH, per_device_batch)), channels_last, amp, lr, should_stop,
                     train_batch=step_batch(per_device_batch), profiled=profiled, workers=workers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.calibrate",
                                description="Print this machine's CPU calibration (what a CPU run records "
                                            "in run.json `calibration`) as JSON.")
    p.add_argument("--width", type=float, default=1.0, help="model width (default: 1.0, the seed model)")
    p.add_argument("--batch", type=int, default=MAX_BATCH, help=f"images per pass of the thread curve (default: {MAX_BATCH})")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--unprofiled", action="store_true", help="time the steps without torch.profiler")
    p.add_argument("--profiled", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train-batch", type=int, default=None,
                   help="images per process in the step calibration (default: --batch)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers beside each timed step (default: 0)")
    for flag in ("--rank", "--world", "--port", "--threads", "--steps", "--bytes", "--loader-workers"):
        p.add_argument(flag, type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return _worker(a)
    cal = calibrate(a.width, a.batch, a.channels_last, a.amp, a.lr, train_batch=a.train_batch, profiled=not a.unprofiled,
                    workers=a.workers)
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(cal), indent=2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
