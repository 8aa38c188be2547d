"""run.json: what ran, where, and how it ended -- always a complete, valid file.

Every write goes to a temp file in the run folder and is renamed over run.json
(``os.replace`` is atomic on POSIX), so a reader (the analysis, a job wrapper
copying results back) never sees half a file, even if the job is killed
mid-write. Torch-free at import; torch is imported inside
:func:`collect_environment` only (the runner has it loaded already).
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.contract import vocab
from profiler.contract.runjson import write_json_atomic

if TYPE_CHECKING:
    from profiler.sampler import Sampler

__all__ = ["RunRecord", "collect_environment", "parse_classad", "condor_ads", "nvidia_topology",
           "write_json_atomic", "JOB_AD_KEYS", "MACHINE_AD_KEYS"]

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
def _classad_value(text: str) -> Any:
    """A ClassAd literal as Python: "strings", integers, reals, true/false, undefined;
    anything else (an expression) is kept as its source text."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return t[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("undefined", "error"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_classad(text: str, keep: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Parse an "old ClassAd" file (``Key = Value`` per line, as in $_CONDOR_JOB_AD).

    ``keep`` selects attributes case-insensitively (spelled as in ``keep``);
    None keeps all. Lines that are not ``Key = Value`` are ignored.
    """
    wanted = {k.lower(): k for k in keep} if keep is not None else None
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").replace(".", "").isalnum():
            continue
        if wanted is not None:
            if key.lower() not in wanted:
                continue
            key = wanted[key.lower()]
        out[key] = _classad_value(value)
    return out


def condor_ads(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
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


def _torch_versions() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": None, "cuda": None, "cudnn": None}
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        cudnn = None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn}


def collect_environment(n_gpus: int, sampler: "Sampler | None" = None) -> dict[str, Any]:
    """run.json ``environment``. GPU facts come from ``sampler`` (its NVML session),
    else from a short NVML session of our own."""
    if sampler is None:
        from profiler.sampler import Sampler
        probe = Sampler(Path(os.devnull), n_gpus=n_gpus, isolate=False)
        try:
            nvml, driver, gpus = probe.nvml_status, probe.driver, probe.gpu_inventory()
        finally:
            probe.stop()
    else:
        nvml, driver, gpus = sampler.nvml_status, sampler.driver, sampler.gpu_inventory()
    try:
        cpus_allowed: list[int] | None = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus_allowed = None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **_torch_versions(),
        "cpu_count": os.cpu_count(),
        "cpus_allowed": cpus_allowed,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "nvml": nvml,
        "driver": driver,
        "gpus": gpus,
        "topology": nvidia_topology() if n_gpus > 0 or gpus else None,
        "condor": condor_ads(),
    }


# --- run.json ---------------------------------------------------------------------
class RunRecord:
    """run.json of one run: ``start()`` writes status "running", ``finish()`` the outcome.

    The first terminal status wins: a SIGTERM handler and the unwinding code may
    both try to finish the run, and the later call must not overwrite
    "interrupted" with "failed". ``finish()`` returns whether it wrote.
    """

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / vocab.RUN_JSON
        self.data: dict[str, Any] = {
            "schema": vocab.RUN_SCHEMA_VERSION,
            "name": name,
            "status": None,
            "message": None,
            "config": config,
            "model": None,
            "environment": None,
            "results": None,
            "notes": [],
        }

    @property
    def status(self) -> str | None:
        return self.data["status"]

    @property
    def finished(self) -> bool:
        return self.data["status"] in TERMINAL_STATUSES

    def write(self) -> None:
        """Rewrite run.json atomically with the current ``data``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.data)

    def start(self, environment: dict[str, Any], model: dict[str, Any]) -> None:
        if self.data["status"] is not None:
            raise RuntimeError(f"run {self.data['name']!r} already started (status {self.data['status']!r})")
        self.data.update(status=vocab.STATUS_RUNNING, environment=environment, model=model)
        self.write()

    def note(self, text: str) -> None:
        """Add a note (kept once) to be written with the next write."""
        if text not in self.data["notes"]:
            self.data["notes"].append(text)

    def finish(self, status: str, message: str | None = None, results: dict[str, Any] | None = None,
               notes: list[str] | None = None) -> bool:
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"finish status must be one of {TERMINAL_STATUSES}, got {status!r}")
        if self.finished:
            return False
        self.data.update(status=status, message=message)
        if results is not None:
            self.data["results"] = results
        for n in notes or ():
            self.note(n)
        self.write()
        return True
