"""Our breakdown against what the peer tools report for the same real GPU traces.

Reads ../shared/anchors (next to the repo) and skips with the reason when it is absent,
as it is in a user's clone. Numbers: anchors/tb_plugin/expected/*.json (the TensorBoard
profiler plugin 0.4.3) and anchors/hta/expected/*.v050.txt (HTA 0.5.0).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from analysis.step import intervals as iv
from analysis.step.breakdown import resolve, analyse_trace
from analysis.step.classify import Kind
from analysis.trace.reader import read_trace
from conftest import ANCHORS, hta_kept_compute
from profiler.contract import vocab

pytestmark = pytest.mark.skipif(not ANCHORS.is_dir(), reason=f"peer reference traces not present at {ANCHORS}")


def _plugin_expected() -> dict[tuple[str, str], dict]:
    rows = json.loads((ANCHORS / "tb_plugin" / "expected" / "tb_plugin_0.4.3_breakdown.json").read_text())
    return {(r["run"], ",".join(r["steps"])): r for r in rows}


@pytest.mark.parametrize("run", ["resnet50_num_workers_0", "resnet50_num_workers_4"])
def test_tb_plugin_data_loading_and_compute_shares(run: str) -> None:
    """Within 2 points of the plugin's DataLoader and Kernel shares, span by span.

    Same step windows as the plugin (each ProfilerStep stretched to the end of the GPU
    work it launched, starting no earlier than the previous one's end). Our compute also
    holds Memset (the plugin's separate 0.05-0.07 %); our data loading sits below
    host->device copies, the plugin's below runtime calls — neither moves it by 0.1 point here.
    """
    expected = _plugin_expected()
    files = sorted((ANCHORS / "tb_plugin" / run).glob("*.pt.trace.json.gz"))
    assert len(files) == 2, "two profiling spans per run"
    for f in files:
        a = analyse_trace(f)
        key = (run, ",".join(str(s.step) for s in a.steps))
        assert key in expected, f"{f.name}: steps {key[1]} not among the plugin's spans"
        parts = expected[key]["parts"]
        wall = a.mean_step_us()
        assert wall == pytest.approx(expected[key]["avg_step_us"], abs=1)     # same windows to the µs
        mean = a.mean_parts_us()
        ours_dl, ours_c = 100 * mean[vocab.DATA_LOADING] / wall, 100 * mean[vocab.COMPUTE] / wall
        assert ours_dl == pytest.approx(parts["DataLoader"][1], abs=2.0)
        assert ours_c == pytest.approx(parts["Kernel"][1], abs=2.0)
        assert mean[vocab.UNCLASSIFIED] == 0 and a.unclassified == {}
        (gpu,) = a.devices
        assert gpu.index == 0 and gpu.kernel_count > 8000


def _hta_table(name: str) -> dict[int, dict[str, float]]:
    """Per rank: the columns of HTA's get_temporal_breakdown table."""
    text = (ANCHORS / "hta" / "expected" / f"{name}.v050.txt").read_text()
    block = text.split("== get_temporal_breakdown")[1].split("==")[0].strip().splitlines()[1:]
    header = block[0].split()
    out = {}
    for line in block[1:]:
        cells = line.split()[1:]
        row = dict(zip(header, map(float, cells)))
        out[int(row["rank"])] = row
    return out


@pytest.mark.parametrize("folder,table,rank_of", [
    ("trace_filter/sampled_rank-0.json.gz", "trace_filter_2rank", 0),
    ("trace_filter/sampled_rank-1.json.gz", "trace_filter_2rank", 1),
    ("critical_path/alexnet/benchmark_result_2869224_1695835535_trace.json.gz", "critical_path_alexnet", 0),
])
def test_hta_compute_time_within_2_percent(folder: str, table: str, rank_of: int) -> None:
    path = ANCHORS / "hta" / folder
    a = analyse_trace(path)
    hta = _hta_table(table)[rank_of]["compute_time(us)"]
    ours = hta_kept_compute(a)
    assert ours == pytest.approx(hta, rel=0.02)
    # the device view covers every step: the same GPU's compute
    assert a.devices[0].compute_us == pytest.approx(sum(s.parts_us[vocab.COMPUTE] for s in a.steps))


def test_hta_nccl_trace_compute_and_communication() -> None:
    """nccl_parser_config has fractional-µs timestamps. HTA 0.5 rounds every event inward to
    whole µs there (ceil start, floor end: trace_parser.round_down_time_stamps), losing up to
    ~1 µs per kernel — 2.4 % of this trace's short kernels. So: within 2 % once that rounding
    loss (at most 1 µs x kernels kept) is allowed for, and never below HTA's figure."""
    path = ANCHORS / "hta" / "nccl_parser_config" / "nccl_data.json.gz"
    a = analyse_trace(path)
    hta = _hta_table("nccl_parser_config")[0]["compute_time(us)"]
    ours = hta_kept_compute(a)
    tr = read_trace(path)
    ev = resolve(tr)
    last_step_start = a.steps[-1].start_us - tr.t0_us
    kept = (ev.kind == Kind.GPU_COMPUTE) & (ev.launch_ts < last_step_start)
    assert hta <= ours <= hta * 1.02 + np.count_nonzero(kept) * 1.0

    # communication holds the AllReduce and the Broadcast kernels
    comm_names = {tr.names[i] for i in np.unique(tr.name[ev.kind == Kind.GPU_COMM])}
    assert any(n.startswith("ncclKernel_AllReduce") for n in comm_names)
    assert any(n.startswith("ncclKernel_Broadcast") for n in comm_names)
    nccl = ev.kind == Kind.GPU_COMM
    nccl &= np.array([n.startswith("ncclKernel") for n in tr.names])[tr.name]
    windows = np.array([[s.start_us - tr.t0_us, s.end_us - tr.t0_us] for s in a.steps])
    exposed = iv.subtract(iv.intersect(ev.spans(nccl), iv.union(windows)), ev.spans(ev.kind == Kind.GPU_COMPUTE))
    assert sum(s.parts_us[vocab.COMMUNICATION] for s in a.steps) >= iv.total(exposed) > 10_000
    # HTA's kernel table: AllReduce 24204 µs + Broadcast 74 µs in the kept steps
    kept_nccl = nccl & (ev.launch_ts < last_step_start)
    assert iv.total(ev.spans(kept_nccl)) == pytest.approx(24204 + 74, rel=0.02)
    assert a.comm_overlap is not None and 0.05 < a.comm_overlap < 0.3     # HTA: 14.31 % (kept steps only)


@pytest.mark.parametrize("rel_path", [
    "amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "distributed_info_unavailable/distributed_info_not_found.json.gz",
    "with_gpu_user_annotation/step_based_trace_2543932.json.gz",
])
def test_other_hta_traces_analyse_cleanly(rel_path: str) -> None:
    a = analyse_trace(ANCHORS / "hta" / rel_path)
    assert a.steps and a.unclassified == {}
    for s in a.steps:
        assert sum(s.parts_us.values()) == pytest.approx(s.wall_us)
    if "distributed_info" in rel_path:      # GPU events stripped: a CPU trace; nccl:all_to_all is communication
        assert not a.has_gpu and a.steps[0].parts_us[vocab.COMMUNICATION] > 0
        assert a.steps[0].parts_us[vocab.DATA_LOADING] > 0
    else:
        assert a.has_gpu and re.match(r"pid \S+ gpu \d+", a.devices[0].device)
