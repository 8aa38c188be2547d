"""What the sampler reads, as declarative tables (one row per metric, like nvitop).

Adding a metric is adding a row: its samples.csv name (from `profiler.contract.vocab`),
its unit, and a small function that reads it. The sampler owns when and how
failures are handled; this module only says *what* to read. Torch-free.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from .contract import vocab

try:  # the sampler reports "NVML unavailable" when this is missing
    import pynvml
except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
    pynvml = None  # type: ignore[assignment]

MIB = 1024 * 1024

__all__ = [
    "NvmlMetric", "HostMetric", "ProcMetric", "HostProbe",
    "NVML_METRICS", "HOST_METRICS", "PROC_METRICS", "MIB",
]


@dataclass(frozen=True)
class NvmlMetric:
    """One NVML reading per GPU per tick; ``read(handle)`` returns the value in ``unit``."""
    name: str
    unit: str
    read: Callable[[Any], float]


@dataclass(frozen=True)
class HostMetric:
    """Host-wide readings; ``read(probe)`` yields ``(device, value)`` pairs ("all", "cpu<N>")."""
    name: str
    unit: str
    read: Callable[["HostProbe"], Iterable[tuple[str, float]]]


@dataclass(frozen=True)
class ProcMetric:
    """A value over a group of processes (``vocab.PROC_MAIN`` or ``vocab.PROC_CHILDREN``)."""
    name: str
    unit: str
    read: Callable[[Sequence[psutil.Process]], float]
    groups: tuple[str, ...] = (vocab.PROC_MAIN, vocab.PROC_CHILDREN)


# --- NVML ----------------------------------------------------------------------
# nvmlDeviceGetPcieThroughput measures over ~20 ms and blocks that long, which is
# why the sampler gives every GPU its own thread.
NVML_METRICS: tuple[NvmlMetric, ...] = (
    NvmlMetric(vocab.GPU_UTIL, "%", lambda h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
    NvmlMetric(vocab.MEM_UTIL, "%", lambda h: pynvml.nvmlDeviceGetUtilizationRates(h).memory),
    NvmlMetric(vocab.MEM_USED, "MiB", lambda h: pynvml.nvmlDeviceGetMemoryInfo(h).used / MIB),
    NvmlMetric(vocab.POWER, "W", lambda h: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
    NvmlMetric(vocab.SM_CLOCK, "MHz", lambda h: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
    NvmlMetric(vocab.PCIE_TX, "KB/s",
               lambda h: pynvml.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_TX_BYTES)),
    NvmlMetric(vocab.PCIE_RX, "KB/s",
               lambda h: pynvml.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_RX_BYTES)),
    NvmlMetric(vocab.TEMPERATURE, "C",
               lambda h: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
)


# --- host ----------------------------------------------------------------------
class HostProbe:
    """Per-core CPU busy % from our own ``cpu_times`` deltas.

    ``psutil.cpu_percent()`` keeps module-global state that any other caller in
    the process would disturb; keeping the previous times here avoids that.
    """

    def __init__(self) -> None:
        self._last: list[Any] | None = psutil.cpu_times(percpu=True)

    def cpu_pct(self) -> list[tuple[str, float]]:
        now = psutil.cpu_times(percpu=True)
        last, self._last = self._last, now
        if last is None or len(last) != len(now):
            return []
        per_core = [_busy_pct(a, b) for a, b in zip(last, now)]
        rows = [(vocab.HOST_ALL, sum(per_core) / len(per_core))] if per_core else []
        rows += [(f"cpu{i}", v) for i, v in enumerate(per_core)]
        return rows


def _busy_pct(before: Any, after: Any) -> float:
    """psutil's definition: busy = total - idle - iowait, as % of the elapsed total."""
    def idle(t: Any) -> float:
        return t.idle + getattr(t, "iowait", 0.0)
    total = sum(after) - sum(before)
    if total <= 0:
        return 0.0
    busy = total - (idle(after) - idle(before))
    return max(0.0, min(100.0, 100.0 * busy / total))


HOST_METRICS: tuple[HostMetric, ...] = (
    HostMetric(vocab.CPU_PCT, "%", lambda p: p.cpu_pct()),
    HostMetric(vocab.MEM_USED, "MiB", lambda p: [(vocab.HOST_ALL, psutil.virtual_memory().used / MIB)]),
)


# --- processes -----------------------------------------------------------------
def _sum_alive(procs: Sequence[psutil.Process], read: Callable[[psutil.Process], float]) -> float:
    """Sum over processes, ignoring ones that exited between listing and reading."""
    total = 0.0
    for p in procs:
        try:
            total += read(p)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return total


PROC_METRICS: tuple[ProcMetric, ...] = (
    # % of one core; the same Process objects are reused across ticks, so this is
    # the CPU used since the previous tick (a new process reads 0 on its first tick).
    ProcMetric(vocab.CPU_PCT, "% of one core", lambda ps: _sum_alive(ps, lambda p: p.cpu_percent(None))),
    # RSS double-counts pages forked DataLoader workers share with the parent.
    ProcMetric(vocab.RSS, "MiB", lambda ps: _sum_alive(ps, lambda p: p.memory_info().rss) / MIB),
    ProcMetric(vocab.NUM_PROCS, "processes", lambda ps: float(len(ps)), groups=(vocab.PROC_CHILDREN,)),
)
