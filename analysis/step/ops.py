"""Operators of one trace, summed over its profiled steps: the level below the breakdown's categories.

What runs on a device is what it spends its step on: on a GPU its kernels, copies and memsets;
on a CPU-only run the host operators by self time (an op's span less the ops inside it on its
thread, as profilers' "self CPU" columns: nested time is counted once). Each op is put under the phase label it ran under -- or, on a GPU, the one
its launch ran under -- and counted toward the category its kind has in classify's one table.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from analysis.records import OpStat
from analysis.step import intervals as iv
from analysis.step.classify import CATEGORY_OF_KIND, Kind, kind_mask
from analysis.step.events import Events
from profiler.contract import vocab

__all__ = ["PHASE_NAMES", "OTHER", "op_stats"]

OTHER = "other"
# label -> short phase name; outer labels first, so an inner one (a DataParallel part) wins where both cover
PHASE_NAMES: tuple[tuple[str, str], ...] = (
    (vocab.DATA_WAIT, "data"), (vocab.H2D, "h2d"), (vocab.FORWARD, "forward"), (vocab.LOSS, "loss"),
    (vocab.BACKWARD, "backward"), (vocab.OPTIMIZER, "optimizer"), (vocab.SCATTER, "scatter"),
    (vocab.REPLICATE, "replicate"), (vocab.PARALLEL_APPLY, "parallel_apply"), (vocab.GATHER, "gather"))
# torch's own spans, for traces without our labels (anyone's profile)
TORCH_PHASES: tuple[tuple[str, str], ...] = ((vocab.TORCH_DATALOADER, "data"), ("Optimizer.step#", "optimizer"))
_HOST_OP_KINDS = (Kind.HOST_OP, Kind.HOST_COMM, Kind.HOST_DP_COMM)


def _category_of(has_gpu: bool) -> dict[int, str]:
    out = {int(k): r.category for r in CATEGORY_OF_KIND for k in r.kinds}
    if not has_gpu:
        out[int(Kind.HOST_OP)] = vocab.COMPUTE    # a CPU-only run computes in its host ops (classify.cpu_compute)
    return out


def _self_times(ev: Events, sel: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """The selected events and each one's self time: its span less its direct children's on the same
    thread (spans nest), so every instant of host op time is counted once, toward the innermost op."""
    tr = ev.tr
    idx = np.flatnonzero(sel)
    if len(idx) == 0:
        return idx, np.zeros(0)
    thread = tr.pid[idx].astype(np.int64) * (len(tr.tids) + 1) + tr.tid[idx]
    order = np.lexsort((-tr.dur[idx], tr.ts[idx], thread))
    idx, thread = idx[order], thread[order]
    starts, ends = tr.ts[idx].tolist(), tr.end[idx].tolist()
    own = tr.dur[idx].astype(np.float64).copy()
    stack: list[int] = []                       # open ancestors of the current event, innermost last
    threads = thread.tolist()
    for i in range(len(idx)):
        if i and threads[i] != threads[i - 1]:
            stack.clear()
        while stack and starts[i] >= ends[stack[-1]]:
            stack.pop()
        if stack:
            own[stack[-1]] -= min(ends[i], ends[stack[-1]]) - starts[i]
        stack.append(i)
    return idx, np.maximum(own, 0.0)


def _phases(ev: Events, at: NDArray[np.float64]) -> tuple[NDArray[np.int64], list[str]]:
    """For each time, the index (0 = other) into the returned names of the innermost phase label covering it."""
    tr = ev.tr
    labels = kind_mask(ev.kind, Kind.HOST_LABEL, Kind.HOST_DATA, Kind.HOST_DP_COMM)   # our DP labels are DP comm
    ours = [(lab, short) for lab, short in PHASE_NAMES if lab in tr.names]
    table = ours or list(TORCH_PHASES)
    out = np.zeros(len(at), np.int64)
    for code, (label, _) in enumerate(table, 1):
        if ours:                              # every label in `ours` is among the trace's names
            hit = labels & (tr.name == tr.names.index(label))
        else:
            starts = [i for i, n in enumerate(tr.names) if n.startswith(label)]
            hit = labels & np.isin(tr.name, starts) if starts else None
        if hit is None or not hit.any():
            continue
        out[iv.contains(ev.spans(hit), at)] = code
    return out, [OTHER] + [short for _, short in table]


def op_stats(ev: Events, windows: NDArray[np.float64], has_gpu: bool) -> list[OpStat]:
    """Every op that starts (or, on a GPU, is launched) inside the step windows, summed by
    (name, category, phase, device); largest first."""
    tr = ev.tr
    if has_gpu:
        idx = np.flatnonzero(ev.gpu)
        at = np.where(np.isnan(ev.launch_ts[idx]), tr.ts[idx], ev.launch_ts[idx])
        devices = np.array([f"gpu{int(i)}" for i in range(int(ev.gpu_index[idx].max()) + 1)] if len(idx) else [])
        dev = ev.gpu_index[idx]
        dur = tr.dur[idx].astype(np.float64)
    else:
        idx, dur = _self_times(ev, kind_mask(ev.kind, *_HOST_OP_KINDS))
        at = tr.ts[idx]
        devices, dev = np.array(["cpu"]), np.zeros(len(idx), np.int64)
    inside = iv.contains(iv.union(windows), at)
    idx, at, dev, dur = idx[inside], at[inside], dev[inside], dur[inside]
    if len(idx) == 0:
        return []
    phase, phase_names = _phases(ev, at)
    cat_of = _category_of(has_gpu)
    cats = sorted(set(cat_of.values()))
    code = np.full(max(int(k) for k in Kind) + 1, -1, np.int64)
    for k, c in cat_of.items():
        code[k] = cats.index(c)
    cat = code[ev.kind[idx].astype(np.int64)]
    keep = cat >= 0
    idx, dev, phase, cat, dur = idx[keep], dev[keep], phase[keep], cat[keep], dur[keep]
    key = np.column_stack((tr.name[idx].astype(np.int64), cat, phase, dev))
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    total = np.bincount(inv, weights=dur, minlength=len(uniq))
    calls = np.bincount(inv, minlength=len(uniq))
    stats = [OpStat(tr.names[int(n)], cats[int(c)], phase_names[int(p)], str(devices[int(d)]), float(t), int(k))
             for (n, c, p, d), t, k in zip(uniq.tolist(), total.tolist(), calls.tolist())]
    return sorted(stats, key=lambda s: (-s.total_us, s.name, s.phase, s.device))
