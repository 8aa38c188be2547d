"""Check that run folders hold what a profiled run must: the GPU check's verdict.

For every run folder: ProfilerStep windows, the train phase labels, DP phase labels for
dp/dp-layerwise, a collective for ddp (nccl on GPUs, gloo on CPU), CUDA kernels and Memcpy
events for CUDA runs, NVML rows (CUDA) or host rows (CPU) in samples.csv, run.json complete.
Prints one table row per run and exits 1 if any check failed. Torch-free (reads files only).

    python scripts/check_runs.py traces/gpu_check/*/
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.runs import iter_samples, load_run_json  # noqa: E402
from profiler.contract import vocab  # noqa: E402


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


def _load(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:   # type: ignore[operator]
        return json.load(f)


def scan(run_dir: Path) -> RunCheck:
    rc = RunCheck(run_dir.name)
    info, err = load_run_json(run_dir)
    if err:
        rc.failures.append(err)
    cfg = info.get("config") or {}
    try:
        rc.strategy, rc.device_type = cfg.get("strategy", "?"), cfg.get("device_type", "?")
        rc.devices, rc.status = int(cfg.get("devices") or 0), info.get("status") or "?"
    except (TypeError, ValueError) as exc:
        rc.failures.append(f"run.json config unreadable: {exc}")
    gpus: set[tuple[Any, Any]] = set()
    for path in sorted(p for s in vocab.TRACE_SUFFIXES for p in run_dir.glob(f"*{s}")):
        rc.traces += 1
        try:
            events = _load(path).get("traceEvents", [])
        except (OSError, ValueError, EOFError) as exc:
            rc.failures.append(f"{path.name} unreadable: {exc}")
            continue
        for e in events:
            name, cat = str(e.get("name", "")), str(e.get("cat", "")).lower()
            if name.startswith(vocab.TORCH_PROFILER_STEP) and cat != "gpu_user_annotation":
                rc.steps += 1
            if vocab.is_phase_label(name):
                rc.labels.add(name)
            if cat == "kernel":
                rc.kernels += 1
                gpus.add((e.get("pid"), (e.get("args") or {}).get("device", e.get("pid"))))
                if name.lower().startswith("ncclkernel") or name.lower().startswith("ncclDevKernel".lower()):
                    rc.collectives["nccl kernel"] += 1
            if cat == "gpu_memcpy" or name.startswith("Memcpy"):
                rc.memcpy[name.split(" (")[0]] += 1
            if name.startswith(("nccl:", "gloo:")) and cat != "kernel":
                rc.collectives[name.split(":")[0]] += 1
    rc.gpus_with_kernels = len(gpus)
    try:
        for row in iter_samples(run_dir / vocab.SAMPLES_CSV):
            if row.source == vocab.SOURCE_NVML:
                rc.nvml_rows += 1
            elif row.source == vocab.SOURCE_HOST:
                rc.host_rows += 1
    except (OSError, ValueError) as exc:
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
    if rc.strategy in ("dp", "dp-layerwise"):
        missing += [lbl for lbl in vocab.DP_PHASES if lbl not in rc.labels]
    if missing:
        need("missing labels " + ",".join(missing))
    if rc.strategy == "ddp" and rc.devices > 1:
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
