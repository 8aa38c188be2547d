"""The NVML + host sampler a run starts beside its training loop.

The front: the runner talks to this; the threads that sample are
`profiler.sampler_engine.SamplerCore`, which by default runs in a
small child process. In-process, every /proc read and NVML call a sampler
thread makes must re-take the GIL from a busy training loop -- measured on this
repo's 2-core box, listing the process tree took 3 ms alone and 390 ms beside
a CPU-bound thread, so a 10 Hz sampler fell to ~3 Hz. A separate process never
waits on the training process's GIL, and its CPU use shows up on its own.

The child gets its `SamplerConfig` as one msgspec-encoded JSON argument and talks
over pipes: one JSON line when ready (NVML status, driver, GPU inventory, notes),
one when done (notes, rows written), both msgspec Structs. SIGTERM stops it;
so do EOF on its stdin and its parent's death, so it never outlives the run. It ignores
SIGINT (Ctrl-C reaches the whole process group; the runner decides when to
stop). Where the child can't start, the engine runs in-process, with a note.
Torch-free.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import msgspec

from . import metrics as m
from .contract.runjson import GpuInfo
from .sampler_engine import SamplerConfig, SamplerCore

__all__ = ["Sampler", "SamplerConfig"]

_READY_TIMEOUT_S = 60.0          # python + psutil + pynvml import on a loaded node
_STOP_TIMEOUT_S = 15.0
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)


class _Ready(msgspec.Struct):
    """The child's first line: what NVML said, before any sample."""
    nvml_status: str
    driver: str | None
    gpus: list[GpuInfo]
    notes: list[str]
    pid: int


class _Final(msgspec.Struct):
    """The child's last line, after its threads stopped."""
    notes: list[str]
    rows_written: int
    skipped_ticks: int = 0


class Sampler:
    """Samples NVML (per GPU), host CPU/memory and the run's process tree into samples.csv.

    ``isolate=False`` (or custom metric tables, which can't cross a process
    boundary) runs the sampling threads inside this process instead.
    """

    def __init__(
        self,
        config: SamplerConfig,
        *,
        isolate: bool = True,
        nvml_metrics: Sequence[m.NvmlMetric] = m.NVML_METRICS,
        host_metrics: Sequence[m.HostMetric] = m.HOST_METRICS,
        proc_metrics: Sequence[m.ProcMetric] = m.PROC_METRICS,
    ) -> None:
        self.config = config
        self.csv_path = config.path
        custom = (tuple(nvml_metrics), tuple(host_metrics), tuple(proc_metrics)) != (
            m.NVML_METRICS, m.HOST_METRICS, m.PROC_METRICS)
        self.isolate = isolate and not custom
        # the in-process engine: samples when not isolated (or when the child could not start),
        # and answers nvml_status / gpu_inventory asked before start()
        self._core = SamplerCore(config, nvml_metrics=nvml_metrics, host_metrics=host_metrics,
                                 proc_metrics=proc_metrics)
        self._own_notes: list[str] = []
        self._child: subprocess.Popen[bytes] | None = None
        self._ready: _Ready | None = None
        self._final: _Final | None = None
        self._core_running = False
        self._stderr: IO[bytes] | None = None

    # --- what the runner reads -------------------------------------------------
    @property
    def nvml_status(self) -> str:
        """"ok" or "NVML unavailable: <reason>"."""
        return self._ready.nvml_status if self._ready is not None else self._core.nvml_status

    @property
    def driver(self) -> str | None:
        return self._ready.driver if self._ready is not None else self._core.driver

    def gpu_inventory(self) -> list[GpuInfo]:
        """run.json ``environment.gpus``: one entry per sampled CUDA device ([] without NVML)."""
        return list(self._ready.gpus) if self._ready is not None else self._core.gpu_inventory()

    @property
    def notes(self) -> list[str]:
        """Each thing worth saying once: dropped metrics, failures, fallbacks."""
        out: list[str] = []
        child = self._final.notes if self._final is not None else self._ready.notes if self._ready else []
        for n in [*self._own_notes, *self._core.notes, *child]:
            if n not in out:
                out.append(n)
        return out

    @property
    def rows_written(self) -> int:
        """Rows this sampler wrote (from the sampler process: known once stopped)."""
        return self._final.rows_written if self._final is not None else self._core.rows_written

    @property
    def in_child(self) -> bool:
        """True while samples come from the child process."""
        return self._child is not None

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> "Sampler":
        if self._child is not None or self._core_running:
            raise RuntimeError("sampler already started")
        if self.isolate:
            try:
                self._start_child()
                return self
            except Exception as exc:
                self._kill_child()
                self._own_notes.append(f"sampler subprocess failed ({exc}); sampling in-process")
        self._core.start()
        self._core_running = True
        return self

    def stop(self) -> None:
        if self._child is not None:
            self._stop_child()
        if self._core_running:
            self._core.stop()
            self._core_running = False
        elif self._core.nvml_open:      # NVML opened only to answer queries
            self._core.stop()

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- child process -----------------------------------------------------------
    def _start_child(self) -> None:
        code = (f"import sys; sys.path.insert(0, {_REPO_ROOT!r}); "
                "from profiler.sampler import _child_main; _child_main()")
        # stderr to a file, not a pipe: a chatty child must never block on a full pipe
        self._stderr = tempfile.TemporaryFile()
        self._child = subprocess.Popen(
            [sys.executable, "-c", code, msgspec.json.encode(self.config).decode()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, close_fds=True)
        line = _readline(self._child, _READY_TIMEOUT_S)
        if not line:
            err = self._stderr_tail() if self._child.poll() is not None \
                else f"no answer in {_READY_TIMEOUT_S:.0f} s"
            raise RuntimeError((err.splitlines() or ["exited"])[-1])
        self._ready = msgspec.json.decode(line, type=_Ready)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-500:]

    def _stop_child(self) -> None:
        child = self._child
        assert child is not None
        try:
            # SIGTERM, not only EOF: a forked DataLoader worker inherits the stdin pipe and
            # would hold it open; communicate() then closes our end
            try:
                child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            out, _ = child.communicate(timeout=_STOP_TIMEOUT_S)
            lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
            if lines:
                self._final = msgspec.json.decode(lines[-1], type=_Final)
            elif child.returncode:
                self._own_notes.append(f"sampler subprocess exited with {child.returncode}: "
                                       f"{self._stderr_tail()[-200:]}")
        except subprocess.TimeoutExpired:
            self._own_notes.append(f"sampler subprocess did not stop in {_STOP_TIMEOUT_S:.0f} s; killed")
            self._kill_child()
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            self._own_notes.append(f"sampler subprocess final report unreadable: {exc}")
        self._child = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._final is None and self._ready is not None:
            self._final = _Final(list(self._ready.notes), _count_rows(self.csv_path))

    def _kill_child(self) -> None:
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
            self._child.wait()
        self._child = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _readline(child: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """One line from the child's stdout, or b"" if it exits or stays silent."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    return child.stdout.readline() if ready else b""


def _count_rows(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return max(0, sum(1 for _ in f) - 1)
    except OSError:
        return 0


def _child_main() -> None:
    """Entry point of the sampler process: sample until stdin closes or SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = msgspec.json.decode(sys.argv[1], type=SamplerConfig)
    core = SamplerCore(config)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    core.start()
    _emit(_Ready(core.nvml_status, core.driver, core.gpu_inventory(), list(core.notes), os.getpid()))

    def wait_eof() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            done.set()
    threading.Thread(target=wait_eof, daemon=True).start()
    parent = os.getppid()
    while not done.wait(0.5):
        if os.getppid() != parent:      # the run died (reparented): stop even if stdin is still open
            break
    core.stop()
    _emit(_Final(list(core.notes), core.rows_written, core.skipped_ticks))


def _emit(obj: msgspec.Struct) -> None:
    sys.stdout.buffer.write(msgspec.json.encode(obj) + b"\n")
    sys.stdout.buffer.flush()
