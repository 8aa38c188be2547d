"""The traces/ contract: run names, run.json (schema 2 and a real schema-1 folder), samples.csv."""
from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest

from profiler.contract import vocab
from profiler.contract.runjson import (CpuAllocation, Layer, ModelInfo, RunInfo, load_run_json,
                                       read_run_json, write_json_atomic)
from profiler.contract.allreduce import ring_allreduce_bytes
from profiler.contract.runname import RunName, format_attached_name, format_run_name, parse_run_name
from profiler.contract.samples import SamplesError, read_samples

DATA = Path(__file__).parent / "data"
V1_RUN = DATA / "run_v1_single_tiny"     # written by the schema-1 runner (see PROVENANCE.md)


@pytest.mark.parametrize("text, parsed", [
    ("dp-layerwise-4gpu-b256", RunName("dp-layerwise", 4, "cuda", 256)),
    ("dp-2gpu-b128", RunName("dp", 2, "cuda", 128)),
    ("ddp-2cpu-b64-pinned-x", RunName("ddp", 2, "cpu", 64, "pinned-x")),
    ("single-1gpu-b64", RunName("single", 1, "cuda", 64)),
])
def test_run_names_parse_into_their_parts_and_format_back(text: str, parsed: RunName) -> None:
    assert parse_run_name(text) == parsed
    assert str(parsed) == text == format_run_name(parsed.strategy, parsed.devices, parsed.device_type,
                                                  parsed.global_batch, parsed.tag)


def test_an_attached_run_is_named_for_what_it_trained_on_once_known() -> None:
    assert format_attached_name("train", 2, "cuda") == "train-2gpu"
    assert format_attached_name("train", 1, "cpu") == "train-1cpu"
    assert format_attached_name("train", None, "cuda") == format_attached_name("train", 2, "mps") == "train"


def test_a_ring_all_reduce_moves_twice_the_payload_times_n_minus_1_over_n() -> None:
    assert ring_allreduce_bytes(1000, 1) == 0
    assert ring_allreduce_bytes(1000, 2) == 1000
    assert ring_allreduce_bytes(1000, 4) == 1500
    assert ring_allreduce_bytes(1001, 3) == 2 * 1001 * 2 // 3


@pytest.mark.parametrize("text", ["fsdp-2gpu-b64", "dp-2tpu-b64", "dp-gpu-b64", "single-1gpu", "resnet50_num_workers_0"])
def test_names_off_the_pattern_are_not_guessed(text: str) -> None:
    assert parse_run_name(text) is None


def test_a_real_schema_1_folder_reads_with_a_note_and_no_layer_table() -> None:
    info, notes, err = load_run_json(V1_RUN)
    assert err is None and info is not None
    assert info.schema == 1 and info.status == vocab.STATUS_COMPLETE
    assert (info.config.strategy, info.config.devices, info.config.global_batch) == ("single", 1, 8)
    assert info.model.parameters == 550_774 and info.model.parameter_bytes == 2_203_096
    assert info.model.layers is None            # schema 1 listed layers without shapes
    assert notes == ["run.json schema 1: no layer shapes: per-layer traffic not estimated"]
    assert info.environment.cpu_allocation == CpuAllocation(cpus=2, source="affinity", affinity=2)
    assert info.results is not None and info.results.steps == 3 and info.results.images == 24


def _seed_like_layers() -> list[Layer]:
    return [Layer(name="features.0", type="Conv2d", parameters=1344, input_shape=[3, 32, 32],
                  output_shape=[48, 32, 32], flops=2_654_208, dtype_bytes=4),
            Layer(name="classifier.5", type="Linear", parameters=650, input_shape=[64], output_shape=[10],
                  flops=1280, dtype_bytes=4)]


def test_schema_2_round_trips_and_ignores_fields_it_does_not_know(tmp_path: Path) -> None:
    info = RunInfo(name="dp-2gpu-b128", status=vocab.STATUS_RUNNING,
                   model=ModelInfo(parameters=1994, parameter_bytes=7976, layers=_seed_like_layers()))
    info.config.strategy, info.config.devices = "dp", 2
    write_json_atomic(tmp_path / vocab.RUN_JSON, info)
    back, notes = read_run_json(tmp_path / vocab.RUN_JSON)
    assert back == info and notes == []
    assert back.model.input_shape == [3, 32, 32]
    assert [(l.input_elements, l.output_elements) for l in back.model.layers or []] == [(3072, 49152), (64, 10)]
    raw = msgspec.json.decode((tmp_path / vocab.RUN_JSON).read_bytes())
    raw["future_field"] = {"x": 1}
    raw["config"]["another"] = 3
    (tmp_path / vocab.RUN_JSON).write_bytes(msgspec.json.encode(raw))
    assert read_run_json(tmp_path / vocab.RUN_JSON)[0] == info


@pytest.mark.parametrize("payload, says", [
    (b'{"schema": 2, "config": {"devices": "two"}}', "does not follow the contract"),
    (b'{"schema": 2, "model": {"layers": [{"name": "fc", "type": "Linear"}]}}', "does not follow the contract"),
    (b'{"schema": 2, "status": "complete"', "not readable JSON"),
    (b'[1, 2]', "not a JSON object"),
])
def test_unreadable_run_json_is_one_line_naming_the_file(tmp_path: Path, payload: bytes, says: str) -> None:
    (tmp_path / vocab.RUN_JSON).write_bytes(payload)
    info, notes, err = load_run_json(tmp_path)
    assert info is None and err is not None
    assert says in err and str(tmp_path / vocab.RUN_JSON) in err and "\n" not in err


def test_absent_run_json_is_neither_an_error_nor_a_run(tmp_path: Path) -> None:
    assert load_run_json(tmp_path) == (None, [], None)


def test_the_samples_reader_skips_cut_and_non_finite_rows_the_same_for_everyone(tmp_path: Path) -> None:
    path = tmp_path / vocab.SAMPLES_CSV
    path.write_text("time_ns,source,device,metric,value\n"
                    "100,host,all,cpu_pct,12.5\n"
                    "100,nvml,0,gpu_util_pct,nan\n"
                    "200,proc,tree,cpu_cores,1.25\n"
                    "200,proc,main,cpu_pct,not-a-number\n"
                    "300,host,all,cpu_pct,inf\n"
                    "300,host,al")                     # a kill cut the last line short
    rows = read_samples(path)
    assert [(r.time_ns, r.source, r.device, r.metric, r.value) for r in rows] == [
        (100, "host", "all", "cpu_pct", 12.5), (200, "proc", "tree", "cpu_cores", 1.25)]
    assert all(math.isfinite(r.value) for r in rows)


def test_the_samples_reader_reads_a_real_file_and_refuses_another_header(tmp_path: Path) -> None:
    rows = read_samples(V1_RUN / vocab.SAMPLES_CSV)
    assert {r.source for r in rows} == {vocab.SOURCE_HOST, vocab.SOURCE_PROC}
    assert len(rows) >= 10
    other = tmp_path / "samples.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(SamplesError, match="not a samples.csv"):
        read_samples(other)
    assert read_samples(tmp_path / "missing.csv") == []
