"""Which parallel strategy a run used, recognised from its traces when run.json does not say.

A folder from another tool has no run.json and no scalescope name, yet its trace says a lot:
`DistributedDataParallel.forward` spans, Kineto's `distributedInfo` (backend, rank, world size),
`DataParallel.forward` spans (several per step: one wrapper per layer), FSDP's spans, kernels
on more than one GPU of one process. `evidence` counts those per trace; `recognise` decides from
all of a run's traces with a rule table, the first matching rule wins, and says which figures it
used. Pure functions over the reader's columns; torch-free.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.step.classify import ALLREDUCE_OP, KERNEL_CATS, category_mask, name_mask
from analysis.trace.reader import Trace
from analysis.records import StrategyEvidence
from profiler.contract import vocab

__all__ = ["FSDP", "StrategyEvidence", "Recognised", "evidence", "recognise", "RULES"]

FSDP = "fsdp"     # recognised in foreign traces only: the runner has no FSDP strategy

_DDP_FORWARD = re.compile(r"^DistributedDataParallel\.forward$")
_DP_FORWARD = re.compile(r"^DataParallel\.forward$")
_FSDP = re.compile(r"FullyShardedDataParallel|^FSDP::|^fsdp::")


def _count(tr: Trace, pattern: re.Pattern[str]) -> int:
    return int(np.count_nonzero(name_mask(tr, pattern)))


def evidence(tr: Trace, steps: int, worker: str) -> StrategyEvidence:
    on_gpu = tr.device[category_mask(tr, KERNEL_CATS)]
    dist = tr.distributed
    return StrategyEvidence(
        worker=worker, steps=max(steps, 1), ddp_forwards=_count(tr, _DDP_FORWARD), dp_forwards=_count(tr, _DP_FORWARD),
        fsdp_events=_count(tr, _FSDP), allreduces=_count(tr, ALLREDUCE_OP),
        gpu_devices=int(len(np.unique(on_gpu[on_gpu >= 0]))),
        world_size=dist.world_size if dist is not None else None, backend=dist.backend if dist is not None else None)


@dataclass(frozen=True)
class Recognised:
    strategy: str
    devices: int | None            # the job's devices as far as the traces say (world size, DP's GPUs)
    basis: str                     # the figures the rule used, in words


@dataclass(frozen=True)
class _Rule:
    strategy: str
    applies: Callable[[Sequence[StrategyEvidence]], bool]
    devices: Callable[[Sequence[StrategyEvidence]], int | None]
    basis: Callable[[Sequence[StrategyEvidence]], str]


def _world(evs: Sequence[StrategyEvidence]) -> int | None:
    worlds = [e.world_size for e in evs if e.world_size]
    return max(worlds) if worlds else None


def _processes(evs: Sequence[StrategyEvidence]) -> int:
    return len({e.worker for e in evs})


def _ranks(evs: Sequence[StrategyEvidence]) -> int | None:
    return _world(evs) or (_processes(evs) if _processes(evs) > 1 else None)


def _dp_per_step(evs: Sequence[StrategyEvidence]) -> float:
    return max(e.dp_forwards / e.steps for e in evs)


def _world_text(evs: Sequence[StrategyEvidence]) -> str:
    w = _world(evs)
    backend = next((e.backend for e in evs if e.backend), None)
    return (f"distributedInfo world size {w}" + (f" ({backend})" if backend else "")) if w else f"{_processes(evs)} rank trace(s)"


RULES: tuple[_Rule, ...] = (
    _Rule(FSDP, lambda evs: any(e.fsdp_events for e in evs), _ranks,
          lambda evs: f"{sum(e.fsdp_events for e in evs)} FSDP spans; {_world_text(evs)}"),
    _Rule(vocab.DDP, lambda evs: any(e.ddp_forwards for e in evs), _ranks,
          lambda evs: f"{sum(e.ddp_forwards for e in evs)} DistributedDataParallel.forward spans; {_world_text(evs)}"),
    _Rule(vocab.DP_LAYERWISE, lambda evs: _dp_per_step(evs) >= 2, lambda evs: max(e.gpu_devices for e in evs) or None,
          lambda evs: f"{_dp_per_step(evs):.0f} DataParallel.forward spans per step (one wrapper per layer); "
                      f"kernels on {max(e.gpu_devices for e in evs)} GPU(s) of one process"),
    _Rule(vocab.DP, lambda evs: any(e.dp_forwards for e in evs), lambda evs: max(e.gpu_devices for e in evs) or None,
          lambda evs: f"1 DataParallel.forward span per step; kernels on {max(e.gpu_devices for e in evs)} GPU(s) of one process"),
    _Rule(vocab.DDP, lambda evs: (_world(evs) or 1) > 1 and any(e.allreduces for e in evs), _ranks,
          lambda evs: f"{sum(e.allreduces for e in evs)} all-reduce ops or kernels without a DDP span; {_world_text(evs)}"),
    _Rule(vocab.SINGLE, lambda evs: _processes(evs) == 1 and (_world(evs) or 1) == 1 and max(e.gpu_devices for e in evs) <= 1,
          lambda evs: 1, lambda evs: "one process, kernels on at most one GPU, no DataParallel/DDP spans, no process group"),
)


def recognise(evs: Sequence[StrategyEvidence]) -> Recognised | None:
    """The first rule that matches the run's traces, or None (then the strategy stays unknown)."""
    if not evs:
        return None
    for rule in RULES:
        if rule.applies(evs):
            return Recognised(rule.strategy, rule.devices(evs), rule.basis(evs))
    return None
