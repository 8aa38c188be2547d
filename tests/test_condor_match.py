"""Which machines the queued jobs can match: job ads from condor/profile.sub (built by
condor/submitcheck.job_ad from the submit file's expanded values, following condor_submit's
documented rules) evaluated with the real classad2 against hand-written partitionable-slot
machine ads. A ClassAd error value is truthy in Python, so results are compared `is True`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_submitcheck

classad2 = pytest.importorskip("classad2")
pytest.importorskip("htcondor2")

ROOT = Path(__file__).resolve().parents[1]


sc = load_submitcheck()


def jobs(**overrides: str) -> list[dict[str, str]]:
    return sc.expand_jobs(ROOT / "condor" / "profile.sub", overrides, root=ROOT)


def pslot(name: str, gpus: int, *, device: str, capability: float, memory_mb: int,
          driver_cuda: int = 12080, cpus: int = 40, assigned: int = 0):
    """A partitionable slot as a GPU execute point advertises it; `assigned` GPUs are already claimed."""
    ids = [f"GPU-{name[:4]}{i:04x}" for i in range(gpus)]
    free = ids[assigned:]
    gpu_ads = "\n".join(
        f'GPUs_{i.replace("-", "_")} = [ Id = "{i}"; DeviceName = "{device}"; Capability = {capability}; '
        f"GlobalMemoryMb = {memory_mb}; DriverVersion = {driver_cuda / 1000:.1f}; "
        f"MaxSupportedVersion = {driver_cuda}; ECCEnabled = false; ClockMhz = 1545.0 ]" for i in ids)
    return classad2.parseOne(f"""
MyType = "Machine"
Name = "slot1@{name}.example.edu"
Machine = "{name}.example.edu"
SlotType = "Partitionable"
PartitionableSlot = true
Arch = "X86_64"
OpSys = "LINUX"
OpSysAndVer = "AlmaLinux9"
HasDocker = true
HasSingularity = true
TotalCpus = {cpus}
Cpus = {cpus}
Memory = 191000
Disk = 800000000
TotalGPUs = {gpus}
GPUs = {len(free)}
DetectedGPUs = "{', '.join(ids)}"
AvailableGPUs = {{ {', '.join('GPUs_' + i.replace('-', '_') for i in free)} }}
{gpu_ads}
START = true
Requirements = START
""")


RTX2080TI = dict(device="NVIDIA GeForce RTX 2080 Ti", capability=7.5, memory_mb=11019)
P100 = dict(device="Tesla P100-PCIE-16GB", capability=6.0, memory_mb=16280)


@pytest.mark.parametrize("sweep", ["seed", "fixed"])
def test_four_2080ti_node_matches_every_job(sweep: str) -> None:
    machine = pslot("gpu2001", 4, **RTX2080TI)
    results = [sc.matches(j, machine) for j in jobs(SWEEP=sweep)]
    assert results == [True, True, True]


@pytest.mark.parametrize("sweep", ["seed", "fixed"])
def test_two_p100_node_matches_no_job(sweep: str) -> None:
    machine = pslot("gpu0100", 2, **P100)
    assert [sc.matches(j, machine) for j in jobs(SWEEP=sweep)] == [False, False, False]


def test_partly_claimed_node_matches_only_the_jobs_that_fit_its_free_gpus() -> None:
    machine = pslot("gpu2002", 4, assigned=2, **RTX2080TI)
    assert [sc.matches(j, machine) for j in jobs()] == [True, True, False]


def test_driver_too_old_for_the_image_cuda_runtime_matches_nothing() -> None:
    machine = pslot("gpu2003", 4, driver_cuda=12020, **RTX2080TI)        # driver speaks CUDA 12.2 < 12.6
    assert [sc.matches(j, machine) for j in jobs()] == [False, False, False]


def test_small_gpu_memory_is_refused() -> None:
    machine = pslot("gpu1650", 4, device="NVIDIA GeForce GTX 1650", capability=7.5, memory_mb=3911)
    assert [sc.matches(j, machine) for j in jobs()] == [False, False, False]


def test_cpu_request_decides_whether_the_four_gpu_job_fits_a_small_node() -> None:
    machine = pslot("gpu2004", 4, cpus=16, **RTX2080TI)
    assert [sc.matches(j, machine) for j in jobs()] == [True, True, False]       # 20 cores asked
    assert [sc.matches(j, machine) for j in jobs(CPUS_PER_GPU="4")] == [True, True, True]
    assert [sc.matches(j, machine) for j in jobs(JOB_CPUS="1")] == [True, True, True]


def test_job_ad_carries_requests_and_gpu_constraints() -> None:
    ad = sc.job_ad(jobs()[2])
    assert ad["RequestGPUs"] == 4
    assert ad["RequestCpus"] == 20
    assert ad["RequestMemory"] == 48 * 1024
    assert ad["RequestDisk"] == 20 * 1024 * 1024
    assert ad["WantGPULab"] is True
    assert ad["GPUJobLength"] == "short"
    gpu = classad2.parseOne('Capability = 7.0; GlobalMemoryMB = 32000; MaxSupportedVersion = 12080')
    assert ad["RequireGPUs"].eval(scope=gpu) is False                    # V100: capability 7.0 < 7.5


def test_missing_gpu_attributes_never_count_as_a_match() -> None:
    bare = classad2.parseOne('Arch = "X86_64"; OpSys = "LINUX"; Cpus = 64; Memory = 500000; Disk = 900000000')
    job = jobs()[0]
    ad = sc.job_ad(job)
    value = ad["Requirements"].eval(scope=ad, target=bare)
    assert value is not True
    assert sc.matches(job, bare) is False
