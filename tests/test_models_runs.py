"""Real tiny runs through the CLI (tests/conftest.py `tiny_runs`): what each run folder holds."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, TINY_ARGS, cli_env, event_names, run_traces, run_train, train_cmd
from profiler.contract import vocab
from profiler.contract.runjson import read_run_json
from profiler.contract.samples import read_samples

pytestmark = pytest.mark.slow   # spawns training processes


def _run_json(run: Path) -> dict[str, Any]:
    return json.loads((run / vocab.RUN_JSON).read_text())


def test_single_run_trace_has_profiler_steps_and_every_phase_label(tiny_runs: Path) -> None:
    run = tiny_runs / "single-1cpu-b8"
    traces = run_traces(run)
    assert [t.name.split(".")[0] for t in traces] == ["rank0"]
    names = event_names(traces[0])
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
    # the contract reads it back whole, with the measured layer table of the width-0.0625 model
    run, notes = read_run_json(tiny_runs / "single-1cpu-b8" / vocab.RUN_JSON)
    assert notes == [] and run.model.layers is not None and len(run.model.layers) == 9
    fc1 = run.model.layers[6]
    assert (fc1.name, fc1.input_shape, fc1.output_shape) == ("classifier.1", [64 * 8 * 8], [128])
    assert run.model.forward_flops == sum(layer.flops for layer in run.model.layers) > 0
    assert run.environment.cpu_allocation is not None and run.environment.cpu_allocation.cpus >= 1
    assert run.environment.cuda_devices == []             # a CPU run has no CUDA index to name


def test_single_run_samples_host_rows(tiny_runs: Path) -> None:
    with open(tiny_runs / "single-1cpu-b8" / vocab.SAMPLES_CSV, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == vocab.SAMPLES_HEADER
    host = [r for r in rows[1:] if r[1] == vocab.SOURCE_HOST and r[3] == vocab.CPU_PCT and r[2] == "all"]
    assert len(host) >= 2
    assert all(0.0 <= float(r[4]) <= 100.0 for r in host)
    tree = [r for r in rows[1:] if (r[1], r[2], r[3]) == (vocab.SOURCE_PROC, vocab.PROC_TREE, vocab.CPU_CORES)]
    assert len(tree) >= 2


def test_single_run_has_tensorboard_events(tiny_runs: Path) -> None:
    assert list((tiny_runs / "single-1cpu-b8").glob("events.out.tfevents.*"))


def test_ddp_run_writes_one_trace_per_rank_with_the_gloo_all_reduce(tiny_runs: Path) -> None:
    run = tiny_runs / "ddp-2cpu-b8"
    traces = run_traces(run)
    assert sorted(t.name.split(".")[0] for t in traces) == ["rank0", "rank1"]
    for path in traces:
        names = event_names(path)
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
    # two ranks' threads fit the cores the job may use (no oversubscription), at least one each
    threads = int(info["environment"]["omp_num_threads"])
    assert threads >= 1 and (2 * threads <= info["environment"]["cpu_allocation"]["cpus"] or threads == 1)


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


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_a_run_pinned_to_one_core_records_one_cpu_and_its_tree_stays_within_it(tmp_path: Path) -> None:
    """The seed's story: DataLoader workers and the loop share the job's 1 CPU (a real affinity, not a mock)."""
    res = subprocess.run(["taskset", "-c", "0", *train_cmd(*TINY_ARGS, "--workers", "2", "--out", str(tmp_path))],
                         cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "single-1cpu-b8"
    info, _ = read_run_json(run / vocab.RUN_JSON)
    alloc = info.environment.cpu_allocation
    assert alloc is not None and (alloc.cpus, alloc.source, alloc.affinity) == (1, "affinity", 1)
    assert info.environment.cpus_allowed == [0]
    tree = [s.value for s in read_samples(run / vocab.SAMPLES_CSV)
            if (s.source, s.device, s.metric) == (vocab.SOURCE_PROC, vocab.PROC_TREE, vocab.CPU_CORES)]
    assert tree, "no proc,tree,cpu_cores rows"
    # the whole tree (loop + 2 workers) cannot use more than its one core; one tick can read above 1
    # (CPU times advance in 10 ms clock ticks, each process's quantised apart), the mean cannot
    assert sum(tree) / len(tree) <= 1.1 and max(tree) <= 2.0
