"""Real tiny runs through the CLI (tests/conftest.py `tiny_runs`): what each run folder holds."""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_ARGS, run_train
from profiler.contract import vocab

pytestmark = pytest.mark.slow   # spawns training processes


def _trace(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def _names(trace: dict[str, Any]) -> list[str]:
    return [e.get("name", "") for e in trace["traceEvents"]]


def _run_json(run: Path) -> dict[str, Any]:
    return json.loads((run / vocab.RUN_JSON).read_text())


def test_single_run_trace_has_profiler_steps_and_every_phase_label(tiny_runs: Path) -> None:
    run = tiny_runs / "single-1cpu-b8"
    traces = sorted(run.glob("*.pt.trace.json.gz"))
    assert [t.name.split(".")[0] for t in traces] == ["rank0"]
    names = _names(_trace(traces[0]))
    steps = sorted(n for n in names if n.startswith(vocab.TORCH_PROFILER_STEP))
    assert steps == ["ProfilerStep#1", "ProfilerStep#2"]          # wait 0, warmup 1, active 2
    for label in vocab.TRAIN_STEP_PHASES:
        assert names.count(label) == 2, label                       # once per active step


def test_single_run_json_is_complete(tiny_runs: Path) -> None:
    info = _run_json(tiny_runs / "single-1cpu-b8")
    assert info["schema"] == vocab.RUN_SCHEMA_VERSION and info["name"] == "single-1cpu-b8"
    assert info["status"] == vocab.STATUS_COMPLETE and info["message"] is None
    cfg = info["config"]
    assert (cfg["strategy"], cfg["device_type"], cfg["devices"], cfg["global_batch"]) == ("single", "cpu", 1, 8)
    assert cfg["profiler"] == {"wait": 0, "warmup": 1, "active": 2, "repeat": 1, "enabled": True}
    res = info["results"]
    assert res["steps"] == 4 and res["images"] == 32 and len(res["step_times_ms"]) == 4
    assert res["images_per_s"] > 0 and res["final_loss"] > 0
    assert res["epochs"][0]["steps"] == 4
    assert info["model"]["parameters"] == sum(layer["parameters"] for layer in info["model"]["layers"])
    assert info["environment"]["nvml"].startswith(("ok", "NVML unavailable"))


def test_single_run_samples_host_rows(tiny_runs: Path) -> None:
    with open(tiny_runs / "single-1cpu-b8" / vocab.SAMPLES_CSV, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == vocab.SAMPLES_HEADER
    host = [r for r in rows[1:] if r[1] == vocab.SOURCE_HOST and r[3] == vocab.CPU_PCT and r[2] == "all"]
    assert len(host) >= 2
    assert all(0.0 <= float(r[4]) <= 100.0 for r in host)


def test_single_run_has_tensorboard_events(tiny_runs: Path) -> None:
    assert list((tiny_runs / "single-1cpu-b8").glob("events.out.tfevents.*"))


def test_ddp_run_writes_one_trace_per_rank_with_the_gloo_all_reduce(tiny_runs: Path) -> None:
    run = tiny_runs / "ddp-2cpu-b8"
    traces = sorted(run.glob("*.pt.trace.json.gz"))
    assert sorted(t.name.split(".")[0] for t in traces) == ["rank0", "rank1"]
    for path in traces:
        names = _names(_trace(path))
        assert any(n.startswith("gloo:all_reduce") for n in names), path.name
        assert vocab.TORCH_DDP_FORWARD in names
        for label in vocab.TRAIN_STEP_PHASES:
            assert label in names, (path.name, label)


def test_ddp_run_json_records_ranks_and_threads(tiny_runs: Path) -> None:
    info = _run_json(tiny_runs / "ddp-2cpu-b8")
    assert info["status"] == vocab.STATUS_COMPLETE
    cfg = info["config"]
    assert (cfg["devices"], cfg["global_batch"], cfg["per_device_batch"]) == (2, 8, 4)
    assert info["results"]["images"] == 4 * 8
    cores = len(info["environment"]["cpus_allowed"] or [1, 1])
    assert info["environment"]["omp_num_threads"] == str(max(1, cores // 2))


def test_failure_is_recorded_with_its_message(tmp_path: Path) -> None:
    res = run_train([*TINY_ARGS, "--max-steps", "6", "--fail-at-step", "3", "--no-profile", "--out", str(tmp_path)])
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "deliberate failure" in errors[0]
    info = _run_json(tmp_path / "single-1cpu-b8")
    assert info["status"] == vocab.STATUS_FAILED
    assert "--fail-at-step 3" in info["message"]


@pytest.mark.parametrize("flag", ["--overwrite"])
def test_overwrite_replaces_the_run_files(tmp_path: Path, flag: str) -> None:
    run = tmp_path / "single-1cpu-b8"
    run.mkdir()
    (run / "rank0.1.pt.trace.json.gz").write_bytes(b"stale")
    (run / "notes.txt").write_text("mine")
    res = run_train([*TINY_ARGS, "--max-steps", "1", "--no-profile", "--out", str(tmp_path), flag])
    assert res.returncode == 0, res.stderr
    assert not (run / "rank0.1.pt.trace.json.gz").exists()
    assert (run / "notes.txt").read_text() == "mine"                 # never deletes what it did not write
    assert _run_json(run)["status"] == vocab.STATUS_COMPLETE
