"""A DataParallel-shaped run through the real reader, breakdown and report: GPU 0 copies and computes
while GPUs 1–3 wait. The trace is synthetic (no GPU here), built with the tests' TraceBuilder (builders.kineto.dp_step)."""
from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from analysis.view.phrasing import finding_text
from analysis.view.model import build_report
from analysis.report.cli import main
from analysis.run.analyse import analyse_runs
from analysis.run.discover import discover_runs
from profiler.contract.runjson import encode_json
from builders.kineto import TraceBuilder, dp_step
from builders.runs import TWO_LAYERS, run_info

STEP = 10_000.0          # µs
COPY_BYTES = 20_000_000  # per peer copy: 20 MB in 2 ms = 10 GB/s


def dp_trace(path: Path, steps: int = 3) -> None:
    """Forward 6 ms: replicate 2 (GPU 0 broadcasts, 19 MB into each of GPUs 1-3 over 1.9 ms), parallel_apply 3
    (2 ms of sgemm on every GPU), gather 1 (5 MB back into GPU 0); then backward 3 and the optimizer 1 on GPU 0."""
    b = TraceBuilder()
    for i in range(steps):
        dp_step(b, i + 1, i * STEP, devices=4, replicate=2000, parallel_apply=3000, gather=1000, backward=3000,
                optimizer=1000, broadcast=True, copy_bytes=COPY_BYTES - 1_000_000, copy_lag=100, apply_kernel=2000,
                gather_bytes=5_000_000)
    b.write(path)


def single_trace(path: Path, steps: int = 3) -> None:
    """The 1-GPU baseline: 4 ms steps, all forward, GPU 0 computing 3.8 ms of each."""
    b = TraceBuilder()
    for i in range(steps):
        dp_step(b, i + 1, i * 4000.0, forward=4000)
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
