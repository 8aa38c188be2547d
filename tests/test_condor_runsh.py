"""condor/run.sh for real, in a sandbox laid out as HTCondor lays one out.

The first job of condor/profile.sub (single, 1 GPU, batch 64) is expanded with the real
htcondor2 bindings; its transfer_input_files are copied in the way HTCondor transfers them
(a path without a trailing slash arrives as a folder of that name), job and machine ad files
are written, _CONDOR_SCRATCH_DIR / _CONDOR_JOB_AD / _CONDOR_MACHINE_AD / OMP_NUM_THREADS are
set, no GPU is visible, and run.sh runs the real runner on the CPU with the script's
documented overrides (tiny width, a few steps). Then analysis.condor.collect lays the returned
tarball into traces/ and analysis.report reads it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import load_submitcheck

pytest.importorskip("htcondor2")

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "condor" / "run.sh"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ROOT / "models" / "train.py").is_file(), reason="models.train not written yet"),
              pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")]

# Keep the real job's arguments, then make it CPU-sized (later flags win in argparse).
TINY = "--device cpu --width 0.0625 --workers 0 --train-size 512 --profile-wait 0 --profile-warmup 0 --profile-active 1"


sc = load_submitcheck()


def make_sandbox(tmp_path: Path, job: dict[str, str], proc: int = 0) -> tuple[Path, dict[str, str]]:
    """A job scratch dir with the transferred inputs, the executable and the two ad files."""
    sandbox = tmp_path / "execute" / f"dir_{proc}"
    sandbox.mkdir(parents=True)
    for item in sc.split_list(job["transfer_input_files"]):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, sandbox / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, sandbox / src.name)
    shutil.copy2(RUN_SH, sandbox / "run.sh")
    ads = tmp_path / "ads"
    ads.mkdir(exist_ok=True)
    (ads / f".job.ad.{proc}").write_text(
        f'ClusterId = 4321\nProcId = {proc}\nOwner = "tester"\nRequestCpus = 1\nRequestGPUs = {job["request_gpus"]}\n'
        f'RequestMemory = 12288\nJobBatchName = "scalescope-seed"\nIwd = "{ROOT}"\nNumJobStarts = 1\n')
    (ads / f".machine.ad.{proc}").write_text(
        'Machine = "exec01.example.edu"\nName = "slot1_1@exec01.example.edu"\nSlotType = "Dynamic"\n'
        'Cpus = 1\nMemory = 12288\nGPUs = 0\nArch = "X86_64"\nOpSysAndVer = "AlmaLinux9"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_CONDOR", "SCALESCOPE_"))}
    env.update({
        "_CONDOR_SCRATCH_DIR": str(sandbox),
        "_CONDOR_JOB_AD": str(ads / f".job.ad.{proc}"),
        "_CONDOR_MACHINE_AD": str(ads / f".machine.ad.{proc}"),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "SCALESCOPE_PYTHON": sys.executable,
        "SCALESCOPE_NO_INSTALL": "1",
        "SCALESCOPE_MAX_STEPS": "2",
        "SCALESCOPE_EXTRA_ARGS": TINY,
        "HOME": str(tmp_path / "submitter-home"),
    })
    return sandbox, env


def job_argv(job: dict[str, str]) -> list[str]:
    return ["bash", "./run.sh", *job["arguments"].split()]


def members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return tar.getnames()


def read_member(tarball: Path, name: str) -> bytes:
    with tarfile.open(tarball) as tar:
        return tar.extractfile(name).read()


@pytest.fixture(scope="module")
def first_job() -> dict[str, str]:
    job = sc.expand_jobs(ROOT / "condor" / "profile.sub", {}, root=ROOT, cluster=4321)[0]
    assert (job["strategy"], job["gpus"]) == ("single", "1")
    return job


def test_job_packs_a_valid_run_that_collect_and_report_read(tmp_path: Path, first_job) -> None:
    sandbox, env = make_sandbox(tmp_path, first_job)
    uuid = "GPU-6b2d8a51-1c3e-4f00-8000-00000000beef"              # HTCondor's form; no such GPU here
    env["CUDA_VISIBLE_DEVICES"] = uuid
    proc = subprocess.run(job_argv(first_job), cwd=sandbox, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tarball = sandbox / first_job["transfer_output_files"]
    assert tarball.is_file()
    base = "seed/single-1cpu-b64"
    names = members(tarball)
    assert {f"{base}/run.json", f"{base}/samples.csv", f"{base}/condor_job.ad", f"{base}/condor_machine.ad",
            f"{base}/condor_wrapper.json"} <= set(names)
    assert any(n.startswith(f"{base}/rank0.") and n.endswith(".pt.trace.json.gz") for n in names)
    assert all(n.startswith("seed/") for n in names)
    run = json.loads(read_member(tarball, f"{base}/run.json"))
    assert run["status"] == "complete"
    assert run["results"]["steps"] == 2
    assert run["environment"]["condor"]["job"]["ClusterId"] == 4321
    assert run["environment"]["condor"]["machine"]["Machine"] == "exec01.example.edu"
    assert run["environment"]["omp_num_threads"] in (1, "1")
    wrapper = json.loads(read_member(tarball, f"{base}/condor_wrapper.json"))
    assert (wrapper["exit_code"], wrapper["cluster"], wrapper["process"]) == (0, "4321", "0")
    assert wrapper["environment"] == "preinstalled"
    assert run["environment"]["cuda_visible_devices"] == wrapper["cuda_visible_devices"] == uuid   # untouched
    assert not (tmp_path / "submitter-home").exists()          # HOME was the sandbox
    # the submit node: transfer_output_remaps puts it in results/, then collect and report
    submit = tmp_path / "submit"
    (submit / "results").mkdir(parents=True)
    (src, dst), = sc.remaps(first_job["transfer_output_remaps"]).items()
    shutil.copy2(sandbox / src, submit / dst)
    col = subprocess.run([sys.executable, "-m", "analysis.condor.collect", str(submit / "results"),
                          "--into", str(submit / "traces")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert col.returncode == 0, col.stderr
    run_dir = submit / "traces" / base
    assert json.loads((run_dir / "run.json").read_text()) == run
    again = subprocess.run([sys.executable, "-m", "analysis.condor.collect", str(submit / "results"),
                            "--into", str(submit / "traces")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "1 already there" in again.stdout
    if importlib.util.find_spec("analysis.report") is None:
        pytest.skip("analysis.report not written yet")
    rep = subprocess.run([sys.executable, "-m", "analysis.report", str(submit / "traces"), "--no-html"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "single" in rep.stdout


def test_failed_training_still_returns_its_tarball(tmp_path: Path, first_job) -> None:
    sandbox, env = make_sandbox(tmp_path, first_job, proc=1)
    env["SCALESCOPE_EXTRA_ARGS"] = TINY + " --fail-at-step 1"
    proc = subprocess.run(job_argv(first_job), cwd=sandbox, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    tarball = sandbox / first_job["transfer_output_files"]
    base = "seed/single-1cpu-b64"
    run = json.loads(read_member(tarball, f"{base}/run.json"))
    assert run["status"] == "failed"
    assert run["message"]
    wrapper = json.loads(read_member(tarball, f"{base}/condor_wrapper.json"))
    assert wrapper["exit_code"] == 1
    assert f"{base}/runner.stderr.txt" in members(tarball)


def test_bad_input_returns_a_tarball_with_what_is_known(tmp_path: Path, first_job) -> None:
    sandbox, env = make_sandbox(tmp_path, first_job, proc=2)
    env["SCALESCOPE_EXTRA_ARGS"] = TINY + " --workers -1"
    proc = subprocess.run(job_argv(first_job), cwd=sandbox, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    tarball = sandbox / first_job["transfer_output_files"]
    base = "seed/failed-4321.2"
    wrapper = json.loads(read_member(tarball, f"{base}/condor_wrapper.json"))
    assert (wrapper["exit_code"], wrapper["stage"]) == (2, "train")
    assert b"--workers" in read_member(tarball, f"{base}/runner.stderr.txt")
    assert f"{base}/condor_job.ad" in members(tarball)


def test_sigterm_is_forwarded_and_the_interrupted_run_is_packed(tmp_path: Path, first_job) -> None:
    sandbox, env = make_sandbox(tmp_path, first_job, proc=3)
    env["SCALESCOPE_MAX_STEPS"] = "100000"        # far more than can run before the signal
    env["SCALESCOPE_EXTRA_ARGS"] = TINY + " --no-profile --train-size 50000 --epochs 100"
    job = subprocess.Popen(job_argv(first_job), cwd=sandbox, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    run_json = sandbox / "out" / "seed" / "single-1cpu-b64" / "run.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None:
        if run_json.is_file() and json.loads(run_json.read_text() or "{}").get("status") == "running":
            break
        time.sleep(0.5)
    assert job.poll() is None, "the runner ended before it could be interrupted"
    time.sleep(3)                                   # let it get into the training steps
    job.send_signal(signal.SIGTERM)                 # what HTCondor does on eviction
    out, err = job.communicate(timeout=300)
    assert job.returncode == 143, err[-3000:]
    assert "forwarding SIGTERM" in err
    tarball = sandbox / first_job["transfer_output_files"]
    run = json.loads(read_member(tarball, "seed/single-1cpu-b64/run.json"))
    assert run["status"] == "interrupted"
    wrapper = json.loads(read_member(tarball, "seed/single-1cpu-b64/condor_wrapper.json"))
    assert (wrapper["exit_code"], wrapper["signal"]) == (143, "TERM")


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(RUN_SH)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "usage" in proc.stderr
    bad = subprocess.run(["bash", str(RUN_SH), "../x", "t.tar.gz"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "plain names" in bad.stderr


def test_build_env_pack_explains_what_it_needs(tmp_path: Path) -> None:
    script = ROOT / "condor" / "build_env_pack.sh"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    (tmp_path / "env.yml").write_text("name: scalescope\n")
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    if shutil.which("conda", path=env["PATH"]):
        pytest.skip("conda is installed here: building a real pack is not a unit test")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "conda" in proc.stderr
    missing = subprocess.run(["bash", str(script), "nope.yml"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no nope.yml" in missing.stderr


def _pack_layout(path: Path) -> None:
    """A tarball with conda-pack's layout: bin/activate, bin/conda-unpack and bin/python.

    Its python hands over to this interpreter (a real conda-pack needs conda to build);
    what is tested is run.sh's side: unpack, activate, conda-unpack, then use that python.
    """
    build = path.parent / "pack-build"
    (build / "bin").mkdir(parents=True)
    (build / "bin" / "activate").write_text(
        'export SCALESCOPE_TEST_ENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"\n'
        'export PATH="$SCALESCOPE_TEST_ENV/bin:$PATH"\n')
    (build / "bin" / "conda-unpack").write_text('#!/bin/sh\ntouch "$SCALESCOPE_TEST_ENV/unpacked"\n')
    (build / "bin" / "python").write_text(
        f'#!/bin/sh\ntouch "$SCALESCOPE_TEST_ENV/python-used"\nexec "{sys.executable}" "$@"\n')
    for f in ("conda-unpack", "python"):
        (build / "bin" / f).chmod(0o755)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(build / "bin", arcname="bin")


def test_conda_pack_environment_is_unpacked_and_used(tmp_path: Path, first_job) -> None:
    pack = tmp_path / "staging" / "scalescope-env.tar.gz"
    pack.parent.mkdir()
    _pack_layout(pack)
    job = sc.expand_jobs(ROOT / "condor" / "profile.sub", {"ENV_PACK": str(pack)}, root=ROOT, cluster=4321)[0]
    assert job["universe"] == "vanilla"
    sandbox, env = make_sandbox(tmp_path, {**job, "transfer_input_files": first_job["transfer_input_files"]}, proc=4)
    shutil.copy2(pack, sandbox / pack.name)                   # the ENV_PACK entry of transfer_input_files
    del env["SCALESCOPE_PYTHON"]
    env["SCALESCOPE_EXTRA_ARGS"] = TINY + " --workers -1"     # bad input: the runner stops before training
    proc = subprocess.run(job_argv(job), cwd=sandbox, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (sandbox / "env" / "unpacked").is_file() and (sandbox / "env" / "python-used").is_file()
    wrapper = json.loads(read_member(sandbox / job["transfer_output_files"], "seed/failed-4321.4/condor_wrapper.json"))
    assert wrapper["environment"] == "conda-pack"
