"""MFU, energy and GPU-hours per image (analysis.run.efficiency), the datasheet's peaks per precision, the
scaling finding's MFU, summary.json's per-run `mfu` / `energy`, and the what-if's energy per million images."""
from __future__ import annotations

from pathlib import Path

import pytest
from builders.runs import TWO_LAYERS, run, run_info, trace

from analysis.datasheet import GPUS, find_gpu
from analysis.findings.rules import all_findings
from analysis.run.efficiency import (
    NO_RAPL,
    FlopMix,
    flop_mix,
    integrate_power,
    peak_for,
    run_energy,
    run_mfu,
)
from analysis.run.samples import summarise
from analysis.run.scaling import run_metrics
from analysis.view.model import build_report
from analysis.view.phrasing import finding_text
from analysis.view.summary import to_summary
from analysis.whatif.predict import Target, energy_per_million_images, predict
from analysis.whatif.profile import profile_of
from analysis.whatif.wording import prediction_dict, render_text
from profiler.contract import vocab
from profiler.contract.runjson import GpuInfo, Layer, ModelInfo
from profiler.contract.samples import read_samples

MS = 1000.0                      # µs per ms
GFLOP_LINEAR = [Layer(name="fc", type="Linear", parameters=1000, input_shape=[1000], output_shape=[1000],
                      flops=1_000_000_000, dtype_bytes=4)]      # 1 GFLOP forward per image, all in a Linear
CONV_AND_LINEAR = [Layer(name="a", type="Conv2d", parameters=1, input_shape=[1], output_shape=[1], flops=300,
                         dtype_bytes=4),
                   Layer(name="b", type="Linear", parameters=1, input_shape=[1], output_shape=[1], flops=100,
                         dtype_bytes=4)]


def gpu_run(name: str, strategy: str, devices: int, batch: int, step_ms: float, layers=GFLOP_LINEAR,
            gpu: str | None = "NVIDIA A100-SXM4-80GB", amp: bool = False, base_time_ns: int | None = None,
            root: Path = Path("/runs"), samples_csv: str | None = None):
    info = run_info(name, strategy, devices, batch, layers=layers, amp=amp)
    info.environment.gpus = [GpuInfo(index=i, name=gpu) for i in range(devices)] if gpu else []
    tr = trace(step_us=step_ms * MS, n_steps=4, shares={vocab.COMPUTE: 0.7}, gpus={i: 0.7 for i in range(devices)})
    tr.base_time_ns = base_time_ns
    samples = None
    if samples_csv is not None:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / vocab.SAMPLES_CSV).write_text(samples_csv)
        samples = summarise(read_samples(root / name / vocab.SAMPLES_CSV))
    return run(name, [tr], info, samples=samples, root=root)


# --- the datasheet ----------------------------------------------------------------------------

def test_every_card_has_a_tdp_and_ampere_and_later_a_tf32_peak() -> None:
    assert all(g.tdp_w for g in GPUS)
    a100, h100, v100, l40s = (find_gpu(n) for n in ("A100-SXM4-80GB", "H100 SXM", "V100-SXM2-32GB", "L40S"))
    assert (a100.fp32_tflops, a100.tf32_tflops, a100.fp16_tflops, a100.tdp_w) == (19.5, 156.0, 312.0, 400.0)
    assert (h100.fp32_tflops, h100.tf32_tflops, h100.tdp_w) == (67.0, 494.7, 700.0)
    assert find_gpu("A100 PCIe").tdp_w == 250.0 and find_gpu("H200").tdp_w == 700.0
    assert v100.tf32_tflops is None and v100.peak_tflops("tf32") == 15.7 and v100.peak_tflops("fp16") == 125.0
    assert (l40s.fp32_tflops, l40s.tf32_tflops, l40s.tdp_w) == (91.6, 183.0, 350.0)


def test_the_fp32_peak_mixes_conv_at_tf32_and_linear_at_fp32() -> None:
    mix = flop_mix(ModelInfo(layers=CONV_AND_LINEAR))
    assert mix == FlopMix(400, 300, "layer table")
    a100 = find_gpu("A100-SXM4-80GB")
    peak = peak_for(a100, mix, amp=False)
    # 400 FLOPs take 300/156 + 100/19.5 at the peaks: 400 / (1.92308 + 5.12821) = 56.727 TFLOP/s
    assert peak.tflops == pytest.approx(400 / (300 / 156 + 100 / 19.5))
    assert peak.tflops == pytest.approx(56.727, abs=1e-3)
    assert peak.precision == "tf32+fp32" and "conv 75 %" in peak.basis and "TF32" in peak.basis
    assert peak_for(a100, mix, amp=True).tflops == 312.0
    assert peak_for(find_gpu("V100-SXM2-32GB"), mix, amp=False).tflops == 15.7      # no TF32: fp32 throughout
    assert peak_for(a100, flop_mix(ModelInfo(layers=TWO_LAYERS)), amp=False).tflops == 19.5   # linear only


def test_forward_flops_take_precedence_over_the_layer_sum() -> None:
    assert flop_mix(ModelInfo(layers=CONV_AND_LINEAR, forward_flops=1000)) == FlopMix(1000, 300, "model.forward_flops")
    assert flop_mix(ModelInfo(forward_flops=500)) == FlopMix(500, 0, "model.forward_flops")
    assert flop_mix(ModelInfo()) is None and flop_mix(None) is None


# --- MFU --------------------------------------------------------------------------------------

def test_mfu_of_a_run_with_a_layer_table_and_a_known_step() -> None:
    r = gpu_run("single-1gpu-b64", "single", 1, 64, step_ms=100.0)
    m = run_metrics(r)
    rec, why = run_mfu(r, m)
    assert why is None
    # 1 GFLOP × 3 × 64 images ÷ 0.1 s = 1.92 TFLOP/s; ÷ 19.5 (A100 fp32, linear only) = 9.846 %
    assert rec.achieved_tflops == pytest.approx(1.92)
    assert rec.peak_tflops == 19.5
    assert rec.mfu == pytest.approx(1.92 / 19.5) and round(rec.mfu * 100, 2) == 9.85
    assert "× 3 (forward + backward) × 64 images per device ÷ 100.0 ms" in rec.basis


def test_mfu_uses_images_per_device_and_amp_uses_the_fp16_peak() -> None:
    r = gpu_run("ddp-2gpu-b128", "ddp", 2, 128, step_ms=100.0, amp=True)
    rec, _ = run_mfu(r, run_metrics(r))
    assert rec.achieved_tflops == pytest.approx(1.92) and rec.peak_tflops == 312.0
    assert rec.mfu == pytest.approx(1.92 / 312.0)


def test_mfu_without_a_peak_or_a_layer_table() -> None:
    cpu = run("single-1cpu-b64", [trace(step_us=100 * MS, has_gpu=False)],
              run_info("single-1cpu-b64", "single", 1, 64, device_type="cpu", layers=GFLOP_LINEAR))
    rec, _ = run_mfu(cpu, run_metrics(cpu))
    assert rec.achieved_tflops == pytest.approx(1.92) and rec.peak_tflops is None and rec.mfu is None
    assert "CPU" in rec.basis
    unknown = gpu_run("single-1gpu-b64", "single", 1, 64, step_ms=100.0, gpu="NVIDIA GeForce GTX 480")
    rec, _ = run_mfu(unknown, run_metrics(unknown))
    assert rec.mfu is None and "not in the datasheet table" in rec.basis
    bare = gpu_run("single-1gpu-b64", "single", 1, 64, step_ms=100.0, layers=None)
    rec, why = run_mfu(bare, run_metrics(bare))
    assert rec is None and "no layer table" in why


def test_the_scaling_finding_quotes_mfu_at_1_and_n_devices() -> None:
    one = gpu_run("single-1gpu-b64", "single", 1, 64, step_ms=100.0)
    one.run.results.images_per_s = 640.0
    two = gpu_run("ddp-2gpu-b128", "ddp", 2, 128, step_ms=200.0)
    two.run.results.images_per_s = 640.0              # no faster: efficiency 50 %
    report = build_report([one, two])                 # the report computes MFU once and the finding quotes it
    assert {d: x.mfu for d, (x, _) in report.mfu.items()} == {
        m.run_dir: pytest.approx(v) for m, v in zip(report.metrics, (1.92 / 19.5, 0.96 / 19.5))}
    f = next(f for f in report.findings if f.kind == "scaling")
    assert f.figures.mfu == pytest.approx(0.96 / 19.5) and f.figures.base_mfu == pytest.approx(1.92 / 19.5)
    assert finding_text(f).endswith("; MFU 4.9 % vs 9.8 % on 1")
    metrics, costs = report.metrics, report.costs
    plain = next(f for f in all_findings(metrics, costs) if f.kind == "scaling")
    assert plain.figures.mfu is None and "MFU" not in finding_text(plain)


# --- energy -----------------------------------------------------------------------------------

T0 = 1_700_000_000_000_000_000      # unix ns of the first sample


def power_csv(watts: float = 300.0, gpus: int = 2, seconds: float = 3.0, period_s: float = 0.25) -> str:
    rows = ["time_ns,source,device,metric,value"]
    for k in range(int(seconds / period_s) + 1):
        for g in range(gpus):
            rows.append(f"{T0 + round(k * period_s * 1e9)},nvml,{g},power_w,{watts}")
            rows.append(f"{T0 + round(k * period_s * 1e9)},nvml,{g},gpu_util_pct,90")
    return "\n".join(rows) + "\n"


def test_trapezoid_over_windows_between_samples() -> None:
    ts, ws = [0, 2_000_000_000], [100.0, 300.0]            # a ramp from 100 W to 300 W over 2 s
    assert integrate_power(ts, ws, [(0, 2_000_000_000)]) == pytest.approx(400.0)
    assert integrate_power(ts, ws, [(500_000_000, 1_500_000_000)]) == pytest.approx(200.0)   # 150 → 250 W over 1 s
    assert integrate_power([0, 1, 2], [300.0] * 3, []) == 0.0


def test_energy_from_power_over_the_step_windows(tmp_path: Path) -> None:
    # 2 GPUs at 300 W; 4 steps of 500 ms starting 0.5 s after the first sample: 2.000 s per GPU
    r = gpu_run("dp-2gpu-b128", "dp", 2, 128, step_ms=500.0, base_time_ns=T0 + 500_000_000, root=tmp_path,
                samples_csv=power_csv())
    m = run_metrics(r)
    e, why = run_energy(r, m)
    assert why is None
    assert e.joules_per_step * 4 == pytest.approx(1200.0)           # 300 W × 2.000 s = 600 J per GPU, two GPUs
    assert e.joules_per_step == pytest.approx(300.0)
    assert e.joules_per_image == pytest.approx(300.0 / 128)
    assert e.kwh_per_million_images == pytest.approx(300.0 / 128 * 1e6 / 3.6e6)      # 0.651 kWh
    assert e.gpu_hours_per_million_images == pytest.approx(2 * 0.5 / 128 * 1e6 / 3600)   # 2.170 GPU-hours
    assert "step windows (4.000 s over 2 GPU(s))" in e.basis


def test_energy_without_a_trace_clock_uses_the_mean_power_and_says_so(tmp_path: Path) -> None:
    r = gpu_run("dp-2gpu-b128", "dp", 2, 128, step_ms=500.0, base_time_ns=None, root=tmp_path,
                samples_csv=power_csv())
    e, _ = run_energy(r, run_metrics(r))
    assert e.joules_per_step == pytest.approx(300.0)               # 300 W × 0.5 s × 2 GPUs
    assert "no baseTimeNanoseconds" in e.basis


def test_no_power_leaves_joules_null_but_keeps_device_hours(tmp_path: Path) -> None:
    cpu = run("ddp-2cpu-b64", [trace(step_us=2000 * MS, has_gpu=False)],
              run_info("ddp-2cpu-b64", "ddp", 2, 64, device_type="cpu"))
    e, why = run_energy(cpu, run_metrics(cpu))
    assert why is None
    assert (e.joules_per_step, e.joules_per_image, e.kwh_per_million_images) == (None, None, None)
    assert e.gpu_hours_per_million_images == pytest.approx(2 * 2.0 / 64 * 1e6 / 3600)
    assert e.basis.startswith(NO_RAPL)
    gpu = gpu_run("single-1gpu-b64", "single", 1, 64, step_ms=100.0)
    e, _ = run_energy(gpu, run_metrics(gpu))
    assert e.joules_per_step is None and e.basis.startswith("no GPU power in samples.csv")


def test_summary_json_carries_mfu_and_energy_per_run(tmp_path: Path) -> None:
    r = gpu_run("dp-2gpu-b128", "dp", 2, 128, step_ms=500.0, base_time_ns=T0 + 500_000_000, root=tmp_path,
                samples_csv=power_csv())
    bare = gpu_run("single-1gpu-b64", "single", 1, 64, step_ms=100.0, layers=None, root=tmp_path)
    runs = {d["name"]: d for d in to_summary(build_report([r, bare]))["runs"]}
    got = runs["dp-2gpu-b128"]
    assert set(got["mfu"]) == {"achieved_tflops", "peak_tflops", "mfu", "basis"}
    # 1 GFLOP × 3 × 64 images per device ÷ 0.5 s = 0.384 TFLOP/s; ÷ 19.5 = 1.97 %
    assert got["mfu"]["achieved_tflops"] == pytest.approx(0.384) and got["mfu"]["mfu"] == pytest.approx(0.384 / 19.5)
    assert set(got["energy"]) == {"joules_per_step", "joules_per_image", "gpu_hours_per_million_images",
                                  "kwh_per_million_images", "basis"}
    assert got["energy"]["joules_per_step"] == pytest.approx(300.0)
    assert runs["single-1gpu-b64"]["mfu"] is None
    assert any("MFU not computed" in n for n in runs["single-1gpu-b64"]["efficiency_notes"])


# --- the what-if ------------------------------------------------------------------------------

def test_energy_per_million_images_at_tdp_and_busy_share() -> None:
    # 400 W × 2 GPUs × 0.1 s × 50 % busy = 40 J per step ÷ 128 images = 0.3125 J per image = 0.0868 kWh per M
    assert energy_per_million_images(400.0, 2, 100.0, 0.5, 128) == pytest.approx(0.3125 * 1e6 / 3.6e6)


def test_a_gpu_prediction_quotes_its_energy_and_keeps_its_numbers() -> None:
    info = run_info("single-1gpu-b64", "single", 1, 64, images_per_s=500.0, parameter_bytes=400_000_000, cpus=5)
    info.environment.gpus = []
    tr = trace(step_us=100 * MS, shares={vocab.COMPUTE: 0.7}, gpus={0: 0.7},
               phase={vocab.FORWARD: 20 * MS, vocab.BACKWARD: 40 * MS, vocab.OPTIMIZER: 10 * MS,
                      vocab.DATA_WAIT: 1 * MS})
    p = profile_of(run("single-1gpu-b64", [tr], info))
    pred = predict(p, Target("ddp", 2, "cuda", 128, 10, 4, find_gpu("A100-SXM4-80GB")))
    parts = pred.parts_ms
    busy = (parts[vocab.COMPUTE] + parts[vocab.COMMUNICATION] + parts[vocab.H2D_COPY]) / pred.step_ms
    assert pred.busy_share == pytest.approx(busy) and pred.tdp_w == 400.0
    assert pred.kwh_per_million_images == pytest.approx(
        400.0 * 2 * pred.step_ms / 1e3 * busy / 128 * 1e6 / 3.6e6)
    d = prediction_dict(pred)
    assert d["kwh_per_million_images"] == pred.kwh_per_million_images and d["step_ms"] == pred.step_ms
    assert "kWh per million images at TDP × predicted busy share (stated)" in render_text([(p, [pred])], [], [])
    cpu = predict(p, Target("single", 1, "cuda", 64, 5, 4, None))      # the input run's own card: not in the table
    assert cpu.kwh_per_million_images is None
