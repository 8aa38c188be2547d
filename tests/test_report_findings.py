"""Findings fire exactly when their thresholds are crossed; recommendations rank by predicted saving."""
from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.findings import THRESHOLDS, Thresholds, all_findings, findings_for, recommendations
from analysis.records import MemcpyStats
from analysis.report import measure as analysed
from profiler.contract import vocab
from test_report_support import run, run_json, trace

C, COMM, DATA, H2D, HOST, IDLE = (vocab.COMPUTE, vocab.COMMUNICATION, vocab.DATA_LOADING, vocab.H2D_COPY,
                                  vocab.HOST_OVERHEAD, vocab.IDLE)


def kinds(found) -> list[str]:
    return [f.kind for f in found]


def dp4(comm: float, **kw):
    """dp-layerwise at 4 GPUs, 200 ms steps, 3.4 GB moved per step over an 11 GB/s link."""
    info = run_json("dp-layerwise-4gpu-b256", "dp-layerwise", 4, 256, images_per_s=400.0,
                    parameter_bytes=566_666_667, **kw)
    tr = trace(step_us=200_000, shares={C: 0.2, COMM: comm},
               memcpy=[MemcpyStats("PtoP", 100, 11 * 10**9, 1_000_000.0)])
    return run("dp-layerwise-4gpu-b256", [tr], info)


def test_communication_finding_with_bytes_bandwidth_and_prediction() -> None:
    ms, costs, samples = analysed([dp4(0.61)])
    (f,) = [x for x in findings_for(ms[0], costs[ms[0].run_dir], {}) if x.kind == "communication"]
    assert f.text.startswith("at 4 GPUs scatter/replicate/gather/reduce is 61 % of the step (122.0 of 200.0 ms")
    assert "3.40 GB (estimate) moved per step at 11.0 GB/s (memcpy device-to-device)" in f.text
    assert f.figures["predicted_ms"] == pytest.approx(costs[ms[0].run_dir].bytes_per_step / 11e9 * 1e3)


def test_communication_below_threshold_is_silent() -> None:
    ms, costs, _ = analysed([dp4(THRESHOLDS.comm_share - 0.01)])
    assert "communication" not in kinds(findings_for(ms[0], costs[ms[0].run_dir], {}))
    ms, costs, _ = analysed([dp4(THRESHOLDS.comm_share)])
    assert "communication" in kinds(findings_for(ms[0], costs[ms[0].run_dir], {}))


def test_thresholds_are_the_single_switch() -> None:
    ms, costs, _ = analysed([dp4(0.61)])
    strict = replace(THRESHOLDS, comm_share=0.7)
    assert "communication" not in kinds(findings_for(ms[0], costs[ms[0].run_dir], {}, strict))
    assert isinstance(THRESHOLDS, Thresholds)


def test_data_loading_finding_names_workers_cpus_and_host_cpu() -> None:
    info = run_json("single-1gpu-b64", "single", 1, 64, images_per_s=100.0, workers=4, cpus_allowed=1)
    r = run("single-1gpu-b64", [trace(shares={C: 0.4, DATA: 0.35})], info,
            samples={"host_cpu_pct": 100.0, "children_cpu_pct": 96.0})
    ms, costs, samples = analysed([r])
    (f,) = [x for x in all_findings(ms, costs, samples) if x.kind == "data_loading"]
    assert f.text == ("DataLoader wait is 35 % of the step (35.0 of 100.0 ms, single-1gpu-b64); 4 workers share "
                      "1 CPU (cpus_allowed=1), host CPU at 100 %, child processes (DataLoader workers) use 96 % of a core")
    r2 = run("single-1gpu-b64", [trace(shares={C: 0.4, DATA: 0.09})], info)
    assert "data_loading" not in kinds(all_findings(*analysed([r2])))


def test_imbalance_reports_gpu0_against_the_rest() -> None:
    info = run_json("dp-4gpu-b256", "dp", 4, 256)
    r = run("dp-4gpu-b256", [trace(gpus={0: 0.92, 1: 0.23, 2: 0.22, 3: 0.24})], info)
    ms, costs, samples = analysed([r])
    (f,) = [x for x in all_findings(ms, costs, samples) if x.kind == "imbalance"]
    assert f.text.startswith("GPU 0 busy 92 %, GPUs 1–3 busy 23 % (dp-4gpu-b256")
    even = run("dp-4gpu-b256", [trace(gpus={0: 0.60, 1: 0.40, 2: 0.40, 3: 0.40})], info)
    assert "imbalance" not in kinds(all_findings(*analysed([even])))
    # ranks of DDP are separate processes: one GPU each, never compared as "GPU 0 vs the rest"
    ddp = run("ddp-2gpu-b128", [trace("rank0", gpus={0: 0.9}, pid=1), trace("rank1", gpus={1: 0.2}, pid=2)],
              run_json("ddp-2gpu-b128", "ddp", 2, 128))
    assert "imbalance" not in kinds(all_findings(*analysed([ddp])))


def test_cpu_gloo_all_reduce_finding() -> None:
    r = run("ddp-2cpu-b64", [trace("rank0", has_gpu=False, shares={C: 0.5, COMM: 0.3}, overlap=0.25),
                             trace("rank1", has_gpu=False, shares={C: 0.5, COMM: 0.3}, overlap=0.25)],
            run_json("ddp-2cpu-b64", "ddp", 2, 64, "cpu", parameter_bytes=4000))
    ms, costs, samples = analysed([r])
    (f,) = [x for x in all_findings(ms, costs, samples) if x.kind == "communication"]
    assert f.text.startswith("2 gloo processes: all-reduce is 30 % of the step (30.0 of 100.0 ms, ddp-2cpu-b64)")
    assert f.text.endswith("25 % of the all-reduce overlaps backward")


def test_scaling_finding_only_below_efficiency_threshold() -> None:
    base = run("single-1gpu-b64", [trace()], run_json("single-1gpu-b64", "single", 1, 64, images_per_s=100.0))
    slow = run("dp-2gpu-b128", [trace()], run_json("dp-2gpu-b128", "dp", 2, 128, images_per_s=90.0))
    good = run("ddp-2gpu-b128", [trace()], run_json("ddp-2gpu-b128", "ddp", 2, 128, images_per_s=190.0))
    found = all_findings(*analysed([base, slow, good]))
    scaling = [f for f in found if f.kind == "scaling"]
    assert [f.run for f in scaling] == ["dp-2gpu-b128"]
    assert scaling[0].text == ("dp at 2 GPUs (dp-2gpu-b128): 90 images/s, only 0.90× the 1-device run's images/s "
                               "(single-1gpu-b64; scaling efficiency 45 %, ideal 2×)")
    odd = run("ddp-4gpu-b256", [trace()], run_json("ddp-4gpu-b256", "ddp", 4, 256, images_per_s=500.0))
    (sup,) = [f for f in all_findings(*analysed([base, odd])) if f.kind == "superlinear"]
    assert "5.00× the 1-device run (single-1gpu-b64) on 4 devices — efficiency 125 % is more than linear" in sup.text
    fine = run("ddp-4gpu-b256", [trace()], run_json("ddp-4gpu-b256", "ddp", 4, 256, images_per_s=480.0))
    assert not [f for f in all_findings(*analysed([base, fine])) if f.kind in ("superlinear", "scaling")]


def test_share_findings_and_gpu_util() -> None:
    info = run_json("single-1gpu-b64", "single", 1, 64, pin_memory=False)
    r = run("single-1gpu-b64", [trace(shares={C: 0.3, H2D: 0.06, HOST: 0.2, IDLE: 0.0})], info,
            samples={"mean_gpu_util_pct": 31.0, "gpu_util_pct": {"0": 31.0}})
    found = {f.kind: f for f in all_findings(*analysed([r]))}
    assert set(found) == {"host_to_device", "host_overhead", "idle", "gpu_util"}
    assert found["host_to_device"].text.endswith("; pin_memory is off")
    assert found["idle"].text.startswith("nothing busy (idle) is 44 % of the step (44.0 of 100.0 ms")
    assert found["gpu_util"].text.startswith("NVML: mean GPU utilisation 31 % over the run (GPU 0 31 %")
    quiet = run("single-1gpu-b64", [trace(shares={C: 0.9, H2D: 0.04, HOST: 0.05})], info,
                samples={"mean_gpu_util_pct": 95.0})
    assert all_findings(*analysed([quiet])) == []


def test_recommendations_ranked_with_their_savings() -> None:
    dp = dp4(0.6, workers=4, cpus_allowed=1, pin_memory=False, amp=False)
    dp.traces[0].steps = trace(step_us=200_000, shares={C: 0.2, COMM: 0.6, DATA: 0.15, HOST: 0.05}).steps
    ms, costs, samples = analysed([dp])
    cost = costs[ms[0].run_dir]
    recs = {r.kind: r for r in recommendations(ms, costs, samples)}
    assert set(recs) == {"ddp", "per_gpu_batch", "cpus_per_worker"}   # AMP: compute 20 % < 40 %; no h2d time
    allreduce = 2 * 566_666_667 * 3 / 4 / 11e9 * 1e3              # DDP's all-reduce at the measured 11 GB/s
    assert recs["ddp"].saving_ms == pytest.approx(120.0 - allreduce) and recs["ddp"].basis == "predicted"
    fixed = sum(i.bytes for i in cost.items if not i.per_image) / cost.bytes_per_step
    assert recs["per_gpu_batch"].saving_ms == pytest.approx((120.0 * fixed + 10.0) / 2)
    assert recs["cpus_per_worker"].saving_ms == pytest.approx(30.0)
    assert "request_cpus = 5" in recs["cpus_per_worker"].text
    ranked = recommendations(ms, costs, samples)
    assert [r.kind for r in ranked] == ["per_gpu_batch", "ddp", "cpus_per_worker"]
    assert [r.saving_share for r in ranked] == sorted((r.saving_share for r in ranked), reverse=True)


def test_small_savings_are_dropped() -> None:
    r = run("single-1gpu-b64", [trace(shares={C: 0.9, H2D: 0.05})], run_json("single-1gpu-b64", "single", 1, 64))
    tight = replace(THRESHOLDS, min_saving_share=0.5)
    assert [x.kind for x in recommendations(*analysed([r]))] == ["amp", "pinned_memory"]
    assert recommendations(*analysed([r]), tight) == []


def test_ddp_recommendation_uses_a_measured_ddp_run_when_there_is_one() -> None:
    dp = run("dp-2gpu-b128", [trace(shares={C: 0.4, COMM: 0.5})], run_json("dp-2gpu-b128", "dp", 2, 128))
    ddp = run("ddp-2gpu-b256", [trace(step_us=120_000, shares={C: 0.8})], run_json("ddp-2gpu-b256", "ddp", 2, 256))
    recs = [r for r in recommendations(*analysed([dp, ddp])) if r.kind == "ddp"]
    assert len(recs) == 1 and recs[0].basis == "measured"
    assert recs[0].saving_ms == pytest.approx(100.0 - 60.0)   # 128 images: 60 ms under DDP vs 100 ms


def test_amp_and_pinned_need_the_config_to_say_they_were_off() -> None:
    shares = {C: 0.7, H2D: 0.2}
    unknown = run("resnet50", [trace(shares=shares)])                 # bare trace folder: no run.json
    assert recommendations(*analysed([unknown])) == []
    off = run("single-1gpu-b64", [trace(shares=shares)], run_json("single-1gpu-b64", "single", 1, 64))
    recs = {r.kind: r for r in recommendations(*analysed([off]))}
    assert recs["amp"].saving_ms == pytest.approx(70.0 * THRESHOLDS.amp_compute_saving)
    assert recs["pinned_memory"].saving_ms == pytest.approx(20.0 * THRESHOLDS.pinned_h2d_saving)
    assert recs["amp"].basis == recs["pinned_memory"].basis == "assumed"
