"""One DDP rank as torchrun starts it: `python -m models.ddp_rank CONFIG_JSON WORKDIR` (see models.ddp).

RANK / WORLD_SIZE / LOCAL_RANK and MASTER_ADDR / MASTER_PORT come from torchrun's environment
(env:// init). The rank writes WORKDIR/rank<N>.json at start (what it was launched with) and at the
end (status "ok", or "failed" with its one-line error and, with --debug, the traceback); rank 0
also writes WORKDIR/outcome.json, its LoopOutcome. Exit code 0, or 1 when it failed.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import torch
import torch.distributed as dist

from models.config import RunConfig
from models.ddp import OUTCOME_FILE, report_path, threads_per_rank, write_atomic
from models.loop import StopFlag, train_process
from models.strategies import Placement
from profiler.contract import vocab


def launch_info(rank: int, world: int, local_rank: int) -> dict[str, Any]:
    """What torchrun gave this rank (the report's first half)."""
    env = os.environ
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            launcher = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        launcher = []
    return {"rank": rank, "world_size": world, "local_rank": local_rank,
            "run_id": env.get("TORCHELASTIC_RUN_ID"), "restart_count": env.get("TORCHELASTIC_RESTART_COUNT"),
            "master_addr": env.get("MASTER_ADDR"), "master_port": env.get("MASTER_PORT"),
            "omp_num_threads": env.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
            "pid": os.getpid(), "ppid": os.getppid(), "launcher": launcher, "status": "running"}


def main(argv: list[str]) -> int:
    stop = StopFlag().install()    # the parent signals a rank only once its report says it is here
    cfg_file, workdir = Path(argv[0]), Path(argv[1])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    report: dict[str, Any] = {"rank": rank, "status": "running"}
    debug = False
    try:
        cfg = RunConfig.from_dict(json.loads(cfg_file.read_text()))
        debug = cfg.debug
        cuda = cfg.device_type == vocab.CUDA
        if not cuda:
            torch.set_num_threads(threads_per_rank(world))
        report = launch_info(rank, world, local_rank)
        _write(workdir, report)
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=10))
        placement = Placement(torch.device("cuda", local_rank) if cuda else torch.device("cpu"))
        outcome = train_process(cfg, placement, rank, world, stop)
        if rank == 0:
            write_atomic(workdir / OUTCOME_FILE, msgspec.json.encode(outcome))
    except Exception as exc:  # reported to the parent, which writes run.json "failed"
        report.update(status="failed", message=f"rank {rank}: {type(exc).__name__}: {exc}",
                      detail=traceback.format_exc() if debug else "", time=time.time())
        _write(workdir, report)
        _destroy()
        return 1
    _destroy()
    report.update(status="ok", time=time.time())
    _write(workdir, report)
    return 0


def _write(workdir: Path, report: dict[str, Any]) -> None:
    write_atomic(report_path(workdir, int(report["rank"])), json.dumps(report).encode())


def _destroy() -> None:
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
