"""A DataParallel-shaped run through the real reader, breakdown and report: GPU 0 copies and computes
while GPUs 1–3 wait. The trace is synthetic (no GPU here), built with the analysis tests' TraceBuilder."""
from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from analysis.phrasing import finding_text
from analysis.report import build_report, main
from analysis.runs import analyse_runs, discover_runs
from profiler.contract import vocab
from profiler.contract.runjson import encode_json
from tracebuilder import TraceBuilder
from test_report_support import TWO_LAYERS, run_info

STEP = 10_000.0          # µs
COPY_BYTES = 20_000_000  # per peer copy: 20 MB in 2 ms = 10 GB/s


def dp_trace(path: Path, steps: int = 3) -> None:
    b = TraceBuilder()
    for i in range(steps):
        t = i * STEP
        b.step(i + 1, t, STEP)
        b.label(vocab.FORWARD, t, 6000)
        b.label(vocab.REPLICATE, t, 2000)
        b.kernel("broadcast_coalesced", t, 2000, device=0, launch=t)      # GPU 0 packs the broadcast
        for d in (1, 2, 3):
            b.memcpy("PtoP", t + 100, 1900, device=d, launch=t + 50, nbytes=COPY_BYTES - 1_000_000)
        b.label(vocab.PARALLEL_APPLY, t + 2000, 3000)
        for d in (0, 1, 2, 3):
            b.kernel("sgemm", t + 2000, 2000, device=d, launch=t + 2000)
        b.label(vocab.GATHER, t + 5000, 1000)
        b.memcpy("PtoP", t + 5000, 500, device=0, launch=t + 5000, nbytes=5_000_000)
        b.label(vocab.BACKWARD, t + 6000, 3000)
        b.kernel("sgemm_bwd", t + 6000, 3000, device=0, launch=t + 6000)
        b.label(vocab.OPTIMIZER, t + 9000, 1000)
        b.kernel("adam", t + 9000, 1000, device=0, launch=t + 9000)
    path.parent.mkdir(parents=True, exist_ok=True)
    b.write(path)


def single_trace(path: Path, steps: int = 3) -> None:
    b = TraceBuilder()
    for i in range(steps):
        t = i * 4000.0
        b.step(i + 1, t, 4000)
        b.label(vocab.FORWARD, t, 4000)
        b.kernel("sgemm", t + 100, 3800, device=0, launch=t + 100)
    path.parent.mkdir(parents=True, exist_ok=True)
    b.write(path)


@pytest.fixture
def dp_run(tmp_path: Path) -> Path:
    s = tmp_path / "traces" / "single-1gpu-b64"
    single_trace(s / "rank0.1700000000000.pt.trace.json.gz")
    (s / "run.json").write_bytes(encode_json(run_info("single-1gpu-b64", "single", 1, 64, images_per_s=16000.0,
                                                      parameter_bytes=20_000_000)))
    d = tmp_path / "traces" / "dp-4gpu-b256"
    dp_trace(d / "rank0.1700000000000.pt.trace.json.gz")
    info = run_info("dp-4gpu-b256", "dp", 4, 256, images_per_s=256 / 0.010, parameter_bytes=20_000_000,
                    workers=4, cpus=8, layers=TWO_LAYERS)
    (d / "run.json").write_bytes(encode_json(info))
    return tmp_path / "traces"


def test_dataparallel_run_report(dp_run: Path) -> None:
    run, single = analyse_runs(discover_runs([dp_run]))
    assert run.errors == single.errors == []
    report = build_report([run, single])
    m = report.metrics[0]
    assert (m.name, m.speedup, m.efficiency) == ("dp-4gpu-b256", 1.6, 0.4)
    busy = {d.index: d.busy for d in m.device_busy}
    assert busy == pytest.approx({0: 0.85, 1: 0.39, 2: 0.39, 3: 0.39})
    kinds = {f.kind: f for f in report.findings}
    assert finding_text(kinds["imbalance"]).startswith("GPU 0 busy 85 %, GPUs 1–3 busy 39 % (dp-4gpu-b256")
    cost = report.costs[m.run_dir]
    copies = [mc for mc in run.traces[0].memcpy if mc.kind == "PtoP"]
    achieved = sum(mc.bytes for mc in copies) / (sum(mc.dur_us for mc in copies) * 1e3)
    assert cost.bandwidth_source == "memcpy device-to-device" and cost.bandwidth_gbps == pytest.approx(achieved)
    assert cost.bytes_per_step == 2 * 20_000_000 * 3 + 256 * 10 * 4 * 3 // 4     # + the first layer's 10-float input
    assert cost.predicted_comm_ms == pytest.approx(cost.bytes_per_step / (achieved * 1e9) * 1e3)
    assert "communication" in kinds and kinds["scaling"].figures.images_per_s == pytest.approx(25600)
    # DDP: a rank does what the 1-GPU run does on 64 images (4.0 ms) + all-reduce 2P(N−1)/N at the achieved link
    (ddp,) = [r for r in report.recommendations if r.kind == "ddp"]
    allreduce = 2 * 20_000_000 * 3 / 4 / (achieved * 1e9) * 1e3
    assert ddp.run == "dp-4gpu-b256" and ddp.saving_ms == pytest.approx(10.0 - (4.0 + allreduce))
    shares = [r.saving_share for r in report.recommendations]
    assert shares == sorted(shares, reverse=True)
    lanes = {s.lane for s in run.traces[0].timeline}
    assert {"gpu 0", "gpu 1", "gpu 2", "gpu 3", "step (exclusive)", "host: step phases", "host: DataParallel"} <= lanes


def test_dataparallel_cli(dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(dp_run), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "dp-4gpu-b256" in out and "Communication cost model" in out and "GPU 0 busy" in out
    summary = msgspec.json.decode((tmp_path / "r" / "summary.json").read_bytes())
    assert summary["runs"][0]["cost_model"]["bandwidth_source"] == "memcpy device-to-device"
    assert "ddp" in [r["kind"] for r in summary["recommendations"]]
