"""run.json is always whole and valid; statuses move one way; HTCondor ads are read."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from profiler.contract import vocab
from profiler.contract.runjson import (ConfigInfo, CudaDevice, Environment, EpochResult, GpuInfo, Layer, ModelInfo,
                                       Results, read_run_json)
from profiler.runinfo import (RunRecord, collect_environment, condor_ads, cuda_devices_with_nvml_spelling,
                              parse_classad, write_json_atomic)

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


def test_collect_environment_reads_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "job.ad").write_text(JOB_AD)
    (tmp_path / "machine.ad").write_text(MACHINE_AD.replace("Cpus = 8", "Cpus = 1"))
    monkeypatch.setenv("_CONDOR_JOB_AD", str(tmp_path / "job.ad"))
    monkeypatch.setenv("_CONDOR_MACHINE_AD", str(tmp_path / "machine.ad"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = collect_environment(n_gpus=0)
    assert isinstance(env, Environment)
    assert env.cpus_allowed == sorted(os.sched_getaffinity(0))
    assert env.omp_num_threads == "1" and env.omp_threads == 1
    assert env.condor is not None and env.condor["job"]["ClusterId"] == 4242
    # the slot's 1 CPU bounds the job however many cores the machine shows
    alloc = env.cpu_allocation
    assert alloc is not None and alloc.cpus == 1.0 and alloc.source == "HTCondor Cpus"
    assert alloc.affinity == len(os.sched_getaffinity(0)) and alloc.condor_cpus == 1.0
    assert env.nvml == "ok" or env.nvml.startswith("NVML unavailable: ")
    assert env.cuda_devices == []
    import torch
    assert env.torch == torch.__version__


def test_cuda_uuids_take_nvml_spelling_for_mig_devices() -> None:
    bare = "11111111-2222-3333-4444-555555555555"
    cuda = [CudaDevice(index=0, uuid=f"GPU-{bare}", name="A100 MIG 1g.10gb"),
            CudaDevice(index=1, uuid="GPU-aaaa", name="A100")]
    gpus = [GpuInfo(index=0, uuid=f"MIG-{bare}")]          # what NVML says device 0 is
    assert [d.uuid for d in cuda_devices_with_nvml_spelling(cuda, gpus)] == [f"MIG-{bare}", "GPU-aaaa"]


def _model() -> ModelInfo:
    return ModelInfo(parameters=10, parameter_bytes=40, forward_flops=20,
                     layers=[Layer(name="fc", type="Linear", parameters=10, input_shape=[3], output_shape=[2],
                                   flops=12, dtype_bytes=4)])


def test_status_moves_running_then_first_terminal_status_wins(tmp_path: Path) -> None:
    rec = RunRecord(tmp_path / "run", "single-1cpu-b64", ConfigInfo(strategy="single"))
    assert not (tmp_path / "run" / vocab.RUN_JSON).exists()
    rec.start(Environment(hostname="h"), _model())
    on_disk = json.loads((tmp_path / "run" / vocab.RUN_JSON).read_text())
    assert on_disk["status"] == vocab.STATUS_RUNNING and on_disk["schema"] == vocab.RUN_SCHEMA_VERSION
    assert on_disk["config"]["strategy"] == "single" and on_disk["results"] is None
    assert on_disk["model"]["layers"][0]["input_shape"] == [3]
    with pytest.raises(RuntimeError, match="already started"):
        rec.start(Environment(), ModelInfo())
    with pytest.raises(ValueError, match="must be one of"):
        rec.finish("running")
    assert rec.finish(vocab.STATUS_INTERRUPTED, "SIGTERM at step 3", notes=["trace flushed"])
    # the unwinding code's later "failed" must not overwrite "interrupted"
    assert not rec.finish(vocab.STATUS_FAILED, "KeyboardInterrupt")
    info, notes = read_run_json(rec.path)
    assert notes == []
    assert info.status == vocab.STATUS_INTERRUPTED and info.message == "SIGTERM at step 3"
    assert info.notes == ["trace flushed"] and info.environment.hostname == "h"
    assert info.model == _model()


def test_complete_with_results_round_trips_through_the_contract(tmp_path: Path) -> None:
    rec = RunRecord(tmp_path, "x", ConfigInfo())
    rec.start(Environment(), ModelInfo())
    results = Results(steps=3, images=24, wall_s=2.0, images_per_s=12.0, step_times_ms=[1.5, 2.5, 3.0],
                      epochs=[EpochResult(epoch=0, steps=3, images=24, wall_s=2.0, images_per_s=12.0)])
    assert rec.finish(vocab.STATUS_COMPLETE, results=results)
    info, _ = read_run_json(rec.path)
    assert info.results == results
    assert json.loads(rec.path.read_text())["results"]["epochs"][0]["images_per_s"] == 12.0
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
    rec = RunRecord(tmp_path, "x", ConfigInfo())
    rec.start(Environment(), ModelInfo())
    rec.info.message = "bad \ud800 surrogate"      # not encodable as UTF-8
    with pytest.raises(UnicodeEncodeError):
        rec.write()
    assert json.loads(rec.path.read_text())["status"] == vocab.STATUS_RUNNING
    assert sorted(p.name for p in tmp_path.iterdir()) == [vocab.RUN_JSON]
