"""How many CPUs this job may use, and which limit says so.

A shared 64-core HTCondor node says nothing about a job that asked for 1 CPU: what bounds the
job is the smallest of its CPU affinity (``taskset``, cpusets), its cgroup v2 ``cpu.max``
quota, and the slot's ``Cpus`` in ``$_CONDOR_MACHINE_AD``. The findings compare the process
tree's CPU (samples.csv ``proc,tree,cpu_cores``) with this number; ``usable_cpus()`` is it as whole
CPUs, the one count everything sizes threads, ranks and workers by. Parsing is pure (a cgroup
root and file texts as parameters, tested on files in a temp folder). Torch-free.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from .classad import parse_classad
from .contract.runjson import CpuAllocation

__all__ = ["SOURCE_AFFINITY", "SOURCE_CGROUP", "SOURCE_CONDOR", "parse_cpu_max", "parse_proc_cgroup",
           "cgroup_quota", "condor_cpus", "affinity_cores", "cpu_allocation", "usable_cpus"]

SOURCE_AFFINITY = "affinity"
SOURCE_CGROUP = "cgroup cpu.max"
SOURCE_CONDOR = "HTCondor Cpus"

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` ("<quota> <period>") as CPUs: "150000 100000" = 1.5; "max ..." = no quota."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_proc_cgroup(text: str) -> str | None:
    """The cgroup v2 path from /proc/<pid>/cgroup (the "0::/path" line), or None (v1 only)."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def cgroup_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest ``cpu.max`` from this process's cgroup up to the root, in CPUs (None: no quota).

    A parent's quota bounds every child, so the smallest on the way up is the one that holds.
    """
    try:
        rel = parse_proc_cgroup(Path(proc_cgroup).read_text())
    except OSError:
        return None
    if rel is None:
        return None
    root = Path(cgroup_root)
    here = root / rel.lstrip("/")
    quotas: list[float] = []
    while True:
        try:
            q = parse_cpu_max((here / "cpu.max").read_text())
        except OSError:
            q = None
        if q is not None:
            quotas.append(q)
        if here == root or root not in here.parents:
            break
        here = here.parent
    return min(quotas) if quotas else None


def condor_cpus(environ: Mapping[str, str] | None = None) -> float | None:
    """The slot's ``Cpus`` from the machine ad HTCondor points at, or None outside HTCondor."""
    env = os.environ if environ is None else environ
    path = env.get("_CONDOR_MACHINE_AD")
    if not path:
        return None
    try:
        value = parse_classad(Path(path).read_text(errors="replace"), keep=("Cpus",)).get("Cpus")
    except OSError:
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def affinity_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):     # not Linux
        return os.cpu_count()


def cpu_allocation(environ: Mapping[str, str] | None = None, cgroup_root: Path = CGROUP_ROOT,
                   proc_cgroup: Path = PROC_CGROUP, affinity: int | None = None) -> CpuAllocation:
    """The smallest of affinity, cgroup quota and HTCondor Cpus, and which one it was.

    On a tie the first in that order is named (taskset pinning is the most specific fact).
    """
    aff = affinity_cores() if affinity is None else affinity
    quota = cgroup_quota(cgroup_root, proc_cgroup)
    condor = condor_cpus(environ)
    candidates = [(float(v), src) for v, src in ((aff, SOURCE_AFFINITY), (quota, SOURCE_CGROUP),
                                                 (condor, SOURCE_CONDOR)) if v is not None]
    if not candidates:
        candidates = [(float(os.cpu_count() or 1), SOURCE_AFFINITY)]
    cpus, source = min(candidates, key=lambda c: c[0])     # min keeps the first of equals
    return CpuAllocation(cpus=cpus, source=source, affinity=aff, cgroup_quota=quota, condor_cpus=condor)


def usable_cpus(allocation: CpuAllocation | None = None) -> int:
    """Whole CPUs this job may use: `cpu_allocation()` (affinity, cgroup quota, HTCondor Cpus: the
    smallest) rounded down, at least 1 -- threads per rank, calibration thread counts, workers."""
    alloc = cpu_allocation() if allocation is None else allocation
    return max(1, math.floor(alloc.cpus))
