"""Run discovery, run.json and samples.csv through the contract, and per-run error isolation (analysis.run.analyse)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from analysis.trace.errors import TraceError
from analysis.trace.errors import InputError
from analysis.run.analyse import analyse_run
from analysis.run.discover import discover_runs, find_traces
from analysis.run.samples import summarise
from profiler.contract import vocab
from profiler.contract.samples import read_samples
from builders.kineto import labelled_trace
from builders.runs import SAMPLES, run_info, trace, write_run


def test_discover_finds_nested_runs_and_skips_hidden(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep", "single-1gpu-b64", run_info("single-1gpu-b64", "single", 1, 64))
    (tmp_path / "sweep" / "dp-2gpu-b128").mkdir()
    (tmp_path / "sweep" / "dp-2gpu-b128" / "run.json").write_text("{}")         # run.json only (no traces)
    labelled_trace().write(tmp_path / "bare" / "worker0.1.pt.trace.json")  # traces only, plain JSON
    labelled_trace().write(tmp_path / ".hidden" / "x" / "rank0.1.pt.trace.json.gz")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("nothing")
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in discover_runs([tmp_path])]
    assert found == ["bare", "sweep/dp-2gpu-b128", "sweep/single-1gpu-b64"]


def test_discover_sniffs_oddly_named_kineto_json(tmp_path: Path) -> None:
    """HTA's test traces are named *.json.gz; they count only if they hold traceEvents."""
    labelled_trace().write(tmp_path / "hta" / "sampled_rank-0.json.gz")
    (tmp_path / "expected").mkdir()
    (tmp_path / "expected" / "breakdown.json").write_text(json.dumps({"Kernel": 1}))
    (tmp_path / "expected" / "broken.json.gz").write_bytes(b"\x1f\x8b not gzip")
    assert discover_runs([tmp_path]) == [(tmp_path / "hta").resolve()]
    assert [p.name for p in find_traces(tmp_path / "hta")] == ["sampled_rank-0.json.gz"]


def test_named_traces_win_over_other_json(tmp_path: Path) -> None:
    d = tmp_path / "r"
    labelled_trace().write(d / "rank1.2.pt.trace.json.gz")
    labelled_trace().write(d / "rank0.2.pt.trace.json.gz")
    labelled_trace().write(d / "other.json")
    (d / "run.json").write_text("{}")
    assert [p.name for p in find_traces(d)] == ["rank0.2.pt.trace.json.gz", "rank1.2.pt.trace.json.gz"]


def test_discover_missing_path_is_one_line_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        discover_runs([tmp_path / "nope"])
    assert "nope" in str(e.value) and "\n" not in str(e.value)
    assert discover_runs([tmp_path]) == []


def test_a_file_path_means_its_folder(tmp_path: Path) -> None:
    p = labelled_trace().write(tmp_path / "r" / "rank0.1.pt.trace.json.gz")
    assert discover_runs([p]) == [(tmp_path / "r").resolve()]


def test_run_json_missing_and_corrupt_are_reported_not_raised(tmp_path: Path) -> None:
    bare = analyse_run(tmp_path, analyser=lambda p: trace())
    assert bare.run is None and bare.errors == [] and bare.name == tmp_path.name
    (tmp_path / "run.json").write_text('{"name": ')
    ra = analyse_run(tmp_path, analyser=lambda p: trace())
    assert ra.run is None and len(ra.errors) == 1 and "run.json" in ra.errors[0] and "\n" not in ra.errors[0]


def test_schema_1_run_json_is_upgraded_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({
        "schema": 1, "name": "dp-layerwise-4gpu-b256", "config": {"strategy": "dp-layerwise", "devices": 4},
        "model": {"parameters": 10, "parameter_bytes": 40, "layers": [{"name": "fc", "type": "Linear",
                                                                     "parameters": 10}]},
        "environment": {"cpus_allowed": [0, 1, 2]}}))
    ra = analyse_run(tmp_path, analyser=lambda p: trace())
    assert ra.run is not None and ra.run.model.layers is None
    assert ra.run.environment.cpu_allocation is not None
    assert (ra.run.environment.cpu_allocation.cpus, ra.run.environment.cpu_allocation.source) == (3, "affinity")
    assert ra.notes == ["run.json schema 1: no layer shapes: per-layer traffic not estimated"]


def test_samples_summary_and_series_from_one_read(tmp_path: Path) -> None:
    p = tmp_path / "samples.csv"
    p.write_text(SAMPLES)   # ends with a half-written row, as a killed sampler leaves it
    s = summarise(read_samples(p))
    assert s.rows == 19
    assert s.gpu_util_pct == {"0": 80.0, "1": 30.0} and s.mean_gpu_util_pct == 55.0
    assert s.pcie_tx_kbps_max == {"0": 2000000.0}
    assert s.tree_cpu_cores == 2.5 and s.tree_cpu_cores_max == 3.5
    assert s.host_cpu_pct == 75.0 and s.main_cpu_pct == 90.0 and s.children_cpu_pct == 200.0
    assert s.peak_rss_mib == 1500.0          # main + workers at the same instant
    assert s.duration_s == pytest.approx(0.1)
    assert s.series_of(vocab.SOURCE_NVML, vocab.GPU_UTIL)["0"] == ([0.0, 0.1], [90.0, 70.0])
    assert s.series_of(vocab.SOURCE_PROC, vocab.CPU_CORES)[vocab.PROC_TREE] == ([0.0, 0.1], [3.5, 1.5])


def test_samples_absent_or_host_only(tmp_path: Path) -> None:
    assert summarise(read_samples(tmp_path / "samples.csv")).rows == 0
    p = tmp_path / "samples.csv"
    p.write_text("time_ns,source,device,metric,value\n5,host,all,cpu_pct,40\n")
    s = summarise(read_samples(p))
    assert s.gpu_util_pct == {} and s.mean_gpu_util_pct is None and s.tree_cpu_cores is None and s.host_cpu_pct == 40.0


def test_samples_csv_is_read_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.run.analyse as runs

    d = write_run(tmp_path, "single-1gpu-b64", run_info("single-1gpu-b64", "single", 1, 64), samples=SAMPLES)
    reads: list[Path] = []
    monkeypatch.setattr(runs, "read_samples", lambda path: reads.append(path) or read_samples(path))
    ra = analyse_run(d, analyser=lambda p: trace())
    assert reads == [d / vocab.SAMPLES_CSV]
    assert ra.samples.tree_cpu_cores == 2.5 and ra.samples.series_of(vocab.SOURCE_NVML, vocab.GPU_UTIL)


def test_samples_wrong_header_is_an_error_line(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "samples.csv").write_text("a,b\n1,2\n")
    ra = analyse_run(d, analyser=lambda p: trace())
    assert len(ra.errors) == 1 and "samples.csv" in ra.errors[0] and "not a samples.csv" in ra.errors[0]


def test_one_bad_trace_is_one_error_line_and_the_rest_is_analysed(tmp_path: Path) -> None:
    d = write_run(tmp_path, "ddp-2cpu-b64", run_info("ddp-2cpu-b64", "ddp", 2, 64, "cpu"), traces=2)
    bad = d / "rank1.1700000000000.pt.trace.json.gz"

    def analyser(path: Path):
        if path == bad:
            raise TraceError(path, "corrupt or truncated gzip")
        return trace(worker="rank0")

    ra = analyse_run(d, analyser=analyser)
    assert [t.worker for t in ra.traces] == ["rank0"]
    assert ra.errors == [f"{bad}: corrupt or truncated gzip"]
    assert ra.name == "ddp-2cpu-b64" and ra.run is not None and ra.run.config.strategy == "ddp"


def test_real_reader_error_on_corrupt_trace(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", None)
    bad = d / "rank9.1.pt.trace.json.gz"
    bad.write_bytes(gzip.compress(b'{"traceEvents": [{"ph": "X", "ts": 1'))   # JSON cut mid-event
    ra = analyse_run(d)
    assert len(ra.traces) == 1 and len(ra.errors) == 1
    assert ra.errors[0].startswith(str(bad)) and "\n" not in ra.errors[0]
