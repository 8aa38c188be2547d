"""Cluster advice: the GPU configuration with the most images per GPU-hour and the fastest, as lines to paste.

The numbers come from the predictions (rate, memory per device, the loader's cores) and the input
run's measured peak RSS; the macros are condor/profile.sub's (SWEEP, WORKERS, JOB_CPUS,
MEMORY_PER_GPU_GB, GPU_MIN_MEMORY), so the job asks for what the prediction says it needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.whatif.predict import Prediction
from analysis.whatif.terms import ceil_gb
from profiler.contract import vocab

RSS_MARGIN = 1.25          # host memory: the measured peak RSS per training process + 25 %
GPU_MEMORY_MARGIN = 1.2    # device memory: the predicted floor + 20 % (allocator, cuDNN workspaces)
LOADER_MARGIN = 1.25       # DataLoader cores: the predicted need + 25 %
SWEEP_FILE = "condor/whatif.txt"


@dataclass(frozen=True)
class Advice:
    label: str                 # "most images per GPU-hour" | "fastest"
    prediction: Prediction
    request_gpus: int
    request_cpus: int
    request_memory_gb: int | None
    gpus_minimum_memory_gb: int | None
    workers: int
    lines: list[str]           # submit-file lines, then the shell lines that queue it


def advise_one(label: str, p: Prediction, peak_rss_mib: float | None) -> Advice:
    t = p.target
    loader = math.ceil(p.loader_cores_needed * LOADER_MARGIN) if p.loader_cores_needed is not None else t.workers
    workers = max(t.workers, math.ceil(loader / t.processes)) if loader else t.workers
    cpus = t.processes + max(loader, 1 if workers else 0)
    mem = ceil_gb(peak_rss_mib * 1024 * 1024 * t.processes, RSS_MARGIN) if peak_rss_mib else None
    gmem = ceil_gb(p.memory_bytes, GPU_MEMORY_MARGIN) if p.memory_bytes else None
    per_gpu = math.ceil(mem / t.devices) if mem else None
    lines = [f"request_gpus = {t.devices}", f"request_cpus = {cpus}"]
    if mem:
        lines.append(f"request_memory = {mem}GB")
    if gmem:
        lines.append(f"gpus_minimum_memory = {gmem}GB")
    macros = [f"SWEEP={SWEEP_FILE.rsplit('/', 1)[1].removesuffix('.txt')}", f"WORKERS={workers}", f"JOB_CPUS={cpus}"]
    if per_gpu:
        macros.append(f"MEMORY_PER_GPU_GB={per_gpu}")
    if gmem:
        macros.append(f"GPU_MIN_MEMORY={gmem}GB")
    lines += [f"echo '{t.devices}, {t.strategy}, {t.global_batch}' > {SWEEP_FILE}",
              "condor_submit condor/profile.sub " + " ".join(macros)]
    return Advice(label, p, t.devices, cpus, mem, gmem, workers, lines)


def advise(preds: list[Prediction], peak_rss_mib: float | None) -> list[Advice]:
    """The cheapest (images per GPU-hour) and, when another, the fastest GPU configuration; [] without GPU ones."""
    gpu = [p for p in preds if p.target.device_type == vocab.CUDA and p.memory_fits is not False]
    if not gpu:
        return []
    cheap = max(gpu, key=lambda p: (p.images_per_device_hour, -p.target.devices))
    fast = max(gpu, key=lambda p: (p.images_per_s, -p.target.devices))
    out = [advise_one("most images per GPU-hour", cheap, peak_rss_mib)]
    if fast is not cheap:
        out.append(advise_one("fastest", fast, peak_rss_mib))
    return out
