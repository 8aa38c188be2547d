"""Check that run folders hold what a profiled run must: the GPU check's verdict.

For every run folder: ProfilerStep windows, the train phase labels, DP phase labels for
dp/dp-layerwise, a collective for ddp (nccl on GPUs, gloo on CPU), CUDA kernels and Memcpy
events for CUDA runs, NVML rows (CUDA) or host rows (CPU) in samples.csv, run.json complete.
Prints one table row per run and exits 1 if any check failed (2: no run folder given).

Traces are read by analysis.trace.reader and every event is judged by analysis.step.classify, the
table the breakdown uses, so this check can never disagree with the report about what a
kernel, a copy, a collective or a step is. run.json and samples.csv are read by the
contract's own readers. Torch-free (reads files only).

    python scripts/check_runs.py traces/gpu_check/*/
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.step.classify import (HOST_KINDS, KERNEL_CATS, MEMCPY_CATS, Kind, category_mask,  # noqa: E402
                               classify, kind_mask, memcpy_kind)
from analysis.trace.errors import TraceError  # noqa: E402
from analysis.trace.reader import Trace, read_trace  # noqa: E402
from profiler.contract import vocab  # noqa: E402
from profiler.contract.runjson import load_run_json  # noqa: E402
from profiler.contract.samples import SamplesError, read_samples  # noqa: E402


@dataclass
class RunCheck:
    run: str
    strategy: str = "?"
    device_type: str = "?"
    devices: int = 0
    status: str = "?"
    traces: int = 0
    steps: int = 0
    kernels: int = 0
    gpus_with_kernels: int = 0
    memcpy: Counter[str] = field(default_factory=Counter)
    labels: set[str] = field(default_factory=set)
    collectives: Counter[str] = field(default_factory=Counter)
    nvml_rows: int = 0
    host_rows: int = 0
    failures: list[str] = field(default_factory=list)


def count_trace(rc: RunCheck, tr: Trace, gpus: set[tuple[object, int]]) -> None:
    """Add one trace's steps, labels, kernels, copies and collectives to `rc`, by the classify table."""
    kind = classify(tr)
    names = np.array(tr.names, object)[tr.name] if tr.names else np.array([], object)
    rc.steps += int(np.count_nonzero(kind == Kind.STEP))
    host = kind_mask(kind, *HOST_KINDS)
    rc.labels.update(n for n in set(names[host].tolist()) if vocab.is_phase_label(n))
    kernels = category_mask(tr, KERNEL_CATS)          # what the breakdown's DeviceView.kernel_count counts
    rc.kernels += int(np.count_nonzero(kernels))
    pid = np.array(tr.pids, object)[tr.pid] if tr.pids else np.array([], object)
    device = np.where(tr.device >= 0, tr.device, -1)
    gpus.update(zip(pid[kernels].tolist(), device[kernels].tolist()))
    nccl = int(np.count_nonzero(kernels & (kind == Kind.GPU_COMM)))   # the table's "NCCL kernel" rule
    if nccl:
        rc.collectives["nccl kernel"] += nccl
    rc.memcpy.update(memcpy_kind(n) for n in names[category_mask(tr, MEMCPY_CATS)].tolist())
    rc.collectives.update(n.split(":")[0] for n in names[kind == Kind.HOST_COMM].tolist())   # gloo, nccl, c10d


def scan(run_dir: Path) -> RunCheck:
    rc = RunCheck(run_dir.name)
    info, _notes, err = load_run_json(run_dir)
    if err:
        rc.failures.append(err)
    elif info is None:
        rc.failures.append(f"{run_dir / vocab.RUN_JSON}: no run.json")
    if info is not None:
        cfg = info.config
        rc.strategy, rc.device_type = cfg.strategy or "?", cfg.device_type or "?"
        rc.devices, rc.status = cfg.devices or 0, info.status or "?"
    gpus: set[tuple[object, int]] = set()
    for path in sorted(p for s in vocab.TRACE_SUFFIXES for p in run_dir.glob(f"*{s}")):
        rc.traces += 1
        try:
            count_trace(rc, read_trace(path), gpus)
        except TraceError as exc:
            rc.failures.append(f"{path.name} unreadable: {exc.problem}")
    rc.gpus_with_kernels = len(gpus)
    try:
        for row in read_samples(run_dir / vocab.SAMPLES_CSV):
            if row.source == vocab.SOURCE_NVML:
                rc.nvml_rows += 1
            elif row.source == vocab.SOURCE_HOST:
                rc.host_rows += 1
    except SamplesError as exc:
        rc.failures.append(f"samples.csv unreadable: {exc}")
    judge(rc)
    return rc


def judge(rc: RunCheck) -> None:
    """Append a failure line for every expectation the run misses."""
    need = rc.failures.append
    if rc.status != vocab.STATUS_COMPLETE:
        need(f"status {rc.status}")
    if rc.traces == 0:
        need("no trace")
        return
    expected_traces = rc.devices if rc.strategy == "ddp" else 1
    if rc.traces != expected_traces:
        need(f"{rc.traces} traces, expected {expected_traces}")
    if rc.steps == 0:
        need("no ProfilerStep events")
    missing = [lbl for lbl in vocab.TRAIN_STEP_PHASES if lbl not in rc.labels]
    if rc.strategy in vocab.DP_STRATEGIES:
        missing += [lbl for lbl in vocab.DP_PHASES if lbl not in rc.labels]
    if missing:
        need("missing labels " + ",".join(missing))
    if rc.strategy == vocab.DDP and rc.devices > 1:
        want = "nccl" if rc.device_type == "cuda" else "gloo"
        if not any(k.startswith(want) for k in rc.collectives):
            need(f"no {want} collective")
    if rc.device_type == "cuda":
        if rc.kernels == 0:
            need("no CUDA kernels")
        if not rc.memcpy:
            need("no Memcpy events")
        if rc.nvml_rows == 0:
            need("no NVML rows in samples.csv")
    elif rc.host_rows == 0:
        need("no host rows in samples.csv")


def table(checks: list[RunCheck]) -> str:
    head = f"{'run':<30} {'status':<11} {'tr':>2} {'steps':>5} {'kernels':>7} {'gpus':>4} " \
           f"{'memcpy':>6} {'dp-lbl':>6} {'coll':>5} {'nvml':>6} {'host':>6}  verdict"
    lines = [head, "-" * len(head)]
    for c in checks:
        dp = sum(1 for lbl in vocab.DP_PHASES if lbl in c.labels)
        lines.append(f"{c.run:<30} {c.status:<11} {c.traces:>2} {c.steps:>5} {c.kernels:>7} "
                     f"{c.gpus_with_kernels:>4} {sum(c.memcpy.values()):>6} {dp:>4}/4 "
                     f"{sum(c.collectives.values()):>5} {c.nvml_rows:>6} {c.host_rows:>6}  "
                     + ("ok" if not c.failures else "FAIL: " + "; ".join(c.failures)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check run folders for kernels, memcpys, labels, NVML rows.")
    p.add_argument("runs", nargs="+", type=Path, help="run folders (holding run.json)")
    args = p.parse_args(argv)
    dirs = [d for d in args.runs if (d / vocab.RUN_JSON).is_file()]
    if not dirs:
        print("check_runs: no run folder (with run.json) among the arguments", file=sys.stderr)
        return 2
    checks = [scan(d) for d in dirs]
    print(table(checks))
    return 1 if any(c.failures for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
