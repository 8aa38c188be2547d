"""A trace with every event classified and its GPU work linked to the host call that launched it.

The breakdown, the per-device views and the timeline all start from this one resolution, so
they agree on what each event is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from analysis.step import intervals as iv
from analysis.step.classify import (DEVICE_CATEGORY_OF_KIND, GPU_KINDS, HOST_KINDS, Kind, classify, dp_comm_launches,
                                    kind_mask, name_mask, spans)
from analysis.trace.reader import Trace

__all__ = ["Events", "resolve", "worker_name"]


@dataclass
class Events:
    """A trace with its kinds and launch links resolved: what every view below needs."""

    tr: Trace
    kind: NDArray[np.int8]
    host_pid: int | str
    gpu: NDArray[np.bool_]
    gpu_index: NDArray[np.int64]
    launch_ts: NDArray[np.float64]      # per event: ts of the runtime call that launched it, nan if none
    launch_thread: NDArray[np.int64]    # per event: (pid, tid) key of that call, -1 if none

    def spans(self, mask: NDArray[np.bool_]) -> iv.Intervals:
        return spans(self.tr, mask)

    def of(self, *kinds: Kind) -> NDArray[np.bool_]:
        return kind_mask(self.kind, *kinds)

    def named(self, pattern: re.Pattern[str] | tuple[str, ...]) -> NDArray[np.bool_]:
        return name_mask(self.tr, pattern)

    def device_sets(self, on: NDArray[np.bool_]) -> list[tuple[str, iv.Intervals]]:
        """One GPU's own compute / communication / host<->device sets (events `on` it), in priority order."""
        return [(r.category, self.spans(on & self.of(*r.kinds))) for r in DEVICE_CATEGORY_OF_KIND]


def worker_name(path: Path) -> str:
    """'rank0.1700000000000.pt.trace.json.gz' -> 'rank0' (host names with dots survive)."""
    name = path.name
    for suffix in (".gz", ".json", ".pt.trace"):
        name = name.removesuffix(suffix)
    head, _, tail = name.rpartition(".")
    return head if head and tail.isdigit() else name


def resolve(tr: Trace) -> Events:
    """Classify every event, link GPU work to the call that launched it, find the host process."""
    kind = classify(tr)
    host = kind_mask(kind, Kind.STEP, *HOST_KINDS)
    host_pid_idx = int(np.bincount(tr.pid[host]).argmax()) if host.any() else 0
    gpu = kind_mask(kind, *GPU_KINDS)
    pid_as_index = np.array([p if isinstance(p, int) else 0 for p in tr.pids], np.int64)[tr.pid]
    gpu_index = np.where(tr.device >= 0, tr.device, pid_as_index)
    thread = tr.pid.astype(np.int64) * (len(tr.tids) + 1) + tr.tid
    launch_ts = np.full(len(tr), np.nan)
    launch_thread = np.full(len(tr), -1, np.int64)
    rt = np.flatnonzero((kind == Kind.HOST_RUNTIME) & (tr.corr >= 0))
    linked = np.flatnonzero(gpu & (tr.corr >= 0))
    if len(rt) and len(linked):
        rt = rt[np.argsort(tr.corr[rt], kind="stable")]
        pos = np.minimum(np.searchsorted(tr.corr[rt], tr.corr[linked]), len(rt) - 1)
        hit = tr.corr[rt[pos]] == tr.corr[linked]
        launch_ts[linked[hit]] = tr.ts[rt[pos[hit]]]
        launch_thread[linked[hit]] = thread[rt[pos[hit]]]
    kind[dp_comm_launches(tr, kind, thread, launch_ts, launch_thread)] = Kind.GPU_COMM
    return Events(tr, kind, tr.pids[host_pid_idx] if tr.pids else 0, gpu, gpu_index, launch_ts, launch_thread)
