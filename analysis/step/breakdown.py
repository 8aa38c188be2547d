"""Split every profiled step of one trace into vocab.CATEGORIES, plus the side views.

docs/design.md "The breakdown rules": per ProfilerStep#N on the main thread, the window is
stretched to the end of the GPU work launched inside it (launch -> GPU event by the
correlation id) and starts no earlier than the previous step's stretched end, so
steps never share an instant. Inside a window each instant goes to the first
category that covers it, in the order of classify.CATEGORY_OF_KIND (compute >
communication > host_to_device > data_loading > host_overhead > unclassified; idle is
the rest), by the one sweep intervals.exclusive, so the parts sum to the wall time.
The per-device views and the timeline's lanes use the same table and the same sweep.
GPUs are (process, device index) and never merged.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from analysis.step import intervals as iv
from analysis.step.classify import (CATEGORY_OF_KIND, KERNEL_CATS,
                               MEMCPY_CATS, SYNC_CALL, Kind, allreduce_mask, category_mask, cpu_compute,
                               memcpy_kind, step_number,
                               torch_dataloader_mask)
from analysis.trace.errors import TraceError
from analysis.records import DeviceView, MemcpyStats, StepBreakdown, TraceAnalysis
from analysis.trace.reader import Trace, read_trace
from analysis.step.edges import edges
from analysis.step.events import Events, resolve, worker_name
from analysis.step.ops import op_stats
from analysis.step.timeline import step_timeline
from analysis.step.straggler import collectives
from analysis.step.strategy import evidence
from profiler.contract import vocab

PHASE_KEYS: tuple[str, ...] = vocab.ALL_PHASES + (vocab.TORCH_DP_FORWARD, vocab.TORCH_DDP_FORWARD)


def _step_windows(ev: Events) -> tuple[list[int], NDArray[np.float64], list[str]]:
    """Step numbers and [start, end) windows from ProfilerStep#N on the main thread, each stretched
    to the end of the GPU work launched inside it and starting no earlier than the previous end."""
    tr = ev.tr
    steps = np.flatnonzero(ev.kind == Kind.STEP)
    notes: list[str] = []
    if len(steps) == 0:
        live = ev.kind != Kind.IGNORE
        live = live if live.any() else np.ones(len(tr), bool)
        notes.append("no ProfilerStep in the trace: the whole trace is analysed as one step (step -1)")
        return [-1], np.array([[tr.ts[live].min(), tr.end[live].max()]]), notes
    thread = tr.pid[steps].astype(np.int64) * (len(tr.tids) + 1) + tr.tid[steps]
    main = np.bincount(thread - thread.min()).argmax() + thread.min()
    steps = steps[thread == main]
    steps = steps[np.argsort(tr.ts[steps], kind="stable")]
    host = np.column_stack((tr.ts[steps], tr.end[steps]))
    gpu_end = np.full(len(steps), -np.inf)
    launched = np.flatnonzero(ev.gpu & ~np.isnan(ev.launch_ts))
    if len(launched):
        idx = np.searchsorted(host[:, 0], ev.launch_ts[launched], side="right") - 1
        ok = idx >= 0
        ok[ok] = ev.launch_ts[launched[ok]] < host[idx[ok], 1]
        np.maximum.at(gpu_end, idx[ok], tr.end[launched[ok]])
    windows = np.empty_like(host)
    prev_end = -np.inf
    for i, (s, e) in enumerate(host):
        start = max(s, prev_end)
        end = max(e, gpu_end[i], start)
        windows[i] = (start, end)
        prev_end = end
    numbers = [step_number(tr.names[tr.name[i]]) or 0 for i in steps]
    return numbers, windows, notes


def category_sets(ev: Events, has_gpu: bool, notes: list[str]) -> list[tuple[str, iv.Intervals]]:
    """The merged interval set of each category, in priority order (classify.CATEGORY_OF_KIND)."""
    return [(r.category, cpu_compute(ev.tr, ev.kind, notes) if r.category == vocab.COMPUTE and not has_gpu
             else ev.spans(ev.of(*r.kinds)))
            for r in CATEGORY_OF_KIND]


def window_parts(sets: list[tuple[str, iv.Intervals]], windows: NDArray[np.float64],
                 walls: NDArray[np.float64] | list[float], W: iv.Intervals | None = None) -> list[dict[str, float]]:
    """Exclusive time of each category in each [start, end) window by priority, from one sweep over
    all of them (windows never share an instant); idle is the rest of each window's wall (the caller
    passes the wall as its absolute clock rounds it). W: the windows' union, when already known."""
    mine = iv.exclusive(sets, iv.union(windows) if W is None else W)
    per_cat = {c: iv.lengths_in(x, windows[:, 0], windows[:, 1]).tolist() for c, x in mine}
    out = []
    for i, wall in enumerate(walls):
        parts = {c: 0.0 for c in vocab.CATEGORIES}
        for c, lengths in per_cat.items():
            parts[c] = lengths[i]
        parts[vocab.IDLE] = max(0.0, float(wall) - sum(parts.values()))
        out.append(parts)
    return out


def sweep(sets: list[tuple[str, iv.Intervals]], start: float, end: float,
          wall: float | None = None) -> dict[str, float]:
    """One window's parts (window_parts); idle is the rest of `wall` (default end - start)."""
    return window_parts(sets, np.array([[start, end]], np.float64), [end - start if wall is None else wall])[0]


def step_breakdowns(sets: list[tuple[str, iv.Intervals]], numbers: list[int], windows: NDArray[np.float64],
                    W: iv.Intervals, t0_us: float) -> list[StepBreakdown]:
    """Every step's parts; start, end and wall on the absolute clock."""
    bounds = [(float(t0_us + s), float(t0_us + e)) for s, e in windows]
    parts = window_parts(sets, windows, [end - start for start, end in bounds], W)
    return [StepBreakdown(n, start, end, p) for n, (start, end), p in zip(numbers, bounds, parts)]


def mark_edges(ev: Events, sets: list[tuple[str, iv.Intervals]], windows: NDArray[np.float64],
               steps: list[StepBreakdown], notes: list[str]) -> None:
    """Split the time at the trace's edges (step/edges.py) by the same sweep, onto its steps' edge_us."""
    found = edges(ev, windows)
    if not found:
        return
    parts = window_parts(sets, np.array([[e.start, e.end] for e in found], np.float64), [e.us for e in found])
    for e, p in zip(found, parts):
        st = steps[e.index]
        for c, v in p.items():
            if v > 0:
                st.edge_us[c] = st.edge_us.get(c, 0.0) + v
        what = ("waiting on GPU work launched before the trace began (an unrecorded step's)" if e.kind == "head"
                else "at its end with no recorded event (the profiler stopping)")
        notes.append(f"step {st.step}: {e.us / 1e3:.1f} ms {what}, left out of the run's step time")


def _device_views(ev: Events, windows: NDArray[np.float64], sets: list[tuple[str, iv.Intervals]],
                  has_gpu: bool) -> list[DeviceView]:
    tr = ev.tr
    wall = float(np.sum(windows[:, 1] - windows[:, 0]))
    W = iv.union(windows)
    if not has_gpu:
        busy = [(c, x) for c, x in sets if c in (vocab.COMPUTE, vocab.COMMUNICATION)]   # the CPU's own work
        mine = dict(iv.exclusive(busy, W))
        comp, comm = iv.total(mine[vocab.COMPUTE]), iv.total(mine[vocab.COMMUNICATION])
        return [DeviceView("cpu", ev.host_pid, -1, wall, comp, comm, 0.0, wall - (comp + comm), 0)]
    views = []
    kernels = category_mask(tr, KERNEL_CATS)
    syncs = ev.spans(~ev.gpu & ev.named(SYNC_CALL))
    for d in np.unique(ev.gpu_index[ev.gpu]):
        on = ev.gpu & (ev.gpu_index == d)
        own = ev.device_sets(on)
        mine = {c: iv.total(x) for c, x in iv.exclusive(own, W)}
        comp, comm, h2d = mine[vocab.COMPUTE], mine[vocab.COMMUNICATION], mine[vocab.H2D_COPY]
        n_kernels = int(np.count_nonzero(iv.contains(W, tr.ts[on & kernels])))
        idle = iv.subtract(W, iv.union(*(x for _, x in own)))
        views.append(DeviceView(f"pid {ev.host_pid} gpu {int(d)}", ev.host_pid, int(d), wall, comp, comm, h2d,
                                max(0.0, wall - (comp + comm + h2d)), n_kernels,
                                idle_sync_us=iv.total(iv.intersect(idle, syncs))))
    return views


def _phase_totals(ev: Events, W: iv.Intervals) -> dict[str, float]:
    """Inclusive wall time under each phase label (any thread: DP replicas run in their own)."""
    present = {n: i for i, n in enumerate(ev.tr.names) if n in PHASE_KEYS}
    totals: dict[str, float] = {}
    host = ev.kind != Kind.IGNORE
    for name, i in present.items():
        totals[name] = iv.total(iv.intersect(ev.spans(host & (ev.tr.name == i)), W))
    dl = torch_dataloader_mask(ev.tr, ev.kind)
    if dl.any():
        totals[vocab.TORCH_DATALOADER] = iv.total(iv.intersect(ev.spans(dl), W))
    if vocab.OPTIMIZER not in present:      # anyone's trace: torch.optim's own span stands for our label
        opt = [i for i, n in enumerate(ev.tr.names) if n.startswith(vocab.TORCH_OPTIMIZER)]
        if opt:
            totals[vocab.TORCH_OPTIMIZER] = iv.total(iv.intersect(ev.spans(host & np.isin(ev.tr.name, opt)), W))
    return totals


def _memcpy_stats(ev: Events, W: iv.Intervals) -> list[MemcpyStats]:
    tr = ev.tr
    idx = np.flatnonzero(category_mask(tr, MEMCPY_CATS))
    idx = idx[iv.contains(W, tr.ts[idx])]
    codes, inverse = np.unique(tr.name[idx], return_inverse=True)     # the kind is read once per name
    kind_of_code = [memcpy_kind(tr.names[c]) for c in codes.tolist()]
    kinds = sorted(set(kind_of_code))
    of = np.array([kinds.index(k) for k in kind_of_code], np.int64)[inverse.reshape(-1)]
    return [MemcpyStats(k, int(np.count_nonzero(mine := of == j)), int(np.nansum(tr.nbytes[idx[mine]])),
                        float(np.sum(tr.dur[idx[mine]])))
            for j, k in enumerate(kinds)]


def _comm_overlap(ev: Events, W: iv.Intervals, compute: iv.Intervals, has_gpu: bool) -> float | None:
    """Share of all-reduce time that runs under compute (GPU kernels, or backward ops on CPU)."""
    ar = ev.spans(allreduce_mask(ev.tr, ev.kind, on_gpu=has_gpu))
    if has_gpu:
        under = compute
    else:
        bwd = ev.spans(ev.named((vocab.BACKWARD,)))
        under = iv.intersect(compute, bwd) if len(bwd) else compute
    ar = iv.intersect(ar, W)
    t = iv.total(ar)
    return iv.total(iv.intersect(ar, under)) / t if t > 0 else None


_ITERATORS = (("enumerate(DataLoader)#_SingleProcessDataLoaderIter", "single-process"),
              ("enumerate(DataLoader)#_MultiProcessingDataLoaderIter", "multi-process"))


def loader_iterator(tr: Trace) -> str | None:
    """Which DataLoader iterator torch's own span names: single-process means num_workers=0."""
    for prefix, kind in _ITERATORS:
        if any(n.startswith(prefix) for n in tr.names):
            return kind
    return None


def analyse(tr: Trace, timeline: bool = False) -> TraceAnalysis:
    """Every view of one trace that the report needs (timeline=True: also the median step's spans for the plot)."""
    ev = resolve(tr)
    has_gpu = bool(ev.gpu.any())
    numbers, windows, notes = _step_windows(ev)
    sets = category_sets(ev, has_gpu, notes)
    W = iv.union(windows)
    steps = step_breakdowns(sets, numbers, windows, W, tr.t0_us)
    mark_edges(ev, sets, windows, steps, notes)
    unknown = Counter(tr.names[i] for i in tr.name[ev.kind == Kind.UNKNOWN].tolist())
    if unknown:
        notes.append(f"{sum(unknown.values())} events of {len(unknown)} unknown kinds counted as unclassified")
    ta = TraceAnalysis(
        path=tr.path, worker=worker_name(tr.path), has_gpu=has_gpu, steps=steps,
        devices=_device_views(ev, windows, sets, has_gpu), phase_totals_us=_phase_totals(ev, W),
        memcpy=_memcpy_stats(ev, W), comm_overlap=_comm_overlap(ev, W, sets[0][1], has_gpu),
        unclassified=dict(unknown), notes=notes, strategy_evidence=evidence(tr, len(steps), worker_name(tr.path)),
        collectives=collectives(tr, [(n, float(s), float(e)) for n, (s, e) in zip(numbers, windows)]),
        base_time_ns=tr.base_time_ns,
        ops=op_stats(ev, windows, has_gpu),
        gpu_names=list(tr.device_names), loader_iterator=loader_iterator(tr),
    )
    if timeline and steps:
        ta.timeline, ta.timeline_step = step_timeline(ev, sets, ta)
    return ta


def analyse_trace(path: Path | str, timeline: bool = False, read_jobs: int = 1) -> TraceAnalysis:
    """Read and break down one trace file; raises analysis.trace.errors.TraceError for bad input.

    A trace that reads but trips the analysis (a shape no real profiler writes) is also
    reported as a one-line TraceError, so one odd file never stops a whole report.
    read_jobs > 1: a large file is decoded by that many processes (the same result).
    """
    path = Path(path)
    trace = read_trace(path, jobs=read_jobs)
    try:
        return analyse(trace, timeline)
    except (ValueError, IndexError, OverflowError, TypeError, KeyError, ZeroDivisionError) as e:
        raise TraceError(path, f"could not analyse ({type(e).__name__}: {e})") from None
