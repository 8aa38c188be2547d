"""Scaling figures and the communication cost model (analysis.run.scaling, analysis.run.costmodel), exact on
hand-built analyses; the per-layer DP traffic comes from the seed model's real layer table."""
from __future__ import annotations

import pytest

from analysis.run.costmodel import (NO_INPUT_SHAPE, NO_LAYER_SHAPES, activation_traffic, cost_model, ddp_allreduce_ms,
                                link_bandwidths, param_traffic)
from analysis.records import MemcpyStats
from analysis.run.samples import SampleSummary
from analysis.run.scaling import attach_speedups, run_metrics
from profiler.contract import vocab
from profiler.contract.runjson import GpuInfo
from builders.runs import TWO_LAYERS, run, run_info, seed_model, trace

C, COMM, DATA = vocab.COMPUTE, vocab.COMMUNICATION, vocab.DATA_LOADING
SEED_PARAMETER_BYTES = 563_611_816
TWO_LINEAR = TWO_LAYERS


def test_run_metrics_from_run_json_and_trace() -> None:
    info = run_info("dp-2gpu-b128", "dp", 2, 128, images_per_s=1000.0, workers=4, cpus=1)
    m = run_metrics(run("dp-2gpu-b128", [trace(shares={C: 0.5, COMM: 0.25}, gpus={0: 0.9, 1: 0.3})], info,
                        samples=SampleSummary(mean_gpu_util_pct=42.0, tree_cpu_cores=0.97)))
    assert (m.strategy, m.device_type, m.devices, m.global_batch, m.per_device_batch) == ("dp", "cuda", 2, 128, 64)
    assert m.step_ms == 100.0 and m.step_ms_source == "trace"
    assert m.parts_ms[C] == 50.0 and m.parts_ms[COMM] == 25.0 and m.parts_ms[vocab.IDLE] == 25.0
    assert m.shares[COMM] == 0.25
    assert (m.images_per_s, m.images_per_s_source) == (1000.0, "run.json")
    assert (m.workers, m.cpus, m.cpus_source, m.tree_cpu_cores) == (4, 1, "affinity", 0.97)
    assert (m.pin_memory, m.amp) == (False, False)
    assert [round(d.busy, 6) for d in m.device_busy] == [0.9, 0.3]
    assert [d.index for d in m.device_busy] == [0, 1]
    assert m.mean_gpu_util_pct == 42.0


def test_without_run_json_the_name_and_traces_speak() -> None:
    """The anchors' bare folders: figures from the folder name when it follows the contract, else unknown."""
    m = run_metrics(run("ddp-2cpu-b64", [trace("rank0", 100_000, has_gpu=False),
                                         trace("rank1", 120_000, has_gpu=False)]))
    assert (m.strategy, m.device_type, m.devices, m.global_batch) == ("ddp", "cpu", 2, 64)
    assert m.step_ms == pytest.approx(110.0)                      # mean over the ranks
    assert m.images_per_s == pytest.approx(64 / 0.110) and m.images_per_s_source == "trace"
    assert "mean over 2 ranks" in m.notes[0]
    assert m.cpus is None and m.tree_cpu_cores is None
    bare = run_metrics(run("resnet50_num_workers_0", [trace("worker0", gpus={0: 0.6}), trace("worker0", gpus={0: 0.6})]))
    assert (bare.strategy, bare.device_type, bare.devices, bare.global_batch, bare.images_per_s) == \
        (vocab.UNKNOWN_STRATEGY, "cuda", 1, None, None)
    assert "2 trace files" in bare.notes[0]


def test_step_time_from_run_json_when_there_is_no_trace() -> None:
    info = run_info("single-1gpu-b64", "single", 1, 64, images_per_s=500.0)
    assert info.results is not None
    info.results.step_times_ms = [10.0, 20.0, 30.0]
    m = run_metrics(run("single-1gpu-b64", [], info))
    assert (m.step_ms, m.step_ms_source, m.images_per_s) == (20.0, "run.json", 500.0)


def test_speedup_and_efficiency_against_the_one_device_run_of_the_same_type() -> None:
    runs = [
        run("single-1gpu-b64", [trace()], run_info("single-1gpu-b64", "single", 1, 64, images_per_s=100.0)),
        run("dp-2gpu-b128", [trace()], run_info("dp-2gpu-b128", "dp", 2, 128, images_per_s=150.0)),
        run("dp-layerwise-4gpu-b256", [trace()], run_info("dp-layerwise-4gpu-b256", "dp-layerwise", 4, 256,
                                                           images_per_s=50.0)),
        run("ddp-2cpu-b64", [trace(has_gpu=False)], run_info("ddp-2cpu-b64", "ddp", 2, 64, "cpu", images_per_s=80.0)),
        run("single-1cpu-b32", [trace(has_gpu=False)], run_info("single-1cpu-b32", "single", 1, 32, "cpu",
                                                                 images_per_s=64.0)),
    ]
    ms = [run_metrics(r) for r in runs]
    attach_speedups(ms)
    got = {m.name: (m.baseline, m.speedup, m.efficiency) for m in ms}
    assert got["single-1gpu-b64"] == ("single-1gpu-b64", 1.0, 1.0)
    assert got["dp-2gpu-b128"] == ("single-1gpu-b64", 1.5, 0.75)
    assert got["dp-layerwise-4gpu-b256"] == ("single-1gpu-b64", 0.5, 0.125)
    assert got["ddp-2cpu-b64"] == ("single-1cpu-b32", 1.25, 0.625)


def test_no_baseline_no_speedup() -> None:
    ms = [run_metrics(run("dp-2gpu-b128", [trace()], run_info("dp-2gpu-b128", "dp", 2, 128, images_per_s=150.0)))]
    attach_speedups(ms)
    assert (ms[0].speedup, ms[0].efficiency, ms[0].baseline) == (None, None, None)


def test_parameter_traffic_per_strategy() -> None:
    p = 1000
    assert [i.bytes for i in param_traffic("dp", 4, p)] == [3000, 3000]            # replicate + reduce: P(N−1) each
    assert [i.bytes for i in param_traffic("dp-layerwise", 2, p)] == [1000, 1000]
    assert [i.bytes for i in param_traffic("ddp", 4, p)] == [1500]                  # 2P(N−1)/N per rank
    assert param_traffic("ddp", 1, p) == [] and param_traffic("single", 4, p) == []
    assert ddp_allreduce_ms(10**9, 4, 10.0) == pytest.approx(150.0)                 # 1.5 GB at 10 GB/s


def test_activation_traffic_from_the_layer_table() -> None:
    # forward (10+20)+(20+5); backward (20+0: no grad for the input batch)+(5+20) = 100 elements/sample
    assert activation_traffic(TWO_LINEAR, global_batch=8, devices=4).bytes == 100 * 4 * 8 * 3 // 4
    assert activation_traffic(TWO_LINEAR, 8, 4, amp=True).bytes == 100 * 2 * 8 * 3 // 4


def test_seed_model_layerwise_at_4_gpus_moves_4_99_gb() -> None:
    """The exact table: activations 1.61 GB (not the 5.19 GB the old 32×32 guess said), 4.99 GB in all."""
    model = seed_model()
    info = run_info("dp-layerwise-4gpu-b256", "dp-layerwise", 4, 256)
    info.model = model
    r = run("dp-layerwise-4gpu-b256", [trace(shares={C: 0.2, COMM: 0.6})], info)
    c = cost_model(r, run_metrics(r))
    assert model.parameter_bytes == SEED_PARAMETER_BYTES
    by_kind = {i.kind: i.bytes for i in c.items}
    assert by_kind == {"replicate": 3 * SEED_PARAMETER_BYTES, "reduce": 3 * SEED_PARAMETER_BYTES,
                       "input_scatter": 2_359_296, "activations": 1_606_892_544}
    assert c.bytes_per_step == 4_990_922_736 and c.complete and c.notes == ["no link bandwidth measured (no memcpy "
                                                                            "events, no NVML PCIe rows): no predicted time"]


def test_no_layer_table_no_guessed_traffic() -> None:
    info = run_info("dp-layerwise-4gpu-b256", "dp-layerwise", 4, 256, parameter_bytes=4000)
    r = run("dp-layerwise-4gpu-b256", [trace(shares={C: 0.2, COMM: 0.6})], info)
    c = cost_model(r, run_metrics(r))
    assert [i.kind for i in c.items] == ["replicate", "reduce"] and not c.complete
    assert NO_LAYER_SHAPES in c.notes
    dp = run("dp-2gpu-b128", [trace()], run_info("dp-2gpu-b128", "dp", 2, 128, parameter_bytes=4000))
    cd = cost_model(dp, run_metrics(dp))
    assert [i.kind for i in cd.items] == ["replicate", "reduce"] and NO_INPUT_SHAPE in cd.notes


def test_cost_model_predicted_vs_measured_from_memcpy_bandwidth() -> None:
    info = run_info("dp-2gpu-b128", "dp", 2, 128, images_per_s=10.0, parameter_bytes=10**9, layers=TWO_LINEAR)
    tr = trace(shares={C: 0.3, COMM: 0.5}, gpus={0: 0.9, 1: 0.4},
               memcpy=[MemcpyStats("PtoP", 10, 2 * 10**9, 100_000.0), MemcpyStats("HtoD", 3, 6 * 10**8, 100_000.0)])
    r = run("dp-2gpu-b128", [tr], info)
    c = cost_model(r, run_metrics(r))
    assert [i.bytes for i in c.items] == [10**9, 10**9, 128 * 10 * 4 // 2]    # input: the first layer's 10 floats
    assert c.bandwidths["memcpy PtoP"] == 20.0 and c.bandwidths["memcpy HtoD"] == 6.0
    assert (c.bandwidth_gbps, c.bandwidth_source) == (20.0, "memcpy device-to-device")
    assert c.predicted_comm_ms == pytest.approx((2 * 10**9 + 2560) / 20e9 * 1e3)
    assert c.measured_comm_ms == 50.0


def test_bandwidth_falls_back_to_nvml_pcie_then_rated() -> None:
    info = run_info("ddp-4gpu-b256", "ddp", 4, 256, parameter_bytes=4 * 10**8)
    r = run("ddp-4gpu-b256", [trace(shares={C: 0.8, COMM: 0.1})], info,
            samples=SampleSummary(pcie_tx_kbps_max={"0": 2_000_000.0}, pcie_rx_kbps_max={"0": 1_000_000.0}))
    c = cost_model(r, run_metrics(r))
    assert c.bandwidth_source == "NVML PCIe peak (sampled)" and c.bandwidth_gbps == pytest.approx(2.048)
    assert c.bytes_per_step == 6 * 10**8
    assert c.predicted_comm_ms == pytest.approx(6 * 10**8 / 2.048e9 * 1e3)
    info.environment.gpus = [GpuInfo(index=0, pcie_max_gbps=15.75), GpuInfo(index=1, pcie_max_gbps=31.5)]
    assert link_bandwidths(run("x", [], info))["PCIe rated (run.json)"] == 15.75


def test_cost_model_says_what_it_cannot_know() -> None:
    r = run("ddp-2cpu-b64", [trace(has_gpu=False, shares={C: 0.5, COMM: 0.3}, overlap=0.75)],
            run_info("ddp-2cpu-b64", "ddp", 2, 64, "cpu", parameter_bytes=800))
    c = cost_model(r, run_metrics(r))
    assert c.bytes_per_step == 800 and c.predicted_comm_ms is None and c.bandwidth_gbps is None
    assert any("no link bandwidth" in n for n in c.notes)
    assert c.allreduce_in_flight_ms == pytest.approx(30.0 / 0.25)        # exposed ÷ (1 − overlap)
    no_params = run("dp-2gpu-b128", [trace()], run_info("dp-2gpu-b128", "dp", 2, 128))
    cn = cost_model(no_params, run_metrics(no_params))
    assert cn.parameter_bytes is None and cn.items == [] and not cn.complete
    assert any("no parameter_bytes in run.json" in n for n in cn.notes)
    bare = run("resnet", [trace()])                            # no run.json at all: the report says so once
    cb = cost_model(bare, run_metrics(bare))
    assert cb.items == [] and cb.parameter_bytes is None and cb.notes == []
