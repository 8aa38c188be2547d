"""The classification table: one rule set, both trace forms, unknowns visible."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.step.breakdown import resolve
from analysis.step.classify import (CATEGORY_OF_KIND, DEVICE_CATEGORY_OF_KIND, KERNEL_CATS, Kind, category_mask, classify,
                               classify_one, memcpy_kind, step_number)
from analysis.trace.reader import parse_trace
from profiler.contract import vocab
from builders.kineto import NEW, TraceBuilder


@pytest.mark.parametrize("cat,name,kind", [
    ("user_annotation", "ProfilerStep#12", Kind.STEP),
    ("Operator", "ProfilerStep#5", Kind.STEP),
    ("gpu_user_annotation", "ProfilerStep#1", Kind.IGNORE),                 # GPU mirror of the step
    ("cpu_op", "ProfilerStep#5 extra", Kind.HOST_OP),
    ("kernel", "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)", Kind.GPU_COMM),
    ("kernel", "ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", Kind.GPU_COMM),
    ("Kernel", "volta_sgemm_128x64_nn", Kind.GPU_COMPUTE),
    ("kernel", "void at::native::vectorized_elementwise_kernel<4>(int)", Kind.GPU_COMPUTE),
    ("gpu_memcpy", "Memcpy PtoP (Device -> Device)", Kind.GPU_COMM),
    ("Memcpy", "Memcpy DtoD (Device -> Device)", Kind.GPU_COMM),
    ("gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", Kind.GPU_H2D),
    ("Memcpy", "Memcpy DtoH (Device -> Pageable)", Kind.GPU_H2D),
    ("gpu_memset", "Memset (Device)", Kind.GPU_COMPUTE),
    ("cuda_runtime", "cudaLaunchKernel", Kind.HOST_RUNTIME),
    ("cuda_driver", "cuLaunchKernel", Kind.HOST_RUNTIME),
    ("Runtime", "cudaMemcpyAsync", Kind.HOST_RUNTIME),
    ("cpu_op", "aten::conv2d", Kind.HOST_OP),
    ("Operator", "aten::conv2d", Kind.HOST_OP),
    ("user_annotation", vocab.FORWARD, Kind.HOST_LABEL),
    ("Operator", vocab.BACKWARD, Kind.HOST_LABEL),
    ("user_annotation", vocab.DATA_WAIT, Kind.HOST_DATA),
    ("user_annotation", "enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__", Kind.HOST_DATA),
    ("Operator", "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", Kind.HOST_DATA),
    ("user_annotation", "enumerate(DataPipe)#ShufflerIterDataPipe", Kind.HOST_DATA),
    ("user_annotation", "gloo:all_reduce", Kind.HOST_COMM),
    ("user_annotation", "nccl:broadcast", Kind.HOST_COMM),
    ("cpu_op", "c10d::allreduce_", Kind.HOST_COMM),
    ("user_annotation", vocab.SCATTER, Kind.HOST_DP_COMM),
    ("user_annotation", vocab.REPLICATE, Kind.HOST_DP_COMM),
    ("user_annotation", vocab.GATHER, Kind.HOST_DP_COMM),
    ("user_annotation", vocab.PARALLEL_APPLY, Kind.HOST_LABEL),              # replicas' compute, not comm
    ("cpu_op", "autograd::engine::evaluate_function: BroadcastBackward", Kind.HOST_DP_COMM),
    ("cpu_op", "autograd::engine::evaluate_function: ReduceAddCoalescedBackward", Kind.HOST_DP_COMM),
    ("cpu_op", "Gather", Kind.HOST_DP_COMM),
    ("cpu_op", "aten::gather", Kind.HOST_OP),                                # torch.gather is compute
    ("cpu_op", "autograd::engine::evaluate_function: ScatterBackward0", Kind.HOST_OP),
    ("python_function", "train.py(12): <module>", Kind.IGNORE),
    ("Trace", "PyTorch Profiler (0)", Kind.IGNORE),
    ("mtia_frobnicate", "x", Kind.UNKNOWN),
    ("", "", Kind.UNKNOWN),
])
def test_table(cat: str, name: str, kind: Kind) -> None:
    assert classify_one(cat, name) is kind


def test_classify_vectorised_matches_the_table() -> None:
    b = TraceBuilder(NEW)
    b.step(1, 0, 10)
    b.kernel("ncclKernel_Broadcast_RING_LL_Sum_int8_t", 1, 2)
    b.memcpy("PtoP", 3, 1)
    b.raw({"ph": "X", "cat": "weird", "name": "w", "pid": 1, "tid": 1, "ts": 5, "dur": 1})
    t = parse_trace(b.bytes())
    kinds = classify(t)
    for i in range(len(t)):
        assert kinds[i] == classify_one(t.cats[t.cat[i]], t.names[t.name[i]])
    assert (kinds == Kind.UNKNOWN).sum() == 1


def test_helpers() -> None:
    assert memcpy_kind("Memcpy HtoD (Pageable -> Device)") == "HtoD"
    assert memcpy_kind("Memcpy PtoP (Device -> Device)") == "PtoP"
    assert memcpy_kind("odd") == "other"
    assert step_number("ProfilerStep#42") == 42 and step_number("aten::mm") is None


def test_every_kind_of_work_feeds_exactly_one_breakdown_category() -> None:
    """Overlays and the step window feed none; everything else (unknown included) exactly one, in vocab order."""
    fed = [k for r in CATEGORY_OF_KIND for k in r.kinds]
    assert sorted(fed) == sorted(set(Kind) - {Kind.IGNORE, Kind.STEP})
    assert [r.category for r in CATEGORY_OF_KIND] == [c for c in vocab.CATEGORIES if c != vocab.IDLE]
    assert [(r.category, r.kinds) for r in DEVICE_CATEGORY_OF_KIND] == [
        (vocab.COMPUTE, (Kind.GPU_COMPUTE,)), (vocab.COMMUNICATION, (Kind.GPU_COMM,)), (vocab.H2D_COPY, (Kind.GPU_H2D,))]


def test_dataparallel_copies_are_communication_only_when_launched_inside_its_span_on_that_thread() -> None:
    b = TraceBuilder(NEW)
    b.step(1, 0, 100)
    b.label(vocab.REPLICATE, 0, 20)
    b.kernel("copy_kernel", 5, 5, launch=2)                # inside replicate, same thread: communication
    b.kernel("copy_kernel", 15, 5, launch=3, tid=99)       # same instant, another thread: compute
    b.kernel("gemm", 30, 5, launch=25)                     # after the span: compute
    t = parse_trace(b.bytes())
    ev = resolve(t)
    kernels = np.flatnonzero(category_mask(t, KERNEL_CATS))
    assert [Kind(k) for k in ev.kind[kernels]] == [Kind.GPU_COMM, Kind.GPU_COMPUTE, Kind.GPU_COMPUTE]
