"""Op level: each op summed by name, phase and device over the profiled steps, the run's top ops, and the
1-device-vs-N op diff per image -- on built traces with known op times, and against Holistic Trace
Analysis' kernel breakdown of the real A100 AlexNet trace."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis import Analysis
from analysis.step.breakdown import analyse_trace
from builders.kineto import TraceBuilder, dp_step
from conftest import ANCHORS
from profiler.contract import vocab

ALEXNET = ANCHORS / "hta" / "critical_path" / "alexnet" / "benchmark_result_2869224_1695835535_trace.json.gz"
HTA_EXPECTED = ANCHORS / "hta" / "expected" / "critical_path_alexnet.v050.txt"


def _cpu_rank(path: Path, adam_us: float, allreduce_us: float = 0.0, steps: int = 2) -> None:
    """A CPU process's steps: forward holds aten::mm 300 µs, backward aten::mm 500 µs (+ a gloo all-reduce),
    the optimizer aten::_foreach_addcdiv_ `adam_us` -- ops flat under the labels, 2 steps."""
    b = TraceBuilder()
    t = 0.0
    for n in range(1, steps + 1):
        step = 300 + 500 + allreduce_us + adam_us
        b.step(n, t, step)
        b.label(vocab.FORWARD, t, 300)
        b.op("aten::mm", t, 300)
        b.label(vocab.BACKWARD, t + 300, 500 + allreduce_us)
        b.op("aten::mm", t + 300, 500)
        if allreduce_us:
            b.op("gloo:all_reduce", t + 800, allreduce_us)
        b.label(vocab.OPTIMIZER, t + 800 + allreduce_us, adam_us)
        b.op("aten::_foreach_addcdiv_", t + 800 + allreduce_us, adam_us)
        t += step
    b.write(path)


def test_cpu_ddp_against_single_per_image(tmp_path: Path) -> None:
    """Two DDP ranks on 32 images each, each updating every parameter in 3.2× the single run's optimizer time:
    the optimizer op takes 2 × 3.2 = 6.4× the device-time per image; gloo's all-reduce is new."""
    _cpu_rank(tmp_path / "single-1cpu-b64" / "w.1.pt.trace.json", adam_us=250)
    for r in (0, 1):
        _cpu_rank(tmp_path / "ddp-2cpu-b64" / f"rank{r}.1.pt.trace.json", adam_us=800, allreduce_us=100)
    a = Analysis(tmp_path)
    summary = {r["name"]: r for r in a.summary()["runs"]}
    single = summary["single-1cpu-b64"]
    assert [(o["name"], o["phase"], o["ms_per_step"], o["calls_per_step"]) for o in single["top_ops"]] == [
        ("aten::mm", "backward", 0.5, 1.0), ("aten::mm", "forward", 0.3, 1.0),
        ("aten::_foreach_addcdiv_", "optimizer", 0.25, 1.0)]
    assert single["top_ops"][0]["share"] == pytest.approx(0.5 / 1.05)
    assert single["op_diff"] == [] and single["op_diff_base"] is None
    ddp = summary["ddp-2cpu-b64"]
    assert ddp["op_diff_base"] == "single-1cpu-b64"
    rows = {(r["name"], r["phase"]): r for r in ddp["op_diff"]}
    adam = rows[("aten::_foreach_addcdiv_", "optimizer")]
    assert (adam["base_ms_per_image"], adam["ms_per_image"]) == pytest.approx((0.25 / 64, 2 * 0.8 / 64))
    assert adam["ratio"] == pytest.approx(6.4) and adam["change"] == "grew"
    gloo = rows[("gloo:all_reduce", "backward")]
    assert (gloo["base_ms_per_image"], gloo["ms_per_image"], gloo["ratio"], gloo["change"]) == (
        0.0, pytest.approx(2 * 0.1 / 64), None, "new")
    assert gloo["category"] == vocab.COMMUNICATION and adam["category"] == vocab.COMPUTE
    mm = rows[("aten::mm", "backward")]        # each rank takes as long on 32 images as the single run on 64
    assert (mm["ratio"], mm["change"]) == (pytest.approx(2.0), "grew")
    assert ddp["op_diff"][0]["name"] == "aten::_foreach_addcdiv_"      # the most device-time added per image
    table = a.view.table("What changed, op by op")
    assert table is not None and table.rows[0][:5] == ["ddp-2cpu-b64", "single-1cpu-b64", "aten::_foreach_addcdiv_",
                                                       "optimizer", "compute"]
    assert table.rows[0][-2:] == ["6.4×", "grew"]


def test_dataparallel_copies_are_new_and_the_optimizer_shrinks_per_image(tmp_path: Path) -> None:
    """DP over 2 GPUs at twice the batch: the replicate and gather copies appear (new), GPU 0's Adam runs once
    for 128 images instead of 64 (half the time per image), and each op is put under its DataParallel phase."""
    single = TraceBuilder()                   # forward's sgemm, backward's sgemm_bwd, Adam: one GPU, 64 images
    single.step(1, 0, 3400)
    for label, kernel, at, dur in ((vocab.FORWARD, "sgemm", 0, 2000), (vocab.BACKWARD, "sgemm_bwd", 2000, 1000),
                                   (vocab.OPTIMIZER, "adam", 3000, 400)):
        single.label(label, at, dur)
        single.kernel(kernel, at, dur)
    single.write(tmp_path / "single-1gpu-b64" / "w.1.pt.trace.json")
    dp = TraceBuilder()
    dp_step(dp, 1, 0, devices=2, replicate=600, parallel_apply=1400, gather=300, backward=1000, optimizer=400,
            copy_bytes=1 << 20, gather_bytes=1 << 16)
    dp.write(tmp_path / "dp-2gpu-b128" / "w.1.pt.trace.json")
    a = Analysis(tmp_path)
    d = a.report.op_diffs[str(tmp_path / "dp-2gpu-b128")]
    rows = {(c.name, c.phase): c for c in d.rows}
    replicate = rows[("Memcpy PtoP (Device -> Device)", "replicate")]
    assert replicate.change == "new" and replicate.category == vocab.COMMUNICATION
    assert replicate.ms_per_image == pytest.approx(0.6 / 128)          # one copy into GPU 1, the whole phase
    gather = rows[("Memcpy PtoP (Device -> Device)", "gather")]
    assert gather.change == "new" and gather.ms_per_image == pytest.approx(0.15 / 128)
    adam = rows[("adam", "optimizer")]
    assert (adam.ratio, adam.change) == (pytest.approx(0.5), "shrank")
    bwd = rows[("sgemm_bwd", "backward")]                              # GPU 0 alone, as long, for twice the images
    assert (bwd.base_ms_per_image, bwd.ms_per_image) == pytest.approx((1.0 / 64, 1.0 / 128))
    assert rows[("sgemm", "parallel_apply")].change == "new" and rows[("sgemm", "forward")].change == "gone"
    top = {(o.name, o.phase): o for o in a.report.top_ops[str(tmp_path / "dp-2gpu-b128")]}
    assert top[("adam", "optimizer")].ms_per_step == pytest.approx(0.4 / 2)     # per device: GPU 0 only, ÷ 2


def _hta_kernel_sums() -> dict[str, float]:
    """The kernel_metrics_df rows of HTA 0.5.0 (names cut at 70 characters), without its 'others' row."""
    text = HTA_EXPECTED.read_text()
    block = text.split("== kernel_metrics_df")[1].split("==")[0]
    out = {}
    for line in block.splitlines()[2:]:
        m = re.match(r"^\s*\d+\s+(.+?)\s{2,}([\d.]+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(COMPUTATION|MEMORY)", line)
        if m and m.group(1) != "others":
            out[m.group(1)] = float(m.group(2))
    return out


def test_alexnet_kernels_match_holistic_trace_analysis() -> None:
    """The real A100 AlexNet trace: every kernel HTA lists, with the same total µs (the trace has no ProfilerStep,
    so both tools count the whole trace)."""
    expected = _hta_kernel_sums()
    assert len(expected) == 12 and expected["Memcpy HtoD (Pageable -> Device)"] == 55503
    ops = analyse_trace(ALEXNET).ops
    assert {o.device for o in ops} == {"gpu0"}
    for name, total in expected.items():
        mine = [o for o in ops if o.name.startswith(name)]
        assert len(mine) == 1, name
        assert mine[0].total_us == pytest.approx(total, abs=0.5), name
    assert ops[0].name.startswith("Memcpy HtoD") and ops[0].category == vocab.H2D_COPY
    assert sum(o.total_us for o in ops if o.category == vocab.COMPUTE and not o.name.startswith("Memset")) == \
        pytest.approx(10_637 + 55, abs=60)   # HTA's COMPUTATION sum; our compute also counts its tiny kernels


def test_cpu_ops_are_counted_by_self_time(tmp_path: Path) -> None:
    """aten::linear (100 µs) holds aten::addmm (70 µs): 30 µs of linear's own time, 70 of addmm's -- once each."""
    b = TraceBuilder()
    b.step(1, 0, 200)
    b.label(vocab.FORWARD, 0, 200)
    b.op("aten::linear", 10, 100)
    b.op("aten::addmm", 20, 70)
    b.write(tmp_path / "t.pt.trace.json")
    ops = {o.name: o for o in analyse_trace(tmp_path / "t.pt.trace.json").ops}
    assert (ops["aten::linear"].total_us, ops["aten::addmm"].total_us) == (30.0, 70.0)
    assert ops["aten::linear"].phase == "forward" and ops["aten::addmm"].device == "cpu"
