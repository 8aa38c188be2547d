"""DistributedDataParallel launch: one spawned process per device, gloo on CPU, NCCL on GPUs.

The parent (models.train) stays out of training: it runs the sampler, forwards SIGTERM/SIGINT
to the ranks and collects rank 0's results through a queue. Each rank writes its own trace
("rank<N>"). CPU ranks get cores // ranks threads so they don't oversubscribe the machine.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models.config import RunConfig, cpu_count
from models.loop import LoopOutcome, StopFlag, train_process
from models.strategies import Placement

GRACE_S = 180.0   # after a signal, how long ranks get to reach a step boundary and flush


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def threads_per_rank(world: int) -> int:
    return max(1, cpu_count() // world)


def _rank_main(rank: int, cfg_dict: dict[str, Any], world: int, port: int, queue: Any) -> None:
    """Entry point of one spawned rank: init the group, train, send results (rank 0) or the error."""
    stop = StopFlag().install()
    cfg = RunConfig.from_dict(cfg_dict)
    cuda = cfg.device_type == "cuda"
    if not cuda:
        torch.set_num_threads(threads_per_rank(world))
    try:
        if cuda:
            torch.cuda.set_device(rank)
        dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=world, timeout=timedelta(minutes=10))
        placement = Placement(torch.device("cuda", rank) if cuda else torch.device("cpu"))
        outcome = train_process(cfg, placement, rank, world, stop)
        if rank == 0:
            queue.put(("results", rank, outcome))
    except Exception as exc:  # reported to the parent, which writes run.json "failed"
        queue.put(("error", rank, f"rank {rank}: {type(exc).__name__}: {exc}",
                   traceback.format_exc() if cfg.debug else ""))
        _destroy()
        sys.exit(1)
    _destroy()


def _destroy() -> None:
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:
            pass


class RankFailure(RuntimeError):
    """A rank failed: `str()` is the one-line reason, `detail` the traceback (for --debug)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def run_ddp(cfg: RunConfig, stop: StopFlag) -> LoopOutcome:
    """Spawn the ranks and wait; return rank 0's outcome. Raises RankFailure with the first
    rank's error message when a rank fails."""
    world = cfg.devices
    port = free_port()
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    if cfg.device_type == "cpu":   # inherited by the spawned interpreters before torch starts
        os.environ["OMP_NUM_THREADS"] = str(threads_per_rank(world))
    procs = mp.start_processes(_rank_main, args=(cfg.to_dict(), world, port, queue), nprocs=world,
                               join=False, start_method="spawn")
    forwarded = 0
    signalled_at: float | None = None
    errors: list[tuple[str, str]] = []
    results: LoopOutcome | None = None
    try:
        while True:
            try:
                done = procs.join(timeout=0.5)
            except mp.ProcessExitedException as exc:   # a rank died; the others were terminated
                _drain(queue, errors)
                msg = errors[0][0] if errors else f"rank {exc.error_index} exited with code {exc.exit_code}"
                raise RankFailure(msg, errors[0][1] if errors else "") from None
            except mp.ProcessRaisedException as exc:
                raise RankFailure(str(exc).strip().splitlines()[-1], str(exc)) from None
            r = _drain(queue, errors)
            if r is not None:
                results = r
            if done:
                break
            if stop.signum and forwarded != stop.signum:
                forwarded = stop.signum
                signalled_at = signalled_at or time.monotonic()
                for p in procs.processes:   # as SIGTERM: see StopFlag (a Ctrl-C also reaches ranks directly)
                    if p.is_alive() and p.pid:
                        os.kill(p.pid, signal.SIGTERM)
            if signalled_at is not None and time.monotonic() - signalled_at > GRACE_S:
                for p in procs.processes:
                    if p.is_alive():
                        p.kill()
                raise RankFailure(f"ranks did not stop within {GRACE_S:.0f} s of the signal; killed", "")
    finally:
        for p in procs.processes:
            if p.is_alive():
                p.kill()
    r = _drain(queue, errors)
    results = r or results
    if results is None:
        if errors:
            raise RankFailure(*errors[0])
        raise RankFailure("rank 0 finished without results", "")
    return results


def _drain(queue: Any, errors: list[tuple[str, str]]) -> LoopOutcome | None:
    results = None
    while not queue.empty():
        kind, _rank, *payload = queue.get()
        if kind == "results":
            results = payload[0]
        else:
            errors.append((payload[0], payload[1]))
    return results
