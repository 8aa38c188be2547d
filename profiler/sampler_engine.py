"""The sampling engine: the threads that write samples.csv, in whichever process runs them.

`profiler.sampler.Sampler` (the front the runner uses) normally runs this engine in a child
process, so its /proc and NVML reads never wait on the training loop's GIL; the engine itself
is usable in-process, which is how tests inject a failing metric row. Both take one frozen
:class:`SamplerConfig`, which crosses to the child as JSON.

Long format ``time_ns,source,device,metric,value`` (``vocab.SAMPLES_HEADER``),
appended and flushed every tick so a killed job still leaves its samples.
``time_ns`` is ``time.time_ns()``, the clock Kineto's ``baseTimeNanoseconds``
uses, so samples and trace events line up. One thread samples the host and
processes; each GPU gets its own thread because NVML's PCIe counters block
~20 ms per read. Every tick also writes ``proc,tree,cpu_cores``: the whole process
tree's CPU in cores, to set beside the job's allocation (`profiler.cpualloc`).
Nothing here may stop training: every failure is caught, noted once, and sampling
goes on. Torch-free.
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

import msgspec
import psutil

from . import metrics as m
from . import nvml as nvmlmap
from .clock import Ticker
from .contract import vocab
from .contract.runjson import GpuInfo

__all__ = ["SamplerConfig", "SamplerCore", "descendants"]


def _visible_from_env() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


class SamplerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What to sample, once: the front, the engine and the child process all read this.

    ``gpu_uuids`` is the driver UUID of every CUDA index of the run (from torch): the GPUs are
    matched to NVML by it. Without it (a sampler started outside the runner), ``n_gpus`` CUDA
    devices are found by parsing ``cuda_visible_devices`` (default: the environment's).
    """

    csv_path: str
    period_s: float = 0.1
    n_gpus: int = 0
    gpu_uuids: tuple[str, ...] | None = None
    root_pid: int = msgspec.field(default_factory=os.getpid)
    cuda_visible_devices: str | None = msgspec.field(default_factory=_visible_from_env)
    per_core: bool = True

    def __post_init__(self) -> None:
        if not self.period_s > 0:
            raise ValueError(f"sample period must be positive, got {self.period_s!r}")

    @property
    def path(self) -> Path:
        return Path(self.csv_path)

    @property
    def gpus(self) -> int:
        """CUDA devices to sample: one per UUID when the mapping is known."""
        return len(self.gpu_uuids) if self.gpu_uuids is not None else self.n_gpus


class SamplerCore:
    """Samples NVML (per GPU), the host CPU/memory and the process tree on a fixed period."""

    def __init__(
        self,
        config: SamplerConfig,
        *,
        nvml_metrics: Sequence[m.NvmlMetric] = m.NVML_METRICS,
        host_metrics: Sequence[m.HostMetric] = m.HOST_METRICS,
        proc_metrics: Sequence[m.ProcMetric] = m.PROC_METRICS,
    ) -> None:
        self.config = config
        self.csv_path = config.path
        self.period_s = float(config.period_s)
        self.nvml_metrics = tuple(nvml_metrics)
        self.host_metrics = tuple(host_metrics)
        self.proc_metrics = tuple(proc_metrics)

        self.notes: list[str] = []
        self.rows_written = 0
        self._noted: set[str] = set()
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._writer: Any = None
        self._threads: list[threading.Thread] = []
        self._tickers: list[Ticker] = []
        self._nvml: nvmlmap.NvmlSession | None = None
        self._inventory: list[GpuInfo] | None = None
        self._dropped: set[tuple[int, str]] = set()
        self._procs: dict[int, psutil.Process] = {}
        self._root: psutil.Process | None = None
        self._host: m.HostProbe | None = None

    # --- NVML ------------------------------------------------------------------
    def _session(self) -> nvmlmap.NvmlSession:
        """NVML and the run's GPU handles, opened on first use."""
        if self._nvml is None:
            c = self.config
            self._nvml = nvmlmap.open_session(c.n_gpus, c.gpu_uuids, c.cuda_visible_devices)
            for n in self._nvml.notes:
                self._note(n)
        return self._nvml

    @property
    def nvml_status(self) -> str:
        """"ok" or "NVML unavailable: <reason>" (initialises NVML on first use)."""
        return self._session().status

    @property
    def driver(self) -> str | None:
        return self._session().driver

    @property
    def nvml_open(self) -> bool:
        return self._nvml is not None and self._nvml.nv is not None

    def gpu_inventory(self) -> list[GpuInfo]:
        """run.json ``environment.gpus``: one entry per sampled CUDA device ([] without NVML)."""
        session = self._session()
        if self._inventory is None:
            before = len(session.notes)
            self._inventory = nvmlmap.describe_all(session)
            for n in session.notes[before:]:
                self._note(n)
        return list(self._inventory)

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> "SamplerCore":
        """Open samples.csv (header if new) and start the sampling threads."""
        if self._threads:
            raise RuntimeError("sampler already started")
        session = self._session()
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
        for cuda_index, handle in session.handles:
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
                try:
                    self._file.close()
                except OSError as exc:      # the last rows did not fit (a full disk): said, not raised
                    self.notes.append(f"samples.csv: the last rows could not be written ({exc.strerror or exc})")
                self._file = None
        if self._nvml is not None:
            self._nvml.close()

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
        root_pid = self.config.root_pid
        try:
            self._root = psutil.Process(root_pid)
        except psutil.Error as exc:
            self._note(f"process {root_pid} not found, no proc rows: {exc}")
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
                    if self.config.per_core or not device.startswith("cpu"):
                        rows.append((now, vocab.SOURCE_HOST, device, metric.name, float(value)))
            except Exception as exc:
                self._note(f"host {metric.name} failed: {type(exc).__name__}: {exc}",
                           key=f"host:{metric.name}:{type(exc).__name__}")
        cpu_pct: dict[str, float] = {}
        for group, procs in self._process_groups().items():
            for metric in self.proc_metrics:
                if group not in metric.groups:
                    continue
                try:
                    value = float(metric.read(procs))
                except Exception as exc:
                    self._note(f"proc {group} {metric.name} failed: {type(exc).__name__}: {exc}",
                               key=f"proc:{group}:{metric.name}:{type(exc).__name__}")
                    continue
                rows.append((now, vocab.SOURCE_PROC, group, metric.name, value))
                if metric.name == vocab.CPU_PCT:
                    cpu_pct[group] = value
        if vocab.PROC_MAIN in cpu_pct:   # the whole tree, in cores: what the allocation bounds
            tree = (cpu_pct[vocab.PROC_MAIN] + cpu_pct.get(vocab.PROC_CHILDREN, 0.0)) / 100.0
            rows.append((now, vocab.SOURCE_PROC, vocab.PROC_TREE, vocab.CPU_CORES, tree))
        self._write(rows)

    def _tick_gpu(self, cuda_index: int, handle: Any) -> None:
        now = time.time_ns()
        nv = self._nvml.nv if self._nvml is not None else None
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
