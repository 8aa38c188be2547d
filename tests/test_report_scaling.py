"""Scaling figures and the communication cost model (analysis.scaling), exact on hand-built analyses."""
from __future__ import annotations

import pytest

from analysis.records import MemcpyStats
from analysis.scaling import (activation_traffic, attach_speedups, cost_model, ddp_prediction_ms, group_by_strategy,
                              layer_activations, link_bandwidths, param_traffic, run_metrics)
from profiler.contract import vocab
from test_report_support import run, run_json, trace

C, COMM, DATA = vocab.COMPUTE, vocab.COMMUNICATION, vocab.DATA_LOADING

# the seed ConvNet as models.convnet.describe() lists it: conv/linear layers and their parameter counts
SEED_LAYERS = [{"name": n, "type": t, "parameters": p} for n, t, p in (
    ("features.0", "Conv2d", 48 * (3 * 9 + 1)), ("features.2", "Conv2d", 96 * (48 * 9 + 1)),
    ("features.6", "Conv2d", 192 * (96 * 9 + 1)), ("features.8", "Conv2d", 256 * (192 * 9 + 1)),
    ("features.10", "Conv2d", 512 * (256 * 9 + 1)), ("features.12", "Conv2d", 1024 * (512 * 9 + 1)),
    ("classifier.1", "Linear", 2048 * (65536 + 1)), ("classifier.3", "Linear", 64 * (2048 + 1)),
    ("classifier.6", "Linear", 10 * (64 + 1)))]


def test_seed_layer_list_adds_up_to_the_seed_model() -> None:
    assert sum(layer["parameters"] for layer in SEED_LAYERS) == 140_902_954


def test_run_metrics_from_run_json_and_trace() -> None:
    info = run_json("dp-2gpu-b128", "dp", 2, 128, images_per_s=1000.0, workers=4, cpus_allowed=1)
    m = run_metrics(run("dp-2gpu-b128", [trace(shares={C: 0.5, COMM: 0.25}, gpus={0: 0.9, 1: 0.3})], info,
                        samples={"mean_gpu_util_pct": 42.0}))
    assert (m.strategy, m.device_type, m.devices, m.global_batch, m.per_device_batch) == ("dp", "cuda", 2, 128, 64)
    assert m.step_ms == 100.0 and m.step_ms_source == "trace"
    assert m.parts_ms[C] == 50.0 and m.parts_ms[COMM] == 25.0 and m.parts_ms[vocab.IDLE] == 25.0
    assert m.shares[COMM] == 0.25
    assert (m.images_per_s, m.images_per_s_source) == (1000.0, "run.json")
    assert (m.workers, m.cpus_allowed, m.pin_memory, m.amp) == (4, 1, False, False)
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
    bare = run_metrics(run("resnet50_num_workers_0", [trace("worker0", gpus={0: 0.6}), trace("worker0", gpus={0: 0.6})]))
    assert (bare.strategy, bare.device_type, bare.devices, bare.global_batch, bare.images_per_s) == \
        ("unknown", "cuda", 1, None, None)
    assert "2 trace files" in bare.notes[0]


def test_step_time_from_run_json_when_there_is_no_trace() -> None:
    info = run_json("single-1gpu-b64", "single", 1, 64, images_per_s=500.0)
    info["results"]["step_times_ms"] = [10.0, 20.0, 30.0]
    m = run_metrics(run("single-1gpu-b64", [], info))
    assert (m.step_ms, m.step_ms_source, m.images_per_s) == (20.0, "run.json", 500.0)


def test_speedup_and_efficiency_against_the_one_device_run_of_the_same_type() -> None:
    runs = [
        run("single-1gpu-b64", [trace()], run_json("single-1gpu-b64", "single", 1, 64, images_per_s=100.0)),
        run("dp-2gpu-b128", [trace()], run_json("dp-2gpu-b128", "dp", 2, 128, images_per_s=150.0)),
        run("dp-layerwise-4gpu-b256", [trace()], run_json("dp-layerwise-4gpu-b256", "dp-layerwise", 4, 256,
                                                           images_per_s=50.0)),
        run("ddp-2cpu-b64", [trace(has_gpu=False)], run_json("ddp-2cpu-b64", "ddp", 2, 64, "cpu", images_per_s=80.0)),
        run("single-1cpu-b32", [trace(has_gpu=False)], run_json("single-1cpu-b32", "single", 1, 32, "cpu",
                                                                 images_per_s=64.0)),
    ]
    ms = [run_metrics(r) for r in runs]
    attach_speedups(ms)
    got = {m.name: (m.baseline, m.speedup, m.efficiency) for m in ms}
    assert got["single-1gpu-b64"] == ("single-1gpu-b64", 1.0, 1.0)
    assert got["dp-2gpu-b128"] == ("single-1gpu-b64", 1.5, 0.75)
    assert got["dp-layerwise-4gpu-b256"] == ("single-1gpu-b64", 0.5, 0.125)
    assert got["ddp-2cpu-b64"] == ("single-1cpu-b32", 1.25, 0.625)
    assert [m.name for m in group_by_strategy(ms)["single"]] == ["single-1cpu-b32", "single-1gpu-b64"]


def test_no_baseline_no_speedup() -> None:
    ms = [run_metrics(run("dp-2gpu-b128", [trace()], run_json("dp-2gpu-b128", "dp", 2, 128, images_per_s=150.0)))]
    attach_speedups(ms)
    assert (ms[0].speedup, ms[0].efficiency, ms[0].baseline) == (None, None, None)


def test_parameter_traffic_per_strategy() -> None:
    p = 1000
    assert [i.bytes for i in param_traffic("dp", 4, p)] == [3000, 3000]            # replicate + reduce: P(N−1) each
    assert [i.bytes for i in param_traffic("dp-layerwise", 2, p)] == [1000, 1000]
    assert [i.bytes for i in param_traffic("ddp", 4, p)] == [1500.0]                # 2P(N−1)/N per rank
    assert param_traffic("ddp", 1, p) == [] and param_traffic("single", 4, p) == []
    assert ddp_prediction_ms(10**9, 4, 10.0) == pytest.approx(150.0)               # 1.5 GB at 10 GB/s


def test_layer_activations_estimated_from_the_seed_layer_list() -> None:
    acts, exact = layer_activations(SEED_LAYERS)
    assert not exact
    k = 32 * 32   # convs assumed at the input resolution: an upper bound
    assert acts == [(3 * k, 48 * k), (48 * k, 96 * k), (96 * k, 192 * k), (192 * k, 256 * k), (256 * k, 512 * k),
                    (512 * k, 1024 * k), (65536, 2048), (2048, 64), (64, 10)]


def test_layer_activations_exact_from_shapes() -> None:
    layers = [{"type": "Linear", "parameters": 210, "input_shape": [10], "output_shape": [20]},
              {"type": "Linear", "parameters": 105, "input_shape": [20], "output_shape": [5]}]
    assert layer_activations(layers) == ([(10, 20), (20, 5)], True)
    item = activation_traffic(layers, global_batch=8, devices=4)
    # forward (10+20)+(20+5); backward (20+0: no grad for the input batch)+(5+20) = 100 elements/sample
    assert item is not None and not item.estimate
    assert item.bytes == 100 * 4 * 8 * 3 / 4
    assert activation_traffic(layers, 8, 4, amp=True).bytes == 100 * 2 * 8 * 3 / 4
    assert layer_activations([{"type": "Conv2d", "parameters": 7}]) is None   # does not resolve


def test_cost_model_predicted_vs_measured_from_memcpy_bandwidth() -> None:
    info = run_json("dp-2gpu-b128", "dp", 2, 128, images_per_s=10.0, parameter_bytes=10**9)
    tr = trace(shares={C: 0.3, COMM: 0.5}, gpus={0: 0.9, 1: 0.4},
               memcpy=[MemcpyStats("PtoP", 10, 2 * 10**9, 100_000.0), MemcpyStats("HtoD", 3, 6 * 10**8, 100_000.0)])
    r = run("dp-2gpu-b128", [tr], info)
    c = cost_model(r, run_metrics(r))
    assert [i.bytes for i in c.items] == [10**9, 10**9, 128 * 3 * 32 * 32 * 4 / 2]
    assert c.bytes_per_step == 2 * 10**9 + 786432
    assert c.estimated            # the input scatter assumes CIFAR-shaped float32 images
    assert c.bandwidths["memcpy PtoP"] == 20.0 and c.bandwidths["memcpy HtoD"] == 6.0
    assert (c.bandwidth_gbps, c.bandwidth_source) == (20.0, "memcpy device-to-device")
    assert c.predicted_comm_ms == pytest.approx((2 * 10**9 + 786432) / 20e9 * 1e3)
    assert c.measured_comm_ms == 50.0


def test_bandwidth_falls_back_to_nvml_pcie_then_rated() -> None:
    info = run_json("ddp-4gpu-b256", "ddp", 4, 256, parameter_bytes=4 * 10**8)
    r = run("ddp-4gpu-b256", [trace(shares={C: 0.8, COMM: 0.1})], info,
            samples={"pcie_tx_kbps_max": {"0": 2_000_000.0}, "pcie_rx_kbps_max": {"0": 1_000_000.0}})
    c = cost_model(r, run_metrics(r))
    assert c.bandwidth_source == "NVML PCIe peak (sampled)" and c.bandwidth_gbps == pytest.approx(2.048)
    assert c.bytes_per_step == 2 * 4 * 10**8 * 3 / 4
    assert c.predicted_comm_ms == pytest.approx(6 * 10**8 / 2.048e9 * 1e3)
    info["environment"]["gpus"] = [{"pcie_max_gbps": 15.75}, {"pcie_max_gbps": 31.5}]
    assert link_bandwidths(run("x", [], info))["PCIe rated (run.json)"] == 15.75


def test_cost_model_says_what_it_cannot_know() -> None:
    r = run("ddp-2cpu-b64", [trace(has_gpu=False, shares={C: 0.5, COMM: 0.3})],
            run_json("ddp-2cpu-b64", "ddp", 2, 64, "cpu", parameter_bytes=800))
    c = cost_model(r, run_metrics(r))
    assert c.bytes_per_step == 800.0 and c.predicted_comm_ms is None and c.bandwidth_gbps is None
    assert any("no link bandwidth" in n for n in c.notes)
    no_params = run("dp-2gpu-b128", [trace()], run_json("dp-2gpu-b128", "dp", 2, 128))
    cn = cost_model(no_params, run_metrics(no_params))
    assert cn.parameter_bytes is None and any("no parameter_bytes in run.json" in n for n in cn.notes)
    assert [i.estimate for i in cn.items] == [True]           # only the input scatter is left
    bare = run("resnet", [trace()])                            # no run.json at all: the report says so once
    cb = cost_model(bare, run_metrics(bare))
    assert cb.items == [] and cb.parameter_bytes is None and cb.notes == []


def test_layerwise_cost_includes_activation_estimate() -> None:
    info = run_json("dp-layerwise-4gpu-b256", "dp-layerwise", 4, 256, parameter_bytes=140_902_954 * 4,
                    layers=SEED_LAYERS)
    r = run("dp-layerwise-4gpu-b256", [trace(shares={C: 0.2, COMM: 0.6})], info)
    c = cost_model(r, run_metrics(r))
    acts = c.items[-1]
    assert acts.estimate and "ESTIMATE" in acts.what
    sizes, _ = layer_activations(SEED_LAYERS)
    per_sample = sum(a + b for a, b in sizes) + sum(b for _, b in sizes) + sum(a for a, _ in sizes[1:])
    assert acts.bytes == per_sample * 4 * 256 * 3 / 4
    assert c.items[0].bytes == 140_902_954 * 4 * 3
