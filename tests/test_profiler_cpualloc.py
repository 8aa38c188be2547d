"""The job's CPU allocation: cgroup v2 cpu.max, HTCondor's Cpus and the affinity, read from real files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli_env
from profiler.cpualloc import (SOURCE_AFFINITY, SOURCE_CGROUP, SOURCE_CONDOR, cgroup_quota, condor_cpus,
                               cpu_allocation, parse_cpu_max, parse_proc_cgroup, usable_cpus)
from profiler.contract.runjson import CpuAllocation


@pytest.mark.parametrize(("text", "cpus"), [("max 100000\n", None), ("150000 100000\n", 1.5),
                                            ("200000 100000", 2.0), ("50000 100000", 0.5), ("", None),
                                            ("garbage", None)])
def test_cpu_max(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


def test_proc_cgroup_v2_line() -> None:
    assert parse_proc_cgroup("0::/htcondor/slot1_3\n") == "/htcondor/slot1_3"
    assert parse_proc_cgroup("12:cpu,cpuacct:/x\n0::/\n") == "/"
    assert parse_proc_cgroup("4:memory:/a\n1:cpu:/\n") is None          # cgroup v1 only: no quota read


def _cgroup_tree(tmp_path: Path, levels: dict[str, str], own: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, cpu_max in levels.items():
        d = root / rel.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(cpu_max)
    (root / own.lstrip("/")).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"0::{own}\n")
    return root, proc


def test_cgroup_quota_is_the_tightest_on_the_way_to_the_root(tmp_path: Path) -> None:
    # the slot has 1.5 CPUs; the job's own cgroup says nothing; the parent allows 4
    root, proc = _cgroup_tree(tmp_path, {"/": "max 100000", "/htcondor": "400000 100000",
                                         "/htcondor/slot1": "150000 100000",
                                         "/htcondor/slot1/job": "max 100000"}, "/htcondor/slot1/job")
    assert cgroup_quota(root, proc) == 1.5


def test_no_quota_anywhere_or_no_cgroup_files(tmp_path: Path) -> None:
    root, proc = _cgroup_tree(tmp_path, {"/": "max 100000", "/a": "max 100000"}, "/a/b")
    assert cgroup_quota(root, proc) is None
    assert cgroup_quota(tmp_path / "nothing", tmp_path / "no_such_file") is None


def test_condor_cpus_from_the_machine_ad(tmp_path: Path) -> None:
    ad = tmp_path / "machine.ad"
    ad.write_text('Machine = "gpu4000.chtc.wisc.edu"\nCpus = 1\nTotalCpus = 64\n')
    assert condor_cpus({"_CONDOR_MACHINE_AD": str(ad)}) == 1.0
    assert condor_cpus({}) is None
    assert condor_cpus({"_CONDOR_MACHINE_AD": str(tmp_path / "missing.ad")}) is None


def test_the_smallest_limit_sets_the_allocation_and_is_named(tmp_path: Path) -> None:
    ad = tmp_path / "machine.ad"
    ad.write_text("Cpus = 2\n")
    root, proc = _cgroup_tree(tmp_path, {"/": "max 100000", "/job": "150000 100000"}, "/job")
    env = {"_CONDOR_MACHINE_AD": str(ad)}
    a = cpu_allocation(env, root, proc, affinity=64)
    assert (a.cpus, a.source, a.affinity, a.cgroup_quota, a.condor_cpus) == (1.5, SOURCE_CGROUP, 64, 1.5, 2.0)
    ad.write_text("Cpus = 1\n")
    a = cpu_allocation(env, root, proc, affinity=64)
    assert (a.cpus, a.source) == (1.0, SOURCE_CONDOR)
    a = cpu_allocation(env, root, proc, affinity=1)      # a tie: the pinning is named
    assert (a.cpus, a.source) == (1.0, SOURCE_AFFINITY)
    a = cpu_allocation({}, tmp_path / "none", tmp_path / "none", affinity=3)
    assert (a.cpus, a.source, a.cgroup_quota, a.condor_cpus) == (3.0, SOURCE_AFFINITY, None, None)


def test_usable_cpus_are_the_allocation_in_whole_cpus_at_least_one() -> None:
    assert usable_cpus(CpuAllocation(cpus=1.5, source=SOURCE_CGROUP, affinity=64)) == 1
    assert usable_cpus(CpuAllocation(cpus=0.5, source=SOURCE_CGROUP, affinity=64)) == 1
    assert usable_cpus(CpuAllocation(cpus=4.0, source=SOURCE_CONDOR, affinity=64)) == 4
    assert usable_cpus() == max(1, int(cpu_allocation().cpus))


def test_a_real_restricted_affinity_is_what_the_allocation_reports() -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from profiler.cpualloc import cpu_allocation; a = cpu_allocation({}); print(a.cpus, a.source, a.affinity)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["1.0", SOURCE_AFFINITY, "1"]
