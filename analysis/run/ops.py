"""A run's top ops, and what changed op by op between a multi-device run and its 1-device run.

Per image, so runs of different sizes compare: an op's device-time per image is its time per step
summed over the run's devices (every rank's trace, every GPU) divided by the images one step
trains (the global batch) -- for ranks that are alike, the op's time per step on one device
divided by that device's images per step.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from analysis.records import RunAnalysis
from analysis.run.scaling import RunMetrics

__all__ = ["TopOp", "OpChange", "OpDiff", "top_ops", "op_diff", "GREW", "TOP_OPS", "DIFF_ROWS"]

TOP_OPS = 15            # rows of top_ops kept per run
DIFF_ROWS = 25          # rows of an op diff kept (largest change in ms per image first)
GREW = 1.2              # ratio past which an op grew (and below 1/GREW, shrank)
Change = Literal["grew", "shrank", "same", "new", "gone"]
Key = tuple[str, str, str]          # (name, phase, category)


@dataclass(frozen=True)
class TopOp:
    name: str
    category: str
    phase: str
    ms_per_step: float              # per device: summed over the run's devices ÷ their number
    calls_per_step: float           # per device, likewise
    share: float | None             # of the run's step (None: no step time)


@dataclass(frozen=True)
class OpChange:
    name: str
    phase: str
    category: str
    base_ms_per_image: float
    ms_per_image: float
    ratio: float | None             # None: new (nothing to divide by)
    change: Change

    @property
    def added_ms_per_image(self) -> float:
        return self.ms_per_image - self.base_ms_per_image


@dataclass(frozen=True)
class OpDiff:
    run: str
    base: str
    rows: list[OpChange]            # largest ms per image added first; at most DIFF_ROWS


def _per_step(run: RunAnalysis) -> tuple[dict[Key, tuple[float, float]], int]:
    """(ms, calls) per step summed over every device of the run, and the number of devices."""
    out: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0.0])
    devices: set[tuple[str, str]] = set()
    for t in run.traces:
        n = max(len(t.steps), 1)
        for o in t.ops:
            acc = out[(o.name, o.phase, o.category)]
            acc[0] += o.total_us / 1e3 / n
            acc[1] += o.calls / n
            devices.add((t.worker + str(t.path), o.device))
    return {k: (v[0], v[1]) for k, v in out.items()}, len(devices)


def top_ops(run: RunAnalysis, m: RunMetrics, limit: int = TOP_OPS) -> list[TopOp]:
    """The ops a device spends its step on, largest first (per device: a mean over the run's devices)."""
    per, devices = _per_step(run)
    if not devices:
        return []
    rows = [TopOp(name, cat, phase, ms / devices, calls / devices,
                  ms / devices / m.step_ms if m.step_ms else None)
            for (name, phase, cat), (ms, calls) in per.items()]
    return sorted(rows, key=lambda r: (-r.ms_per_step, r.name, r.phase))[:limit]


def _change(base: float, now: float) -> tuple[float | None, Change]:
    if base <= 0:
        return None, "new"
    if now <= 0:
        return 0.0, "gone"
    ratio = now / base
    return ratio, "grew" if ratio >= GREW else "shrank" if ratio <= 1 / GREW else "same"


def op_diff(run: RunAnalysis, m: RunMetrics, base_run: RunAnalysis, base: RunMetrics,
            limit: int = DIFF_ROWS) -> OpDiff | None:
    """Each op's device-ms per image in the multi-device run beside its 1-device run's; None when
    either has no traced ops or no global batch."""
    if not (m.global_batch and base.global_batch):
        return None
    now, n_now = _per_step(run)
    then, n_then = _per_step(base_run)
    if not (n_now and n_then):
        return None
    rows = []
    for key in now.keys() | then.keys():
        b = then.get(key, (0.0, 0.0))[0] / base.global_batch
        x = now.get(key, (0.0, 0.0))[0] / m.global_batch
        ratio, change = _change(b, x)
        rows.append(OpChange(key[0], key[1], key[2], b, x, ratio, change))
    rows.sort(key=lambda r: (-r.added_ms_per_image, r.name, r.phase))
    return OpDiff(m.name, base.name, rows[:limit])
