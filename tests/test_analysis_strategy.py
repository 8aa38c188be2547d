"""Strategy recognised from the traces when run.json does not say (foreign runs): rules, figures, anchors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analysis.trace.reader import parse_trace, read_trace
from analysis.api import Analysis
from analysis.step.strategy import FSDP, evidence, recognise
from builders.kineto import TraceBuilder
from conftest import ANCHORS


def _trace(tmp: Path, name: str, steps: int = 2, dp_per_step: int = 0, ddp: bool = False, fsdp: bool = False,
           gpus: int = 1, allreduce: bool = False, world: int | None = None) -> Path:
    b = TraceBuilder()
    for s in range(steps):
        t0 = s * 1000.0
        b.step(s, t0, 900)
        if ddp:
            b.label("DistributedDataParallel.forward", t0 + 10, 100)
        if fsdp:
            b.label("FullyShardedDataParallel.forward", t0 + 10, 100)
        for k in range(dp_per_step):
            b.label("DataParallel.forward", t0 + 10 + 50 * k, 40)
        if allreduce:
            b.op("nccl:all_reduce", t0 + 300, 50)
        for g in range(gpus):
            b.kernel("volta_sgemm", t0 + 200, 100, device=g, launch=t0 + 150)
    doc = b.document()
    if world is not None:
        doc["distributedInfo"] = {"backend": "nccl", "rank": 0, "world_size": world}
    path = tmp / name
    path.write_text(json.dumps(doc))
    return path


def _recognised(*paths: Path) -> tuple[str, int | None, str] | None:
    evs = []
    for p in paths:
        tr = read_trace(p)
        evs.append(evidence(tr, 2, p.name.split(".")[0]))
    r = recognise(evs)
    return None if r is None else (r.strategy, r.devices, r.basis)


def test_each_rule_with_the_figures_it_used(tmp_path: Path) -> None:
    assert _recognised(_trace(tmp_path, "rank0.a.json", ddp=True, world=8)) == (
        "ddp", 8, "2 DistributedDataParallel.forward spans; distributedInfo world size 8 (nccl)")
    assert _recognised(_trace(tmp_path, "w.b.json", dp_per_step=1, gpus=2)) == (
        "dp", 2, "1 DataParallel.forward span per step; kernels on 2 GPU(s) of one process")
    assert _recognised(_trace(tmp_path, "w.c.json", dp_per_step=9, gpus=4)) == (
        "dp-layerwise", 4, "9 DataParallel.forward spans per step (one wrapper per layer); kernels on 4 GPU(s) of one process")
    assert _recognised(_trace(tmp_path, "rank0.d.json", fsdp=True, world=16))[:2] == (FSDP, 16)
    assert _recognised(_trace(tmp_path, "rank0.e.json", allreduce=True, world=4)) == (
        "ddp", 4, "2 all-reduce ops or kernels without a DDP span; distributedInfo world size 4 (nccl)")
    assert _recognised(_trace(tmp_path, "w.f.json"))[:2] == ("single", 1)


def test_two_rank_files_without_a_group_are_ddp_only_with_its_span(tmp_path: Path) -> None:
    a, b = _trace(tmp_path, "rank0.x.json", ddp=True), _trace(tmp_path, "rank1.x.json", ddp=True)
    assert _recognised(a, b)[:2] == ("ddp", 2)
    # two files of one process (two profiling spans) are still one process: single
    assert _recognised(_trace(tmp_path, "worker0.1.json"), _trace(tmp_path, "worker0.2.json"))[:2] == ("single", 1)
    # two processes with nothing that says how they cooperate: not guessed
    assert _recognised(_trace(tmp_path, "p0.y.json"), _trace(tmp_path, "p1.y.json")) is None


def test_distributed_info_is_read_in_both_decode_paths(tmp_path: Path) -> None:
    path = _trace(tmp_path, "rank0.z.json", steps=40, ddp=True, world=128)
    raw = path.read_bytes()
    whole = parse_trace(raw, path)
    chunked = parse_trace(raw.replace(b', {"ph"', b',\n  {"ph"'), path, chunk_bytes=512)   # Kineto's layout, many chunks
    assert whole.distributed == chunked.distributed
    assert (whole.distributed.backend, whole.distributed.rank, whole.distributed.world_size) == ("nccl", 0, 128)
    assert len(chunked) == len(whole)


def test_the_report_names_a_foreign_ddp_run_and_says_why(tmp_path: Path) -> None:
    run = tmp_path / "someones-job"
    run.mkdir()
    _trace(run, "rank0.1.pt.trace.json", ddp=True, world=64)
    _trace(run, "rank1.1.pt.trace.json", ddp=True, world=64)
    s = Analysis([run]).summary()
    row = s["runs"][0]
    assert (row["strategy"], row["devices"]) == ("ddp", 64)
    assert any("strategy ddp recognised from the traces: 4 DistributedDataParallel.forward spans; "
               "distributedInfo world size 64 (nccl)" in n for n in s["notes"])


@pytest.mark.skipif(not ANCHORS.is_dir(), reason="../shared/anchors is not beside this clone (a user's clone)")
def test_the_anchors_are_recognised(tmp_path: Path) -> None:
    want = {"hta/trace_filter": ("ddp", 128), "hta/nccl_parser_config": ("ddp", 2),
            "hta/critical_path/alexnet": ("single", 1), "hta/amd_trace": ("single", 1),
            "tb_plugin/resnet50_num_workers_4": ("single", 1)}
    for rel, (strategy, devices) in want.items():
        run = tmp_path / rel.replace("/", "_")
        shutil.copytree(ANCHORS / rel, run)
        row = Analysis([run]).summary()["runs"][0]
        assert (row["strategy"], row["devices"]) == (strategy, devices), rel
