"""What a user asks the what-if for, and the configurations that answers: one record for the CLI,
the library facade and the dashboard alike (none of them builds another's argparse namespace)."""
from __future__ import annotations

from dataclasses import dataclass

from analysis.datasheet import GpuSpec
from analysis.records import RunAnalysis
from analysis.run.scaling import RunMetrics
from analysis.whatif.predict import Prediction, Target, predict
from analysis.whatif.profile import Profile, WhatIfError, profile_of
from profiler.contract import vocab

__all__ = ["Ask", "targets", "predictions"]

CUDA_ONLY = vocab.DP_STRATEGIES


@dataclass(frozen=True)
class Ask:
    """`python -m analysis.whatif`'s options; None: the run's own value (or the default the CLI documents)."""

    strategies: tuple[str, ...] | None = None
    devices: tuple[int, ...] = (1, 2, 4)
    device_type: str | None = None
    global_batch: int | None = None
    batch_per_device: int | None = None
    link_gbps: float | None = None
    cpus: float | None = None
    workers: int | None = None


def _default_strategies(device_type: str, n: int) -> list[str]:
    if n == 1:
        return [vocab.SINGLE]
    return [vocab.DDP] if device_type == vocab.CPU else [vocab.DP, vocab.DP_LAYERWISE, vocab.DDP]


def targets(prof: Profile, ask: Ask, gpu: GpuSpec | None) -> list[Target]:
    """Every configuration asked for, checked; WhatIfError (one line) for one that does not apply."""
    device_type = ask.device_type or (vocab.CUDA if gpu is not None else prof.device_type)
    if device_type == vocab.CPU and gpu is not None:
        raise WhatIfError("--gpu with --device-type cpu: a GPU is only used for cuda predictions")
    workers = prof.workers if ask.workers is None else ask.workers
    if workers < 0:
        raise WhatIfError("--workers must be 0 or more")
    out: list[Target] = []
    for n in ask.devices:
        for s in ask.strategies or _default_strategies(device_type, n):
            if s in CUDA_ONLY and device_type == vocab.CPU:
                raise WhatIfError(f"--strategy {s} does not apply on a CPU (DataParallel needs CUDA devices)")
            if (s == vocab.SINGLE and n > 1) or (s in CUDA_ONLY and n == 1):
                continue           # a list of strategies × devices: the pairs that exist
            if s == vocab.DDP and n == 1 and vocab.SINGLE in (ask.strategies or ()):
                continue           # one rank of DDP is the single run, shown once
            gb = ask.global_batch or (ask.batch_per_device or prof.per_device_batch) * n
            if gb % n:
                raise WhatIfError(f"--global-batch {gb} does not split evenly over {n} devices")
            procs = n if s == vocab.DDP else 1
            if ask.cpus is not None:
                cpus = ask.cpus
            elif device_type == prof.device_type and prof.cpus_known:
                cpus = prof.cpus
            else:
                cpus = float(procs * (workers + 1)) if s == vocab.DDP else float(n * (workers + 1))
            out.append(Target(s, n, device_type, gb, cpus, workers, gpu, ask.link_gbps))
    if not out:
        raise WhatIfError("no configuration to predict (single runs on 1 device; dp and dp-layerwise need 2 or more)")
    return out


def predictions(runs: list[RunAnalysis], metrics: list[RunMetrics], ask: Ask, gpu: GpuSpec | None = None
                ) -> tuple[list[tuple[Profile, list[Prediction]]], list[Profile], list[str]]:
    """Each input run's predictions for `ask`: the 1-device runs (else every profiled run) are the inputs.
    Returns (profile, predictions) pairs, the inputs, and one line per run that could not be an input;
    WhatIfError when no run can be (or a configuration does not apply)."""
    profiles: list[Profile] = []
    problems: list[str] = []
    for r, m in zip(runs, metrics):
        try:
            profiles.append(profile_of(r, m, ask.global_batch, ask.batch_per_device))
        except WhatIfError as exc:
            problems.append(str(exc) + (f" ({r.errors[0]})" if r.errors else ""))
    if not profiles:
        raise WhatIfError(problems[0] if problems else "no run to predict from")
    inputs = [p for p in profiles if p.devices == 1] or profiles
    return [(p, [predict(p, t) for t in targets(p, ask, gpu)]) for p in inputs], inputs, problems
