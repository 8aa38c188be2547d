"""The sampling engine: threads in *this* process that write samples.csv.

`profiler.sampler.Sampler` normally runs this engine in a child process (so its
/proc and NVML reads never wait on the training loop's GIL); the engine itself
is usable in-process, which is how tests inject a failing metric row.

Long format ``time_ns,source,device,metric,value`` (``vocab.SAMPLES_HEADER``),
appended and flushed every tick so a killed job still leaves its samples.
``time_ns`` is ``time.time_ns()``, the clock Kineto's ``baseTimeNanoseconds``
uses, so samples and trace events line up. One thread samples the host and
processes; each GPU gets its own thread because NVML's PCIe counters block
~20 ms per read. Nothing here may stop training: every failure is caught,
noted once in :attr:`Sampler.notes`, and sampling goes on. Torch-free.
"""
from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import psutil

from profiler import metrics as m
from profiler import nvml as nvmlmap
from profiler.contract import vocab
from profiler.clock import Ticker

__all__ = ["SamplerCore", "descendants"]

_FROM_ENV: Any = object()   # default for cuda_visible_devices: read os.environ at construction


class SamplerCore:
    """Samples NVML (per GPU), the host CPU/memory and the process tree on a fixed period."""

    def __init__(
        self,
        csv_path: Path,
        period_s: float = 0.1,
        n_gpus: int = 0,
        root_pid: int | None = None,
        cuda_visible_devices: str | None = _FROM_ENV,
        *,
        nvml_metrics: Sequence[m.NvmlMetric] = m.NVML_METRICS,
        host_metrics: Sequence[m.HostMetric] = m.HOST_METRICS,
        proc_metrics: Sequence[m.ProcMetric] = m.PROC_METRICS,
        per_core: bool = True,
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"sample period must be positive, got {period_s!r}")
        self.csv_path = Path(csv_path)
        self.period_s = float(period_s)
        self.n_gpus = int(n_gpus)
        self.root_pid = os.getpid() if root_pid is None else int(root_pid)
        self.cuda_visible_devices: str | None = (
            os.environ.get("CUDA_VISIBLE_DEVICES") if cuda_visible_devices is _FROM_ENV else cuda_visible_devices)
        self.nvml_metrics = tuple(nvml_metrics)
        self.host_metrics = tuple(host_metrics)
        self.proc_metrics = tuple(proc_metrics)
        self.per_core = per_core

        self.notes: list[str] = []
        self.rows_written = 0
        self.driver: str | None = None
        self._noted: set[str] = set()
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._writer: Any = None
        self._threads: list[threading.Thread] = []
        self._tickers: list[Ticker] = []
        self._nv: Any = None
        self._nvml_status: str | None = None
        self._handles: list[tuple[int, Any]] = []
        self._inventory: list[dict[str, Any]] | None = None
        self._dropped: set[tuple[int, str]] = set()
        self._procs: dict[int, psutil.Process] = {}
        self._root: psutil.Process | None = None
        self._host: m.HostProbe | None = None

    # --- NVML ------------------------------------------------------------------
    @property
    def nvml_status(self) -> str:
        """"ok" or "NVML unavailable: <reason>" (initialises NVML on first use)."""
        self._ensure_nvml()
        assert self._nvml_status is not None
        return self._nvml_status

    def _ensure_nvml(self) -> None:
        if self._nvml_status is not None:
            return
        try:
            import pynvml as nv
        except ImportError as exc:
            self._nvml_status = f"NVML unavailable: nvidia-ml-py not installed ({exc})"
            return
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self._nvml_status = f"NVML unavailable: {nvmlmap.nvml_error_text(exc)}"
            return
        self._nv = nv
        self._nvml_status = "ok"
        try:
            self.driver = nvmlmap.as_text(nv.nvmlSystemGetDriverVersion())
        except Exception as exc:
            self._note(f"NVML driver version unreadable: {nvmlmap.nvml_error_text(exc)}")
        if self.n_gpus <= 0:
            return
        try:
            visible = nvmlmap.parse_visible_devices(self.cuda_visible_devices)
            resolved, _ = nvmlmap.resolve_handles(nv, visible, self.n_gpus)
        except Exception as exc:
            self._note(f"NVML device lookup failed, no GPU samples: {nvmlmap.nvml_error_text(exc)}")
            return
        for i, hit in enumerate(resolved):
            if hit is None:
                self._note(f"CUDA device {i} (CUDA_VISIBLE_DEVICES={self.cuda_visible_devices!r}) "
                           "has no matching NVML device; not sampled")
            else:
                self._handles.append(hit)

    def gpu_inventory(self) -> list[dict[str, Any]]:
        """run.json ``environment.gpus``: one entry per sampled CUDA device ([] without NVML)."""
        self._ensure_nvml()
        if self._inventory is None:
            inv: list[dict[str, Any]] = []
            for cuda_index, handle in self._handles:
                try:
                    inv.append(nvmlmap.describe(self._nv, cuda_index, handle))
                except Exception as exc:
                    self._note(f"GPU {cuda_index} description failed: {nvmlmap.nvml_error_text(exc)}")
            self._inventory = inv
        return list(self._inventory)

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> "SamplerCore":
        """Open samples.csv (header if new) and start the sampling threads."""
        if self._threads:
            raise RuntimeError("sampler already started")
        self._ensure_nvml()
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._file = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(vocab.SAMPLES_HEADER)
            self._file.flush()
        self.gpu_inventory()          # cached now: still answers after stop()
        self._prime_host()
        # first samples one period after start: CPU % needs an interval to mean anything
        self._spawn("scalescope-sampler-host", self._tick_host)
        for cuda_index, handle in self._handles:
            self._spawn(f"scalescope-sampler-gpu{cuda_index}", self._tick_gpu, cuda_index, handle)
        return self

    def _spawn(self, name: str, tick: Any, *args: Any) -> None:
        ticker = Ticker(self.period_s, first_tick=1)
        t = threading.Thread(target=self._loop, args=(ticker, tick, args), name=name, daemon=True)
        self._tickers.append(ticker)
        self._threads.append(t)
        t.start()

    def stop(self) -> None:
        """Stop the threads (at once: their waits are interruptible) and close the file."""
        for tk in self._tickers:
            tk.stop()
        for t in self._threads:
            t.join(timeout=10)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        if self._nv is not None:
            try:
                self._nv.nvmlShutdown()
            except Exception:
                pass
            self._nv = None
            self._handles = []

    def __enter__(self) -> "SamplerCore":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def skipped_ticks(self) -> int:
        """Deadlines passed over because a tick took longer than the period."""
        return sum(t.skipped for t in self._tickers)

    # --- sampling --------------------------------------------------------------
    def _note(self, text: str, key: str | None = None) -> None:
        """Record ``text`` once per ``key`` (default: the text), so a failure repeating
        every tick -- with a different message each time -- is said once."""
        key = text if key is None else key
        with self._lock:
            if key not in self._noted:
                self._noted.add(key)
                self.notes.append(text)

    def _loop(self, ticker: Ticker, tick: Any, args: tuple[Any, ...]) -> None:
        for _ in ticker:
            try:
                tick(*args)
            except Exception as exc:  # a sampler error must never stop training
                self._note(f"sampler tick failed: {type(exc).__name__}: {exc}",
                           key=f"tick:{getattr(tick, '__name__', tick)}:{type(exc).__name__}")

    def _write(self, rows: list[tuple[int, str, str, str, float]]) -> None:
        if not rows:
            return
        with self._lock:
            if self._file is None:
                return
            self._writer.writerows((t, s, d, k, _fmt(v)) for t, s, d, k, v in rows)
            self._file.flush()
            self.rows_written += len(rows)

    def _prime_host(self) -> None:
        self._host = m.HostProbe()
        try:
            self._root = psutil.Process(self.root_pid)
        except psutil.Error as exc:
            self._note(f"process {self.root_pid} not found, no proc rows: {exc}")
            self._root = None
        for group in self._process_groups().values():
            for p in group:
                try:
                    p.cpu_percent(None)
                except psutil.Error:
                    pass

    def _process_groups(self) -> dict[str, list[psutil.Process]]:
        """The root and its live descendants, reusing Process objects across ticks."""
        if self._root is None:
            return {}
        me = os.getpid()           # the sampler's own process is not a worker of the run
        kids: dict[int, psutil.Process] = {}
        for pid in descendants(self._root.pid):
            if pid == me:
                continue
            old = self._procs.get(pid)
            try:
                p = psutil.Process(pid) if old is None else old
                if old is not None and not old.is_running():   # pid reused by a new process
                    p = psutil.Process(pid)
            except psutil.Error:
                continue
            kids[pid] = p
        self._procs = kids
        return {vocab.PROC_MAIN: [self._root], vocab.PROC_CHILDREN: list(kids.values())}

    def _tick_host(self) -> None:
        now = time.time_ns()
        rows: list[tuple[int, str, str, str, float]] = []
        assert self._host is not None
        for metric in self.host_metrics:
            try:
                for device, value in metric.read(self._host):
                    if self.per_core or not device.startswith("cpu"):
                        rows.append((now, vocab.SOURCE_HOST, device, metric.name, float(value)))
            except Exception as exc:
                self._note(f"host {metric.name} failed: {type(exc).__name__}: {exc}",
                           key=f"host:{metric.name}:{type(exc).__name__}")
        for group, procs in self._process_groups().items():
            for metric in self.proc_metrics:
                if group not in metric.groups:
                    continue
                try:
                    rows.append((now, vocab.SOURCE_PROC, group, metric.name, float(metric.read(procs))))
                except Exception as exc:
                    self._note(f"proc {group} {metric.name} failed: {type(exc).__name__}: {exc}",
                               key=f"proc:{group}:{metric.name}:{type(exc).__name__}")
        self._write(rows)

    def _tick_gpu(self, cuda_index: int, handle: Any) -> None:
        now = time.time_ns()
        nv = self._nv
        rows: list[tuple[int, str, str, str, float]] = []
        device = str(cuda_index)
        for metric in self.nvml_metrics:
            if (cuda_index, metric.name) in self._dropped:
                continue
            try:
                value = float(metric.read(handle))
            except Exception as exc:
                if nv is not None and isinstance(exc, nv.NVMLError_NotSupported):
                    self._dropped.add((cuda_index, metric.name))
                    self._note(f"{metric.name} not supported on GPU {cuda_index} (dropped)")
                else:
                    self._note(f"nvml {metric.name} on GPU {cuda_index} failed: {type(exc).__name__}: {exc}",
                               key=f"nvml:{cuda_index}:{metric.name}:{type(exc).__name__}")
                continue
            rows.append((now, vocab.SOURCE_NVML, device, metric.name, value))
        self._write(rows)


def descendants(pid: int) -> list[int]:
    """All descendant pids of ``pid``.

    Reads /proc/<pid>/task/<tid>/children (a few small files) rather than
    psutil's ``children(recursive=True)``, which opens /proc/<n>/stat for every
    process on the machine -- thousands on a shared cluster node, every tick.
    Falls back to psutil where those files don't exist.
    """
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    out: list[int] = []
    todo = [pid]
    seen = {pid}
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue                   # exited meanwhile
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            for k in kids:
                if k not in seen:
                    seen.add(k)
                    out.append(k)
                    todo.append(k)
    return out


def _fmt(value: float) -> str:
    """Compact and exact enough: integers stay integers, others get 6 significant digits."""
    if value != value or value in (float("inf"), float("-inf")):
        return repr(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"
