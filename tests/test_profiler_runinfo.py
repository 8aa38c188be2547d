"""run.json is always whole and valid; statuses move one way; HTCondor ads are read."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import orjson
import pytest

from profiler.contract import vocab
from profiler.runinfo import RunRecord, collect_environment, condor_ads, parse_classad, write_json_atomic

JOB_AD = """\
ClusterId = 4242
ProcId = 1
GlobalJobId = "ap2002.chtc.wisc.edu#4242.1#1732900000"
Owner = "bbadger"
RequestCpus = 8
requestgpus = 2
RequestMemory = 32768
Requirements = (TARGET.Arch == "X86_64") && (TARGET.HasFileTransfer)
JobBatchName = "scalescope \\"seed\\" sweep"
Cmd = "/home/bbadger/run.sh"
WantGPULab = true
LastRejMatchReason = undefined
"""

MACHINE_AD = """\
Machine = "gpu4000.chtc.wisc.edu"
Name = "slot1_3@gpu4000.chtc.wisc.edu"
Cpus = 8
Memory = 32768
GPUs = 2
AssignedGPUs = "GPU-5a6b7c8d,GPU-9f8e7d6c"
GPUs_DeviceName = "NVIDIA A100-SXM4-80GB"
GPUs_Capability = 8.0
GPUs_DriverVersion = 12.4
GPUs_GlobalMemoryMb = 81038
CUDADriverVersion = 12.4
StartdIpAddr = "<10.0.0.1:9618>"
this line is not an attribute
"""

ENV_KEYS = {"hostname", "platform", "python", "torch", "cuda", "cudnn", "cpu_count", "cpus_allowed",
            "omp_num_threads", "cuda_visible_devices", "nvml", "driver", "gpus", "topology", "condor"}


def test_classad_values_are_typed_and_keys_matched_case_insensitively() -> None:
    job = parse_classad(JOB_AD, keep=("ClusterId", "ProcId", "RequestGpus", "JobBatchName", "GlobalJobId"))
    assert job == {"ClusterId": 4242, "ProcId": 1, "RequestGpus": 2,
                   "JobBatchName": 'scalescope "seed" sweep',
                   "GlobalJobId": "ap2002.chtc.wisc.edu#4242.1#1732900000"}
    everything = parse_classad(JOB_AD)
    assert everything["WantGPULab"] is True
    assert everything["LastRejMatchReason"] is None
    assert everything["Requirements"] == '(TARGET.Arch == "X86_64") && (TARGET.HasFileTransfer)'


def test_condor_ads_keep_the_useful_subset(tmp_path: Path) -> None:
    (tmp_path / "job.ad").write_text(JOB_AD)
    (tmp_path / "machine.ad").write_text(MACHINE_AD)
    ads = condor_ads({"_CONDOR_JOB_AD": str(tmp_path / "job.ad"),
                      "_CONDOR_MACHINE_AD": str(tmp_path / "machine.ad")})
    assert ads is not None
    assert ads["job"]["RequestCpus"] == 8 and ads["job"]["RequestMemory"] == 32768
    assert "Cmd" not in ads["job"] and "Requirements" not in ads["job"]
    m = ads["machine"]
    assert m["Name"] == "slot1_3@gpu4000.chtc.wisc.edu" and m["GPUs_DeviceName"] == "NVIDIA A100-SXM4-80GB"
    assert m["GPUs_Capability"] == 8.0 and m["GPUs_GlobalMemoryMb"] == 81038
    assert m["AssignedGPUs"] == "GPU-5a6b7c8d,GPU-9f8e7d6c"
    assert "StartdIpAddr" not in m
    assert condor_ads({}) is None
    missing = condor_ads({"_CONDOR_JOB_AD": str(tmp_path / "nope.ad")})
    assert missing is not None and "error" in missing["job"] and missing["machine"] is None


def test_collect_environment_has_the_contract_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "job.ad").write_text(JOB_AD)
    monkeypatch.setenv("_CONDOR_JOB_AD", str(tmp_path / "job.ad"))
    monkeypatch.delenv("_CONDOR_MACHINE_AD", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = collect_environment(n_gpus=0)
    assert set(env) == ENV_KEYS
    assert env["cpus_allowed"] == sorted(os.sched_getaffinity(0))
    assert env["omp_num_threads"] == "1"
    assert env["condor"]["job"]["ClusterId"] == 4242
    assert env["nvml"] == "ok" or env["nvml"].startswith("NVML unavailable: ")
    import torch
    assert env["torch"] == torch.__version__
    orjson.dumps(env)          # serialisable as is


def test_status_moves_running_then_first_terminal_status_wins(tmp_path: Path) -> None:
    rec = RunRecord(tmp_path / "run", "single-1cpu-b64", {"strategy": "single"})
    assert not (tmp_path / "run" / vocab.RUN_JSON).exists()
    rec.start({"hostname": "h"}, {"parameters": 1})
    on_disk = json.loads((tmp_path / "run" / vocab.RUN_JSON).read_text())
    assert on_disk["status"] == vocab.STATUS_RUNNING and on_disk["schema"] == vocab.RUN_SCHEMA_VERSION
    assert on_disk["config"] == {"strategy": "single"} and on_disk["results"] is None
    with pytest.raises(RuntimeError, match="already started"):
        rec.start({}, {})
    with pytest.raises(ValueError, match="must be one of"):
        rec.finish("running")
    assert rec.finish(vocab.STATUS_INTERRUPTED, "SIGTERM at step 3", notes=["trace flushed"])
    # the unwinding code's later "failed" must not overwrite "interrupted"
    assert not rec.finish(vocab.STATUS_FAILED, "KeyboardInterrupt")
    on_disk = json.loads(rec.path.read_text())
    assert on_disk["status"] == vocab.STATUS_INTERRUPTED and on_disk["message"] == "SIGTERM at step 3"
    assert on_disk["notes"] == ["trace flushed"]
    assert set(on_disk) == {"schema", "name", "status", "message", "config", "model", "environment",
                            "results", "notes"}


def test_complete_with_results(tmp_path: Path) -> None:
    rec = RunRecord(tmp_path, "x", {})
    rec.start({}, {})
    assert rec.finish(vocab.STATUS_COMPLETE, results={"steps": 3, "images_per_s": 12.5})
    assert json.loads(rec.path.read_text())["results"] == {"steps": 3, "images_per_s": 12.5}


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / vocab.RUN_JSON
    write_json_atomic(path, {"n": -1})
    bad: list[str] = []
    reads = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not done.is_set():
            text = path.read_bytes()
            reads += 1
            try:
                json.loads(text)
            except ValueError as exc:
                bad.append(f"{exc}: {text[:60]!r}")

    t = threading.Thread(target=reader)
    t.start()
    try:
        for n in range(300):   # sizes vary, so a torn write would show
            write_json_atomic(path, {"n": n, "pad": "x" * (n * 97 % 20000), "steps": list(range(n % 50))})
    finally:
        done.set()
        t.join()
    assert reads > 0 and bad == []
    assert json.loads(path.read_text())["n"] == 299


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    rec = RunRecord(tmp_path, "x", {})
    rec.start({}, {})
    rec.data["results"] = {"too_big": 2**70}       # orjson refuses integers beyond 64 bits
    with pytest.raises(orjson.JSONEncodeError):
        rec.write()
    assert json.loads(rec.path.read_text())["status"] == vocab.STATUS_RUNNING
    assert sorted(p.name for p in tmp_path.iterdir()) == [vocab.RUN_JSON]
