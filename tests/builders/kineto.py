"""The one builder for small synthetic Kineto traces every analysis/report/what-if test builds from.

Writes either form: torch 2.x (`cpu_op`, `user_annotation`, `cuda_runtime`, `kernel`,
`gpu_memcpy`, ac2g flows) or the old one (`Operator`, `Runtime`, `Kernel`, `Memcpy`,
string tids, integer µs) — so every breakdown test can run on both.

  x_event / step_event  one bare complete ("ph": "X") event, for hand-made hostile documents
  TraceBuilder          events relative to an origin, GPU work correlated with its launch; writes the file
  labelled_trace        3 steps of data_wait / forward / a conv and its kernel (the report tests' default trace)
  cpu_phase_trace       a CPU-only trace: data_wait then forward / backward / optimizer, each an op
  dp_step               one step of a DataParallel run (or its 1-device baseline) with its GPU work
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from profiler.contract import vocab

NEW, OLD = "torch2", "old"
_CATS = {
    NEW: {"op": "cpu_op", "label": "user_annotation", "runtime": "cuda_runtime", "kernel": "kernel",
          "memcpy": "gpu_memcpy", "memset": "gpu_memset"},
    OLD: {"op": "Operator", "label": "Operator", "runtime": "Runtime", "kernel": "Kernel",
          "memcpy": "Memcpy", "memset": "Memset"},
}
_COPY_NAMES = {"HtoD": "Memcpy HtoD (Pinned -> Device)", "DtoH": "Memcpy DtoH (Device -> Pinned)",
               "DtoD": "Memcpy DtoD (Device -> Device)", "PtoP": "Memcpy PtoP (Device -> Device)"}
BASE_TIME_NS = 1_700_000_000_000_000_000


def x_event(cat: str = "cpu_op", name: str = "aten::mm", pid: Any = 1, tid: Any = 1, ts: float = 10,
            dur: float = 5, args: dict | None = None, **fields: Any) -> dict[str, Any]:
    """One complete event as Kineto writes it; any field can be given a hostile value."""
    e: dict[str, Any] = {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur}
    if args is not None:
        e["args"] = args
    e.update(fields)
    return e


def step_event(n: int = 1, ts: float = 0, dur: float = 100, **fields: Any) -> dict[str, Any]:
    """The ProfilerStep#n annotation (torch 2.x form)."""
    return x_event(cat="user_annotation", name=f"ProfilerStep#{n}", ts=ts, dur=dur, **fields)


class TraceBuilder:
    """Events in µs relative to `origin`; GPU work is launched by a runtime call it correlates with."""

    def __init__(self, form: str = NEW, pid: int = 4242, tid: int = 4242, origin: float = 1_000_000.0,
                 base_time_ns: int | None = BASE_TIME_NS) -> None:
        self.form, self.pid, self.tid, self.origin, self.base = form, pid, tid, origin, base_time_ns
        self.events: list[dict[str, Any]] = []
        self._corr = 1000

    def _tid(self, tid: int | None) -> int | str:
        t = self.tid if tid is None else tid
        return str(t) if self.form == OLD else t

    def _x(self, cat: str, name: str, ts: float, dur: float, pid: Any, tid: Any, args: dict | None = None) -> dict:
        e = x_event(cat, name, pid, tid, self.origin + ts, dur, args or None)
        self.events.append(e)
        return e

    def op(self, name: str, ts: float, dur: float, tid: int | None = None) -> None:
        self._x(_CATS[self.form]["op"], name, ts, dur, self.pid, self._tid(tid), {"External id": 1})

    def label(self, name: str, ts: float, dur: float, tid: int | None = None) -> None:
        self._x(_CATS[self.form]["label"], name, ts, dur, self.pid, self._tid(tid))

    def step(self, n: int, ts: float, dur: float) -> None:
        self.label(f"ProfilerStep#{n}", ts, dur)

    def raw(self, event: dict) -> None:
        self.events.append(event)

    def _gpu(self, kind: str, name: str, ts: float, dur: float, device: int, launch: float, tid: int | None,
             stream: int, extra: dict | None = None) -> None:
        self._corr += 1
        c = self._corr
        self._x(_CATS[self.form]["runtime"], "cudaLaunchKernel" if kind == "kernel" else "cudaMemcpyAsync",
                launch, 1, self.pid, self._tid(tid), {"correlation": c, "cbid": 211})
        args = {"device": device, "stream": stream, "correlation": c, **(extra or {})}
        self._x(_CATS[self.form][kind], name, ts, dur, device, f"stream {stream}" if self.form == OLD else stream, args)
        flow = "async" if self.form == OLD else "ac2g"
        self.events.append({"ph": "s", "id": c, "pid": self.pid, "tid": self._tid(tid), "ts": self.origin + launch, "cat": flow, "name": flow})
        self.events.append({"ph": "f", "id": c, "pid": device, "tid": stream, "ts": self.origin + ts, "cat": flow, "name": flow, "bp": "e"})

    def kernel(self, name: str, ts: float, dur: float, device: int = 0, launch: float | None = None,
               tid: int | None = None, stream: int = 7) -> None:
        self._gpu("kernel", name, ts, dur, device, ts if launch is None else launch, tid, stream)

    def memcpy(self, kind: str, ts: float, dur: float, device: int = 0, launch: float | None = None,
               tid: int | None = None, nbytes: int | None = None, bandwidth: float | None = None) -> None:
        extra: dict[str, Any] = {}
        if nbytes is not None:
            extra["bytes"] = nbytes
        if bandwidth is not None:
            extra["memory bandwidth (GB/s)"] = bandwidth
        self._gpu("memcpy", _COPY_NAMES[kind], ts, dur, device, ts if launch is None else launch, tid, 7, extra)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schemaVersion": 1, "traceEvents": list(self.events)}
        doc["traceEvents"].append({"name": "process_name", "ph": "M", "ts": self.origin, "pid": self.pid, "tid": 0,
                                   "args": {"name": "python"}})
        doc["traceEvents"].append({"ph": "X", "cat": "Trace", "name": "PyTorch Profiler (0)", "pid": "Spans",
                                   "tid": "PyTorch Profiler", "ts": self.origin - 50, "dur": 1e6})
        if self.base is not None and self.form == NEW:
            doc["baseTimeNanoseconds"] = self.base
        return doc

    def bytes(self) -> bytes:
        return json.dumps(self.document(), indent=1).encode()

    def write(self, path: Path, gz: bool | None = None) -> Path:
        """Write the trace (gzipped when the name ends .gz, unless gz says), making its folder."""
        data = self.bytes()
        gz = path.name.endswith(".gz") if gz is None else gz
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if gz else data)
        return path


# --- step shapes --------------------------------------------------------------------------------

def labelled_trace(n_steps: int = 3, step_us: float = 1000, gpu: bool = True, pid: int = 100) -> TraceBuilder:
    """Per step: ProfilerStep, data_wait 200 µs, forward 300 µs holding an aten::conv2d, and (gpu) its
    400 µs kernel on GPU 0 — compute 40 %, data loading 20 % of a 1 ms step."""
    b = TraceBuilder(pid=pid, tid=1)
    for i in range(n_steps):
        t = i * step_us
        b.step(i + 1, t, step_us)
        b.label(vocab.DATA_WAIT, t, 200)
        b.label(vocab.FORWARD, t + 200, 300)
        b.op("aten::conv2d", t + 210, 280)
        if gpu:
            b.kernel("implicit_convolve_sgemm", t + 300, 400, device=0, launch=t + 250)
    return b


def cpu_phase_trace(pid: int, forward: float, backward: float, optimizer: float, n_steps: int = 2,
                    data_wait: float = 10) -> TraceBuilder:
    """A CPU-only trace: each step data_wait, then forward / backward / optimizer, each label holding one op."""
    b = TraceBuilder(pid=pid, tid=1)
    step = data_wait + forward + backward + optimizer
    for i in range(n_steps):
        t = i * step
        b.step(i + 1, t, step)
        at = t
        for name, dur in ((vocab.DATA_WAIT, data_wait), (vocab.FORWARD, forward), (vocab.BACKWARD, backward),
                          (vocab.OPTIMIZER, optimizer)):
            b.label(name, at, dur)
            b.op("aten::mm", at, dur)
            at += dur
    return b


def dp_step(b: TraceBuilder, n: int, t: float, *, devices: int = 1, data_wait: float = 0.0,
            forward: float | None = None, replicate: float = 0.0, parallel_apply: float = 0.0, gather: float = 0.0,
            loss: float = 0.0, backward: float = 0.0, optimizer: float = 0.0,
            broadcast: bool = False, copy_bytes: int | None = None, copy_lag: float = 0.0,
            apply_kernel: float | None = None, apply_lag: float = 0.0, replica_tids: Sequence[int] = (),
            gather_bytes: int | None = None, backward_kernel: bool = True, margin: float = 100.0) -> float:
    """Step n of a DataParallel run from t (µs), or of its 1-device baseline (devices=1); returns its length.

    Phases follow each other: data_wait, forward (= replicate + parallel_apply + gather unless given),
    loss, backward, optimizer; ProfilerStep spans them all. GPU work, DataParallel (devices > 1):
      replicate       `broadcast`: GPU 0 packs it (broadcast_coalesced over the phase); `copy_bytes`: a PtoP
                      copy of that many bytes into each GPU 1..N−1, from copy_lag µs in to the phase's end
      parallel_apply  an sgemm on every GPU from apply_lag µs in, apply_kernel µs long (default: to apply_lag
                      before the end); with replica_tids, GPU k's replica runs in thread replica_tids[k] and
                      labels parallel_apply there over its kernel (only those GPUs then compute)
      gather          `gather_bytes`: a PtoP copy into GPU 0 over the first half of the phase
      backward        sgemm_bwd on GPU 0 over the phase (unless backward_kernel=False)
      optimizer       adam on GPU 0 over the phase
    The 1-device baseline has one sgemm on GPU 0 from `margin` µs into the step to `margin` before its end.
    Every GPU op is launched when it starts."""
    fwd = replicate + parallel_apply + gather if forward is None else forward
    step = data_wait + fwd + loss + backward + optimizer
    b.step(n, t, step)
    at = t
    if data_wait:
        b.label(vocab.DATA_WAIT, at, data_wait)
        at += data_wait
    b.label(vocab.FORWARD, at, fwd)
    if devices > 1:
        if replicate:
            b.label(vocab.REPLICATE, at, replicate)
            if broadcast:
                b.kernel("broadcast_coalesced", at, replicate, device=0, launch=at)
            if copy_bytes is not None:
                for d in range(1, devices):
                    b.memcpy("PtoP", at + copy_lag, replicate - copy_lag, device=d, launch=at + copy_lag,
                             nbytes=copy_bytes)
        at += replicate
        if parallel_apply:
            b.label(vocab.PARALLEL_APPLY, at, parallel_apply)
            k_ts = at + apply_lag
            k_dur = parallel_apply - 2 * apply_lag if apply_kernel is None else apply_kernel
            if replica_tids:
                for d, tid in enumerate(replica_tids):
                    b.label(vocab.PARALLEL_APPLY, k_ts, k_dur, tid=tid)
                    b.kernel("sgemm", k_ts, k_dur, device=d, launch=k_ts, tid=tid)
            else:
                for d in range(devices):
                    b.kernel("sgemm", k_ts, k_dur, device=d, launch=k_ts)
        at += parallel_apply
        if gather:
            b.label(vocab.GATHER, at, gather)
            if gather_bytes is not None:
                b.memcpy("PtoP", at, gather / 2, device=0, launch=at, nbytes=gather_bytes)
        at += gather
    else:
        at += fwd
    if loss:
        b.label(vocab.LOSS, at, loss)
        at += loss
    if backward:
        b.label(vocab.BACKWARD, at, backward)
        if devices > 1 and backward_kernel:
            b.kernel("sgemm_bwd", at, backward, device=0, launch=at)
        at += backward
    if optimizer:
        b.label(vocab.OPTIMIZER, at, optimizer)
        if devices > 1:
            b.kernel("adam", at, optimizer, device=0, launch=at)
    if devices == 1:
        b.kernel("sgemm", t + margin, step - 2 * margin, device=0, launch=t + margin)
    return step
