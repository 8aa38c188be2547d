"""Builder for small synthetic Kineto traces: the one helper module every analysis/report test builds from.

Writes either form: torch 2.x (`cpu_op`, `user_annotation`, `cuda_runtime`, `kernel`,
`gpu_memcpy`, ac2g flows) or the old one (`Operator`, `Runtime`, `Kernel`, `Memcpy`,
string tids, integer µs) — so every breakdown test can run on both.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


NEW, OLD = "torch2", "old"
_CATS = {
    NEW: {"op": "cpu_op", "label": "user_annotation", "runtime": "cuda_runtime", "kernel": "kernel",
          "memcpy": "gpu_memcpy", "memset": "gpu_memset"},
    OLD: {"op": "Operator", "label": "Operator", "runtime": "Runtime", "kernel": "Kernel",
          "memcpy": "Memcpy", "memset": "Memset"},
}
_COPY_NAMES = {"HtoD": "Memcpy HtoD (Pinned -> Device)", "DtoH": "Memcpy DtoH (Device -> Pinned)",
               "DtoD": "Memcpy DtoD (Device -> Device)", "PtoP": "Memcpy PtoP (Device -> Device)"}


class TraceBuilder:
    """Events in µs relative to `origin`; GPU work is launched by a runtime call it correlates with."""

    def __init__(self, form: str = NEW, pid: int = 4242, tid: int = 4242, origin: float = 1_000_000.0,
                 base_time_ns: int | None = 1_700_000_000_000_000_000) -> None:
        self.form, self.pid, self.tid, self.origin, self.base = form, pid, tid, origin, base_time_ns
        self.events: list[dict[str, Any]] = []
        self._corr = 1000

    def _tid(self, tid: int | None) -> int | str:
        t = self.tid if tid is None else tid
        return str(t) if self.form == OLD else t

    def _x(self, cat: str, name: str, ts: float, dur: float, pid: Any, tid: Any, args: dict | None = None) -> dict:
        e = {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": self.origin + ts, "dur": dur}
        if args:
            e["args"] = args
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
        data = self.bytes()
        gz = path.name.endswith(".gz") if gz is None else gz
        path.write_bytes(gzip.compress(data) if gz else data)
        return path
