"""run.json: what ran, where, and how it ended -- always a complete, valid file.

Every write goes to a temp file in the run folder and is renamed over run.json
(``os.replace`` is atomic on POSIX), so a reader (the analysis, a job wrapper
copying results back) never sees half a file, even if the job is killed
mid-write. The record is the contract's `RunInfo` Struct, written with the contract's
`write_json_atomic`. Torch-free at import; torch is imported inside
:func:`collect_environment` only (the runner has it loaded already).
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from . import nvml
from .classad import parse_classad
from .contract import vocab
from .contract.runjson import (ConfigInfo, CudaDevice, Environment, GpuInfo, ModelInfo, Results,
                                       RunInfo, write_json_atomic)
from .cpualloc import cpu_allocation

__all__ = ["RunRecord", "collect_environment", "parse_classad", "condor_ads", "nvidia_topology",
           "cuda_devices_with_nvml_spelling", "write_json_atomic", "JOB_AD_KEYS", "MACHINE_AD_KEYS"]

TERMINAL_STATUSES = (vocab.STATUS_COMPLETE, vocab.STATUS_INTERRUPTED, vocab.STATUS_FAILED)

# The slice of the HTCondor ads worth keeping beside a profile: what was asked for
# (job) and what the slot/machine had (machine). Matched case-insensitively, as ClassAds are.
JOB_AD_KEYS: tuple[str, ...] = (
    "ClusterId", "ProcId", "GlobalJobId", "Owner", "JobBatchName", "RequestCpus", "RequestGpus",
    "RequestMemory", "RequestDisk", "RequireGPUs", "GPUsMinCapability", "GPUsMinMemory",
    "RemoteHost", "LastRemoteHost", "JobStartDate", "NumJobStarts", "Iwd",
)
MACHINE_AD_KEYS: tuple[str, ...] = (
    "Machine", "Name", "SlotID", "SlotType", "Cpus", "Memory", "Disk", "GPUs", "AssignedGPUs",
    "TotalCpus", "TotalMemory", "TotalGPUs", "DetectedGPUs",
    "GPUs_DeviceName", "GPUs_Capability", "GPUs_DriverVersion", "GPUs_GlobalMemoryMb",
    "GPUs_ECCEnabled", "GPUs_ClockMhz", "GPUs_MaxSupportedVersion",
    "CUDADeviceName", "CUDACapability", "CUDADriverVersion", "CUDAGlobalMemoryMb",
    "OpSysAndVer", "Arch", "CondorVersion",
)


# --- HTCondor ads --------------------------------------------------------------
def condor_ads(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``{"job": {...}, "machine": {...}}`` from the ad files HTCondor points at, or None outside HTCondor."""
    env = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for kind, var, keep in (("job", "_CONDOR_JOB_AD", JOB_AD_KEYS),
                            ("machine", "_CONDOR_MACHINE_AD", MACHINE_AD_KEYS)):
        path = env.get(var)
        if not path:
            continue
        try:
            found[kind] = parse_classad(Path(path).read_text(errors="replace"), keep)
        except OSError as exc:
            found[kind] = {"error": f"{var}={path}: {exc.strerror or exc}"}
    if not found:
        return None
    found.setdefault("job", None)
    found.setdefault("machine", None)
    return found


# --- environment ------------------------------------------------------------------
def nvidia_topology(timeout_s: float = 5.0) -> str | None:
    """``nvidia-smi topo -m`` (how GPUs connect: PCIe switch, host bridge, NVLink), or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "topo", "-m"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


def _torch_versions() -> tuple[str | None, str | None, int | None]:
    try:
        import torch
    except ImportError:
        return None, None, None
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        cudnn = None
    return torch.__version__, torch.version.cuda, cudnn


def cuda_devices_with_nvml_spelling(cuda_devices: Sequence[CudaDevice], gpus: Sequence[GpuInfo]
                                    ) -> list[CudaDevice]:
    """torch cannot tell a MIG device's bare uuid from a GPU's; where NVML matched it, its spelling wins."""
    def bare(u: str) -> str:
        return u.lower()[4:] if u.lower().startswith(("gpu-", "mig-")) else u.lower()
    by_bare = {bare(g.uuid): g.uuid for g in gpus if g.uuid}
    return [msgspec.structs.replace(d, uuid=by_bare.get(bare(d.uuid), d.uuid)) if d.uuid else d
            for d in cuda_devices]


def collect_environment(n_gpus: int, cuda_devices: Sequence[CudaDevice] | None = None,
                        environ: Mapping[str, str] | None = None, with_torch: bool = True) -> Environment:
    """run.json ``environment``, from a short NVML session of its own (no sampler needed).

    ``cuda_devices`` (CUDA index -> driver UUID, from torch) picks the GPUs NVML describes;
    without it they are found through CUDA_VISIBLE_DEVICES. What NVML cannot match is left
    out here and noted by the sampler, which does the same matching. ``with_torch=False``: the
    versions are left for the training processes to report (profiler.attach never imports torch).
    """
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    uuids = [d.uuid or "" for d in cuda_devices] if cuda_devices else None
    inv = nvml.inventory(n_gpus, uuids, visible)
    try:
        cpus_allowed: list[int] | None = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus_allowed = None
    torch_v, cuda_v, cudnn_v = _torch_versions() if with_torch else (None, None, None)
    return Environment(
        hostname=socket.gethostname(),
        platform=platform.platform(),
        python=sys.version.split()[0],
        torch=torch_v, cuda=cuda_v, cudnn=cudnn_v,
        cpu_count=os.cpu_count(),
        cpus_allowed=cpus_allowed,
        cpu_allocation=cpu_allocation(env),
        omp_num_threads=env.get("OMP_NUM_THREADS"),
        cuda_visible_devices=visible,
        cuda_devices=cuda_devices_with_nvml_spelling(cuda_devices or [], inv.gpus),
        nvml=inv.status,
        driver=inv.driver,
        gpus=inv.gpus,
        topology=nvidia_topology() if n_gpus > 0 or inv.gpus else None,
        condor=condor_ads(env),
    )


# --- run.json ---------------------------------------------------------------------
class RunRecord:
    """run.json of one run: ``start()`` writes status "running", ``finish()`` the outcome.

    The first terminal status wins: a SIGTERM handler and the unwinding code may
    both try to finish the run, and the later call must not overwrite
    "interrupted" with "failed". ``finish()`` returns whether it wrote.
    """

    def __init__(self, run_dir: Path, name: str, config: ConfigInfo) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / vocab.RUN_JSON
        self.info = RunInfo(name=name, config=config)

    @property
    def status(self) -> str | None:
        return self.info.status

    @property
    def finished(self) -> bool:
        return self.info.status in TERMINAL_STATUSES

    def write(self) -> None:
        """Rewrite run.json atomically with the current ``info``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.info)

    def start(self, environment: Environment, model: ModelInfo) -> None:
        if self.info.status is not None:
            raise RuntimeError(f"run {self.info.name!r} already started (status {self.info.status!r})")
        self.info.status = vocab.STATUS_RUNNING
        self.info.environment = environment
        self.info.model = model
        self.write()

    def note(self, text: str) -> None:
        """Add a note (kept once) to be written with the next write."""
        if text not in self.info.notes:
            self.info.notes.append(text)

    def finish(self, status: str, message: str | None = None, results: Results | None = None,
               notes: Sequence[str] | None = None) -> bool:
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"finish status must be one of {TERMINAL_STATUSES}, got {status!r}")
        if self.finished:
            return False
        self.info.status = status
        self.info.message = message
        if results is not None:
            self.info.results = results
        for n in notes or ():
            self.note(n)
        self.write()
        return True
