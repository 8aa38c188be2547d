"""Runs another tool recorded (no run.json, no scalescope name) get recommendations from their breakdown."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analysis.api import Analysis
from builders.kineto import TraceBuilder
from conftest import ANCHORS


def _recs(run: Path) -> list[dict]:
    return Analysis([run]).summary()["recommendations"]


def test_a_gpu_step_waiting_on_the_host_gets_launch_overhead_advice(tmp_path: Path) -> None:
    run = tmp_path / "their-run"
    run.mkdir()
    b = TraceBuilder()
    for s in range(3):                      # 1000 µs steps: 200 µs of kernels, 700 µs of host-only dispatch
        t0 = s * 1000.0
        b.step(s, t0, 1000)
        b.op("aten::add", t0 + 0, 700)
        b.kernel("volta_sgemm", t0 + 750, 200, device=0, launch=t0 + 700)
    (run / "worker0.1.pt.trace.json").write_text(json.dumps(b.document()))
    [rec] = _recs(run)
    assert rec["kind"] == "host_bound" and rec["basis"] == "assumed"
    f = rec["figures"]
    assert f["host_ms"] == pytest.approx(0.75, abs=0.06) and f["step_ms"] == pytest.approx(1.0)
    assert rec["saving_ms"] == pytest.approx(f["host_ms"] * 0.5)
    assert 'torch.compile(mode="reduce-overhead")' in rec["text"]


@pytest.mark.skipif(not ANCHORS.is_dir(), reason="../shared/anchors is not beside this clone (a user's clone)")
def test_the_anchors_get_advice_from_their_breakdown(tmp_path: Path) -> None:
    ddp = tmp_path / "trace_filter"
    shutil.copytree(ANCHORS / "hta" / "trace_filter", ddp)
    [rec] = _recs(ddp)                                # 128-rank NCCL job: 53 % of its step is host overhead
    assert rec["kind"] == "host_bound"
    assert rec["figures"]["host_ms"] == pytest.approx(327.1, abs=0.1)
    assert rec["figures"]["step_ms"] == pytest.approx(617.2, abs=0.1)
    loader = tmp_path / "resnet50_num_workers_0"
    shutil.copytree(ANCHORS / "tb_plugin" / "resnet50_num_workers_0", loader)
    [rec] = _recs(loader)                             # 0 workers: ~28 % of the step waits on the DataLoader
    assert (rec["kind"], rec["basis"]) == ("data_bound", "predicted")
    assert rec["figures"]["data_ms"] == pytest.approx(47.4, abs=0.1)


def test_a_gpus_idle_time_splits_into_waiting_on_the_host_and_in_a_synchronize() -> None:
    from analysis.step.breakdown import analyse
    from analysis.trace.reader import parse_trace

    b = TraceBuilder()
    b.step(0, 0, 1000)
    b.kernel("volta_sgemm", 100, 200, device=0, launch=50)          # GPU 0 busy 100-300
    b.kernel("volta_sgemm", 300, 300, device=1, launch=60)          # GPU 1 busy 300-600
    b._x("cuda_runtime", "cudaStreamSynchronize", 300, 300, b.pid, b._tid(None))   # host blocked 300-600
    ta = analyse(parse_trace(json.dumps(b.document()).encode()))
    gpu0 = next(d for d in ta.devices if d.index == 0)
    assert gpu0.idle_us == pytest.approx(800)                       # 1000 µs step, 200 µs of work
    assert gpu0.idle_sync_us == pytest.approx(300)                  # idle while the host waited for GPU 1
    assert gpu0.idle_host_us == pytest.approx(500)                  # idle with nothing launched: the host is behind


@pytest.mark.skipif(not ANCHORS.is_dir(), reason="../shared/anchors is not beside this clone (a user's clone)")
def test_the_two_traced_ranks_of_the_anchor_show_their_skew_and_no_straggler(tmp_path: Path) -> None:
    run = tmp_path / "trace_filter"
    shutil.copytree(ANCHORS / "hta" / "trace_filter", run)
    s = Analysis([run]).summary()
    skew = s["runs"][0]["straggler"]
    r0, r1 = skew["ranks"]
    # rank 1 is last at 7 of 10 collectives, but both ranks wait alike (61.7 vs 53.1 ms per step): not named
    assert (skew["matched"], skew["straggler"]) == (10, None)
    assert (r0["wait_ms"], r1["wait_ms"]) == (pytest.approx(61.7, abs=0.1), pytest.approx(53.1, abs=0.1))
    assert (r0["last_share"], r1["last_share"]) == (0.3, 0.7)
    assert skew["skew_ms"] == pytest.approx(4.2, abs=0.05)
    assert any("2 traced rank(s) of 128" in n and "no rank is consistently the last to arrive" in n for n in s["notes"])
