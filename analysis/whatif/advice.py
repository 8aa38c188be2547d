"""Cluster advice: the GPU configuration with the most images per GPU-hour and the fastest, as lines to paste.

Each configuration is first provisioned: predicted again at the smallest CPU request past which data
loading stops binding (its DataLoader workers raised to use those cores), and ranked on that
prediction -- so the advice quotes the rate its own request_cpus and workers give, and asking the
what-if again at them returns the same numbers and the same request (a fixed point). The macros are
condor/profile.sub's (SWEEP, WORKERS, JOB_CPUS, MEMORY_PER_GPU_GB, GPU_MIN_MEMORY).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from analysis.whatif.predict import Prediction, predict
from analysis.whatif.profile import Profile
from analysis.whatif.terms import ceil_gb
from profiler.contract import vocab

RSS_MARGIN = 1.25          # host memory: the measured peak RSS per training process + 25 %
GPU_MEMORY_MARGIN = 1.2    # device memory: the predicted floor + 20 % (allocator, cuDNN workspaces)
MAX_LOADER_CORES = 256     # the search's ceiling on the loader's cores per job
KNEE = 1.001               # a step within 0.1 % of the best any CPU request gives: data loading no longer binds
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


def _at(prof: Profile, p: Prediction, loader_cores: int) -> Prediction:
    """p's configuration with `loader_cores` CPUs beside its training processes, and workers to use them."""
    t = p.target
    workers = max(t.workers, math.ceil(loader_cores / t.processes)) if loader_cores else t.workers
    return predict(prof, replace(t, cpus=float(t.processes + loader_cores), workers=workers))


def provision(prof: Profile, p: Prediction) -> Prediction:
    """p at the smallest CPU request (training processes + loader cores) past which more CPUs no longer
    shorten the step: data loading has stopped binding. The step only falls as cores are added, so
    the knee is found by bisection between 1 loader core and MAX_LOADER_CORES."""
    best = _at(prof, p, MAX_LOADER_CORES)
    lo, hi = 1, MAX_LOADER_CORES          # hi: known past the knee
    one = _at(prof, p, lo)
    if one.step_ms <= best.step_ms * KNEE:
        return one
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _at(prof, p, mid).step_ms <= best.step_ms * KNEE:
            hi = mid
        else:
            lo = mid
    return _at(prof, p, hi)


def provisioned(results: Sequence[tuple[Profile, list[Prediction]]]) -> list[tuple[Prediction, Prediction]]:
    """(as asked, provisioned) for every GPU prediction."""
    return [(p, provision(prof, p)) for prof, preds in results for p in preds if p.target.device_type == vocab.CUDA]


def advise_one(label: str, p: Prediction, peak_rss_mib: float | None) -> Advice:
    """The request lines of a provisioned prediction: its own CPUs and workers, nothing added."""
    t = p.target
    cpus, workers = int(t.cpus), t.workers
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


def advise(pairs: Sequence[tuple[Prediction, Prediction]], peak_rss_mib: float | None) -> list[Advice]:
    """The cheapest (images per GPU-hour) and, when another, the fastest GPU configuration, each ranked
    and quoted at its provisioned allocation (pairs: provisioned()); [] without GPU ones."""
    gpu = [prov for _, prov in pairs if prov.memory_fits is not False]
    if not gpu:
        return []
    cheap = max(gpu, key=lambda p: (p.images_per_device_hour, -p.target.devices))
    fast = max(gpu, key=lambda p: (p.images_per_s, -p.target.devices))
    out = [advise_one("most images per GPU-hour", cheap, peak_rss_mib)]
    if fast is not cheap:
        out.append(advise_one("fastest", fast, peak_rss_mib))
    return out
