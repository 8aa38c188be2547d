"""DistributedDataParallel launch through torchrun: one rank per device, gloo on CPU, NCCL on GPUs.

The parent (models.train) stays out of training: it runs the sampler and starts
`python -m torch.distributed.run --nnodes 1 --nproc-per-node N --master-addr 127.0.0.1
--master-port <free> -m models.ddp_rank CONFIG WORKDIR` (torchrun and its ranks are the parent's
children, so the sampler sees them in its process tree). Each rank (models.ddp_rank) takes
RANK / WORLD_SIZE / LOCAL_RANK from torchrun's environment, joins the group with env:// and runs
models.loop.train_process; it writes its own trace ("rank<N>") and a report file in WORKDIR (a
temp folder this module creates and removes): rank0.json, rank1.json, ... (its launch environment,
then "ok" or its one-line error), and rank 0 also outcome.json (its LoopOutcome). CPU ranks get
the job's CPU allocation // ranks threads (profiler.cpualloc.usable_cpus; OMP_NUM_THREADS set here,
so torchrun does not set and warn).

Signals: the parent's StopFlag catches SIGTERM/SIGINT and this module sends the same signal to each
rank (torchrun's children) once, as soon as its report is there; the ranks agree on a step boundary
(models.loop._step_end), flush their traces and exit 0, and torchrun with them. torchrun runs in
its own session, so a terminal Ctrl-C reaches only the parent: torchrun's own SIGTERM path
(SignalException: every worker closed with the signal, SIGKILL 30 s later, exit 1 with a
traceback) is left for when the parent dies (torchrun gets SIGTERM then: PR_SET_PDEATHSIG). The
same signal twice (see StopFlag), or ranks still running GRACE_S after the first: every rank and
torchrun are killed. A rank that fails exits 1 and torchrun stops the others (SIGTERM, SIGKILL
30 s later; it prints its failure summary on stderr).

Multi-node is torchrun's own `--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT` on each
node with `-m models.ddp_rank`; models.train launches one node only.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil

from models.config import RunConfig
from models.loop import LoopOutcome, StopFlag
from profiler.contract import vocab
from profiler.cpualloc import usable_cpus
from profiler.netport import free_port

GRACE_S = 180.0   # after a signal, how long ranks get to reach a step boundary and flush
RANK_MODULE = "models.ddp_rank"
CONFIG_FILE = "config.json"
OUTCOME_FILE = "outcome.json"     # rank 0's LoopOutcome (msgspec JSON)
POLL_S = 0.25


def threads_per_rank(world: int) -> int:
    """A CPU rank's threads: the job's CPU allocation (not the machine's cores) split over the ranks."""
    return max(1, usable_cpus() // world)


def report_path(workdir: Path, rank: int) -> Path:
    """A rank's report: its launch environment, then status "ok" or "failed" with its error."""
    return workdir / f"rank{rank}.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path so a reader sees the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RankFailure(RuntimeError):
    """A rank failed: `str()` is the one-line reason, `detail` the traceback (for --debug)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def torchrun_command(cfg: RunConfig, port: int, workdir: Path) -> list[str]:
    """The torchrun command line for this run's ranks (one node, static rendezvous on 127.0.0.1)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
            "--nproc-per-node", str(cfg.devices), "--master-addr", "127.0.0.1", "--master-port", str(port),
            "--rdzv-id", re.sub(r"[^A-Za-z0-9._-]", "_", cfg.name), "--max-restarts", "0", "--log-dir", str(workdir / "torchrun"),
            "--module", RANK_MODULE, str(workdir / CONFIG_FILE), str(workdir)]


def rank_env(cfg: RunConfig) -> dict[str, str]:
    """torchrun's environment: the ranks' threads, and this checkout importable whatever the cwd."""
    env = dict(os.environ)
    if cfg.device_type == vocab.CPU or "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads_per_rank(cfg.devices))
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def run_ddp(cfg: RunConfig, stop: StopFlag, workdir: Path | None = None) -> LoopOutcome:
    """Start the ranks through torchrun and wait; return rank 0's outcome. Raises RankFailure with
    the first rank's error message when a rank fails. `workdir` keeps the ranks' report files
    (default: a temp folder, removed on return)."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scalescope-ddp-")))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict()))
        proc = subprocess.Popen(torchrun_command(cfg, free_port(), workdir), env=rank_env(cfg),
                                start_new_session=True, preexec_fn=_die_with_parent())
        rc = _wait(proc, stop, workdir, cfg.devices)
        return _collect(workdir, cfg.devices, rc)


def _wait(proc: subprocess.Popen[bytes], stop: StopFlag, workdir: Path, world: int) -> int:
    """torchrun's exit code. After a signal, each rank gets it once it has reported in (its
    StopFlag is installed then: a rank still importing would die of it, and its peers wait for it
    in the rendezvous until torchrun's 30 s SIGKILL); all are killed GRACE_S after the signal, and
    on any way out before torchrun ended (a repeated signal: KeyboardInterrupt)."""
    ranks: dict[int, psutil.Process] = {}
    told: set[int] = set()
    signalled_at: float | None = None
    try:
        while True:
            try:
                return proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            _track_ranks(proc.pid, ranks)
            if not stop.signum:
                continue
            signalled_at = signalled_at or time.monotonic()
            for r in range(world):     # the parent's signal, once (ranks are out of the terminal's reach)
                pid = (_read_report(workdir, r) or {}).get("pid") if r not in told else None
                if pid in ranks:
                    told.add(r)
                    with contextlib.suppress(psutil.Error):
                        ranks[pid].send_signal(stop.signum)
            if time.monotonic() - signalled_at > GRACE_S:
                _kill_all(proc, ranks)
                raise RankFailure(f"ranks did not stop within {GRACE_S:.0f} s of the signal; killed", "")
    finally:
        if proc.poll() is None:
            _kill_all(proc, ranks)


def _track_ranks(torchrun_pid: int, ranks: dict[int, psutil.Process]) -> None:
    """Add torchrun's rank processes (its children running RANK_MODULE) not seen yet."""
    try:
        children = psutil.Process(torchrun_pid).children()
    except psutil.Error:
        return
    for p in children:
        if p.pid in ranks:
            continue
        with contextlib.suppress(psutil.Error):
            if RANK_MODULE in p.cmdline():
                ranks[p.pid] = p


def _kill_all(proc: subprocess.Popen[bytes], ranks: dict[int, psutil.Process]) -> None:
    """SIGKILL every rank with its process group (torchrun starts each in its own session, with its
    DataLoader workers), then torchrun."""
    _track_ranks(proc.pid, ranks)
    for p in ranks.values():
        with contextlib.suppress(psutil.Error, OSError):
            if p.is_running():
                if os.getpgid(p.pid) == p.pid:
                    os.killpg(p.pid, signal.SIGKILL)
                else:
                    p.kill()
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _die_with_parent() -> Any:
    """preexec_fn for torchrun on Linux: SIGTERM when this process dies (torchrun then stops its
    ranks), since its own session keeps it out of the terminal's signals."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    return set_pdeathsig


def _read_report(workdir: Path, rank: int) -> dict[str, Any] | None:
    try:
        return json.loads(report_path(workdir, rank).read_text())
    except (OSError, ValueError):
        return None


def _collect(workdir: Path, world: int, rc: int) -> LoopOutcome:
    """Rank 0's outcome when torchrun succeeded, else RankFailure: a rank that ended without a
    report (killed, crashed) first, else the first error a rank reported."""
    outcome = workdir / OUTCOME_FILE
    if rc == 0 and outcome.is_file():
        return msgspec.json.decode(outcome.read_bytes(), type=LoopOutcome)
    reports = {r: _read_report(workdir, r) for r in range(world)}
    if rc == 0:
        raise RankFailure("rank 0 finished without results", "")
    if not any(reports.values()):
        raise RankFailure(f"torchrun exited with code {rc} before any rank started (see its messages above)", "")
    errors = sorted((rep for rep in reports.values() if rep and rep.get("status") == "failed"),
                    key=lambda rep: (rep.get("time", 0.0), rep["rank"]))
    silent = [r for r, rep in reports.items() if not rep or rep.get("status") not in ("ok", "failed")]
    detail = errors[0].get("detail", "") if errors else ""
    if silent:
        who = ", ".join(str(r) for r in silent)
        msg = f"rank {who}: ended without reporting an error (killed or crashed?)"
        if errors:
            msg += f"; then {errors[0]['message']}"
        raise RankFailure(msg, detail)
    if errors:
        raise RankFailure(errors[0]["message"], detail)
    raise RankFailure(f"torchrun exited with code {rc}", "")
