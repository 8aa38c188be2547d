"""Traces analysed in a process pool give exactly what one by one gives; the pool fits the memory."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from analysis.run.pool import (PEAK_PER_JSON_BYTE, SPLIT_PEAK_PER_JSON_BYTE, WORKER_BASE_BYTES, json_bytes,
                               pool_size, split_size)
from analysis.api import Analysis
from builders.kineto import TraceBuilder
from conftest import ANCHORS


def _same(paths: list[Path]) -> dict:
    one = Analysis(paths, jobs=1).summary()
    two = Analysis(paths, jobs=2).summary()
    assert json.dumps(one, sort_keys=True, default=str) == json.dumps(two, sort_keys=True, default=str)
    return one


def test_parallel_equals_sequential_on_the_tiny_sweep(tiny_runs: Path) -> None:
    s = _same([tiny_runs])
    assert sorted(r["strategy"] for r in s["runs"]) == ["ddp", "single"]


@pytest.mark.skipif(not ANCHORS.is_dir(), reason="../shared/anchors is not beside this clone (a user's clone)")
def test_parallel_equals_sequential_on_the_anchors() -> None:
    s = _same([ANCHORS])
    assert len(s["runs"]) == 8


def test_the_timeline_goes_to_the_first_trace_with_steps_either_way(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "rank0.a.pt.trace.json").write_text("{not json")                 # an error first
    for rank in (1, 2):
        b = TraceBuilder()
        b.step(0, 0, 1000)
        b.op("aten::mm", 10, 500)
        (run / f"rank{rank}.a.pt.trace.json").write_text(json.dumps(b.document()))
    from analysis.run.analyse import analyse_runs
    for jobs in (1, 2):
        [r] = analyse_runs([run], jobs=jobs)
        assert [bool(t.timeline) for t in r.traces] == [True, False] and len(r.errors) == 1


def test_the_pool_never_starts_more_workers_than_memory_holds(tmp_path: Path) -> None:
    big = tmp_path / "rank0.pt.trace.json.gz"
    with gzip.open(big, "wb") as f:                       # 10 MB of JSON in a small file
        f.write(b'{"traceEvents": [' + b" " * (10 << 20) + b"]}")
    assert big.stat().st_size < 100_000 and json_bytes(big) == (10 << 20) + 19
    paths = [big] * 8
    peak = WORKER_BASE_BYTES + PEAK_PER_JSON_BYTE * json_bytes(big)
    assert pool_size(paths, jobs=8, memory=int(3.5 * peak)) == 3
    assert pool_size(paths, jobs=8, memory=int(0.5 * peak)) == 1
    assert pool_size(paths, jobs=2, memory=None) <= 2 and pool_size(paths[:1], jobs=8) == 1
    text = SPLIT_PEAK_PER_JSON_BYTE * json_bytes(big)      # one trace split: its columns, plus each worker
    assert split_size(big, jobs=4, memory=int(text + 2.5 * WORKER_BASE_BYTES)) == 2
    assert split_size(big, jobs=4, memory=1 << 40) == 4 and split_size(big, jobs=1) == 1
    assert split_size(big, jobs=4, memory=int(text)) == 1


def test_workers_follow_the_jobs_cpu_allocation_not_the_nodes_cores(tmp_path: Path, monkeypatch) -> None:
    """A report run inside an HTCondor slot of 1.5 CPUs on a big node starts one process, not one per core."""
    import profiler.cpualloc as alloc
    from profiler.contract.runjson import CpuAllocation
    p = tmp_path / "rank0.pt.trace.json"
    p.write_text("{}")
    monkeypatch.setattr(alloc, "cpu_allocation", lambda: CpuAllocation(cpus=1.5, source="HTCondor Cpus", affinity=64))
    assert alloc.usable_cpus() == 1 and pool_size([p] * 8, memory=1 << 40) == 1 and split_size(p, memory=1 << 40) == 1
    monkeypatch.setattr(alloc, "cpu_allocation", lambda: CpuAllocation(cpus=4.0, source="cgroup cpu.max", affinity=64))
    assert pool_size([p] * 8, memory=1 << 40) == 4 and split_size(p, memory=1 << 40) == 4
