"""The what-if's rules with fixed numbers: bytes per strategy, DDP overlap, thread scaling, data starvation."""
from __future__ import annotations

import pytest

from analysis.whatif import terms as T
from analysis.datasheet import find_gpu
from analysis.whatif.predict import Target, predict
from analysis.whatif.profile import profile_of
from profiler.contract import vocab
from profiler.contract.runjson import Calibration, Layer, ModelInfo, StepTimes, ThreadScaling
from analysis.records import SampleSummary
from builders.runs import LAYERS, gpu_run, run, run_info, seed_model, trace

MS = 1000.0   # µs per ms


def cpu_run(calibration: Calibration | None = None, loader_cpu_pct: float | None = None):
    """single-1cpu-b64 on 2 cores: forward 1000, backward 2000, optimizer 2000 ms, 2 threads; its one
    DataLoader worker at `loader_cpu_pct` of a core (samples.csv) when given."""
    info = run_info("single-1cpu-b64", "single", 1, 64, device_type="cpu", images_per_s=10.0,
                    parameter_bytes=400_000_000, workers=1, cpus=2.0, layers=None)
    info.calibration = calibration
    tr = trace(step_us=5010 * MS, has_gpu=False, shares={vocab.COMPUTE: 0.99},
               phase={vocab.FORWARD: 1000 * MS, vocab.BACKWARD: 2000 * MS, vocab.OPTIMIZER: 2000 * MS,
                      vocab.DATA_WAIT: 10 * MS})
    samples = SampleSummary(rows=3, children_cpu_pct=loader_cpu_pct) if loader_cpu_pct is not None else None
    return run("single-1cpu-b64", [tr], info, samples=samples)


def term(pred, name):
    return next(t for t in pred.terms if t.name == name)


# --- bytes per strategy (seed table, via analysis.run.costmodel) -----------------------------------

@pytest.fixture(scope="module")
def seed():
    return seed_model()


# The seed table: P = 563_611_816 parameter bytes (140_902_954 float32), input 3×32×32 float32 = 12_288 B per
# image, output 10 float32 = 40 B per image. DataParallel replicates P to and reduces P from each of the
# N−1 other GPUs; it scatters the input and gathers the output over (N−1)/N of the batch; per-layer DP also
# moves every layer's activations (1_606_892_544 B at N=4, batch 256: the producer's layer table, test_report_seed).
# A100-PCIE-40GB has no NVLink: PCIe gen 4, whose row in whatif/busbw.py is 25.95 GB/s (4× RTX 4090, tinygrad#36).
@pytest.mark.parametrize("strategy,devices,batch,replicate_bytes,replicate_ms,total_bytes", [
    # replicate = reduce = P × 1 = 563_611_816 B; 563_611_816 B / 25.95 GB/s = 21.71915 ms
    # total = 2 × 563_611_816 + 12_288 × 128 × 1/2 (786_432) + 40 × 128 × 1/2 (2_560) = 1_128_012_624
    ("dp", 2, 128, 563_611_816, 21.71915, 1_128_012_624),
    # replicate = reduce = P × 3 = 1_690_835_448 B; / 25.95 GB/s = 65.15744 ms
    # total = 2 × 1_690_835_448 + 12_288 × 256 × 3/4 (2_359_296) + 40 × 256 × 3/4 (7_680) = 3_384_037_872
    ("dp", 4, 256, 1_690_835_448, 65.15744, 3_384_037_872),
    # the same, + activations 1_606_892_544 = 4_990_930_416
    ("dp-layerwise", 4, 256, 1_690_835_448, 65.15744, 4_990_930_416)])
def test_bytes_per_step_for_the_seed_table(seed, strategy, devices, batch, replicate_bytes, replicate_ms,
                                           total_bytes) -> None:
    assert seed.parameter_bytes == 563_611_816                         # the input the figures rest on
    p = profile_of(gpu_run(model=seed))
    pred = predict(p, Target(strategy, devices, "cuda", batch, 5 * devices, 4, find_gpu("A100-PCIE-40GB")))
    assert pred.bytes_per_step == total_bytes
    for name in ("replicate", "reduce"):
        t = term(pred, name)
        assert t.ms == pytest.approx(replicate_ms, rel=1e-6)
        assert t.basis.startswith(f"{replicate_bytes / 1e6:.1f} MB (analysis.run.costmodel, layer table) at 25.95 GB/s: NCCL all-reduce bus bandwidth measured on "
                                "4× GeForce RTX 4090, PCIe gen 4 with P2P")


def test_ddp_bytes_and_memory_for_the_seed_table(seed) -> None:
    pred = predict(profile_of(gpu_run(model=seed)), Target("ddp", 4, "cuda", 256, 20, 4, find_gpu("A100-SXM4-80GB")))
    assert pred.bytes_per_step == 2 * seed.parameter_bytes * 3 // 4
    mem = pred.memory_per_device
    assert mem["parameters"] == mem["gradients"] == mem["ddp_buckets"] == seed.parameter_bytes
    assert mem["adam_state"] == 2 * seed.parameter_bytes
    assert mem["activations"] == T.activation_bytes(seed.layers, 64)
    assert pred.memory_fits is True


# --- DDP: buckets overlap backward ---------------------------------------------------------------

# LAYERS (builders.runs): a (1 M parameters, 300 FLOPs) then b (10 M parameters, 100 FLOPs)

def test_ddp_buckets_follow_reverse_layer_order_and_the_caps() -> None:
    assert T.ddp_buckets(LAYERS) == [(40_000_000, [1]), (4_000_000, [0])]
    # backward: b (2×100) first, then a (1×300): weights 200/500, 300/500
    sched = T.ddp_schedule(LAYERS, backward_ms=100.0, allreduce_ms=110.0)
    assert [round(b.ready_ms, 6) for b in sched] == [40.0, 100.0]
    assert [round(b.start_ms, 6) for b in sched] == [40.0, 140.0]      # bucket 2 waits for bucket 1's 100 ms
    assert round(sched[-1].end_ms, 6) == 150.0
    assert round(T.exposed_after_backward(sched, 100.0), 6) == 50.0
    # a fast link hides all but the last bucket's own time
    fast = T.ddp_schedule(LAYERS, backward_ms=100.0, allreduce_ms=11.0)
    assert round(T.exposed_after_backward(fast, 100.0), 6) == 1.0


def test_cpu_ddp_all_reduce_adds_in_full_when_the_cores_are_full() -> None:
    cal = Calibration(thread_scaling=None, allreduce=None)
    from profiler.contract.runjson import AllReduceRate
    cal.allreduce = AllReduceRate(backend="gloo", processes=2, bytes=64_000_000, ms=100.0, threads=1)
    r = cpu_run(cal)
    r.run.model.layers = LAYERS
    pred = predict(profile_of(r), Target("ddp", 2, "cpu", 64, 2.0, 1))
    ar = term(pred, "all-reduce (exposed)")
    assert ar.ms == pytest.approx(100.0 * 400_000_000 / 64_000_000)     # 625 ms: linear in bytes, in full
    assert "adds in full" in ar.basis and "run.json calibration" in ar.basis
    # with 8 cores for 2 × 1-thread... the runner gives 4 threads each: 8 = 8, still full; 9 cores leave one free
    spare = predict(profile_of(r), Target("ddp", 2, "cpu", 64, 9.0, 1))
    assert term(spare, "all-reduce (exposed)").ms < ar.ms and "buckets" in term(spare, "all-reduce (exposed)").basis


# --- CPU thread scaling ----------------------------------------------------------------------

CAL = ThreadScaling(threads=[1, 2], compute_ms=[300.0, 160.0], memory_ms=[100.0, 80.0], batch=16, elements=1 << 20)
# the training step on 32 images: alone at the input's 2 threads, and as 2 DDP ranks × 1 thread at once
ALONE = StepTimes(processes=1, threads=2, batch=32, steps=2, forward_ms=500.0, backward_ms=1000.0, optimizer_ms=400.0)
RANKS = StepTimes(processes=2, threads=1, batch=32, steps=2, forward_ms=900.0, backward_ms=2300.0, optimizer_ms=1400.0)


def test_thread_factor_from_the_curve() -> None:
    alone = T.thread_factor(CAL, False, base_threads=2, threads=1)
    assert (alone.source, alone.factor) == ("curve", 300 / 160)
    assert round(T.thread_factor(CAL, True, 2, 1).factor, 4) == 1.25
    up = T.thread_factor(CAL, False, 2, 4)                      # beyond the curve: linear from its end
    assert (up.how, up.factor) == ("extrapolated", 0.5)
    assert T.thread_factor(None, False, 2, 1).factor == 2.0 and T.thread_factor(None, False, 2, 1).source == "assumed"
    assert T.curve_at([1, 4], [400.0, 100.0], 2) == (300.0, "interpolated")


def test_ddp_contention_splits_the_ranks_backward_into_compute_and_all_reduce() -> None:
    c = T.ddp_contention(ALONE, RANKS)
    assert c.compute == 1.8
    assert c.allreduce_ms == pytest.approx(2300 - 1000 * 1.8)            # 500 ms of gloo on the busy cores
    # a rank whose backward slowed less than its forward leaves no all-reduce (never negative)
    assert T.ddp_contention(ALONE, StepTimes(**{**_fields(RANKS), "backward_ms": 1500.0})).allreduce_ms == 0.0
    assert T.contention_applies(RANKS, processes=2, threads=1, same_cpus=True)
    assert not T.contention_applies(RANKS, 4, 1, True)                  # 4 ranks were not calibrated
    assert not T.contention_applies(RANKS, 2, 2, True)                  # nor 2 threads each
    assert not T.contention_applies(RANKS, 2, 1, False)                 # other CPUs than the input's


def test_a_phase_moves_to_another_batch_along_a_fixed_plus_per_image_line() -> None:
    assert T.at_batch(32, 500.0, 64, 1000.0, 48) == pytest.approx(750.0)     # through the origin: per image
    assert T.at_batch(32, 600.0, 64, 1000.0, 48) == pytest.approx(800.0)     # 200 ms fixed + 12.5 ms per image
    assert T.at_batch(32, 600.0, 64, 1000.0, 32) == 600.0                    # the calibrated point itself
    assert T.at_batch(32, 600.0, 64, 500.0, 16) == pytest.approx(300.0)      # falling line: per image from it
    assert T.at_batch(32, 100.0, 64, 1000.0, 16) == pytest.approx(50.0)      # negative fixed part: per image
    assert T.at_batch(8, 80.0, 8, 90.0, 4) == pytest.approx(40.0)            # one point only


def _fields(s: StepTimes) -> dict:
    return {f: getattr(s, f) for f in s.__struct_fields__}


def test_cpu_ddp_uses_the_calibrated_step_of_two_ranks() -> None:
    cal = Calibration(thread_scaling=CAL, alone_step=ALONE, ddp_step=RANKS)
    pred = predict(profile_of(cpu_run(cal)), Target("ddp", 2, "cpu", 64, 2.0, 1))
    assert term(pred, "forward").ms == pytest.approx(900.0)                   # 500 alone × 1.8
    assert term(pred, "backward").ms == pytest.approx(1800.0)                 # 1000 alone × 1.8
    assert term(pred, "all-reduce (exposed)").ms == pytest.approx(500.0)
    assert term(pred, "optimizer").ms == pytest.approx(1400.0)                # as the ranks ran it: not ÷ N
    assert "2 DDP ranks × 1 thread(s) on 32 images each" in term(pred, "forward").basis
    assert "2300.0 ms − 1000.0 ms alone × 1.80" in term(pred, "all-reduce (exposed)").basis
    # 64 images per rank: alone on the line through (32, 500) and the input's (64, 1000), × 1.8
    big = predict(profile_of(cpu_run(cal)), Target("ddp", 2, "cpu", 128, 2.0, 1))
    assert term(big, "forward").ms == pytest.approx(1800.0)
    assert term(big, "all-reduce (exposed)").ms == pytest.approx(500.0)       # the same gradients
    # 4 ranks were not calibrated: the curve (processes alone) and the bare all-reduce rate instead
    four = predict(profile_of(cpu_run(cal)), Target("ddp", 4, "cpu", 64, 2.0, 1))
    assert term(four, "forward").ms == pytest.approx(1000 / 64 * 16 * 300 / 160)
    assert "processes measured alone" in term(four, "forward").basis
    # a calibration without the ranks' wait (older run.json) says so instead of predicting it
    assert not any(t.name == "wait for the slowest rank" for t in pred.terms)
    assert any("predates the ranks' wait" in n for n in pred.notes)


def test_cpu_ddp_ranks_wait_for_the_slowest_and_load_the_real_data() -> None:
    """The step lasts as long as its slowest rank: the calibrated ranks' wait at the step's end is a term; their
    loaders served a tensor in memory, so the input run's loading (10 % of a core at 10 images/s = 10 CPU ms per
    image) adds in full on the shared cores: 10 ms × 64 images ÷ 2 cores = 320 ms."""
    ranks = StepTimes(**{**_fields(RANKS), "wait_ms": 250.0})
    cal = Calibration(thread_scaling=CAL, alone_step=ALONE, ddp_step=ranks)
    p = profile_of(cpu_run(cal, loader_cpu_pct=10.0))
    assert p.loader_ms_per_image == pytest.approx(10.0)
    pred = predict(p, Target("ddp", 2, "cpu", 64, 2.0, 1))
    wait = term(pred, "wait for the slowest rank")
    assert wait.ms == 250.0 and wait.category == vocab.COMMUNICATION
    assert term(pred, "data").ms == pytest.approx(320.0)
    # forward 900 + backward 1800 + all-reduce 500 + optimizer 1400 + wait 250 + host + data 320
    assert pred.step_ms == pytest.approx(5170.0 + term(pred, "host").ms)
    # scaled from the input run's own phases (4 ranks: no calibrated ranks), its loading was inside them
    four = predict(p, Target("ddp", 4, "cpu", 64, 2.0, 1))
    assert term(four, "data").ms < 320.0 / 2 and not any(t.name == "wait for the slowest rank" for t in four.terms)


def test_cpu_ddp_without_calibration_assumes_linear_threads() -> None:
    uncal = predict(profile_of(cpu_run()), Target("ddp", 2, "cpu", 64, 2.0, 1))
    assert term(uncal, "backward").ms == pytest.approx(2000.0)                  # 1000 × 2 threads → 1
    assert "assumed: linear in cores, no calibration in run.json" in term(uncal, "backward").basis
    assert "assumed: no calibration in run.json" in term(uncal, "all-reduce (exposed)").basis
    assert uncal.assumed and not uncal.analytic


# --- data loading ----------------------------------------------------------------------------

def test_one_cpu_starves_four_workers_five_cpus_do_not() -> None:
    p = profile_of(gpu_run())
    assert p.loader_ms_per_image == pytest.approx(2.0)
    five = predict(p, Target("single", 1, "cuda", 64, 5.0, 4))
    one = predict(p, Target("single", 1, "cuda", 64, 1.0, 4))
    assert term(five, "data").ms == pytest.approx(1.0)                # the measured fetch only
    assert term(one, "data").ms == pytest.approx(128.0)               # 2 ms × 64 images on the one shared core
    assert "share the step's cores" in term(one, "data").basis
    assert one.step_ms - five.step_ms == pytest.approx(127.0)
    # 2 GPUs DDP on 3 cores: 1 free core for 8 workers: 256 ms to load 128 images; the step waits for the excess
    ddp = predict(p, Target("ddp", 2, "cuda", 128, 3.0, 4, link_gbps=10.0))
    data = term(ddp, "data")
    # the rest of the step: forward 20 + backward 40 + optimizer 10 + all-reduce 40 (ring 2(N−1)/N × 400 MB =
    # 400 MB at 10 GB/s, in full: no layer table) + host 29 = 139 ms; the step waits 256 − 139 = 117 ms more
    assert data.ms == pytest.approx(117.0) and "starved" in data.basis
    assert ddp.step_ms == pytest.approx(256.0)


def test_per_layer_gpu_model_takes_each_layers_precision_and_its_bound() -> None:
    """A conv of 1 GFLOP per image on 64 images (TF32 on an A100: 156 TFLOPS) and a linear of 4 M parameters doing
    8 MFLOP per image on 2 images (fp32: 19.5 TFLOPS; memory-bound: its 16 MB of weights at 1555 GB/s × 70 %)."""
    a100 = find_gpu("A100-PCIE-40GB")
    conv = Layer(name="conv", type="Conv2d", parameters=1_000, input_shape=[3, 32, 32], output_shape=[64, 32, 32],
                 flops=1_000_000_000, dtype_bytes=4)
    fc = Layer(name="fc", type="Linear", parameters=4_000_000, input_shape=[1000], output_shape=[4000],
               flops=8_000_000, dtype_bytes=4)
    c = T.layer_time(conv, 64, a100, False, 1, 0.4, 0.7)
    assert c.precision == "tf32" and c.flops_ms == pytest.approx(64e9 / (156e12 * 0.4) * 1e3)      # 1.026 ms
    # bytes: weights 4 kB + (input 3072 + output 65536 × (1 + 2 activation passes)) × 64 × 4 B = 51.1 MB
    assert c.bytes_ms == pytest.approx((4_000 + (3_072 + 65_536 * 3) * 64 * 4) / (1555e9 * 0.7) * 1e3)
    assert not c.memory_bound and c.ms == c.flops_ms
    f = T.layer_time(fc, 2, a100, False, 1, 0.4, 0.7)
    assert f.precision == "fp32" and f.flops_ms == pytest.approx(16e6 / (19.5e12 * 0.4) * 1e3)     # 0.002 ms
    assert f.memory_bound and f.ms == pytest.approx((16e6 + (1000 + 4000 * 3) * 2 * 4) / (1555e9 * 0.7) * 1e3)
    back = T.layer_time(conv, 64, a100, False, 2, 0.4, 0.7)
    assert back.flops_ms == pytest.approx(2 * c.flops_ms) and back.bytes_ms == pytest.approx(2 * c.bytes_ms)
    assert T.layer_time(conv, 64, a100, True, 1, 0.4, 0.7).precision == "fp16"                    # AMP
    v100 = find_gpu("V100-SXM2-32GB")
    assert T.layer_time(conv, 64, v100, False, 1, 0.4, 0.7).precision == "fp32"                   # no TF32 before Ampere


def test_analytic_gpu_forward_is_the_sum_of_its_layers() -> None:
    """A CPU profile predicted on an A100: forward = Σ per-layer max(FLOPs, bytes) of LAYERS (conv 300, linear 100
    FLOPs per image, 1 M and 10 M parameters: both memory-bound), backward twice that."""
    p = profile_of(cpu_run())
    p.model = ModelInfo(parameters=11_000_000, parameter_bytes=44_000_000, layers=LAYERS)
    a100 = find_gpu("A100-PCIE-40GB")
    pred = predict(p, Target("single", 1, "cuda", 64, 5.0, 1, gpu=a100))
    moved = (4_000_000 + (1 + 3) * 64 * 4) + (40_000_000 + (1 + 3) * 64 * 4)      # weights + activations, bytes
    assert term(pred, "forward").ms == pytest.approx(moved / (1555e9 * 0.7) * 1e3)
    assert term(pred, "backward").ms == pytest.approx(2 * term(pred, "forward").ms)
    assert "memory-bound: a, b" in term(pred, "forward").basis and "1 layer(s) in tf32" in term(pred, "forward").basis
