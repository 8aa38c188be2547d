"""The step breakdown on synthetic traces with hand-computed microseconds, in both trace forms."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import trace_files
from analysis.step.breakdown import analyse, analyse_trace, sweep, worker_name
from analysis.records import TraceAnalysis
from analysis.trace.reader import parse_trace
from profiler.contract import vocab
from builders.kineto import NEW, OLD, TraceBuilder

C, M, H, D, O, U, I = (vocab.COMPUTE, vocab.COMMUNICATION, vocab.H2D_COPY, vocab.DATA_LOADING,
                       vocab.HOST_OVERHEAD, vocab.UNCLASSIFIED, vocab.IDLE)
FORMS = pytest.mark.parametrize("form", [NEW, OLD])


def parts(**kw: float) -> dict[str, float]:
    out = {c: 0.0 for c in vocab.CATEGORIES}
    out.update({{"C": C, "M": M, "H": H, "D": D, "O": O, "U": U, "I": I}[k]: v for k, v in kw.items()})
    return out


def run(b: TraceBuilder) -> TraceAnalysis:
    return analyse(parse_trace(b.bytes(), "synthetic.pt.trace.json"))


def rel(a: TraceAnalysis, b: TraceBuilder, i: int = 0) -> tuple[float, float]:
    s = a.steps[i]
    return s.start_us - b.origin, s.end_us - b.origin


@FORMS
def test_overlapping_kernels_on_two_gpus(form: str) -> None:
    b = TraceBuilder(form)
    b.step(1, 0, 40)
    b.op("aten::conv2d", 0, 8)
    b.kernel("conv_a", 10, 50, device=0, launch=2)     # gpu0 [10, 60)
    b.kernel("conv_b", 50, 20, device=0, launch=4)     # gpu0 [50, 70): overlaps conv_a
    b.kernel("conv_c", 30, 60, device=1, launch=6)     # gpu1 [30, 90): stretches the step to 90
    a = run(b)
    assert a.has_gpu and [s.step for s in a.steps] == [1]
    assert rel(a, b) == (0, 90)
    assert a.steps[0].parts_us == parts(C=80, O=8, I=2)          # idle: [8, 10)
    by = {d.index: d for d in a.devices}
    assert sorted(by) == [0, 1]                                   # never merged
    assert (by[0].compute_us, by[0].idle_us, by[0].kernel_count) == (60, 30, 2)
    assert (by[1].compute_us, by[1].idle_us, by[1].kernel_count) == (60, 30, 1)
    assert by[0].device == "pid 4242 gpu 0" and by[0].wall_us == 90


@FORMS
def test_dataparallel_step_peer_copies_on_gpu0_while_others_idle(form: str) -> None:
    b = TraceBuilder(form)
    b.step(3, 0, 90)
    b.label(vocab.SCATTER, 0, 20)
    b.memcpy("PtoP", 5, 20, device=0, launch=2, nbytes=2_000_000)          # scatter copy: communication
    b.label(vocab.REPLICATE, 20, 8)
    b.label(vocab.PARALLEL_APPLY, 28, 30)
    b.kernel("gemm", 30, 30, device=0, launch=29)                            # replica 0 forward
    for r, tid in ((1, 201), (2, 202), (3, 203)):
        b.label(vocab.FORWARD, 30, 20, tid=tid)
        b.kernel("gemm", 30, 5, device=r, launch=31, tid=tid)                # replicas 1-3: tiny
    b.op("Gather", 60, 10)                                                   # DP gather on the host
    b.kernel("elementwise_copy", 62, 10, device=0, launch=61)               # its kernel: communication
    b.op("aten::gather", 72, 3)                                              # torch.gather: compute
    b.kernel("gather_kernel", 75, 5, device=0, launch=73)
    a = run(b)
    assert rel(a, b) == (0, 90)
    assert a.steps[0].parts_us == parts(C=35, M=30, O=15, I=10)
    by = {d.index: d for d in a.devices}
    assert (by[0].compute_us, by[0].communication_us, by[0].idle_us) == (35, 30, 25)
    for r in (1, 2, 3):
        assert (by[r].compute_us, by[r].communication_us, by[r].idle_us) == (5, 0, 85)
    assert a.phase_totals_us[vocab.SCATTER] == 20 and a.phase_totals_us[vocab.REPLICATE] == 8
    assert a.phase_totals_us[vocab.PARALLEL_APPLY] == 30
    assert a.phase_totals_us[vocab.FORWARD] == 20           # replica threads: wall time, not thread time
    assert [(m.kind, m.count, m.bytes, m.dur_us) for m in a.memcpy] == [("PtoP", 1, 2_000_000, 20)]
    assert a.memcpy[0].gbps == pytest.approx(100.0)    # 2 MB in 20 µs


@FORMS
def test_step_without_gpu_work_starts_where_the_previous_one_ended(form: str) -> None:
    b = TraceBuilder(form)
    b.step(1, 0, 50)
    b.op("aten::add", 0, 5)
    b.kernel("add", 10, 50, launch=2)                      # runs past the host step: [10, 60)
    b.step(2, 55, 45)                                      # host [55, 100), no GPU work
    b.op("aten::item", 60, 20)
    b.label(vocab.DATA_WAIT, 80, 10)
    a = run(b)
    assert [rel(a, b, i) for i in range(2)] == [(0, 60), (60, 100)]
    assert a.steps[0].parts_us == parts(C=50, O=5, I=5)
    assert a.steps[1].parts_us == parts(O=20, D=10, I=10)
    assert a.phase_totals_us[vocab.DATA_WAIT] == 10


@FORMS
def test_cpu_only_nested_labels_and_gloo(form: str) -> None:
    b = TraceBuilder(form)
    b.step(7, 0, 100)
    b.label(vocab.DATA_WAIT, 0, 20)
    b.label("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 2, 16)
    b.op("aten::stack", 5, 5)                              # collate: data loading, not compute
    b.label(vocab.FORWARD, 20, 30)
    b.op("aten::conv2d", 22, 18)
    b.op("aten::convolution", 23, 16)                      # nested op: counted once
    b.label(vocab.LOSS, 50, 5)
    b.op("aten::cross_entropy_loss", 51, 3)
    b.label(vocab.BACKWARD, 55, 25)
    b.op("autograd::engine::evaluate_function: ConvolutionBackward0", 56, 18)
    b.label("gloo:all_reduce", 70, 8)                      # half hidden under backward compute
    b.label(vocab.OPTIMIZER, 80, 15)
    b.op("Optimizer.step#Adam.step", 81, 9)
    a = run(b)
    assert not a.has_gpu
    assert a.steps[0].parts_us == parts(C=48, M=4, D=20, O=23, I=5)
    assert a.comm_overlap == pytest.approx(0.5)
    assert a.phase_totals_us == {vocab.DATA_WAIT: 20, vocab.FORWARD: 30, vocab.LOSS: 5, vocab.BACKWARD: 25,
                                 vocab.OPTIMIZER: 15, vocab.TORCH_DATALOADER: 16}
    (cpu,) = a.devices
    assert (cpu.device, cpu.index, cpu.compute_us, cpu.communication_us, cpu.idle_us) == ("cpu", -1, 48, 4, 48)


@FORMS
def test_ddp_allreduce_overlap_with_compute_kernels(form: str) -> None:
    b = TraceBuilder(form)
    b.step(1, 0, 10)
    b.kernel("conv_bwd", 0, 40, launch=1)
    b.kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 30, 20, launch=2, stream=20)
    b.memcpy("HtoD", 50, 10, launch=3, bandwidth=2.0)      # bytes from GB/s x µs
    a = run(b)
    assert a.steps[0].parts_us == parts(C=40, M=10, H=10)   # the launches [1, 4) hide under compute
    assert a.comm_overlap == pytest.approx(0.5)
    assert [(m.kind, m.bytes) for m in a.memcpy] == [("HtoD", 20_000)]


def test_no_profiler_step_is_one_step_with_a_note() -> None:
    b = TraceBuilder(NEW)
    b.op("aten::mm", 0, 10)
    b.kernel("gemm", 20, 10, launch=5)
    a = run(b)
    assert [s.step for s in a.steps] == [-1]
    assert any("no ProfilerStep" in n for n in a.notes)
    assert rel(a, b) == (0, 30)                              # first to last event; the profiler span is not work
    assert a.steps[0].parts_us == parts(C=10, O=10, I=10)


def test_unknown_events_are_counted_and_shown_never_dropped() -> None:
    b = TraceBuilder(NEW)
    b.step(1, 0, 100)
    b.raw({"ph": "X", "cat": "mystery_accelerator", "name": "frob", "pid": 1, "tid": 1, "ts": b.origin + 10, "dur": 30})
    b.op("aten::mul", 20, 5)
    b.kernel("mul", 22, 5, launch=21)                        # a GPU trace: host ops are overhead
    a = run(b)
    assert a.unclassified == {"frob": 1}
    assert a.steps[0].parts_us == parts(C=5, O=2, U=23, I=70)
    assert any("unclassified" in n for n in a.notes)


def test_parts_sum_to_wall_and_priority_order() -> None:
    sets = [(C, [[0, 10]]), (M, [[5, 20]]), (H, [[0, 30]]), (D, [[25, 40]]), (O, [[0, 50]]), (U, [[45, 60]])]
    p = sweep([(c, np.array(s, float)) for c, s in sets], 0, 70)
    assert p == parts(C=10, M=10, H=10, D=10, O=10, U=10, I=10)


def test_analyse_trace_reads_files_and_names_the_worker(tmp_path: Path) -> None:
    b = TraceBuilder(NEW)
    b.step(1, 0, 10)
    b.op("aten::relu", 0, 4)
    path = b.write(tmp_path / "rank1.1700000000123.pt.trace.json.gz")
    a = analyse_trace(path)
    assert a.worker == "rank1" and a.path == path
    assert a.steps[0].parts_us == parts(C=4, I=6)            # CPU trace, no labels: ops are compute
    assert any("without phase labels" in n for n in a.notes)
    assert worker_name(Path("node1.cluster.edu_77.1623143089861.pt.trace.json")) == "node1.cluster.edu_77"
    assert worker_name(Path("nccl_data.json.gz")) == "nccl_data"


def test_real_cpu_trace_fixture() -> None:
    a = analyse_trace(Path(__file__).parent / "data" / "cpu_single_tiny.pt.trace.json.gz")
    assert not a.has_gpu and [s.step for s in a.steps] == [2, 3]
    for s in a.steps:
        assert sum(s.parts_us.values()) == pytest.approx(s.wall_us)
        assert s.parts_us[C] > 0 and s.parts_us[D] > 0 and s.parts_us[M] == 0
        assert s.parts_us[U] == 0
    assert set(vocab.TRAIN_STEP_PHASES) <= set(a.phase_totals_us)
    assert a.unclassified == {}


def test_real_runner_traces(tiny_runs: Path) -> None:
    """Traces written by `python -m models.train` (the session's tiny_runs fixture)."""
    files = trace_files(tiny_runs)
    assert len(files) == 3, files                            # single: 1 trace; ddp: one per rank
    for f in files:
        a = analyse_trace(f)
        assert a.steps and all(s.step >= 0 for s in a.steps), f
        for s in a.steps:
            assert sum(s.parts_us.values()) == pytest.approx(s.wall_us), f
        assert vocab.FORWARD in a.phase_totals_us and vocab.BACKWARD in a.phase_totals_us, f
        assert a.unclassified == {}, f"{f}: {a.unclassified}"
        if "ddp" in f.parent.name:                          # gloo on CPU: the all-reduce is there
            assert a.comm_overlap is not None, f


@pytest.mark.parametrize("rank", [0, 1])
def test_real_ddp_gloo_cpu_traces(rank: int) -> None:
    """A real 2-process gloo DDP run on CPU: gloo:all_reduce is communication, partly hidden by backward."""
    a = analyse_trace(Path(__file__).parent / "data" / f"ddp_gloo_rank{rank}_tiny.pt.trace.json.gz")
    assert not a.has_gpu and a.worker == f"ddp_gloo_rank{rank}_tiny" and [s.step for s in a.steps] == [2, 3]
    for s in a.steps:
        assert s.parts_us[C] > 0 and s.parts_us[U] == 0
        assert sum(s.parts_us.values()) == pytest.approx(s.wall_us)
    assert sum(s.parts_us[M] for s in a.steps) > 0           # the exposed part of the all-reduce
    assert a.comm_overlap is not None and 0 < a.comm_overlap < 1
    assert {vocab.FORWARD, vocab.BACKWARD, vocab.OPTIMIZER, vocab.TORCH_DDP_FORWARD} <= set(a.phase_totals_us)
    (cpu,) = a.devices
    assert cpu.communication_us == pytest.approx(sum(s.parts_us[M] for s in a.steps))
