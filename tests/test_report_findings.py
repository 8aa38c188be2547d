"""Findings fire exactly when their thresholds are crossed; recommendations rank by predicted saving."""
from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.findings import THRESHOLDS, all_findings, findings_for, recommendations
from analysis.view.phrasing import finding_text, recommendation_text
from analysis.records import MemcpyStats
from analysis.view.model import measure as analysed
from analysis.run.samples import SampleSummary
from profiler.contract import vocab
from builders.runs import TWO_LAYERS, run, run_info, trace

C, COMM, DATA, H2D, HOST, IDLE = (vocab.COMPUTE, vocab.COMMUNICATION, vocab.DATA_LOADING, vocab.H2D_COPY,
                                  vocab.HOST_OVERHEAD, vocab.IDLE)


def kinds(found) -> list[str]:
    return [f.kind for f in found]


def dp4(comm: float, **kw):
    """dp-layerwise at 4 GPUs, 200 ms steps, 3.40 GB moved per step over an 11 GB/s link."""
    info = run_info("dp-layerwise-4gpu-b256", "dp-layerwise", 4, 256, images_per_s=400.0,
                    parameter_bytes=566_666_667, layers=TWO_LAYERS, **kw)
    tr = trace(step_us=200_000, shares={C: 0.2, COMM: comm},
               memcpy=[MemcpyStats("PtoP", 100, 11 * 10**9, 1_000_000.0)])
    return run("dp-layerwise-4gpu-b256", [tr], info)


def test_communication_finding_with_bytes_bandwidth_and_prediction() -> None:
    ms, costs = analysed([dp4(0.61)])
    (f,) = [x for x in findings_for(ms[0], costs[ms[0].run_dir]) if x.kind == "communication"]
    assert (f.figures.share, f.figures.comm_ms, f.figures.bandwidth_gbps) == (0.61, 122.0, 11.0)
    assert f.figures.bytes_per_step == 6 * 566_666_667 + 256 * 10 * 4 * 3 // 4 + 256 * 100 * 4 * 3 // 4
    assert f.figures.predicted_ms == pytest.approx(f.figures.bytes_per_step / 11e9 * 1e3)
    assert f.figures.mismatch == "faster" and f.figures.bytes_complete     # 122 ms measured vs 309 ms predicted


def test_communication_below_threshold_is_silent() -> None:
    ms, costs = analysed([dp4(THRESHOLDS.comm_share - 0.01)])
    assert "communication" not in kinds(findings_for(ms[0], costs[ms[0].run_dir]))
    ms, costs = analysed([dp4(THRESHOLDS.comm_share)])
    assert "communication" in kinds(findings_for(ms[0], costs[ms[0].run_dir]))


def test_thresholds_are_the_single_switch() -> None:
    ms, costs = analysed([dp4(0.61)])
    strict = replace(THRESHOLDS, comm_share=0.7)
    assert "communication" not in kinds(findings_for(ms[0], costs[ms[0].run_dir], strict))


def test_data_loading_and_the_saturated_allocation() -> None:
    """The seed's story: 4 workers on request_cpus = 1; the process tree keeps that 1 CPU busy."""
    info = run_info("single-1gpu-b64", "single", 1, 64, images_per_s=100.0, workers=4, cpus=1)
    r = run("single-1gpu-b64", [trace(shares={C: 0.4, DATA: 0.38})], info,
            samples=SampleSummary(rows=10, tree_cpu_cores=0.97, host_cpu_pct=3.0))   # 3 %: a shared 64-core node
    found = {f.kind: f for f in all_findings(*analysed([r]))}
    sat = found["cpu_saturated"].figures
    assert (sat.cpus, sat.cpus_source, sat.tree_cpu_cores, sat.workers, sat.processes, sat.data_share) == \
        (1, "affinity", 0.97, 4, 1, 0.38)
    data = found["data_loading"].figures
    assert (data.share, data.part_ms, data.workers, data.cpus, data.tree_cpu_cores) == (0.38, 38.0, 4, 1, 0.97)
    idle_cpu = run("single-1gpu-b64", [trace(shares={C: 0.4, DATA: 0.38})], info,
                   samples=SampleSummary(rows=10, tree_cpu_cores=0.5))
    assert "cpu_saturated" not in kinds(all_findings(*analysed([idle_cpu])))
    r2 = run("single-1gpu-b64", [trace(shares={C: 0.4, DATA: 0.09})], info)
    assert "data_loading" not in kinds(all_findings(*analysed([r2])))


def test_saturated_cpus_of_a_compute_bound_run_are_not_blamed_on_data() -> None:
    """Golden wording: two DDP ranks keep both CPUs busy with compute, the step never waits on data."""
    info = run_info("ddp-2cpu-b64", "ddp", 2, 64, images_per_s=5.0, workers=1, cpus=2)
    r = run("ddp-2cpu-b64", [trace(shares={C: 0.93, DATA: 0.0004})], info,
            samples=SampleSummary(rows=10, tree_cpu_cores=1.85))
    (sat,) = [f for f in all_findings(*analysed([r])) if f.kind == "cpu_saturated"]
    assert finding_text(sat) == (
        "the job's 2 CPUs are saturated: 2 DataLoader workers and 2 DDP processes share them; data loading is "
        "under 1 % of the step, so the CPUs go to compute (the process tree uses 1.85 cores of the job's 2 CPUs, "
        "allocation from affinity; ddp-2cpu-b64)")


def test_no_cpu_claim_without_the_allocation_or_the_tree_rows() -> None:
    from analysis.view.model import build_report

    no_alloc = run("single-1gpu-b64", [trace(shares={C: 0.4, DATA: 0.38})],
                   run_info("single-1gpu-b64", "single", 1, 64, workers=4),
                   samples=SampleSummary(rows=10, tree_cpu_cores=0.97))
    no_tree = run("single-1gpu-b32", [trace(shares={C: 0.4, DATA: 0.38})],
                  run_info("single-1gpu-b32", "single", 1, 32, workers=4, cpus=1), samples=SampleSummary(rows=10))
    report = build_report([no_alloc, no_tree])
    assert "cpu_saturated" not in kinds(report.findings)
    (cpus,) = [r for r in report.recommendations if r.kind == "cpus_per_worker"]
    assert cpus.run == "single-1gpu-b32"            # 5 busy processes on 1 CPU: outnumbered, saturation not claimed
    assert (cpus.figures.outnumbered, cpus.figures.saturated, cpus.figures.request_cpus) == (True, False, 5)
    assert any(n.startswith("single-1gpu-b64: no CPU allocation in run.json") for n in report.notes)
    assert any(n.startswith("single-1gpu-b32: samples.csv has no process-tree CPU rows") for n in report.notes)


def test_imbalance_reports_gpu0_against_the_rest() -> None:
    info = run_info("dp-4gpu-b256", "dp", 4, 256)
    r = run("dp-4gpu-b256", [trace(gpus={0: 0.92, 1: 0.23, 2: 0.22, 3: 0.24})], info)
    (f,) = [x for x in all_findings(*analysed([r])) if x.kind == "imbalance"]
    assert (f.figures.top_index, f.figures.top_busy, f.figures.others_similar) == (0, 0.92, True)
    assert f.figures.others == [(1, 0.23), (2, 0.22), (3, 0.24)]
    even = run("dp-4gpu-b256", [trace(gpus={0: 0.60, 1: 0.40, 2: 0.40, 3: 0.40})], info)
    assert "imbalance" not in kinds(all_findings(*analysed([even])))
    # ranks of DDP are separate processes: one GPU each, never compared as "GPU 0 vs the rest"
    ddp = run("ddp-2gpu-b128", [trace("rank0", gpus={0: 0.9}, pid=1), trace("rank1", gpus={1: 0.2}, pid=2)],
              run_info("ddp-2gpu-b128", "ddp", 2, 128))
    assert "imbalance" not in kinds(all_findings(*analysed([ddp])))


def test_cpu_gloo_all_reduce_finding() -> None:
    r = run("ddp-2cpu-b64", [trace("rank0", has_gpu=False, shares={C: 0.5, COMM: 0.3}, overlap=0.25),
                             trace("rank1", has_gpu=False, shares={C: 0.5, COMM: 0.3}, overlap=0.25)],
            run_info("ddp-2cpu-b64", "ddp", 2, 64, "cpu", parameter_bytes=4000))
    (f,) = [x for x in all_findings(*analysed([r])) if x.kind == "communication"]
    assert (f.figures.share, f.figures.comm_ms, f.figures.overlap, f.figures.bytes_per_step) == (0.3, 30.0, 0.25, 4000)
    assert f.figures.predicted_ms is None


def test_scaling_finding_only_below_efficiency_threshold() -> None:
    base = run("single-1gpu-b64", [trace()], run_info("single-1gpu-b64", "single", 1, 64, images_per_s=100.0))
    slow = run("dp-2gpu-b128", [trace()], run_info("dp-2gpu-b128", "dp", 2, 128, images_per_s=90.0))
    good = run("ddp-2gpu-b128", [trace()], run_info("ddp-2gpu-b128", "ddp", 2, 128, images_per_s=190.0))
    found = all_findings(*analysed([base, slow, good]))
    scaling = [f for f in found if f.kind == "scaling"]
    assert [f.run for f in scaling] == ["dp-2gpu-b128"]
    assert (scaling[0].figures.speedup, scaling[0].figures.efficiency) == pytest.approx((0.9, 0.45))
    odd = run("ddp-4gpu-b256", [trace()], run_info("ddp-4gpu-b256", "ddp", 4, 256, images_per_s=500.0))
    (sup,) = [f for f in all_findings(*analysed([base, odd])) if f.kind == "superlinear"]
    assert (sup.figures.speedup, sup.figures.efficiency, sup.figures.baseline) == (5.0, 1.25, "single-1gpu-b64")
    fine = run("ddp-4gpu-b256", [trace()], run_info("ddp-4gpu-b256", "ddp", 4, 256, images_per_s=480.0))
    assert not [f for f in all_findings(*analysed([base, fine])) if f.kind in ("superlinear", "scaling")]


def test_share_findings_and_gpu_util() -> None:
    info = run_info("single-1gpu-b64", "single", 1, 64, pin_memory=False)
    r = run("single-1gpu-b64", [trace(shares={C: 0.3, H2D: 0.06, HOST: 0.2, IDLE: 0.0})], info,
            samples=SampleSummary(mean_gpu_util_pct=31.0, gpu_util_pct={"0": 31.0}))
    found = {f.kind: f for f in all_findings(*analysed([r]))}
    assert set(found) == {"host_to_device", "host_overhead", "idle", "gpu_util"}
    assert found["host_to_device"].figures.pin_memory is False
    assert (found["idle"].figures.share, found["idle"].figures.part_ms) == pytest.approx((0.44, 44.0))
    assert (found["gpu_util"].figures.mean_pct, found["gpu_util"].figures.per_gpu_pct) == (31.0, {"0": 31.0})
    quiet = run("single-1gpu-b64", [trace(shares={C: 0.9, H2D: 0.04, HOST: 0.05})], info,
                samples=SampleSummary(mean_gpu_util_pct=95.0))
    assert all_findings(*analysed([quiet])) == []


def test_recommendations_ranked_with_their_savings() -> None:
    dp = dp4(0.6, workers=4, cpus=1, pin_memory=False, amp=False)
    dp.traces[0].steps = trace(step_us=200_000, shares={C: 0.2, COMM: 0.6, DATA: 0.15, HOST: 0.05}).steps
    ms, costs = analysed([dp])
    recs = {r.kind: r for r in recommendations(ms, costs)}
    assert set(recs) == {"ddp", "per_gpu_batch", "cpus_per_worker"}   # AMP: compute 20 % < 40 %; no h2d time
    # DDP's ring all-reduce: 2 × 566_666_667 B × 3/4 = 850_000_000.5 B at the measured 11 GB/s = 77.27273 ms,
    # instead of the 120 ms of communication measured (60 % of 200 ms): saves 42.72727 ms
    assert recs["ddp"].saving_ms == pytest.approx(42.72727, rel=1e-6) and recs["ddp"].basis == "predicted"
    # doubling the per-GPU batch halves the per-step fixed cost: the parameter traffic's share of the bytes,
    # (replicate + reduce = 2 × 3 × 566_666_667 = 3_400_000_002 B) / (that + input scatter 10 × 4 B × 256 × 3/4
    # = 7_680 + activations 100 × 4 B × 256 × 3/4 = 76_800 → 3_400_084_482 B) = 0.99997515 of the 120 ms
    # communication, + 10 ms host overhead (5 %): 129.99702 ms, halved = 64.99851 ms
    assert recs["per_gpu_batch"].saving_ms == pytest.approx(64.99851, rel=1e-6)
    assert recs["cpus_per_worker"].saving_ms == pytest.approx(30.0)
    assert recs["cpus_per_worker"].figures.request_cpus == 5          # 4 workers + the training loop
    assert "request_cpus = 5 in HTCondor" in recommendation_text(recs["cpus_per_worker"])
    ranked = recommendations(ms, costs)
    assert [r.kind for r in ranked] == ["per_gpu_batch", "ddp", "cpus_per_worker"]
    assert [r.saving_share for r in ranked] == sorted((r.saving_share for r in ranked), reverse=True)


def test_small_savings_are_dropped() -> None:
    r = run("single-1gpu-b64", [trace(shares={C: 0.9, H2D: 0.05})], run_info("single-1gpu-b64", "single", 1, 64))
    tight = replace(THRESHOLDS, min_saving_share=0.5)
    assert [x.kind for x in recommendations(*analysed([r]))] == ["amp", "pinned_memory"]
    assert recommendations(*analysed([r]), tight) == []


def test_ddp_recommendation_uses_a_measured_ddp_run_when_there_is_one() -> None:
    dp = run("dp-2gpu-b128", [trace(shares={C: 0.4, COMM: 0.5})], run_info("dp-2gpu-b128", "dp", 2, 128))
    ddp = run("ddp-2gpu-b256", [trace(step_us=120_000, shares={C: 0.8})], run_info("ddp-2gpu-b256", "ddp", 2, 256))
    recs = [r for r in recommendations(*analysed([dp, ddp])) if r.kind == "ddp"]
    assert len(recs) == 1 and recs[0].basis == "measured"
    assert recs[0].saving_ms == pytest.approx(100.0 - 60.0)   # 128 images: 60 ms under DDP vs 100 ms


def test_amp_and_pinned_need_the_config_to_say_they_were_off() -> None:
    shares = {C: 0.7, H2D: 0.2}
    unknown = run("resnet50", [trace(shares=shares)])                 # bare trace folder: no run.json
    assert recommendations(*analysed([unknown])) == []
    off = run("single-1gpu-b64", [trace(shares=shares)], run_info("single-1gpu-b64", "single", 1, 64))
    recs = {r.kind: r for r in recommendations(*analysed([off]))}
    assert recs["amp"].saving_ms == pytest.approx(70.0 * THRESHOLDS.amp_compute_saving)
    assert recs["pinned_memory"].saving_ms == pytest.approx(20.0 * THRESHOLDS.pinned_h2d_saving)
    assert recs["amp"].basis == recs["pinned_memory"].basis == "assumed"
